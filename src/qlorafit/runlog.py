"""The run logs (metrics.jsonl, events.jsonl, ledger.jsonl): the one writer and the one reader, used by train,
report and doctor. Plain Python, no torch.

One JSON object per line, each with an integer "step" (docs/TEAM.md). A process killed mid-write (kill -9, a full
disk, an OOM kill) can leave a partial last line without its newline; that is the only damage a crash can do to an
append-only log, so it is the only damage forgiven:
  - `iter_rows` (read) skips a partial LAST line with a note and names any other malformed line by file and line;
  - `repair` (train, before appending again) cuts the partial last line off, so the next row starts on a line of its
    own;
  - `trim` (train --resume) keeps the rows of the steps the checkpoint holds, streaming, and replaces the file
    atomically.
Reading streams line by line: a 50 MB log costs one row of memory, not the whole file.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

from qlorafit.errors import UserError

LOGS = ("metrics", "events", "ledger")


def log_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / f"{name}.jsonl"


def rank_dir(run_dir: Path, rank: int) -> Path:
    """Where rank `rank` (> 0) of a multi-GPU run logs; rank 0 logs in the run directory itself."""
    return Path(run_dir) / "ranks" / f"rank-{rank}"


def rank_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """(rank, folder) of every other rank that has a log folder under run_dir, in rank order."""
    ranks = Path(run_dir) / "ranks"
    found = [(sub.name.removeprefix("rank-"), sub) for sub in ranks.glob("rank-*")] if ranks.is_dir() else []
    return sorted((int(n), sub) for n, sub in found if n.isdigit())


def iter_rows(path: Path, notes: list[str] | None = None, required: tuple[str, ...] = ()) -> Iterator[dict]:
    """The rows of one JSONL log, streamed. A malformed line raises a UserError naming the file and line; a partial
    last line (no newline after it) is skipped, with a note appended to `notes`."""
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):  # only the last line can lack its newline
                    if notes is not None:
                        notes.append(f"{path.name} line {i}: partial last line ignored (the run stopped mid-write)")
                    return
                raise UserError(f"{path} line {i}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {i}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{path} line {i}: missing field(s) {', '.join(missing)}")
            if "step" in row and not isinstance(row["step"], int):
                raise UserError(f"{path} line {i}: 'step' must be an integer, got {row['step']!r}")
            yield row


def read_rows(path: Path, notes: list[str] | None = None, required: tuple[str, ...] = ()) -> list[dict]:
    """All rows of one log ([] when the file is absent)."""
    return list(iter_rows(path, notes, required)) if Path(path).is_file() else []


def repair(path: Path) -> str | None:
    """Cut a partial last line (a write the process did not finish) off the end of `path`; return a note saying so,
    or None when the file ends cleanly. Reads only the file's tail."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        pos = size
        while pos > 0:  # back to the last newline, 64 KiB at a time
            start = max(0, pos - 65536)
            f.seek(start)
            block = f.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                pos = start + nl + 1
                break
            pos = start
        f.truncate(pos)
    return f"{path.name}: removed a partial last line of {size - pos} bytes (the run stopped mid-write)"


def trim(path: Path, step: int) -> None:
    """Keep only the rows with "step" <= `step` (those a resumed run will not write again); a partial last line
    goes too. Streams into a temp file beside `path`, then renames it over `path`."""
    path = Path(path)
    if not path.is_file():
        return
    repair(path)
    tmp = path.with_name(f".{path.name}.trim-{os.getpid()}")
    try:
        with path.open("r", encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src, 1):
                if not line.strip():
                    continue
                try:
                    row_step = json.loads(line)["step"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise UserError(f"{path} line {i}: not a run-log row (JSON with a 'step'); move the file "
                                    f"aside to go on") from None
                if row_step <= step:
                    dst.write(line)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LogWriter:
    """Appends rows to the run's logs, one flushed line per row, so a crash loses at most the row being written."""

    def __init__(self, run_dir: Path, names: tuple[str, ...] = LOGS):
        self.files = {}
        for name in names:
            repair(log_path(run_dir, name))  # a partial line left by a crash would glue onto the next row
            self.files[name] = log_path(run_dir, name).open("a", encoding="utf-8")

    def write(self, name: str, row: dict) -> None:
        f = self.files[name]
        f.write(json.dumps(row) + "\n")
        f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}
