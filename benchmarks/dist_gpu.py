"""Issue 17 on two GPUs (device kind nvidia-h200-x2): DDP tokens/s against one GPU, and FSDP-QLoRA of a
Llama-3.1-70B-shaped model with each GPU capped at 24 GiB; the per-rank peak against qlorafit.core.dist_estimate.

  source benchmarks/gpu_setup.sh && python benchmarks/dist_gpu.py fsdp70 --cpu-offload --out $OUT/dist-fsdp70-offload.json
  source benchmarks/gpu_setup.sh && python benchmarks/dist_gpu.py fsdp70 --cap-gib 48 --out $OUT/dist-fsdp70.json
  source benchmarks/gpu_setup.sh && python benchmarks/dist_gpu.py ddp8 --out $OUT/dist-ddp8.json
  (one device call each, each inside the 10-minute limit; results come back from $OUT, to commit under benchmarks/results/)

  ddp8     llama-3.1-8b, random weights saved to /tmp: `qlorafit train` on one GPU, then `--nproc 2` with the same
           per-GPU micro-batch (the real launch and loading path); tokens/s and each rank's peak against the estimate
  fsdp70   (one torchrun worker per GPU) llama-3.1-70b-shaped, random weights built one linear at a time on each GPU
           (a 70B checkpoint would not fit the disk): 4-bit in bf16 storage, LoRA, then qlorafit.runtime.dist.wrap
           (fsdp), then the per-process cap (24 GiB of the card in all), then qlorafit's train_step for a few steps;
           runs with and without dist.cpu_offload. The loading here is the benchmark's; the per-rank training peak is
           qlorafit's (its wrap, its step, its guard rounds).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
SEQ = 2048


def _cfg_raw(model_dir: str, out: str, data: str, steps: int, strategy: str = "ddp", offload: bool = False) -> dict:
    return {"output_dir": out, "model": {"name_or_path": model_dir, "compute_dtype": "bf16"},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "data": {"path": data, "max_seq_length": SEQ, "group_by_length": False},
            "train": {"micro_batch_size": 1, "grad_accum": 4, "max_steps": steps, "optimizer": "adamw",
                      "grad_checkpointing": "on", "schedule": "constant", "warmup_steps": 0, "log_every": 1},
            "dist": {"strategy": strategy, "cpu_offload": offload}}


def _setup_of(raw: dict, seq: int):
    from dataclasses import replace

    from qlorafit.core import config as C
    from qlorafit.core.plan import setup_from_config
    return replace(setup_from_config(C.from_dict(raw, "bench")), compute_dtype="bf16", seq_len=seq)


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _first_step(run: Path) -> dict:
    return next((e for e in _read(run / "events.jsonl") if e["kind"] == "first_step_memory"), {})


def ddp8(steps: int) -> dict:
    """One GPU, then two (DDP): the real CLI path on a saved random-weight 8B."""
    from bench import make_data, with_tokenizer
    from gpu_common import build_model

    from qlorafit.core import catalog
    from qlorafit.core import config as C
    from qlorafit.core import dist_estimate as DE

    path = build_model("llama-3.1-8b")
    with_tokenizer(path)
    data = "/tmp/dist-bench.jsonl"
    make_data(data, 8 * (steps + 2), SEQ * 2)
    out = {}
    for n in (1, 2):
        run = Path(f"/tmp/dist-ddp8-{n}")
        raw = _cfg_raw(path, str(run), data, steps)
        Path(f"/tmp/dist-ddp8-{n}.yaml").write_text(C.to_yaml(C.from_dict(raw, "bench")))
        cmd = [sys.executable, "-m", "qlorafit", "train", f"/tmp/dist-ddp8-{n}.yaml", "--overwrite"] + \
            (["--nproc", str(n)] if n > 1 else [])
        t = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True)
        m = _read(run / "metrics.jsonl")
        tps = [r["tokens_per_s"] for r in m[2:]] or [0]
        ranks = [_first_step(run)] + ([_first_step(run / "ranks" / "rank-1")] if n > 1 else [])
        est = DE.estimate_ranks(catalog.resolve_model("llama-3.1-8b"), _setup_of(raw, SEQ), n, "ddp")
        out[f"gpus_{n}"] = {"rc": p.returncode, "stderr_tail": p.stderr[-1500:] if p.returncode else "",
                            "seconds": round(time.time() - t, 1), "tokens_per_s_median": statistics.median(tps),
                            "measured_peak_bytes_per_rank": [r.get("measured_peak_bytes") for r in ranks],
                            "estimated_peak_bytes_per_rank": est.peak_bytes}
        print(json.dumps({f"ddp8 gpus {n}": out[f"gpus_{n}"]}), flush=True)
    one, two = out["gpus_1"]["tokens_per_s_median"], out["gpus_2"]["tokens_per_s_median"]
    out["speedup"] = round(two / one, 3) if one else None
    return out


# --- fsdp70: one torchrun worker per GPU ----------------------------------------------------------------------------

def _random_4bit_model(name: str, storage):
    """The catalogue model with random weights: built on the meta device, then each linear made on the GPU in bf16
    and quantized to NF4 at once (one matrix of 16-bit at a time), norms 1, embedding and lm_head random."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from qlorafit.core.catalog import _load as _catalog

    fields = dict(_catalog("models.json")["models"][name]["config"])
    conf = AutoConfig.for_model(fields.pop("model_type"), **fields)
    dev = torch.device("cuda", torch.cuda.current_device())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16)
    for layer in model.model.layers:
        for parent in list(layer.modules()):
            for cname, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                          compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                          quant_storage=storage, device="meta")
                    w = torch.empty(child.out_features, child.in_features, device=dev, dtype=torch.bfloat16)
                    q.weight = bnb.nn.Params4bit(w.normal_(0, 0.02), requires_grad=False, compress_statistics=True,
                                                 quant_type="nf4", quant_storage=storage, module=q).to(dev)
                    setattr(parent, cname, q)
    for mod in model.modules():
        for pname, p in list(mod.named_parameters(recurse=False)):
            if p.device.type == "meta":
                t = torch.empty(p.shape, device=dev, dtype=torch.bfloat16)
                t = t.fill_(1.0) if "norm" in type(mod).__name__.lower() else t.normal_(0, 0.02)
                setattr(mod, pname, torch.nn.Parameter(t, requires_grad=False))
    rot = model.model.rotary_emb
    model.model.rotary_emb = type(rot)(config=conf, device=dev)
    model.config.use_cache = False
    return model


