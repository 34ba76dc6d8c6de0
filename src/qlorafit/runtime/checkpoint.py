"""Atomic checkpoints in safetensors + JSON: nothing is ever read back with pickle.

A checkpoint directory (`checkpoints/step-N/` or `final/`) holds
  adapter_model.safetensors + adapter_config.json   the adapter in PEFT format (PeftModel.from_pretrained loads it)
  optimizer.safetensors    the optimizer's tensors, flattened to '<param index>/<name>'; its ints, floats and
                           param_groups go in the file's JSON metadata
  rng.safetensors          torch CPU and CUDA generator states; Python's `random` state in the metadata
  trainer_state.json       step, updates, data position (epoch, index in the epoch order), guard and scaler state;
                           written last: a directory without it is not a checkpoint
It is written into a hidden temp directory next to its final place, every file fsynced, then renamed into place, so
a crash or a full disk never leaves a partial directory that looks complete, and the previous checkpoint survives.
Saving copies each tensor to host memory one at a time: it allocates no GPU memory, so it cannot OOM the GPU.
"""

import errno
import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_bytes

from qlorafit.errors import UserError, first_line

STATE_FILE = "trainer_state.json"


def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync one file. Every checkpoint byte goes through here (tests make it fail with ENOSPC)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _host(t: torch.Tensor) -> torch.Tensor:
    if hasattr(t, "full_tensor"):  # an FSDP-sharded DTensor: every rank calls this, in the same order (all-gather)
        t = t.full_tensor()
    return t.detach().to("cpu", copy=True).contiguous()  # own storage: safetensors refuses shared tensors


# --- the adapter (PEFT format) -------------------------------------------------------------------------------------

def adapter_files(model) -> dict[str, bytes]:
    """adapter_model.safetensors and adapter_config.json as PeftModel.save_pretrained writes them."""
    from peft import get_peft_model_state_dict

    weights = {k: _host(v) for k, v in get_peft_model_state_dict(model).items()}
    pc = model.peft_config["default"]
    cfg = pc.to_dict()
    cfg = {k: sorted(v) if isinstance(v, set) else v for k, v in cfg.items()}
    cfg["inference_mode"] = True
    if not cfg.get("base_model_name_or_path"):
        cfg["base_model_name_or_path"] = getattr(model.get_base_model().config, "_name_or_path", None)
    return {"adapter_model.safetensors": st_bytes(weights, metadata={"format": "pt"}),
            "adapter_config.json": json.dumps(cfg, indent=2, sort_keys=True, default=str).encode()}


# --- optimizer and RNG, flattened --------------------------------------------------------------------------------

