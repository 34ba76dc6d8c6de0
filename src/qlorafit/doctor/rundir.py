"""A qlorafit run directory as the doctor reads it: config.yaml, metrics.jsonl and events.jsonl (docs/TEAM.md).

Only what was recorded is reported: the peak memory lines and the events (oom_recovery, skip_sample, nan_loss,
leak_warning, eval). A malformed line is named by file and line number.
"""

from dataclasses import dataclass, field
from pathlib import Path

from qlorafit.errors import UserError


@dataclass
class RunInfo:
    path: str
    config: object | None = None
    metrics: list = field(default_factory=list)
    events: list = field(default_factory=list)

    def kind(self, k: str) -> list:
        return [e for e in self.events if e.get("kind") == k]

    @property
    def oom_events(self) -> list:
        return self.kind("oom_recovery")

    @property
    def last(self) -> dict:
        return self.metrics[-1] if self.metrics else {}

    def peak(self, key: str) -> int | None:
        vals = [m[key] for m in self.metrics if isinstance(m.get(key), (int, float))]
        return int(max(vals)) if vals else None


def _jsonl(path: Path) -> list:
    """Rows of a run's JSONL file, read as `qlorafit report` reads them (a malformed line named by file and line; a
    partial last line, from a run killed mid-write, skipped); [] when the file is absent."""
    from qlorafit.report import read_jsonl

    return read_jsonl(path, notes=[]) if path.is_file() else []


def read_run(path: str) -> RunInfo:
    from qlorafit.core import config as qconfig

    p = Path(path)
    if not p.is_dir():
        raise UserError(f"--run {path}: no such run directory")
    info = RunInfo(path=str(p), metrics=_jsonl(p / "metrics.jsonl"), events=_jsonl(p / "events.jsonl"))
    if (p / "config.yaml").is_file():
        info.config = qconfig.load(str(p / "config.yaml"))
    if info.config is None and not info.metrics and not info.events:
        raise UserError(f"--run {path}: holds no config.yaml, metrics.jsonl or events.jsonl; is it a qlorafit run?")
    return info
