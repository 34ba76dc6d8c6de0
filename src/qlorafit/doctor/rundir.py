"""A qlorafit run directory as the doctor reads it: config.yaml, metrics.jsonl and events.jsonl (docs/TEAM.md).

Only what was recorded is reported: the peak memory lines and the events (oom_recovery, skip_sample, nan_loss,
leak_warning, eval). A malformed line is named by file and line number. metrics.jsonl is streamed through the one
run-log reader (qlorafit.runlog) and kept as its peaks and its last row: a 50 MB log costs one row of memory.
"""

from dataclasses import dataclass, field
from pathlib import Path

from qlorafit.errors import UserError
from qlorafit.runlog import iter_rows, rank_dirs, read_rows


@dataclass
class RunInfo:
    path: str
    config: object | None = None
    events: list = field(default_factory=list)
    steps_logged: int = 0                              # metrics.jsonl rows
    last: dict = field(default_factory=dict)           # the last metrics row
    peaks: dict = field(default_factory=dict)          # the largest value of each numeric metrics field

    def kind(self, k: str) -> list:
        return [e for e in self.events if e.get("kind") == k]

    @property
    def oom_events(self) -> list:
        return self.kind("oom_recovery")

    def peak(self, key: str) -> int | None:
        v = self.peaks.get(key)
        return int(v) if v is not None else None


def _read_metrics(info: RunInfo, path: Path, count: bool = True) -> None:
    """Stream metrics.jsonl into its row count, last row and per-field peaks (count=False: peaks only, another
    rank's log)."""
    if not path.is_file():
        return
    for row in iter_rows(path, notes=[]):
        if count:
            info.steps_logged += 1
            info.last = row
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and (k not in info.peaks or v > info.peaks[k]):
                info.peaks[k] = v


def read_run(path: str) -> RunInfo:
    from qlorafit.core import config as qconfig

    p = Path(path)
    if not p.is_dir():
        raise UserError(f"--run {path}: no such run directory")
    info = RunInfo(path=str(p), events=read_rows(p / "events.jsonl", notes=[]))
    _read_metrics(info, p / "metrics.jsonl")
    # a multi-GPU run: the other ranks log under ranks/rank-N/; their events count (tagged with the rank) and their
    # memory peaks too, since the rank that ran out is the one to explain
    for rank, sub in rank_dirs(p):
        info.events += [{**e, "rank": rank} for e in read_rows(sub / "events.jsonl", notes=[])]
        _read_metrics(info, sub / "metrics.jsonl", count=False)
    if (p / "config.yaml").is_file():
        info.config = qconfig.load(str(p / "config.yaml"))
    if info.config is None and not info.steps_logged and not info.events:
        raise UserError(f"--run {path}: holds no config.yaml, metrics.jsonl or events.jsonl; is it a qlorafit run?")
    return info
