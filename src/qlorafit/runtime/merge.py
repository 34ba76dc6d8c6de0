"""Merge a LoRA adapter into a 16-bit copy of the base model, one tensor at a time.

    for each shard of the base checkpoint:
        for each tensor:  W' = W + scale * (B @ A)   where the adapter targets it (scale = alpha / r, or / sqrt(r))
        write the shard
The base is read from its safetensors shards tensor by tensor, so host RAM holds one shard at a time and the GPU (when
used for the matmul) holds one weight at a time: merging never needs the whole model in memory, nor the base loaded
in 4-bit and dequantized. An OOM on the GPU moves the rest of the merge to the CPU.
The output directory is built beside its final place and renamed into it when complete.
"""

import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from qlorafit.runtime import guard as G
from qlorafit.errors import UserError
from qlorafit.hub import looks_like_hub_id
from qlorafit.runtime.model import torch_dtype

PREFIX = "base_model.model."
UNSUPPORTED = ("use_dora", "lora_bias", "target_parameters", "trainable_token_indices", "layer_replication")


@dataclass
class Delta:
    A: torch.Tensor      # (r, in)
    B: torch.Tensor      # (out, r)
    scale: float


def read_adapter(adapter_dir: Path) -> tuple[dict[str, Delta], dict[str, torch.Tensor], dict]:
    """(LoRA deltas by base weight name, full replacements (modules_to_save) by base weight name, adapter config)."""
    cfg_path, w_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise UserError(f"--adapter {adapter_dir}: expected adapter_config.json and adapter_model.safetensors "
                        f"(a PEFT adapter directory, e.g. RUN/final)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise UserError(f"--adapter {adapter_dir}: a {cfg['peft_type']} adapter; only LoRA adapters merge here")
    bad = [k for k in UNSUPPORTED if cfg.get(k)]
    if bad:
        raise UserError(f"--adapter {adapter_dir}: {', '.join(bad)} is not supported by qlorafit merge")
    weights = load_file(str(w_path))
    deltas, full = {}, {}
    for key, t in weights.items():
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        m = re.fullmatch(r"(.+)\.lora_A(?:\.[^.]+)?\.weight", name)
        if m:
            module = m.group(1)
            b_key = next(k for k in weights if re.fullmatch(re.escape(PREFIX + module) + r"\.lora_B(?:\.[^.]+)?\.weight", k)
                         or re.fullmatch(re.escape(module) + r"\.lora_B(?:\.[^.]+)?\.weight", k))
            deltas[module + ".weight"] = Delta(t, weights[b_key], _scale(cfg, module, t.shape[0]))
        elif ".lora_B" not in name:
            full[name.replace(".modules_to_save", "")] = t
    return deltas, full, cfg


def _scale(cfg: dict, module: str, r: int) -> float:
    """alpha / r (or alpha / sqrt(r) with rsLoRA); per-module alpha from alpha_pattern, as PEFT matches it."""
    alpha = cfg.get("lora_alpha", 8)
    for pattern, a in (cfg.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            alpha = a
            break
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def base_shards(base_dir: Path) -> list[str]:
    from qlorafit.runtime.preflight import safetensors_shards

    if shards := safetensors_shards(base_dir):
        return shards
    raise UserError(f"--base {base_dir}: no model.safetensors or model.safetensors.index.json (merge reads the "
                    f"16-bit safetensors checkpoint; .bin checkpoints are not read, they would need pickle)")


def _check_not_quantized(base_dir: Path) -> dict:
    config = json.loads((base_dir / "config.json").read_text()) if (base_dir / "config.json").is_file() else {}
    if config.get("quantization_config"):
        raise UserError(f"--base {base_dir}: a quantized checkpoint; merge into the original 16-bit base model")
    return config


class Merger:
    """W + scale * B @ A on the GPU when there is one; on the CPU from the first GPU OOM on."""

    def __init__(self, device: torch.device):
        self.device = device

    def apply(self, w: torch.Tensor, d: Delta, fan_in_fan_out: bool) -> torch.Tensor:
        out = self._try(w, d, fan_in_fan_out)
        if out is None:  # out of the except block: the failed attempt's tensors are gone
            G.free_memory()
            self.device = torch.device("cpu")
            out = self._try(w, d, fan_in_fan_out)
        return out

    def _try(self, w, d: Delta, fan_in_fan_out: bool):
        try:
            dev = self.device
            delta = (d.B.to(dev, torch.float32) @ d.A.to(dev, torch.float32)) * d.scale  # (out, in) fp32
            if fan_in_fan_out:
                delta = delta.T
            return (w.to(dev, torch.float32) + delta).to("cpu", w.dtype)  # fp32 sum, rounded once
        except Exception as e:
            if self.device.type == "cpu" or not G.is_oom(e):
                raise
        return None


def recorded_base_matches(recorded: str | None, base_arg: str, base_dir: Path) -> bool | None:
    """Is `base_dir` (named `base_arg` by the user) the model the adapter records as its base? None: cannot tell
    here (nothing recorded, or the recorded model is not on this machine)."""
    if not recorded:
        return None
    if recorded == base_arg:
        return True
    rec_id, base_id = _hub_id(recorded), _hub_id(base_arg) or _hub_id(str(base_dir))
    if rec_id and base_id:  # a snapshot in any HF cache is known by its repo id, not by where that cache is
        return rec_id == base_id
    p = Path(recorded).expanduser()
    if not p.is_dir() and "/" in recorded and not recorded.startswith((".", "/", "~")):
        from qlorafit.core.catalog import find_in_hf_cache
        p = find_in_hf_cache(recorded) or p
    if not Path(p).is_dir():
        return None
    return os.path.realpath(p) == os.path.realpath(base_dir)


def _hub_id(name: str) -> str | None:
    """'org/name', or '.../models--org--name/snapshots/<rev>' (a Hugging Face cache snapshot) -> 'org/name'."""
    parts = Path(name).parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/", 1)
    return name if looks_like_hub_id(name) else None


def check_shapes(deltas: dict, full: dict, base: dict, fan_in_fan_out: bool, adapter_dir: Path, base_dir: Path) -> None:
    """Every adapted or replaced tensor exists in the base with the shape the adapter was trained on."""
    missing = sorted((set(deltas) | set(full)) - set(base))
    if missing:
        raise UserError(f"--adapter {adapter_dir} does not fit --base {base_dir}: no base tensor for "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    for key, d in deltas.items():
        want = [d.B.shape[0], d.A.shape[1]]
        if fan_in_fan_out:
            want.reverse()
        if list(base[key]) != want:
            raise UserError(f"--adapter {adapter_dir} does not fit --base {base_dir}: {key} is "
                            f"{' x '.join(map(str, base[key]))} in the base, the adapter was trained on "
                            f"{' x '.join(map(str, want))} (another model size?)")
    for key, t in full.items():
        if list(base[key]) != list(t.shape):
            raise UserError(f"--adapter {adapter_dir} does not fit --base {base_dir}: {key} is "
                            f"{list(base[key])} in the base, {list(t.shape)} in the adapter")


def merge(adapter_dir, base_dir, out_dir, dtype: str = "auto", device: str = "auto", base_name: str | None = None,
          any_base: bool = False) -> dict:
    """Write the merged model to out_dir; returns {'merged': n, 'replaced': n, 'tensors': n, 'device': ..., 'notes'}.
    The base must be the model the adapter records (adapter_config.json's base_model_name_or_path) unless
    `any_base`, and must have the adapter's shapes in any case."""
    from qlorafit.runtime.preflight import safetensors_shapes

    adapter_dir, base_dir, out_dir = Path(adapter_dir), Path(base_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out {out_dir} exists and is not empty; choose a new directory")
    deltas, full, acfg = read_adapter(adapter_dir)
    recorded, notes = acfg.get("base_model_name_or_path"), []
    same = recorded_base_matches(recorded, base_name or str(base_dir), base_dir)
    if same is False and not any_base:
        raise UserError(f"--base {base_name or base_dir} is not the model this adapter was trained on: "
                        f"{adapter_dir / 'adapter_config.json'} records {recorded}. Merge into that model, or add "
                        f"--any-base if this is the same model under another name")
    if same is None:
        notes.append(f"the adapter records its base as {recorded or '(nothing)'}, which is not on this machine: "
                     f"only the shapes were checked against --base")
    config = _check_not_quantized(base_dir)
    shards = base_shards(base_dir)  # check_shapes reads the same shards: every adapted tensor is in one of them
    check_shapes(deltas, full, safetensors_shapes(base_dir), bool(acfg.get("fan_in_fan_out")), adapter_dir, base_dir)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    merger = Merger(dev)
    fifo = bool(acfg.get("fan_in_fan_out"))
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_tensors, out_dtype = 0, None
    to_dtype = None if dtype == "auto" else torch_dtype(dtype)
    try:
        for shard in shards:
            tensors = {}
            with safe_open(str(base_dir / shard), framework="pt") as f:
                metadata = f.metadata() or {"format": "pt"}
                for key in f.keys():
                    w = f.get_tensor(key)
                    target = (to_dtype or w.dtype) if w.is_floating_point() else w.dtype
                    if key in deltas:
                        w = merger.apply(w, deltas[key], fifo)
                    elif key in full:
                        w = full[key]
                    tensors[key] = w.to(target).contiguous()
                    out_dtype = out_dtype or (target if w.is_floating_point() else None)
                    n_tensors += 1
            save_file(tensors, str(tmp / shard), metadata=metadata)  # one shard in host RAM at a time
            del tensors
        _copy_side_files(base_dir, tmp, config, out_dtype)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"merged": len(deltas), "replaced": len(full), "tensors": n_tensors, "device": str(merger.device),
            "out": str(out_dir), "notes": notes}


def _copy_side_files(base_dir: Path, out: Path, config: dict, dtype) -> None:
    """config.json (dtype updated), the shard index, tokenizer and generation files."""
    for p in base_dir.iterdir():
        if p.is_file() and not p.name.endswith((".safetensors", ".bin", ".pt", ".pth")) and p.name != "config.json":
            shutil.copy2(p, out / p.name)
    if config:
        if dtype is not None:
            name = str(dtype).replace("torch.", "")
            config["dtype"] = name
            if "torch_dtype" in config:
                config["torch_dtype"] = name
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
