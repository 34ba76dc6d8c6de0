"""What a run writes while it trains: metrics.jsonl, events.jsonl, ledger.jsonl, the progress bar, TensorBoard.

Reading a memory figure never resets it: the loop calls `torch.cuda.reset_peak_memory_stats()` itself at the start of
each step. File formats are the run-directory contract in docs/TEAM.md.
"""

import os
import sys
import time
from pathlib import Path

import torch

from qlorafit.core.sizes import MIB, fmt_gib as gib
from qlorafit.errors import UserError
from qlorafit.runlog import LogWriter

LEAK_STEPS = 5                  # same-shape steps of steadily rising memory before we warn
LEAK_MIN_BYTES = 32 * MIB       # ... and only when the rise adds up to at least this much


def host_rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_stats(device: torch.device) -> dict:
    """Allocator figures in bytes (zeros on CPU). Reads only; no reset, no device sync.

    >>> memory_stats(torch.device("cpu"))["mem_allocated"]
    0
    """
    if device.type != "cuda":
        return {"mem_allocated": 0, "mem_reserved": 0, "mem_peak_allocated": 0, "mem_peak_reserved": 0,
                "mem_fragmentation": 0, "host_rss": host_rss_bytes()}
    alloc, res = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    return {"mem_allocated": alloc, "mem_reserved": res,
            "mem_peak_allocated": torch.cuda.max_memory_allocated(device),
            "mem_peak_reserved": torch.cuda.max_memory_reserved(device),
            "mem_fragmentation": res - alloc, "host_rss": host_rss_bytes()}


def non_torch_bytes(device: torch.device) -> int:
    """Device memory used outside PyTorch's caching allocator (CUDA context, cuBLAS workspaces, other processes)."""
    if device.type != "cuda":
        return 0
    free, total = torch.cuda.mem_get_info(device)
    return max(0, total - free - torch.cuda.memory_reserved(device))


class LeakWatch:
    """Warns once when the memory held between steps keeps climbing across steps of the same shape."""

    def __init__(self):
        self.key, self.values, self.warned = None, [], False

    def observe(self, key, allocated: int) -> dict | None:
        if self.warned or allocated == 0:
            return None
        if key != self.key:
            self.key, self.values = key, []
        self.values.append(allocated)
        v = self.values[-(LEAK_STEPS + 1):]
        rising = len(v) == LEAK_STEPS + 1 and all(b > a for a, b in zip(v, v[1:]))
        if rising and v[-1] - v[0] >= LEAK_MIN_BYTES:
            self.warned = True
            return {"shape": list(key), "steps": LEAK_STEPS, "grew_bytes": v[-1] - v[0], "mem_allocated": v[-1]}
        return None


class Monitor:
    """Appends JSON lines to the run directory's logs and drives the progress bar."""

    def __init__(self, run_dir: Path, device: torch.device, total_steps: int, start_step: int, quiet: bool = False,
                 trackers=None):
        self.dir = Path(run_dir)
        self.device = device
        self.t0 = time.time()
        self.logs = LogWriter(self.dir)
        self.leaks = LeakWatch()
        self.bar = None if quiet else _progress_bar(total_steps, start_step)
        self.quiet = quiet
        self.trackers = trackers  # qlorafit.runtime.trackers.Trackers (train.report_to, train.tensorboard), or None

    def memory(self) -> dict:
        return memory_stats(self.device)

    def _write(self, name: str, row: dict) -> None:
        try:
            self.logs.write(name, row)
        except OSError as e:  # a full disk: say which file, and what a --resume will find
            from qlorafit.runtime.checkpoint import io_error_message
            raise UserError(io_error_message(f"writing {name}.jsonl", self.dir, e)) from None

    def metrics(self, row: dict) -> None:
        row = {**row, "time": round(time.time() - self.t0, 3)}
        self._write("metrics", row)
        if self.trackers is not None:
            self.trackers.metrics(row)

    def event(self, kind: str, step: int, **fields) -> None:
        self._write("events", {"time": round(time.time() - self.t0, 3), "step": step, "kind": kind, **fields})
        if self.trackers is not None:
            self.trackers.event(kind, step, fields)

    def ledger(self, step: int, sample_ids: list[int], skipped: list[dict], applied: bool = True,
               truncated: list[dict] | None = None) -> None:
        """One line per optimizer step: the samples it trained, those the guard skipped, and whether the update
        was applied (False after a NaN/inf loss)."""
        self._write("ledger", {"step": step, "sample_ids": sample_ids, "skipped": skipped, "applied": applied,
                               "truncated": truncated or []})

    def progress(self, step: int, loss: float, tokens_per_s: float, mem: dict) -> None:
        if self.bar is None:
            return
        text = f"loss {loss:.4f} | {tokens_per_s:,.0f} tok/s"
        if mem["mem_peak_reserved"]:
            text += f" | mem {gib(mem['mem_allocated'])} peak {gib(mem['mem_peak_allocated'])}"
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(step - self.bar.n)

    def say(self, text: str) -> None:
        """A line for the user that does not break the progress bar."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.trackers is not None:
            self.trackers.close()
            self.trackers = None
        try:
            self.logs.close()
        except OSError:
            pass  # the row a full disk cut short is lost; `qlorafit.runlog.repair` cuts its partial line off on resume


def _progress_bar(total: int, start: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)