def _peak_breakdown(snapshot: dict, base_bytes: int, top: int = 30) -> dict:
    """Replay one recorded step's allocator trace (torch.cuda.memory._record_memory_history) to its highest point and
    group the blocks live there by where they were allocated (the innermost frames in qlorafit, peft, bitsandbytes,
    transformers or torch.distributed), so the estimate's missing term has a name."""
    keep = ("qlorafit", "peft", "bitsandbytes", "transformers", "torch/distributed", "torch/utils/checkpoint")
    dev = next((i for i, t in enumerate(snapshot["device_traces"]) if t), 0)
    trace = snapshot["device_traces"][dev]

    def replay(stop: int):
        live, total, best, at = {}, 0, -1, 0
        for i, ev in enumerate(trace[:stop]):
            if ev["action"] == "alloc":
                live[ev["addr"]] = ev
                total += ev["size"]
            elif ev["action"] == "free_completed" and ev["addr"] in live:
                total -= live.pop(ev["addr"])["size"]
            if total > best:
                best, at = total, i + 1
        return live, best, at

    _, best, at = replay(len(trace))
    best_live, _, _ = replay(at)  # the blocks live at the highest point
    groups: dict[str, int] = {}
    for ev in best_live.values():
        frames = [f"{f['filename'].split('site-packages/')[-1].split('/src/')[-1]}:{f['line']}:{f['name']}"
                  for f in ev.get("frames", []) if any(k in f["filename"] for k in keep)][:3]
        key = " < ".join(frames) or "(no python frame)"
        groups[key] = groups.get(key, 0) + ev["size"]
    rows = sorted(groups.items(), key=lambda kv: -kv[1])[:top]
    pools: dict[str, list[int]] = {}  # reserved memory by CUDA stream: FSDP2's all-gather streams cache their own
    for seg in snapshot.get("segments", []):
        pool = pools.setdefault(str(seg.get("stream", "?")), [0, 0])
        pool[0] += seg["total_size"]
        pool[1] += seg["allocated_size"]
    return {"allocated_before_recording": base_bytes, "recorded_peak_above_base": best,
            "reserved_by_stream": {k: {"reserved": a, "allocated": b} for k, (a, b) in pools.items()},
            "groups": [{"bytes": b, "where": k} for k, b in rows]}


