"""Text from a trained adapter: `qlorafit generate`, `qlorafit chat`, and the samples written at each evaluation.

    target = find_adapter("runs/qlorafit")       # a run directory or an adapter directory
    gen = load_generator(target)                  # the 4-bit base as the run loaded it, plus the adapter
    reply(gen, [{"role": "user", "content": "Hi"}], streamer=TextStreamer(gen.tokenizer, skip_prompt=True))

Prompts go through the same chat template training used (data.chat_template and its kwargs, else the tokenizer's,
else qlorafit's fallback), with the generation prompt added, so the model sees exactly the context it learned.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qlorafit.core import config as config_mod
from qlorafit.core.config import Config
from qlorafit.errors import UserError, first_line


@dataclass
class Target:
    adapter: Path            # the PEFT adapter directory
    cfg: Config              # the run's configuration (or defaults with the adapter's base model)


@dataclass
class Generator:
    model: object
    tokenizer: object
    template: str
    template_kwargs: dict = field(default_factory=dict)
    device: torch.device = torch.device("cpu")


def find_adapter(path: str) -> Target:
    """A run directory (its final/ adapter, else its newest checkpoint) or an adapter directory."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f"{p}: no such directory; give a run directory (output_dir of `qlorafit train`) or an adapter "
                        f"directory (holding adapter_config.json)")
    if (p / "adapter_config.json").is_file():
        adapter = p
        run_cfg = next((d / "config.yaml" for d in (p.parent, p.parent.parent) if (d / "config.yaml").is_file()), None)
    elif (p / "config.yaml").is_file():
        from qlorafit.runtime.checkpoint import latest_checkpoint
        adapter = p / "final" if (p / "final" / "adapter_config.json").is_file() else latest_checkpoint(p)
        if adapter is None:
            raise UserError(f"{p}: this run has no adapter yet (no final/ and no checkpoint); train it first")
        run_cfg = p / "config.yaml"
    else:
        raise UserError(f"{p}: neither a run directory (config.yaml) nor an adapter directory (adapter_config.json)")
    if run_cfg is not None:
        return Target(Path(adapter), config_mod.load(str(run_cfg)))
    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter}/adapter_config.json names no base_model_name_or_path; generate from the run "
                        f"directory instead")
    return Target(Path(adapter), config_mod.from_dict({"model": {"name_or_path": base}}, str(adapter)))


def load_generator(target: Target, device: torch.device | None = None) -> Generator:
    """The base model loaded as training loaded it (4-bit, same compute dtype), with the adapter on top."""
    from peft import PeftModel

    from qlorafit.core.catalog import resolve_model_path
    from qlorafit.runtime.data import chat_template_of
    from qlorafit.runtime.model import load_base
    from qlorafit.runtime.train import load_tokenizer, pick_device

    device = device or pick_device()
    cfg = target.cfg
    path = resolve_model_path(cfg.model.name_or_path)
    tok = load_tokenizer(path, cfg)
    base, _ = load_base(cfg, path, device)
    base.config.use_cache = True  # generation reuses keys and values: one token's work per new token
    model = PeftModel.from_pretrained(base, str(target.adapter)).eval()
    return Generator(model, tok, chat_template_of(tok, cfg.data), dict(cfg.data.chat_template_kwargs), device)


def prompt_ids(gen: Generator, messages: list[dict]) -> list[int]:
    """The conversation so far, rendered with the chat template and its generation prompt."""
    text = gen.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             chat_template=gen.template, **gen.template_kwargs)
    return gen.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template wrote the bos


@torch.no_grad()
def reply(gen: Generator, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
          streamer=None, raw: bool = False) -> str:
    """The assistant's next message (special tokens removed). raw: the last message's text is the whole prompt."""
    tok = gen.tokenizer
    ids = tok(messages[-1]["content"])["input_ids"] if raw else prompt_ids(gen, messages)
    device = next(p.device for p in gen.model.parameters() if p.device.type != "meta")
    x = torch.tensor([ids], device=device)  # (1, T)
    sample = temperature > 0
    out = gen.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             do_sample=sample, temperature=temperature if sample else None, top_p=None, top_k=None,
                             streamer=streamer, pad_token_id=tok.pad_token_id, use_cache=True)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


def write_samples(run, prompts: list[str], max_new_tokens: int) -> list[dict]:
    """At an evaluation: greedy replies of the model in training to train.sample_prompts, appended to samples.jsonl.

    Batch 1, prompt + max_new_tokens tokens, no gradient: the KV cache of one short sequence, far below the training
    step's activations, so it stays inside the memory plan. An error here is logged, never fatal to training.
    """
    from qlorafit.runtime.data import chat_template_of

    ctx, cfg = run.ctx, run.cfg
    gen = Generator(ctx.model, run.tokenizer, chat_template_of(run.tokenizer, cfg.data),
                    dict(cfg.data.chat_template_kwargs), ctx.device)
    from qlorafit.runtime.step import eval_mode

    rows = []
    try:
        with eval_mode(ctx.model):  # no dropout, no gradients; the 4-bit layers keep their training layout
            for prompt in prompts:
                text = reply(gen, [{"role": "user", "content": prompt}], max_new_tokens).strip()
                rows.append({"step": run.pos.step, "prompt": prompt, "output": text})
    except Exception as e:  # a generation failure must not cost the run: say it and go on
        ctx.monitor.event("samples_failed", run.pos.step, error=f"{type(e).__name__}: {first_line(e)}")
        ctx.monitor.say(f"step {run.pos.step}: sample generation failed ({type(e).__name__}); training goes on")
    with open(run.dir / "samples.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows
