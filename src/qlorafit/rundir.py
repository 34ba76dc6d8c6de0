"""The run directory qlorafit writes into, and the promise around it: it never deletes what it did not write.

A run directory carries a marker, `.qlorafit-run.json`, written when a run starts in it. Replacing a run (`train
--overwrite`, `demo` into its own earlier directory) needs that marker, and even then removes only the files and
folders qlorafit writes (`OWNED_FILES`, `checkpoints/step-N/`, `final/`, TensorBoard event files); anything else in
the directory is left where it is. Plain Python, no torch: the checks run before the model loads.
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

from qlorafit.errors import UserError

MARKER = ".qlorafit-run.json"
OWNED_FILES = ("config.yaml", "estimate.json", "metrics.jsonl", "events.jsonl", "ledger.jsonl", "report.html",
               "memory.png", "breakdown.png", "loss.png", "tokens.png")
CHECKPOINT_FILES = ("adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "rng.safetensors",
                    "trainer_state.json")
_STEP_DIR = re.compile(r"step-\d+")
_RANK_DIR = re.compile(r"rank-\d+")
# temp names of qlorafit's own writers: checkpoint.write_dir_atomic, runlog.trim, atomic.write_atomic
_TEMP = re.compile(r"\.(?:step-\d+|final)\.(?:tmp|old)-\d+|\.(?:%s)\.(?:trim-\d+|\w+\.tmp)"
                   % "|".join(re.escape(n) for n in OWNED_FILES))


def check_writable(d: Path, key: str = "output_dir") -> None:
    """Raise a UserError naming `key` if `d` cannot become a run directory: it is a file, a parent of it is a file,
    or the nearest existing folder is not writable. Creates nothing."""
    d = Path(d).expanduser()
    if d.exists() and not d.is_dir():
        raise UserError(f"{key}: {d} is a file, not a directory; choose another {key}")
    probe = next((p for p in (d, *d.parents) if p.exists()), d)  # the nearest existing folder
    if not probe.is_dir():
        raise UserError(f"{key}: {d} cannot be created: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "it" if probe == d else f"its parent {probe}"
        raise UserError(f"{key}: {d} is not writable ({where} is read-only for this user); choose another {key}")


def is_marked(d: Path) -> bool:
    return (Path(d) / MARKER).is_file()


def read_marker(d: Path) -> dict:
    try:
        info = json.loads((Path(d) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_marker(d: Path, kind: str) -> None:
    """Mark `d` as a qlorafit run directory ('train' or 'demo'); kept as it is when already there."""
    from qlorafit import __version__

    d = Path(d)
    if is_marked(d):
        return
    d.mkdir(parents=True, exist_ok=True)
    (d / MARKER).write_text(json.dumps({"qlorafit": __version__, "kind": kind,
                                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


def is_empty(d: Path) -> bool:
    d = Path(d)
    return not d.exists() or (d.is_dir() and not any(d.iterdir()))


def owned_paths(d: Path) -> list[Path]:
    """The files and folders in `d` that qlorafit wrote: the ones `remove_run` may delete."""
    d = Path(d)
    out = [d / n for n in OWNED_FILES if (d / n).is_file()]
    ckpts = d / "checkpoints"
    if ckpts.is_dir():
        out += [p for p in ckpts.iterdir() if p.is_dir() and (_STEP_DIR.fullmatch(p.name) or _TEMP.fullmatch(p.name))]
    if (d / "final").is_dir():
        out.append(d / "final")
    out += [p for p in d.iterdir() if _TEMP.fullmatch(p.name)]
    tb = d / "tensorboard"
    if tb.is_dir():
        out += [p for p in tb.iterdir() if p.is_file() and p.name.startswith("events.out.tfevents.")]
    ranks = d / "ranks"  # the logs of ranks 1.. of a run under torchrun (qlorafit.runtime.dist)
    if ranks.is_dir():
        out += [r / n for r in ranks.iterdir() if r.is_dir() and _RANK_DIR.fullmatch(r.name)
                for n in OWNED_FILES if (r / n).is_file()]
    return out


def remove_run(d: Path) -> list[Path]:
    """Delete what qlorafit wrote in the marked run directory `d`, nothing else; return what was left (the user's)."""
    d = Path(d)
    if not is_marked(d):
        raise UserError(f"{d} has no {MARKER}: qlorafit did not create it, so it deletes nothing there")
    for p in owned_paths(d):
        if p.is_dir():
            _remove_checkpoint_dir(p)
        else:
            p.unlink(missing_ok=True)
    if (d / "ranks").is_dir():
        for r in (d / "ranks").iterdir():
            if r.is_dir() and _RANK_DIR.fullmatch(r.name) and not any(r.iterdir()):
                r.rmdir()
    for sub in ("checkpoints", "tensorboard", "ranks"):  # now empty, unless the user keeps something there
        if (d / sub).is_dir() and not any((d / sub).iterdir()):
            (d / sub).rmdir()
    return [p for p in d.iterdir() if p.name != MARKER]


def _remove_checkpoint_dir(p: Path) -> None:
    """A checkpoint folder: its qlorafit files go; the folder goes only if nothing else is in it."""
    if _TEMP.fullmatch(p.name):  # a half-written checkpoint: every file in it is ours
        shutil.rmtree(p, ignore_errors=True)
        return
    for name in CHECKPOINT_FILES:
        (p / name).unlink(missing_ok=True)
    if p.is_dir() and not any(p.iterdir()):
        p.rmdir()


def refuse_unmarked(d: Path, flag: str) -> UserError:
    """The error for `flag` (--overwrite, demo) in a folder qlorafit did not mark."""
    return UserError(f"{flag}: {d} is not empty and has no {MARKER}, so qlorafit did not create it and will not "
                     f"delete anything in it; choose another --output-dir (or an empty one)")
