"""Planner check (issue 4): for several budget and length cases, the tokens/s of the configuration `qlorafit plan`
picks against the best configuration a brute-force grid of real runs finds to fit, under an emulated card
(torch.cuda.set_per_process_memory_fraction). Target: planned >= 90 % of the best, and no planned configuration OOMs.

The grid is the planner's own search space, narrowed to what varies per step: micro-batch x accumulation at a fixed
effective batch, checkpointing off/on/offload, loss standard/chunked (adamw, no embedding offload, no tiling).
Each case runs in one process: the model is loaded once per checkpointing mode, each grid point runs 3 optimizer
steps of full-length random rows, and an OOM marks the point as not fitting.

usage (GPU machine): python benchmarks/plan_check.py --model llama-3.2-1b --out $OUT/plan_check.jsonl
"""

import argparse
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

GIB = 1024**3
# (budget GiB, max_seq_length, effective batch in sequences)
CASES = [(8, 2048, 16), (8, 4096, 8), (12, 8192, 4), (16, 1024, 32), (24, 4096, 16), (6, 1024, 16)]


def measure(model, micro: int, accum: int, seq: int, loss_impl: str, steps: int = 3) -> float | None:
    """Median tokens/s over steps 2..; None on OOM."""
    import torch

    from qlorafit.runtime.loss import forward_loss

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    times = []
    try:
        for _ in range(steps):
            torch.cuda.synchronize()
            t = time.time()
            for _ in range(accum):
                ids = torch.randint(0, model.config.vocab_size, (micro, seq), device="cuda")
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    s, n = forward_loss(model, {"input_ids": ids, "labels": ids}, loss_impl)
                (s / (n * accum)).backward()
                del s, ids
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.time() - t)
    except torch.OutOfMemoryError:
        return None
    finally:
        del opt
        gc.collect()
        torch.cuda.empty_cache()
    times = sorted(times[1:] or times)
    return micro * accum * seq / times[len(times) // 2]


def run_case(model_name: str, budget_gib: float, seq: int, eff: int) -> dict:
    import torch
    from gpu_common import build_model

    from qlorafit.core import config as C
    from qlorafit.core.catalog import get_gpu, resolve_model
    from qlorafit.core.estimate import Setup
    from qlorafit.runtime.model import load_model
    from qlorafit.core.plan import PlanRequest, plan
    from qlorafit.core.throughput import load_calibration

    shape = resolve_model(model_name)
    gpu = get_gpu("h200" if "H200" in torch.cuda.get_device_name(0) else "h100")
    req = PlanRequest(budget_bytes=int(budget_gib * GIB), max_seq_length=seq, effective_batch=eff,
                      base=Setup(), gpu=gpu, losses=("standard", "chunked"), optimizers=("adamw",),
                      offload_embedding=(False,), offload_lm_head=(False,), mlp_tiles=(0,),
                      calibration=load_calibration(gpu.name))
    chosen = plan(shape, req).chosen
    path = build_model(model_name)
    total = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(budget_gib * GIB / total)
    grid = {}
    for ckpt in ("off", "on", "offload"):
        cfg = C.from_dict({"model": {"name_or_path": path, "compute_dtype": "bf16"},
                           "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
                           "train": {"grad_checkpointing": ckpt, "optimizer": "adamw"}}, "plan_check")
        try:
            m = load_model(cfg, path, torch.device("cuda", 0)).model
        except torch.OutOfMemoryError:
            continue
        m.train()
        for micro in [d for d in range(1, eff + 1) if eff % d == 0]:
            for loss in ("standard", "chunked"):
                grid[f"{micro}x{eff // micro}/{ckpt}/{loss}"] = measure(m, micro, eff // micro, seq, loss)
        del m
        gc.collect()
        torch.cuda.empty_cache()
    s = chosen.setup
    key = f"{s.batch_size}x{chosen.grad_accum}/{s.grad_checkpointing}/{s.loss_impl}"
    fits = {k: v for k, v in grid.items() if v}
    best = max(fits, key=fits.get) if fits else None
    return {"model": model_name, "budget_gib": budget_gib, "seq": seq, "effective_batch": eff, "planned": key,
            "planned_predicted_tps": round(chosen.tokens_per_s, 1), "planned_measured_tps": grid.get(key),
            "best": best, "best_tps": fits.get(best), "ratio": (grid.get(key) or 0) / fits[best] if best else None,
            "planned_ooms": grid.get(key) is None, "grid": grid}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.2-1b")
    ap.add_argument("--cases", default="all", help="comma list of case indexes into CASES, or all")
    ap.add_argument("--out", required=True)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        from gpu_common import provenance
        rec = run_case(a.model, *CASES[a.one])
        rec["provenance"] = provenance(" ".join(sys.argv))
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"case {CASES[a.one]}: planned {rec['planned']} {rec['planned_measured_tps']} tok/s, best {rec['best']} "
              f"{rec['best_tps']} tok/s, ratio {rec['ratio']}", flush=True)
        return
    import subprocess
    idx = range(len(CASES)) if a.cases == "all" else [int(i) for i in a.cases.split(",")]
    for i in idx:  # a fresh process per case: the memory cap and the allocator start clean
        subprocess.run([sys.executable, __file__, "--one", str(i), "--model", a.model, "--out", a.out])


if __name__ == "__main__":
    main()
