"""qlorafit against the tutorials' recipe, side by side on one random-weight 8B model (issues 3 and 6).

Runs on the GPU machine through the device tool. Three parts, each in fresh processes:
  train    `qlorafit.runtime.train.train` (the real loop: data, guard, monitor) on variants of the two recipe configurations;
           a sampler thread reads the device's used memory (total - free, what nvidia-smi shows) every 10 ms.
  context  the longest sequence that trains at batch 1 (LoRA r32 on all linear layers) under an emulated 24 GiB card
           (torch.cuda.set_per_process_memory_fraction), by binary search over real steps of qlorafit's load path,
           loss and offload levers. The guard is not used here: an OOM is the answer "does not fit".
  batch    the largest micro-batch at length 2048 under the same 24 GiB.
The recipe's side comes from benchmarks/recipe.py, run in the same device call.

usage (on the GPU machine): python benchmarks/bench.py train --variants default,lean --out $OUT/bench.jsonl
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))

GIB = 1024**3
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]

# name -> config overrides on top of the recipe's settings (r16 q/k/v/o, dropout 0.05, paged AdamW, checkpointing)
VARIANTS = {
    "default": {},
    "lean": {"model": {"offload_embedding": True}},
    "leaner": {"model": {"offload_embedding": True, "offload_lm_head": True}},  # both 16-bit matrices in host RAM
    "leanest": {"model": {"offload_embedding": True}, "train": {"grad_checkpointing": "offload"}},
    "leanest8": {"model": {"offload_embedding": True},
                 "train": {"grad_checkpointing": "offload", "optimizer": "paged_adamw_8bit"}},
    "fused": {"train": {"loss_impl": "fused"}},
    # LoRA's optimizer states are MBs: torch's fused AdamW on the device instead of bnb's paged one (whose step
    # synchronizes and pages)
    "fast": {"train": {"optimizer": "adamw", "compile": True}},
    "noguard": {"guard": {"enabled": False}},
    "fastbf16": {"train": {"optimizer": "adamw", "compile": True}, "lora": {"dtype": "bf16"}},
    "fastlean": {"train": {"optimizer": "adamw", "compile": True}, "lora": {"dtype": "bf16", "dropout": 0.0}},
}
CONFIGS = {"c1": (2, 4, 512), "c2": (1, 1, 2048)}  # (micro-batch, accumulation, length)


def make_data(path: str, n: int, words: int) -> None:
    import random
    rng = random.Random(0)
    vocab = ("the of and to in is was for on that with as by at from his her an which also this be are were "
             "model memory train token layer card batch length loss step rank weight value sample").split()
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": " ".join(rng.choice(vocab) for _ in range(words))}) + "\n")


def with_tokenizer(model_dir: str) -> None:
    """The random-weight model has no tokenizer: give it the demo's (its ids are far below the model's vocab)."""
    from qlorafit.demo_assets import demo_tokenizer
    demo_tokenizer().save_pretrained(model_dir)


PROBE_LLAMA = {"model_type": "llama", "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 4,
               "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 32000,
               "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
"""The small Llama the graph and capture probes train: big enough for real kernels, quick to build."""


def probe_model(root: str = "/tmp/qf-models") -> str:
    """PROBE_LLAMA with random weights and the demo tokenizer, saved once under root; its path."""
    from pathlib import Path

    from gpu_common import save_random

    out = Path(root) / "probe-llama"
    if not (out / "config.json").exists():
        save_random(PROBE_LLAMA, out)
    with_tokenizer(str(out))
    return str(out)


def bench_raw(path: str, variant: str, cfg_name: str, steps: int) -> dict:
    """The qlorafit config of one (variant, configuration) pair: the recipe's settings plus the variant's levers.
    Writes the benchmark's text data (random words, cut at the length) next to the run."""
    b, acc, seq = CONFIGS[cfg_name]
    with_tokenizer(path)
    data = f"/tmp/bench-{seq}.jsonl"
    make_data(data, b * acc * (steps + 2), seq * 2)
    raw = {"output_dir": f"/tmp/bench-run-{variant}-{cfg_name}",
           "model": {"name_or_path": path, "compute_dtype": "bf16"},
           "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": QKVO},
           "data": {"path": data, "max_seq_length": seq, "group_by_length": False},
           "train": {"micro_batch_size": b, "grad_accum": acc, "max_steps": steps, "optimizer": "paged_adamw_32bit",
                     "grad_checkpointing": "on", "schedule": "constant", "warmup_steps": 0, "max_grad_norm": 0.3,
                     "log_every": 1, "lr": 2e-4}}
    from qlorafit.core import config as C
    return C.merge(raw, VARIANTS[variant])


