"""Shared pieces of the GPU benchmark scripts: random-weight models at real shapes, memory readings, provenance.

Run on the GPU machine (through the device tool), never in tests. Models are built from the catalogue's config.json
fields with random weights, saved under /tmp, and loaded back with from_pretrained so the real 4-bit load path runs.
"""

import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from qlorafit.core.catalog import model_config

GIB = 1024**3


def build_model(name: str, root: str = "/tmp/qf-models") -> str:
    """Save `name` (a catalogue model) with random bf16 weights to root/name; reuse it if already there."""
    out = Path(root) / name
    if not (out / "config.json").exists():
        save_random(model_config(name), out)
    return str(out)


def save_random(fields: dict, out: Path) -> None:
    """Build a model of config.json `fields` with random bf16 weights on the GPU and save it to `out`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(fields)
    cfg = AutoConfig.for_model(fields.pop("model_type"), **fields)
    cfg.torch_dtype = "bfloat16"
    t = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = AutoModelForCausalLM.from_config(cfg)
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(out, max_shard_size="4GB")
    del model
    torch.cuda.empty_cache()
    print(f"built {Path(out).name} in {time.time() - t:.0f}s at {out}", flush=True)


def non_torch_bytes() -> int:
    """Device memory this process holds outside PyTorch's caching allocator: CUDA context, cuBLAS handles,
    bitsandbytes' paged (managed) buffers while resident."""
    free, total = torch.cuda.mem_get_info()
    return (total - free) - torch.cuda.memory_reserved()


def used_bytes() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


def provenance(command: str) -> dict:
    import peft
    import transformers

    try:
        import bitsandbytes
        bnb = bitsandbytes.__version__
    except Exception:  # noqa: BLE001 - only for the record
        bnb = None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        smi = ""
    return {
        "gpu": torch.cuda.get_device_name(0),
        "nvidia_smi": smi,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bnb,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
    }


def write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
