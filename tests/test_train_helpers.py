"""Shared by the train, guard and checkpoint tests: a 4-bit tiny Llama (hidden 64, 2 layers) with the demo tokenizer,
a small learnable JSONL, and a config for a run of a few steps on CPU."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from qlorafit.core import config as C

TEXTS = [f"Question {i}: what is {i} plus {i % 7}? Answer: {i} plus {i % 7} is {i + i % 7}." + " More." * (i % 5)
         for i in range(24)]


def tiny_model_dir(root: Path, hidden: int = 64, layers: int = 2) -> Path:
    """config.json + safetensors + tokenizer, once per session (a wider one for the GPU guard test)."""
    target = Path(root) / f"tiny-llama-h{hidden}-l{layers}"
    if (target / "config.json").is_file():
        return target
    from transformers import LlamaConfig, LlamaForCausalLM

    from qlorafit.demo_assets import demo_model_config, demo_tokenizer

    tok = demo_tokenizer()
    cfg = demo_model_config(len(tok))
    cfg.pop("model_type")
    cfg.update(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
               num_key_value_heads=2)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**cfg)).save_pretrained(target)
    tok.save_pretrained(target)
    return target


def write_jsonl(path: Path, texts=TEXTS) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def make_cfg(model_dir, data_path, out_dir, **sections) -> C.Config:
    """A few-step CPU run: NF4 base, fp32 compute (exact comparisons), dropout 0 unless asked."""
    raw = {
        "output_dir": str(out_dir),
        "model": {"name_or_path": str(model_dir), "quant": "nf4", "compute_dtype": "fp32"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["q_proj", "v_proj", "gate_proj"]},
        "data": {"path": str(data_path), "max_seq_length": 64, "group_by_length": True},
        "train": {"micro_batch_size": 4, "grad_accum": 1, "max_steps": 3, "lr": 1e-2, "warmup_steps": 1,
                  "schedule": "cosine", "grad_checkpointing": "off", "loss_impl": "chunked", "optimizer": "adamw",
                  "log_every": 1},
    }
    for sec, kv in sections.items():
        if isinstance(kv, dict):
            raw.setdefault(sec, {}).update(kv)
        else:
            raw[sec] = kv
    return C.from_dict(raw, "test")


def adapter(path) -> dict:
    return load_file(str(Path(path) / "adapter_model.safetensors"))


def assert_adapters_close(a, b, atol=1e-5, rtol=1e-4):
    ta, tb = adapter(a), adapter(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], atol=atol, rtol=rtol, msg=lambda m: f"{k}: {m}")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def ledger_ids(run_dir) -> list[int]:
    return [i for row in read_jsonl(Path(run_dir) / "ledger.jsonl") for i in row["sample_ids"]]
