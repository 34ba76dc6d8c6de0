"""`qlorafit estimate --table`: the tutorials' memory claims ("a 7B model fine-tunes in 8 GB", "a 13B needs
12-24 GB") checked with real figures for 7B, 8B, 13B and 70B at a few batch sizes and lengths. Plain Python."""

import dataclasses
import json

from qlorafit.core import options as O
from qlorafit.core.catalog import get_gpu, resolve_model
from qlorafit.core.estimate import Setup, estimate
from qlorafit.core.sizes import GIB

MODELS = ("mistral-7b", "llama-3.1-8b", "llama-2-13b", "llama-3.1-70b")
SHAPES = ((1, 512), (2, 512), (1, 2048), (4, 2048), (1, 8192))  # (micro-batch, sequence length)
CARDS = ("t4", "rtx4090", "a100-40gb", "a100-80gb", "h100")
CLAIMS = {"mistral-7b": "tutorial: 8 GB", "llama-3.1-8b": "tutorial: 6-8 GB", "llama-2-13b": "tutorial: 12-24 GB",
          "llama-3.1-70b": "tutorial: none"}


def claims_table(base: Setup, as_json: bool = False) -> str:
    cards = [get_gpu(c) for c in CARDS]
    rows = []
    for m in MODELS:
        shape = resolve_model(m)
        for stack in reversed(O.STACKS):
            for b, t in SHAPES:
                s = dataclasses.replace(base, batch_size=b, seq_len=t, stack=stack.name,
                                        loss_impl=stack.default_loss or base.loss_impl)
                e = estimate(shape, s)
                rows.append({"model": m, "stack": stack.name, "batch": b, "seq": t, "peak_gib": round(e.peak_bytes / GIB, 2),
                             "fits": {g.name: e.peak_bytes <= g.memory_bytes for g in cards}, "claim": CLAIMS[m]})
    if as_json:
        return json.dumps(rows, indent=2)
    head = f"{'model':<14}{'stack':<10}{'batch':>6}{'seq':>6}{'peak GiB':>10}  " + "".join(f"{g.name:>11}" for g in cards)
    out = [f"LoRA r={base.lora_r} on {','.join(base.lora_targets)}, {base.quant}, checkpointing "
           f"{base.grad_checkpointing}, {base.optimizer}; hf = the tutorials' Trainer + PEFT recipe", "", head]
    for i, r in enumerate(rows):
        if i == 0 or rows[i - 1]["model"] != r["model"]:  # a heading per model, a blank line between models
            out += ([""] if i else []) + [f"{r['model']}  ({r['claim']})"]
        marks = "".join(f"{'fits' if r['fits'][g.name] else '-':>11}" for g in cards)
        out.append(f"{'':<14}{r['stack']:<10}{r['batch']:>6}{r['seq']:>6}{r['peak_gib']:>10.2f}  {marks}")
    return "\n".join(out)