def fsdp70_worker(steps: int, offload: bool, cap_gib: float, out: str, history: bool = False) -> None:
    import torch

    from gpu_common import non_torch_bytes, provenance
    from qlorafit.core import catalog
    from qlorafit.core import config as C
    from qlorafit.core import dist_estimate as DE
    from qlorafit.runtime import dist as D
    from qlorafit.runtime import guard as G
    from qlorafit.runtime.data import Sample
    from qlorafit.runtime.model import attach_lora, freeze_and_cast
    from qlorafit.runtime.monitor import Monitor
    from qlorafit.runtime.optim import build_optimizer
    from qlorafit.runtime.step import StepContext, train_step

    world = D.init_world(True)
    world.strategy = "fsdp"
    raw = _cfg_raw("llama-3.1-70b", f"/tmp/dist-fsdp70-{int(offload)}", "unused", steps, "fsdp", offload)
    cfg = C.from_dict(raw, "bench")
    torch.manual_seed(0)
    t = time.time()
    model = _random_4bit_model("llama-3.1-70b", torch.bfloat16)
    freeze_and_cast(model, cfg)
    G.apply_checkpointing(model, "on")
    model = attach_lora(model, cfg)
    from torch.distributed.device_mesh import init_device_mesh
    world.mesh = init_device_mesh("cuda", (world.size,))
    model, params = D.wrap(model, world, offload)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    load_s = time.time() - t
    dev = torch.device("cuda", torch.cuda.current_device())
    total = torch.cuda.get_device_properties(dev).total_memory
    # the card has cap_gib in all: PyTorch may use that minus what the process holds outside its allocator
    torch.cuda.set_per_process_memory_fraction(max(0.01, (cap_gib * GIB - non_torch_bytes()) / total), dev)
    torch.cuda.reset_peak_memory_stats()
    run = Path(raw["output_dir"]) / f"rank-{world.rank}"
    run.mkdir(parents=True, exist_ok=True)
    mon = Monitor(run, dev, steps, 0, quiet=True)
    ctx = StepContext(model, build_optimizer(params, cfg.train), params, torch.amp.GradScaler("cuda", enabled=False),
                      dev, torch.bfloat16, cfg, G.GuardState(1, 1, "on"), mon, 0, world=world)
    g = torch.Generator().manual_seed(world.rank)
    rows, err, breakdown = [], "", {}
    static_bytes = torch.cuda.memory_allocated(dev)
    try:
        for step in range(1, steps + 1):
            units = [Sample(step * 100 + i, ids, ids) for i in range(4)
                     for ids in [torch.randint(10, 120000, (SEQ,), generator=g).tolist()]]
            t0 = time.time()
            recording = history and world.rank == 0 and step == 2
            if recording:
                base = torch.cuda.memory_allocated(dev)
                torch.cuda.memory._record_memory_history(max_entries=400000, stacks="python")
            res = train_step(ctx, units, step)
            if recording:
                snap = torch.cuda.memory._snapshot()
                torch.cuda.memory._record_memory_history(enabled=None)
                breakdown = _peak_breakdown(snap, base)
                del snap
            rows.append({"step": step, "loss": res.loss, "seconds": round(time.time() - t0, 2),
                         "peak_reserved": torch.cuda.max_memory_reserved(dev)})
    except Exception as e:  # noqa: BLE001 - recorded, it is the result
        err = f"{type(e).__name__}: {str(e)[:600]}"
    peak = torch.cuda.max_memory_reserved(dev) + non_torch_bytes()
    est = DE.estimate_ranks(catalog.resolve_model("llama-3.1-70b"), _setup_of(raw, SEQ), world.size, "fsdp", offload)
    rec = {"rank": world.rank, "cpu_offload": offload, "cap_gib": cap_gib, "load_seconds": round(load_s, 1),
           "steps": rows, "error": err, "measured_peak_bytes": peak,
           "measured_peak_reserved": torch.cuda.max_memory_reserved(dev),
           "measured_non_torch_bytes": non_torch_bytes(), "estimated_peak_bytes": est.peak_bytes,
           "estimate_error": (est.peak_bytes - peak) / peak, "allocated_before_first_step": static_bytes,
           "max_allocated": torch.cuda.max_memory_allocated(dev), "peak_breakdown": breakdown, "estimate_parts": {p.name: p.bytes for p in est.parts},
           "provenance": provenance("benchmarks/dist_gpu.py fsdp70")}
    Path(f"{out}.rank{world.rank}").write_text(json.dumps(rec, indent=1))
    print(json.dumps({k: rec[k] for k in ("rank", "cpu_offload", "error", "measured_peak_bytes",
                                          "estimated_peak_bytes", "estimate_error")}), flush=True)
    mon.close()
    D.close(world)