def run_train(model: str, variant: str, cfg_name: str, steps: int, out: str, cap_used_gib: float = 0.0) -> None:
    """One qlorafit run of the real loop. cap_used_gib > 0 emulates a card with that much memory in all: PyTorch's
    allocator is capped at the cap minus what the process holds outside it (CUDA context, cuBLAS), so loading and
    training must both fit in cap_used_gib of device memory, whatever the allocator would cache on a larger card."""
    import torch
    from gpu_common import build_model, non_torch_bytes, provenance

    from qlorafit.core import config as C
    from qlorafit.runtime.train import loop, setup

    b, acc, seq = CONFIGS[cfg_name]
    path = build_model(model)
    raw = bench_raw(path, variant, cfg_name, steps)
    cfg = C.from_dict(raw, f"variant {variant}")
    used = {"load": 0, "train": 0}  # peak of total - free in each phase: loading the model, then the training steps
    phase = ["load"]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            free, total = torch.cuda.mem_get_info()
            used[phase[0]] = max(used[phase[0]], total - free)
            time.sleep(0.01)

    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the CUDA context exists from here on
    if cap_used_gib:
        torch.cuda.set_per_process_memory_fraction(
            (cap_used_gib * GIB - non_torch_bytes() - 256 * 2**20) / torch.cuda.mem_get_info()[1])  # 256 MiB: cuBLAS
    torch.cuda.reset_peak_memory_stats()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.time()
    run = setup(cfg, overwrite=True, quiet=True)
    torch.cuda.synchronize()
    load_alloc, load_reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    phase[0] = "train"
    try:
        summary = loop(run)
    finally:
        run.ctx.monitor.close()
    stop.set()
    th.join()
    rows = [json.loads(x) for x in open(os.path.join(raw["output_dir"], "metrics.jsonl"))]
    ev_path = os.path.join(raw["output_dir"], "events.jsonl")
    events = [json.loads(x) for x in open(ev_path)] if os.path.exists(ev_path) else []
    steady = [r["tokens_per_s"] for r in rows[1:]] or [rows[0]["tokens_per_s"]]
    steady.sort()
    rec = {"part": "train", "stack": "qlorafit", "variant": variant, "config": cfg_name, "batch": b, "accum": acc,
           "seq": seq, "steps": steps, "used_peak": max(used.values()), "used_peak_load": used["load"],
           "used_peak_train": used["train"], "load_peak_allocated": load_alloc, "load_peak_reserved": load_reserved,
           "cap_used_gib": cap_used_gib or None, "oom_recoveries": sum(e.get("kind") == "oom_recovery" for e in events),
           "peak_reserved": max(r["mem_peak_reserved"] for r in rows),
           "peak_allocated": max(r["mem_peak_allocated"] for r in rows),
           "tokens_per_s": steady[len(steady) // 2], "losses": [r["loss"] for r in rows],
           "wall_s": round(time.time() - t0, 1), "overrides": VARIANTS[variant], "summary_steps": summary.get("steps"),
           "provenance": provenance(" ".join(sys.argv))}
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"qlorafit {variant} {cfg_name}: used {rec['used_peak'] / GIB:.2f} GiB (load {used['load'] / GIB:.2f}, "
          f"training steps {used['train'] / GIB:.2f}), reserved "
          f"{rec['peak_reserved'] / GIB:.2f}, allocated {rec['peak_allocated'] / GIB:.2f}, "
          f"{rec['tokens_per_s']:.0f} tok/s; load peak allocated {load_alloc / GIB:.2f}, reserved "
          f"{load_reserved / GIB:.2f}" + (f"; capped at {cap_used_gib} GiB used" if cap_used_gib else ""), flush=True)


