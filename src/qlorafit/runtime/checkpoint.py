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

from qlorafit.errors import UserError

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


def load_adapter_weights(model, path: Path) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, load_file(str(Path(path) / "adapter_model.safetensors")))


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


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["qlorafit"])
        flat = {k: f.get_tensor(k) for k in f.keys()}
    flat.update(meta["scalars"])
    groups = meta["param_groups"]
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": _unflatten(flat), "param_groups": groups})


def rng_bytes() -> bytes:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    py = random.getstate()
    return st_bytes(tensors, metadata={"python_random": json.dumps([py[0], list(py[1]), py[2]])})


def load_rng(path: Path) -> None:
    with safe_open(str(path), framework="pt") as f:
        torch.set_rng_state(f.get_tensor("torch_cpu"))
        cuda = [f.get_tensor(k) for k in sorted(k for k in f.keys() if k.startswith("torch_cuda."))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        v, st, g = json.loads(f.metadata()["python_random"])
        random.setstate((v, tuple(st), g))


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
    shutil.rmtree(old, ignore_errors=True)


def _save_error(target: Path, e: OSError) -> str:
    prev = latest_checkpoint(target.parent.parent if target.parent.name == "checkpoints" else target.parent)
    keep = f"the previous checkpoint {prev} is intact" if prev else "no earlier checkpoint exists"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"disk full while saving checkpoint {target}: {keep}. Free space on that disk (or set output_dir "
                f"elsewhere) and rerun with --resume.")
    return f"could not save checkpoint {target}: {e.strerror or e}; {keep}."


def clean_partial(run_dir: Path) -> None:
    """Remove temp directories left by a run killed while saving."""
    for parent in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if parent.is_dir():
            for p in parent.glob(".*.tmp-*"):
                shutil.rmtree(p, ignore_errors=True)


def read_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step (final/ included); None if there is none."""
    run_dir = Path(run_dir)
    found = [p for p in (run_dir / "checkpoints").glob("step-*") if (p / STATE_FILE).is_file()]
    if (run_dir / "final" / STATE_FILE).is_file():
        found.append(run_dir / "final")
    return max(found, key=lambda p: read_state(p)["step"], default=None)


def load_checkpoint(ckpt: Path, model, optimizer) -> dict:
    """Restore adapter, optimizer and RNG from a checkpoint; return its trainer state. model=None: the adapter was
    restored already (before FSDP sharded it)."""
    ckpt = Path(ckpt)
    if model is not None:
        load_adapter_weights(model, ckpt)
    if (ckpt / "optimizer.safetensors").is_file():
        load_optimizer(optimizer, ckpt / "optimizer.safetensors")
    if (ckpt / "rng.safetensors").is_file():
        load_rng(ckpt / "rng.safetensors")
    return read_state(ckpt)