def fsdp70(steps: int, offload: bool, cap_gib: float, history: bool = False) -> dict:
    out = f"/tmp/dist-fsdp70-{int(offload)}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__, "fsdp70-worker",
           "--steps", str(steps), "--cap-gib", str(cap_gib), "--part-out", out] + (["--cpu-offload"] if offload else []) \
        + (["--history"] if history else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
    ranks = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in (0, 1) if Path(f"{out}.rank{r}").is_file()]
    return {"rc": p.returncode, "stderr_tail": p.stderr[-2000:] if p.returncode else "", "ranks": ranks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("all", "ddp8", "fsdp70", "fsdp70-worker"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--cap-gib", type=float, default=24.0)
    ap.add_argument("--cpu-offload", action="store_true")
    ap.add_argument("--part-out", default="")
    ap.add_argument("--history", action="store_true", help="record rank 0's step 2 allocator trace; name the peak")
    ap.add_argument("--out", default=str(HERE / "results" / "dist_h200x2.json"))
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    if a.what == "fsdp70-worker":
        return fsdp70_worker(a.steps, a.cpu_offload, a.cap_gib, a.part_out, a.history)
    from gpu_common import provenance, write_json
    res = {"provenance": provenance(" ".join(sys.argv))}
    if a.what in ("all", "fsdp70"):
        # fsdp70 --cpu-offload: 2 x 24 GiB with the shards in host RAM (predicted to fit); fsdp70 --cap-gib 48:
        # without offload (predicted 27.4 GiB: over 24, so measured under a 48 GiB cap against the estimate)
        for off, cap in ([(True, a.cap_gib), (False, 48.0)] if a.what == "all" else [(a.cpu_offload, a.cap_gib)]):
            res[f"fsdp70_{'cpu_offload' if off else 'no_offload'}_{cap:g}gib"] = fsdp70(a.steps, off, cap, a.history)
            write_json(a.out, res)
    if a.what in ("all", "ddp8"):
        res["ddp8"] = ddp8(max(a.steps, 12))
    write_json(a.out, res)
    print(json.dumps(res, indent=1)[:6000])


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