def fits(step, n: int) -> bool:
    import torch
    try:
        step(n)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        import gc
        gc.collect()
        torch.cuda.empty_cache()


def run_search(model: str, kind: str, budget_gib: float, levers: str, out: str, lo: int, hi: int) -> None:
    """Binary search the largest length (kind=context, batch 1) or micro-batch (kind=batch, length 2048) that trains."""
    import torch
    from gpu_common import build_model, provenance

    from qlorafit.core import config as C
    from qlorafit.runtime.loss import forward_loss
    from qlorafit.runtime.model import load_model

    path = build_model(model)
    total = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(budget_gib * GIB / total)
    lv = dict(x.split("=") for x in levers.split(",")) if levers else {}
    raw = {"model": {"name_or_path": path, "compute_dtype": "bf16",
                     "offload_embedding": lv.get("offload_embedding", "false") == "true",
                     "offload_lm_head": lv.get("offload_lm_head", "false") == "true"},
           "lora": {"r": int(lv.get("r", 32)), "alpha": 2 * int(lv.get("r", 32)), "dropout": float(lv.get("dropout", 0.0)),
                    "targets": QKVO if lv.get("targets") == "qkvo" else ["all-linear"]},
           "train": {"grad_checkpointing": lv.get("ckpt", "offload"), "loss_impl": lv.get("loss", "fused"),
                     "optimizer": lv.get("optimizer", "adamw"), "mlp_tile_tokens": int(lv.get("tile", 0)),
                     "compile": lv.get("compile", "false") == "true"}}
    cfg = C.from_dict(raw, "search")
    loaded = load_model(cfg, path, torch.device("cuda", 0))
    m = loaded.model
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)

    def step(n: int) -> None:
        b, t = (1, n) if kind == "context" else (n, 2048)
        ids = torch.randint(0, m.config.vocab_size, (b, t), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            s, k = forward_loss(m, {"input_ids": ids, "labels": ids}, cfg.train.loss_impl)
        (s / k).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()

    found = lo if fits(step, lo) else 0
    hi_fail = hi
    step_tokens = int(lv.get("granularity", 1024))
    while found and hi_fail - found > (step_tokens if kind == "context" else 1):
        mid = (found + hi_fail) // 2
        mid = mid // step_tokens * step_tokens if kind == "context" else mid
        if mid <= found:
            break
        if fits(step, mid):
            found = mid
        else:
            hi_fail = mid
        print(f"  {kind}: {found} fits, {hi_fail} does not", flush=True)
    rec = {"part": kind, "stack": "qlorafit", "budget_gib": budget_gib, "levers": raw, "found": found,
           "first_fail": hi_fail, "provenance": provenance(" ".join(sys.argv))}
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"qlorafit {kind} under {budget_gib} GiB ({levers}): {found}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["train", "context", "batch"])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--runs", default="c1:default,c1:lean,c2:default", help="config:variant pairs")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--budget-gib", type=float, default=24.0)
    ap.add_argument("--levers", default="")
    ap.add_argument("--lo", type=int, default=8192)
    ap.add_argument("--hi", type=int, default=131072)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cap-used-gib", type=float, default=0.0,
                    help="train: emulate a card of this many GiB in all (CUDA context included)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part == "train":
        if a.one:
            v, c = a.one.split(":")
            run_train(a.model, v, c, a.steps, a.out, a.cap_used_gib)
            return
        for cv in a.runs.split(","):
            c, v = cv.split(":")
            if True:
                rc = subprocess.run([sys.executable, __file__, "train", "--one", f"{v}:{c}", "--model", a.model,
                                     "--steps", str(a.steps), "--out", a.out,
                                     "--cap-used-gib", str(a.cap_used_gib)]).returncode
                if rc:
                    print(f"qlorafit {v} {c}: exit {rc}", flush=True)
    else:
        run_search(a.model, a.part, a.budget_gib, a.levers, a.out, a.lo, a.hi)


if __name__ == "__main__":
    main()
