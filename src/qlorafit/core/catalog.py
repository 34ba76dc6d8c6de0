"""The embedded catalogues (models and GPUs, stored as JSON data) and how a user's name resolves to them.

A model is named three ways: a catalogue name ('llama-3.1-8b'), a local directory holding a config.json, or a hub id
already in the local Hugging Face cache. Nothing here touches the network.
"""

import difflib
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from qlorafit.errors import UserError
from qlorafit.core.shapes import ModelShape, shape_from_config


@dataclass(frozen=True)
class GPU:
    """One card of the catalogue."""

    name: str
    memory_bytes: int
    bf16: bool
    bf16_tflops: float
    mem_bandwidth_gbps: float


@cache
def _load(fname: str) -> dict:
    return json.loads(resources.files("qlorafit").joinpath("assets", fname).read_text())


def model_names() -> list[str]:
    return sorted(_load("models.json")["models"])


def gpu_names() -> list[str]:
    return sorted(_load("gpus.json")["gpus"])


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def get_gpu(name: str) -> GPU:
    """'rtx4090', 'RTX-4090', '4090' or 'a100' -> GPU. Unknown names raise with the close matches and the list."""
    table = _load("gpus.json")["gpus"]
    key = _norm(name).replace("nvidia-", "")
    for gname, g in table.items():
        if key == gname or key in g["aliases"]:
            return GPU(gname, g["memory_mib"] * 1024**2, g["bf16"], g["bf16_tflops"], g["mem_bandwidth_gbps"])
    close = difflib.get_close_matches(key, list(table), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"gpu: unknown GPU '{name}'.{hint} Known: {', '.join(sorted(table))}; or give --budget 24GiB")


def _hf_cache_dirs() -> list[Path]:
    env = os.environ
    dirs = []
    if env.get("HF_HUB_CACHE"):
        dirs.append(Path(env["HF_HUB_CACHE"]))
    if env.get("HF_HOME"):
        dirs.append(Path(env["HF_HOME"]) / "hub")
    dirs.append(Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub")
    return dirs


def find_in_hf_cache(hub_id: str) -> Path | None:
    """The snapshot directory of `hub_id` in the local HF cache that holds a config.json, or None."""
    folder = "models--" + hub_id.replace("/", "--")
    for root in _hf_cache_dirs():
        snaps = root / folder / "snapshots"
        if snaps.is_dir():
            found = sorted(snaps.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            if found:
                return found[0].parent
    return None


def read_config_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def resolve_model(name: str) -> ModelShape:
    """A catalogue name, a directory with config.json (or the config.json itself), or a cached hub id -> ModelShape."""
    models = _load("models.json")["models"]
    key = _norm(name)
    if key in models:
        return shape_from_config(models[key]["config"], key, f"catalogue entry '{key}'")
    for mname, m in models.items():  # the catalogue's own hub ids resolve without a cache
        if m["hf_id"].lower() == name.strip().lower():
            return shape_from_config(m["config"], mname, f"catalogue entry '{mname}'")
    p = Path(name).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        return shape_from_config(read_config_json(p), p.parent.name or str(p), str(p))
    if p.is_dir():
        cfg = p / "config.json"
        if not cfg.is_file():
            raise UserError(f"model: directory {p} holds no config.json")
        return shape_from_config(read_config_json(cfg), p.name, str(cfg))
    if "/" in name and not name.startswith((".", "/")):
        snap = find_in_hf_cache(name.strip())
        if snap is not None:
            return shape_from_config(read_config_json(snap / "config.json"), name, str(snap / "config.json"))
        raise UserError(
            f"model: '{name}' is not in the local Hugging Face cache and qlorafit works offline. "
            f"Download it first, point to a directory holding its config.json, or use a catalogue name: "
            f"{', '.join(model_names())}"
        )
    close = difflib.get_close_matches(key, list(models), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"model: unknown model '{name}'.{hint} Catalogue: {', '.join(model_names())}")


def model_path_for_loading(name: str) -> str:
    """For the trainer: the local path (dir or cached snapshot) of a model; a catalogue name has no weights."""
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p)
    snap = find_in_hf_cache(name) if "/" in name else None
    if snap is not None:
        return str(snap)
    if _norm(name) in _load("models.json")["models"]:
        hf = _load("models.json")["models"][_norm(name)]["hf_id"]
        snap = find_in_hf_cache(hf)
        if snap is not None:
            return str(snap)
        raise UserError(f"model: '{name}' is a catalogue entry ({hf}) but its weights are not in the local HF cache")
    raise UserError(f"model: {name} is not a directory and not in the local Hugging Face cache")
