"""Probes of the real qlorafit step (`qlorafit.runtime.step.train_step`) on one model load (issues 4 and 6).

  overhead  what the OOM guard costs when no OOM happens. Steps run in ABBA order over the same batches, guard on
            (A) and off (B): ctx.cfg.guard.enabled is read at every micro-batch, so both modes share the process,
            the model, the clocks and the batches, and drift hits both alike. Reports the median step time of each
            mode and the median of the paired ratios with a bootstrap 95 % interval.
  profile   where the step time goes: torch.profiler over steady steps; CUDA kernel time grouped by what the kernel
            does (matmul, dequantize, attention, loss, norm/rope/activation, copies, optimizer), plus GPU idle time.

usage (GPU machine):
  python benchmarks/step_probe.py overhead --config c2 --pairs 24 --out $OUT/overhead.jsonl
  python benchmarks/step_probe.py profile --config c2 --variant default --out $OUT/profile.jsonl
"""

import argparse
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def start(model: str, variant: str, cfg_name: str, steps: int):
    from bench import bench_raw
    from gpu_common import build_model

    from qlorafit.core import config as C
    from qlorafit.runtime.train import next_units, setup

    path = build_model(model)
    raw = bench_raw(path, variant, cfg_name, steps)
    run = setup(C.from_dict(raw, f"variant {variant}"), overwrite=True, quiet=True)
    batches = [next_units(run) for _ in range(min(steps, 4))]
    return run, batches


def timed_step(run, units, step: int) -> float:
    import torch

    from qlorafit.runtime.step import train_step
    torch.cuda.synchronize()
    t = time.perf_counter()
    train_step(run.ctx, units, step)  # ends in a host sync (loss, grad norm)
    torch.cuda.synchronize()
    return time.perf_counter() - t


def overhead(a) -> dict:
    run, batches = start(a.model, "default", a.config, 8)
    guard = run.ctx.cfg.guard
    for i in range(3):  # warm-up: kernels compiled, allocator pools grown, paged states resident
        timed_step(run, batches[i % len(batches)], i + 1)
    on, off, ratios = [], [], []
    for p in range(a.pairs):
        units = batches[p % len(batches)]
        order = (True, False) if p % 2 == 0 else (False, True)  # ABBA
        t = {}
        for enabled in order:
            guard.enabled = enabled
            t[enabled] = timed_step(run, units, 10 + 2 * p + int(enabled))
        guard.enabled = True
        on.append(t[True])
        off.append(t[False])
        ratios.append(t[True] / t[False])
    rng = random.Random(0)
    boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    tokens = sum(len(u.input_ids) for u in batches[0])
    return {"part": "overhead", "config": a.config, "pairs": a.pairs, "tokens_per_step": tokens,
            "guard_on_median_s": statistics.median(on), "guard_off_median_s": statistics.median(off),
            "tokens_per_s_on": tokens / statistics.median(on), "tokens_per_s_off": tokens / statistics.median(off),
            "overhead_median": statistics.median(ratios) - 1,
            "overhead_ci95": [boots[50] - 1, boots[1949] - 1], "on_s": on, "off_s": off}


KINDS = [  # first match wins: substrings of CUDA kernel names, lower-cased
    ("dequantize", ("dequant", "kdequantize")),
    ("attention", ("flash", "fmha", "attention", "sdpa", "efficient_attention")),
    ("matmul", ("gemm", "sm90_xmma", "cutlass", "cublas", "matmul", "nvjet", "wgmma")),
    ("optimizer", ("optimizer", "adam", "multi_tensor", "foreach", "8bit_blockwise")),
    ("loss", ("logsumexp", "log_softmax", "cross_entropy", "nll", "scatter", "gather")),
    ("copy/cast", ("copy", "memcpy", "cast", "to_copy")),
    ("reduce", ("reduce", "norm")),
]


def kind_of(name: str) -> str:
    n = name.lower()
    for kind, keys in KINDS:
        if any(k in n for k in keys):
            return kind
    return "elementwise/other"


def profile(a) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile as prof

    if a.liger:  # liger's RMSNorm, RoPE and SwiGLU patched into transformers' Llama classes before the load
        from liger_kernel.transformers import apply_liger_kernel_to_llama
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    run, batches = start(a.model, a.variant, a.config, 8)
    t_compile = None
    if a.compile:  # each decoder layer compiled on its own (same code: one graph, reused by all layers)
        for layer in run.ctx.model.get_base_model().model.layers:
            layer.compile()
        t = time.perf_counter()
        timed_step(run, batches[0], 1)
        t_compile = time.perf_counter() - t
        print(f"first compiled step {t_compile:.1f}s", flush=True)
    for i in range(3):
        timed_step(run, batches[i % len(batches)], i + 1)
    plain = [timed_step(run, batches[i % len(batches)], 10 + i) for i in range(4)]
    n = 3
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        wall = sum(timed_step(run, batches[i % len(batches)], 20 + i) for i in range(n))
    by_kind, top = {}, []
    for e in p.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = e.self_cuda_time_total
        if t <= 0 or e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        k = kind_of(e.key)
        by_kind[k] = by_kind.get(k, 0.0) + t / 1e6 / n
        top.append((t / 1e6 / n, e.count // n, e.key[:110]))
    top.sort(reverse=True)
    gpu_busy = sum(by_kind.values())
    step = wall / n
    tokens = sum(len(u.input_ids) for u in batches[0])
    rec = {"part": "profile", "config": a.config, "variant": a.variant, "liger": a.liger, "compile": a.compile,
           "first_compiled_step_s": t_compile, "tokens_per_step": tokens,
           "step_s_unprofiled": statistics.median(plain), "step_s_profiled": step,
           "tokens_per_s": tokens / statistics.median(plain),
           "gpu_kernel_s": gpu_busy, "gpu_idle_share": max(0.0, 1 - gpu_busy / step),
           "by_kind_s": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
           "top_kernels": [{"s": round(t, 5), "calls": c, "name": k} for t, c, k in top[:30]]}
    print(f"step {rec['step_s_unprofiled'] * 1e3:.1f} ms unprofiled ({rec['tokens_per_s']:.0f} tok/s), kernels "
          f"{gpu_busy * 1e3:.1f} ms busy per step, idle {rec['gpu_idle_share']:.0%}")
    for k, v in rec["by_kind_s"].items():
        print(f"  {k:18s} {v * 1e3:8.1f} ms  {v / step:5.1%}")
    for r in rec["top_kernels"][:20]:
        print(f"  {r['s'] * 1e3:8.2f} ms x{r['calls']:<5d} {r['name']}")
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["overhead", "profile"])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--config", default="c2", choices=["c1", "c2"])
    ap.add_argument("--variant", default="default")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--liger", action="store_true", help="profile: patch liger's RMSNorm/RoPE/SwiGLU in first")
    ap.add_argument("--compile", action="store_true", help="profile: torch.compile each decoder layer first")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from gpu_common import provenance
    rec = overhead(a) if a.part == "overhead" else profile(a)
    rec["provenance"] = provenance(" ".join(sys.argv))
    if a.part == "overhead":
        print(f"guard overhead on {a.config}: median {rec['overhead_median']:+.2%} (95 % CI "
              f"{rec['overhead_ci95'][0]:+.2%} .. {rec['overhead_ci95'][1]:+.2%}); {rec['tokens_per_s_on']:.0f} vs "
              f"{rec['tokens_per_s_off']:.0f} tok/s over {a.pairs} pairs", flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
