"""Checks that run before anything slow: the model's files agree with each other, the rank fits the model, the data
path is set. Each failure is one line naming the key or file; without them a mismatch surfaces minutes later as an
AttributeError inside bitsandbytes or a size mismatch inside PEFT.

Reads only JSON and safetensors headers (a few KiB per shard): no tensor is loaded, torch is not needed.
"""

import json
import re
import struct
from pathlib import Path

from qlorafit.core.config import Config
from qlorafit.errors import UserError

_LAYER = re.compile(r"(?:^|\.)(?:model|language_model)\.layers\.(\d+)\.")  # the language model's, not a vision tower's


def check_data_path(cfg: Config) -> None:
    if not cfg.data.path.strip():
        raise UserError("data.path: not set. Give your training data as data.path in the YAML or --set "
                        "data.path=train.jsonl (a .jsonl/.json/.csv/.parquet file); 'qlorafit/demo' is the embedded "
                        "demo set")


def safetensors_shards(model_dir: Path) -> list[str]:
    """The model's safetensors files: those its index names, else model.safetensors ([] when it has none)."""
    index = Path(model_dir) / "model.safetensors.index.json"
    try:
        if index.is_file():
            return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{index}: not a valid safetensors index (no weight_map)") from None
    return ["model.safetensors"] if (Path(model_dir) / "model.safetensors").is_file() else []


def safetensors_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the headers of the model's safetensors files ({} when it has none)."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    shapes = {}
    for shard in safetensors_shards(model_dir):
        path = model_dir / shard
        try:
            with path.open("rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
        except FileNotFoundError:
            raise UserError(f"{path}: listed in {index.name} but missing") from None
        except (OSError, ValueError, struct.error):
            raise UserError(f"{path}: not a readable safetensors file (damaged or truncated?)") from None
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)})
    return shapes


def check_model_files(cfg: Config, model_path: str) -> None:
    """config.json against the weights (layer count, hidden size, vocabulary), and lora.r against the hidden size."""
    from qlorafit.core.shapes import shape_from_config

    path = Path(model_path)
    conf_path = path / "config.json"
    if not conf_path.is_file():
        return  # the loader names the missing file
    try:
        conf = json.loads(conf_path.read_text())
        shape = shape_from_config(conf, cfg.model.name_or_path)
    except ValueError:
        raise UserError(f"{conf_path}: not valid JSON") from None
    except (UserError, KeyError):
        return  # an architecture the shape reader does not know: transformers judges it
    if cfg.lora.r > shape.hidden_size:
        raise UserError(f"lora.r: {cfg.lora.r} is larger than the hidden size {shape.hidden_size} of "
                        f"{cfg.model.name_or_path} ({conf_path}); a rank above it adds parameters and no capacity")
    shapes = safetensors_shapes(path)
    if not shapes:
        return
    layers = {int(m.group(1)) for name in shapes for m in [_LAYER.search(name)] if m}
    expected = shape.num_layers + int(conf.get("num_nextn_predict_layers") or 0)  # DeepSeek's MTP layer is stored too
    if layers and len(layers) != expected:
        raise UserError(f"{conf_path}: num_hidden_layers is {shape.num_layers}, but the weights in {path} hold "
                        f"{len(layers)} layers (layers.{min(layers)} to layers.{max(layers)}): the config and the "
                        f"weights are from different models")
    emb = next((v for k, v in shapes.items() if k.endswith("embed_tokens.weight")), None)
    if emb is not None and len(emb) == 2 and list(emb) != [shape.vocab_size, shape.hidden_size]:
        raise UserError(f"{conf_path}: says vocab_size {shape.vocab_size} x hidden_size {shape.hidden_size}, but "
                        f"the weights' embed_tokens is {emb[0]} x {emb[1]}: the config and the weights are from "
                        f"different models")
