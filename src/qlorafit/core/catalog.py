"""The embedded catalogues (models and GPUs, stored as JSON data) and how a user's name resolves to them.

A model is named three ways: a catalogue name ('llama-3.1-8b'), a local directory holding a config.json, or a Hub id
('Qwen/Qwen3-8B'). Two resolutions, one per need:
  resolve_model       -> ModelShape, for estimate / plan / doctor: a catalogue entry, a local config.json, a cached
                         snapshot, else only config.json fetched from the Hub (a few KB)
  resolve_model_path  -> a directory from_pretrained reads, for train / merge: the demo model, a local directory, or
                         the Hub snapshot, downloaded once (safetensors, config, tokenizer; qlorafit.hub.WEIGHT_PATTERNS)
The network goes through qlorafit.hub (huggingface_hub), imported only when a name needs it.
"""

import difflib
import json
import os
import re
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


def model_config(name: str) -> dict:
    """A copy of a catalogue entry's config.json fields: 'llama-3.1-8b' -> {'hidden_size': 4096, ...}."""
    return dict(_load("models.json")["models"][_norm(name)]["config"])


def model_names() -> list[str]:
    return sorted(_load("models.json")["models"])


def gpu_names() -> list[str]:
    return sorted(_load("gpus.json")["gpus"])


def _did_you_mean(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def get_gpu(name: str) -> GPU:
    """'rtx4090', 'RTX-4090', '4090' or 'a100' -> GPU. Unknown names raise with the close matches and the list."""
    table = _load("gpus.json")["gpus"]
    key = _norm(name).replace("nvidia-", "")
    for gname, g in table.items():
        if key == gname or key in g["aliases"]:
            return GPU(gname, g["memory_mib"] * 1024**2, g["bf16"], g["bf16_tflops"], g["mem_bandwidth_gbps"])
    raise UserError(f"gpu: unknown GPU '{name}'.{_did_you_mean(key, table)} Known: {', '.join(sorted(table))}; "
                    f"or give --budget 24GiB")


# words in a device name that say nothing about which card it is: vendor, product line, form factor, memory size
_DEVICE_NOISE = re.compile(r"nvidia|geforce|tesla|quadro|pcie|pci|sxm\d*|hbm\d*e?|nvl|\d+gb")
GPU_MEMORY_TOLERANCE = 0.04  # a reported total capacity within 4 % of a card's names it (drivers reserve a little)


def _card(name: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'a100'; 'rtx-4090' -> 'rtx4090': the words that name the card, joined."""
    return "".join(t for t in re.split(r"[^a-z0-9]+", name.lower()) if t and not _DEVICE_NOISE.fullmatch(t))


def find_gpu(total_bytes: int, device_name: str | None = None) -> GPU | None:
    """The catalogue's card for a device: by its name's whole words when a name is given (the closest memory breaks
    ties: A100 40 and 80 GB), else by a total capacity within GPU_MEMORY_TOLERANCE. None: not in the catalogue.

    >>> find_gpu(24 * 1024**3, "NVIDIA GeForce RTX 4090").name
    'rtx4090'
    >>> find_gpu(24 * 1024**3, "NVIDIA GeForce RTX 3090 Ti") is None   # an unlisted card captures no listed one
    True
    >>> find_gpu(15360 * 1024**2).name
    't4'
    """
    cards = [get_gpu(n) for n in gpu_names()]
    if device_name is not None:
        table = _load("gpus.json")["gpus"]
        card = _card(device_name)
        named = [g for g in cards if card in {_card(x) for x in [g.name] + table[g.name]["aliases"]}]
        return min(named, key=lambda g: abs(g.memory_bytes - total_bytes), default=None)
    err = {g.name: abs(g.memory_bytes - total_bytes) / g.memory_bytes for g in cards}
    return min((g for g in cards if err[g.name] <= GPU_MEMORY_TOLERANCE), key=lambda g: err[g.name], default=None)


def _hf_cache_dirs() -> list[Path]:
    env = os.environ
    dirs = [Path(env["HF_HUB_CACHE"])] if env.get("HF_HUB_CACHE") else []
    dirs += [Path(env["HF_HOME"]) / "hub"] if env.get("HF_HOME") else []
    return dirs + [Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"]


def find_in_hf_cache(hub_id: str) -> Path | None:
    """The snapshot directory of `hub_id` in the local HF cache that holds a config.json, or None."""
    folder = "models--" + hub_id.replace("/", "--")
    for root in _hf_cache_dirs():
        newest = max((root / folder / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime, default=None)
        if newest is not None:
            return newest.parent
    return None


def read_json(path: Path):
    """A JSON file's content; a missing file or malformed JSON is a UserError naming the file (and line)."""
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
        return shape_from_config(read_json(p), p.parent.name or str(p), str(p))
    if p.is_dir():
        cfg = p / "config.json"
        if not cfg.is_file():
            raise UserError(f"model: directory {p} holds no config.json")
        return shape_from_config(read_json(cfg), p.name, str(cfg))
    from qlorafit import hub

    if hub.looks_like_hub_id(name):
        snap = find_in_hf_cache(name.strip())
        cfg = snap / "config.json" if snap is not None else hub.fetch_config(name.strip(), "model")
        return shape_from_config(read_json(cfg), name.strip(), f"{name.strip()} config.json")
    raise UserError(f"model: unknown model '{name}'.{_did_you_mean(key, models)} "
                    f"Catalogue: {', '.join(model_names())}")


def hub_id_of(name: str) -> str | None:
    """The Hub id of a catalogue entry ('qwen3-8b' -> 'Qwen/Qwen3-8B'), or None for a name not in the catalogue."""
    m = _load("models.json")["models"].get(_norm(name))
    return m["hf_id"] if m else None


def resolve_model_path(name: str, cache_root: Path | None = None, field: str = "model.name_or_path") -> str:
    """A model name -> a directory from_pretrained can read: what `train` and `merge` load.

    'qlorafit/tiny-llama' -> the demo model, built under cache_root; a local directory -> itself; a catalogue name
    -> its Hub id; a Hub id -> its snapshot, downloaded into the HF cache once (offline: the cached copy, or a
    one-line error). Anything else is a UserError naming the catalogue.
    """
    from qlorafit import demo_assets, hub

    if name == demo_assets.DEMO_MODEL:
        root = cache_root or os.environ.get("QLORAFIT_CACHE") or Path.home() / ".cache" / "qlorafit"
        return str(demo_assets.demo_model_dir(Path(root)))
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"{field}: directory {p} holds no config.json")
        return str(p)
    repo = hub_id_of(name) or (name.strip() if hub.looks_like_hub_id(name) else None)
    if repo is None:
        raise UserError(f"{field}: '{name}' is not a local directory, a Hub id (org/name) or a catalogue name."
                        f"{_did_you_mean(_norm(name), model_names())} "
                        f"Catalogue: {', '.join(model_names())}")
    return str(hub.download_model(repo, field))