def _flatten(d: dict, prefix: str, tensors: dict, scalars: dict) -> None:
    """Nested state -> 'prefix/name' keys: tensors to `tensors`, the rest to `scalars` (bitsandbytes nests its
    quantization state one dict deeper)."""
    for name, v in d.items():
        key = f"{prefix}/{name}"
        if isinstance(v, torch.Tensor):
            tensors[key] = _host(v)
        elif isinstance(v, dict):
            _flatten(v, key, tensors, scalars)
        else:
            scalars[key] = v


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        idx, *path = key.split("/")
        node = out.setdefault(int(idx), {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = v
    return out


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> bytes:
    """Tensors to safetensors, keyed '<param index>/<name>'; everything else (step counts, param_groups) to JSON in
    the file's metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        _flatten(st, str(idx), tensors, scalars)
    meta = {"param_groups": sd["param_groups"], "scalars": scalars}
    return st_bytes(tensors, metadata={"qlorafit": json.dumps(meta)})


def read_optimizer(path: Path) -> dict:
    """The optimizer state_dict saved by `optimizer_bytes` (read whole, applied by the caller)."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["qlorafit"])
        flat = {k: f.get_tensor(k) for k in f.keys()}
    flat.update(meta["scalars"])
    groups = meta["param_groups"]
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": _unflatten(flat), "param_groups": groups}


def rng_bytes() -> bytes:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    py = random.getstate()
    return st_bytes(tensors, metadata={"python_random": json.dumps([py[0], list(py[1]), py[2]])})


def read_rng(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        cpu = f.get_tensor("torch_cpu")
        cuda = [f.get_tensor(k) for k in sorted(k for k in f.keys() if k.startswith("torch_cuda."))]
        v, st, g = json.loads(f.metadata()["python_random"])
    return {"cpu": cpu, "cuda": cuda, "python": (v, tuple(st), g)}


def apply_rng(rng: dict) -> None:
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"][: torch.cuda.device_count()])
    random.setstate(rng["python"])


# --- atomic directories ------------------------------------------------------------------------------------------

def save_checkpoint(target: Path, model, optimizer, state: dict, with_optimizer: bool = True,
                    write: bool = True) -> None:
    """Write a checkpoint directory atomically. On a full disk, raise UserError and leave the old one intact.
    write=False: assemble the tensors only (the other FSDP ranks, which join the all-gathers rank 0 writes from)."""
    target = Path(target)
    files = adapter_files(model)
    if with_optimizer:
        files["optimizer.safetensors"] = optimizer_bytes(optimizer)
        files["rng.safetensors"] = rng_bytes()
    if not write:
        return
    files[STATE_FILE] = json.dumps(state, indent=2).encode()  # last: its presence marks a complete checkpoint
    write_dir_atomic(target, files)


def write_dir_atomic(target: Path, files: dict[str, bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for name, data in files.items():
            _write_bytes(tmp / name, data)
        _fsync_dir(tmp)
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        _fsync_dir(target.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.rename(old, target)
        raise UserError(_save_error(target, e)) from None
    if old.exists():
        for p in old.iterdir():  # a file the user put in the old directory moves over: only ours are replaced
            if p.name not in files:
                os.rename(p, target / p.name)
    shutil.rmtree(old, ignore_errors=True)


def _save_error(target: Path, e: OSError) -> str:
    prev = latest_checkpoint(target.parent.parent if target.parent.name == "checkpoints" else target.parent)
    keep = f"the previous checkpoint {prev} is intact" if prev else "no earlier checkpoint exists"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full while saving checkpoint {target}: {keep}. Free space on that disk (or set output_dir "
                f"elsewhere) and rerun with --resume.")
    return f"could not save checkpoint {target}: {e.strerror or e}; {keep}."


def io_error_message(doing: str, run_dir: Path, e: OSError) -> str:
    """'disk full while writing metrics.jsonl in RUN: the newest checkpoint ... is intact; ...'."""
    prev = latest_checkpoint(run_dir)
    keep = f"the newest checkpoint {prev} is intact" if prev else "no checkpoint was written yet"
    what = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"error ({e.strerror or e})"
    return (f"{what} while {doing} in {run_dir}: {keep}. Free space on that disk (or set output_dir elsewhere) and "
            f"rerun with --resume; the partial last log line is repaired then.")


def clean_partial(run_dir: Path) -> None:
    """Remove temp directories left by a run killed while saving."""
    for parent in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if parent.is_dir():
            for p in parent.glob(".*.tmp-*"):
                shutil.rmtree(p, ignore_errors=True)


def read_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def _order_step(p: Path) -> float:
    if p.name.startswith("step-"):
        return int(p.name.split("-")[1])
    try:
        return read_state(p)["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return float("inf")  # an unreadable final/ is tried first, so that its damage is reported


def checkpoints_newest_first(run_dir: Path) -> list[Path]:
    """Every checkpoint directory that was completed (its trainer_state.json written), final/ included."""
    run_dir = Path(run_dir)
    found = [p for p in (run_dir / "checkpoints").glob("step-*")
             if p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
    if (run_dir / "final" / STATE_FILE).is_file():
        found.append(run_dir / "final")
    return sorted(found, key=_order_step, reverse=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step whose trainer_state.json reads; None if there is none."""
    for p in checkpoints_newest_first(run_dir):
        try:
            read_state(p)["step"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return p
    return None


class Damaged(Exception):
    """A checkpoint file that cannot be read back (truncated, corrupt, missing)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def _read(path: Path, reader):
    try:
        return reader(path)
    except FileNotFoundError:
        raise Damaged(path, "missing") from None
    except Exception as e:  # safetensors, json and torch raise several types for a damaged file; all mean the same
        raise Damaged(path, first_line(e)[:120]) from None


def _read_trainer_state(path: Path) -> dict:
    state = json.loads(path.read_text())
    missing = [k for k in ("step", "position", "guard") if k not in state]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    return state


def read_checkpoint(ckpt: Path, with_optimizer: bool = True) -> dict:
    """Every file of a checkpoint, read whole and checked before anything is applied; raises Damaged naming the
    first file that cannot be read."""
    ckpt = Path(ckpt)
    out = {"state": _read(ckpt / STATE_FILE, _read_trainer_state),
           "adapter": _read(ckpt / "adapter_model.safetensors", lambda p: load_file(str(p)))}
    if with_optimizer and (ckpt / "optimizer.safetensors").exists():
        out["optimizer"] = _read(ckpt / "optimizer.safetensors", read_optimizer)
    if (ckpt / "rng.safetensors").exists():
        out["rng"] = _read(ckpt / "rng.safetensors", read_rng)
    return out


def apply_checkpoint(data: dict, model, optimizer) -> dict:
    """Put a checkpoint read by `read_checkpoint` into the model, optimizer and RNGs; return its trainer state.
    model=None: the adapter is in already (qlorafit.runtime.dist puts it in before FSDP shards the model)."""
    from peft import set_peft_model_state_dict

    if model is not None:
        set_peft_model_state_dict(model, data["adapter"])
    if "optimizer" in data:
        optimizer.load_state_dict(data["optimizer"])
    if "rng" in data:
        apply_rng(data["rng"])
    return data["state"]


def read_newest_intact(run_dir: Path, say, with_optimizer: bool = True) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that reads back whole, and its files read (apply_checkpoint puts them in later: under
    fsdp the adapter goes in before the model is sharded, the optimizer state after the optimizer exists). A damaged
    one is named (`say`) and the next older tried. (None, None) when the run has no checkpoint; a UserError when
    every one is damaged. Without `with_optimizer` the optimizer keeps its fresh state (the user changed it)."""
    damaged = []
    for ckpt in checkpoints_newest_first(run_dir):
        try:
            data = read_checkpoint(ckpt, with_optimizer)
        except Damaged as e:
            damaged.append(e)
            say(f"--resume: {e.path} is damaged ({e.reason}); trying the checkpoint before {ckpt.name}")
            continue
        if damaged:
            say(f"--resume: using {ckpt}, the newest intact checkpoint")
        return ckpt, data
    if damaged:
        raise UserError(f"--resume: every checkpoint in {run_dir} is damaged ({'; '.join(map(str, damaged))}); "
                        f"nothing to resume from: start over with --overwrite")
    return None, None
