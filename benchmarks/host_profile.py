"""Where the host time of a host-bound qlorafit step goes (issue 16): one configuration, qlorafit's real step, the
torch profiler with CPU and CUDA activity over a few steps after warm-up.

Prints the wall time and GPU busy time per step, the CUDA launches per step, and the operators and Python-visible
regions with the most self CPU time. Run on the GPU machine (random-weight Llama-3-8B shape, as versus.py):
  python benchmarks/host_profile.py --micro 1 --seq 2048 --out $OUT
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--micro", type=int, default=1)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="train.KEY=VALUE overrides, e.g. train.compile=false")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpu_common import build_model, provenance
    from qlorafit.core import config as C
    from qlorafit.runtime.data import Sample
    from qlorafit.runtime.step import train_step
    from qlorafit.runtime.train import setup

    path = build_model(a.model)
    data = "/tmp/hp-data.jsonl"
    with open(data, "w") as f:
        f.write(json.dumps({"text": "tokens " * 16}) + "\n")
    raw = {"output_dir": "/tmp/hp-run", "model": {"name_or_path": path},
           "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
           "data": {"path": data, "max_seq_length": a.seq},
           "train": {"micro_batch_size": a.micro, "grad_accum": a.accum, "max_steps": 100000, "log_every": 1000}}
    for kv in a.set:
        key, value = kv.split("=", 1)
        sec, name = key.split(".", 1)
        raw.setdefault(sec, {})[name] = json.loads(value) if value[:1] in "0123456789[{tf\"n" else value
    cfg = C.from_dict(raw, "host-profile")
    run = setup(cfg, overwrite=True, quiet=True)
    g = torch.Generator().manual_seed(7)
    eff = a.micro * a.accum
    rows = torch.randint(0, 128000, (eff, a.seq), generator=g)
    units = [Sample(i, r.tolist(), r.tolist(), a.seq) for i, r in enumerate(rows)]
    for s in range(3):  # warm-up: compile happens here
        train_step(run.ctx, units, s + 1)
    torch.cuda.synchronize()
    walls = []
    for s in range(a.steps):
        t = time.perf_counter()
        train_step(run.ctx, units, 10 + s)
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=False) as prof:
        for s in range(a.steps):
            train_step(run.ctx, units, 20 + s)
        torch.cuda.synchronize()
    ev = prof.key_averages()
    n = a.steps
    launches = sum(e.count for e in ev if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC",
                                                       "cuLaunchKernelEx"))
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    spans = sorted((k.time_range.start, k.time_range.end) for k in kernels)
    busy, end = 0, -1
    for s0, s1 in spans:
        if s1 > end:
            busy += s1 - max(s0, end)
            end = s1
    top = sorted(ev, key=lambda e: e.self_cpu_time_total, reverse=True)[:40]
    report = {"provenance": provenance(" ".join(["python"] + sys.argv)), "config": raw["train"], "wall_ms_unprofiled": [w * 1e3 for w in walls],
              "gpu_busy_ms_per_step": busy / 1e3 / n, "launches_per_step": launches / n,
              "top_self_cpu": [{"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / n,
                                "calls_per_step": e.count / n} for e in top]}
    print(f"wall {sorted(walls)[len(walls) // 2] * 1e3:.0f} ms/step, GPU busy {report['gpu_busy_ms_per_step']:.0f} "
          f"ms/step, {report['launches_per_step']:.0f} launches/step")
    for r in report["top_self_cpu"][:30]:
        print(f"  {r['self_cpu_ms_per_step']:8.1f} ms  {r['calls_per_step']:8.0f}x  {r['op'][:90]}")
    tag = f"{a.micro}x{a.accum}x{a.seq}" + ("-" + "-".join(x.replace("=", "_") for x in a.set) if a.set else "")
    with open(os.path.join(a.out, f"host-profile-{tag}.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
