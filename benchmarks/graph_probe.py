"""Does the qlorafit-wholegraph experiment (versus.py) compute the same gradients as the eager step? (issue 16)

A small random-weight Llama (NF4 + LoRA through qlorafit's own setup, compiled layers, checkpointing on) on the GPU:
the LoRA gradients of one step of 4 micro-batches, accumulated, computed three times from the same weights:
  eager     qlorafit's _forward_backward
  eager2    the same again (the noise floor: should be bitwise equal)
  graph     the experiment's captured-and-replayed micro-batches (after its warm-up and capture)
Prints the relative difference of each against eager, overall and worst parameter. A stale or lost accumulation
shows as a difference of order 1; kernel-level rounding as 1e-3..1e-2.
  python benchmarks/graph_probe.py
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    import torch

    import versus
    from bench import with_tokenizer
    from gpu_common import save_random
    from qlorafit.core import config as C
    from qlorafit.runtime import step as S
    from qlorafit.runtime.data import Sample
    from qlorafit.runtime.dist import loss_divisor
    from qlorafit.runtime.train import setup

    out = Path("/tmp/qf-models/probe-llama")
    if not (out / "config.json").exists():
        save_random({"model_type": "llama", "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 4,
                     "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 32000,
                     "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}, out)
    with_tokenizer(str(out))
    data = "/tmp/gp-data.jsonl"
    Path(data).write_text(json.dumps({"text": "tokens " * 16}) + "\n")
    cfg = C.from_dict({"output_dir": "/tmp/gp-run", "model": {"name_or_path": str(out)},
                       "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
                       "data": {"path": data, "max_seq_length": 512},
                       "train": {"micro_batch_size": 2, "grad_accum": 4, "max_steps": 1000, "log_every": 1000}},
                      "probe")
    run = setup(cfg, overwrite=True, quiet=True)
    ctx = run.ctx
    g = torch.Generator().manual_seed(3)
    rows = torch.randint(0, 32000, (8, 512), generator=g)
    units = [Sample(i, r.tolist(), r.tolist(), 512) for i, r in enumerate(rows)]
    micro = [units[i:i + 2] for i in range(0, 8, 2)]
    denom = loss_divisor(ctx.world, sum(len(u.input_ids) - 1 for u in units))
    eager = S._forward_backward

    def grads(fb) -> list:
        for p in ctx.params:
            p.grad = torch.zeros_like(p) if p.grad is None else p.grad.zero_()
        losses = [float(fb(ctx, m, denom, 1, i)[0]) for i, m in enumerate(micro)]
        return [p.grad.detach().clone() for p in ctx.params], losses

    for _ in range(2):  # compile and autotune outside the measurement
        grads(eager)
    ge, le = grads(eager)
    ge2, le2 = grads(eager)
    versus.whole_micro_batch_graphs(ctx)
    graph = S._forward_backward
    for _ in range(2):  # the experiment's warm-up and capture
        grads(graph)
    gg, lg = grads(graph)

    def rel(a: list, b: list) -> tuple[float, float]:
        num = sum(float((x - y).float().norm()) ** 2 for x, y in zip(a, b)) ** 0.5
        den = sum(float(y.float().norm()) ** 2 for y in b) ** 0.5
        worst = max(float((x - y).float().norm()) / max(float(y.float().norm()), 1e-30) for x, y in zip(a, b))
        return num / den, worst

    print("losses eager ", [round(x, 5) for x in le])
    print("losses eager2", [round(x, 5) for x in le2])
    print("losses graph ", [round(x, 5) for x in lg])
    print("eager2 vs eager: relative %.2e, worst parameter %.2e" % rel(ge2, ge))
    print("graph  vs eager: relative %.2e, worst parameter %.2e" % rel(gg, ge))


if __name__ == "__main__":
    main()
