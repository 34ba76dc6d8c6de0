"""Does train.cuda_graphs (runtime/graphs.py) compute the eager step's gradients on a GPU? (issue 16)

A small random-weight Llama (NF4 + LoRA through qlorafit's own setup, train.cuda_graphs on, checkpointing on) on the
GPU; 8 samples of 417-512 tokens whose first 64 positions take no loss, so padding, the bucket and the masked loss
are all exercised. The LoRA gradients of one step of 4 micro-batches, accumulated, computed from the same weights:
  eager     qlorafit's _forward_backward with the graphs set aside
  eager2    the same again (the noise floor: bitwise equal)
  graph     captured and replayed micro-batches (after the warm-up passes and the capture)
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

    from bench import probe_model
    from gpu_common import provenance
    from qlorafit.core import config as C
    from qlorafit.runtime import step as S
    from qlorafit.runtime.data import IGNORE, Sample
    from qlorafit.runtime.dist import loss_divisor
    from qlorafit.runtime.train import setup

    print(json.dumps(provenance(" ".join(["python"] + sys.argv))))
    out = Path(probe_model())
    data = "/tmp/gp-data.jsonl"
    Path(data).write_text(json.dumps({"text": "tokens " * 16}) + "\n")
    cfg = C.from_dict({"output_dir": "/tmp/gp-run", "model": {"name_or_path": str(out)},
                       "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
                       "data": {"path": data, "max_seq_length": 512},
                       "train": {"micro_batch_size": 2, "grad_accum": 4, "max_steps": 1000, "log_every": 1000,
                                 "grad_checkpointing": "on", "cuda_graphs": True}},
                      "probe")
    run = setup(cfg, overwrite=True, quiet=True)
    ctx, graphs = run.ctx, run.ctx.graphs
    assert graphs is not None, "train.cuda_graphs was turned off"
    g = torch.Generator().manual_seed(3)
    units = []
    for i in range(8):  # lengths 417..512 (one bucket: 512), the first 64 positions of each take no loss (a prompt)
        n = 512 - int(torch.randint(0, 96, (1,), generator=g))
        ids = torch.randint(0, 32000, (n,), generator=g).tolist()
        units.append(Sample(i, ids, [IGNORE] * 64 + ids[64:], n))
    micro = [units[i:i + 2] for i in range(0, 8, 2)]
    denom = loss_divisor(ctx.world, sum(sum(1 for y in u.labels[1:] if y != IGNORE) for u in units))

    def grads() -> tuple[list, list]:
        for p in ctx.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.zero_()
        losses = [float(S._forward_backward(ctx, m, denom, 1, i)[0]) for i, m in enumerate(micro)]
        return [p.grad.detach().clone() for p in ctx.params], losses

    ctx.graphs = None  # the eager step of the same (uncompiled) model
    for _ in range(2):
        grads()
    ge, le = grads()
    ge2, le2 = grads()
    ctx.graphs = graphs
    grads()  # two eager passes of the shape, then its capture and replays
    gg, lg = grads()
    assert graphs.captures == 1 and len(graphs.graphs) == 1, (graphs.captures, list(graphs.graphs))

    def rel(a: list, b: list) -> tuple[float, float]:
        num = sum(float((x - y).float().norm()) ** 2 for x, y in zip(a, b)) ** 0.5
        den = sum(float(y.float().norm()) ** 2 for y in b) ** 0.5
        worst = max(float((x - y).float().norm()) / max(float(y.float().norm()), 1e-30) for x, y in zip(a, b))
        return num / den, worst

    print("graphs captured:", graphs.captures, "shapes:", list(graphs.graphs))
    print("losses eager ", [round(x, 5) for x in le])
    print("losses eager2", [round(x, 5) for x in le2])
    print("losses graph ", [round(x, 5) for x in lg])
    print("eager2 vs eager: relative %.2e, worst parameter %.2e" % rel(ge2, ge))
    print("graph  vs eager: relative %.2e, worst parameter %.2e" % rel(gg, ge))
    import time
    for name, gr in (("eager", None), ("graph", graphs), ("eager", None), ("graph", graphs)):
        ctx.graphs = gr
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(5):
            grads()
        torch.cuda.synchronize()
        print(f"{name}: {(time.perf_counter() - t) / 5 * 1e3:.1f} ms per 4 micro-batches (small model: host-bound)")


if __name__ == "__main__":
    main()
