"""Why do compiled layers fail inside train.cuda_graphs' capture, and why is attention slower in the graphed pass?
(issue 16, session 9)

Three parts, on the GPU:
  sdpa      Llama-3-8B's attention shape (1 x 2,048, 32 query heads, 8 KV heads, head dim 128), forward + backward,
            through transformers' sdpa_attention_forward: no mask (enable_gqa, is_causal) as the graphed pass calls
            it, against an explicit mask (KV heads repeated) as a padded batch calls it, and the bare SDPA calls.
            Session 8's profile had cuDNN's attention at 11.7 + 8.6 ms per step in the graphed pass against
            6.2 + 5.0 ms compiled or in TRL.
  warmup    qlorafit's default graphed path on a 4-layer model: after the first step of 4 micro-batches one shape
            is captured (the gradients are made on the first micro-batch), and the memory at each stage.
  compiled  the same model with its layers torch.compile'd inside the graphs: the capture's full traceback, the
            recompiles Dynamo logs during it, and the capture again under capture_error_mode "relaxed" (which lets
            a potentially unsafe CUDA call such as a lazy module load through) and with the RNG state untouched.
  python benchmarks/capture_probe.py [sdpa,warmup,compiled]
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def time_ms(fn, n: int = 30) -> float:
    import torch
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / n


def part_sdpa() -> None:
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    class M(torch.nn.Module):
        is_causal, num_key_value_groups, training = True, 4, True
    m = M()
    T = 2048
    q = torch.randn(1, 32, T, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, 8, T, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, 8, T, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    mask = torch.full((T, T), float("-inf"), device="cuda", dtype=torch.bfloat16).triu(1)[None, None]
    go = torch.randn(1, T, 32, 128, device="cuda", dtype=torch.bfloat16)

    def hf(mask_):
        def f():
            out, _ = sdpa_attention_forward(m, q, k, v, mask_, dropout=0.0, scaling=128 ** -0.5)
            out.backward(go)
        return f

    def bare(gqa: bool, causal_mask: bool):
        def f():
            kk, vv = (k, v) if gqa else (k.repeat_interleave(4, 1), v.repeat_interleave(4, 1))
            out = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask if causal_mask else None,
                                                 is_causal=not causal_mask, enable_gqa=gqa)
            out.transpose(1, 2).backward(go)
        return f
    for rnd in range(2):
        for name, fn in (("hf, no mask (the graphed pass)", hf(None)), ("hf, explicit mask", hf(mask)),
                         ("bare is_causal enable_gqa", bare(True, False)),
                         ("bare is_causal repeated KV", bare(False, False)),
                         ("bare explicit mask repeated KV", bare(False, True))):
            print(f"sdpa round {rnd}: {name}: {time_ms(fn):.3f} ms fwd+bwd", flush=True)
    from torch.profiler import ProfilerActivity, profile
    for name, fn in (("hf, no mask", hf(None)), ("hf, explicit mask", hf(mask))):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        ks = sorted(((e.key, e.cuda_time_total / 1e3 if hasattr(e, "cuda_time_total") else e.device_time_total / 1e3)
                     for e in prof.key_averages()), key=lambda x: -x[1])[:6]
        print(f"sdpa kernels, {name}: " + "; ".join(f"{k[:90]} {t:.3f} ms" for k, t in ks), flush=True)


def small_run(compiled: bool, tag: str):
    import torch

    from bench import probe_model
    from qlorafit.core import config as C
    from qlorafit.runtime.train import setup

    out = Path(probe_model())
    data = "/tmp/cp-data.jsonl"
    Path(data).write_text(json.dumps({"text": "tokens " * 16}) + "\n")
    cfg = C.from_dict({"output_dir": f"/tmp/cp-run-{tag}", "model": {"name_or_path": str(out)},
                       "lora": {"r": 16, "alpha": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
                       "data": {"path": data, "max_seq_length": 512},
                       "train": {"micro_batch_size": 2, "grad_accum": 4, "max_steps": 1000, "log_every": 1000}},
                      "probe")
    run = setup(cfg, overwrite=True, quiet=True)
    if compiled:
        from qlorafit.runtime.model import compile_layers
        print(tag, "compiled layers:", compile_layers(run.ctx.model, tail_outside=False), flush=True)
    return run, torch


def units_of(n_units: int = 8):
    import torch
    from qlorafit.runtime.data import IGNORE, Sample
    g = torch.Generator().manual_seed(3)
    units = []
    for i in range(n_units):
        n = 512 - int(torch.randint(0, 96, (1,), generator=g))
        ids = torch.randint(0, 32000, (n,), generator=g).tolist()
        units.append(Sample(i, ids, [IGNORE] * 64 + ids[64:], n))
    return units


def part_warmup() -> None:
    from qlorafit.runtime.step import train_step
    run, torch = small_run(False, "warmup")
    g = run.ctx.graphs
    assert g is not None, "graphs resolved off"
    units = units_of()
    r = train_step(run.ctx, units, 1)
    print(f"warmup: after step 1 (4 micro-batches): captures {g.captures}, shapes {list(g.graphs)}, "
          f"disabled {g.disabled}, loss {r.loss:.4f}, checks {json.dumps(g.checks)}", flush=True)
    t = time.perf_counter()
    for s in range(2, 6):
        train_step(run.ctx, units, s)
    torch.cuda.synchronize()
    print(f"warmup: steps 2-5 {((time.perf_counter() - t) / 4) * 1e3:.1f} ms/step, captures {g.captures}", flush=True)


def part_compiled(mode: str) -> None:
    import torch
    import torch._dynamo

    from qlorafit.runtime import graphs as GR
    from qlorafit.runtime.step import train_step
    torch._logging.set_logs(recompiles=True)
    original = GR._cuda_capture

    def capture(fn, pool):
        try:
            if mode == "relaxed":
                return original(fn, pool, "relaxed")
            if mode == "norecompile":
                torch._dynamo.config.error_on_recompile = True
                try:
                    return original(fn, pool)
                finally:
                    torch._dynamo.config.error_on_recompile = False
            return original(fn, pool)
        except Exception:
            print(f"compiled[{mode}]: the capture failed:\n{traceback.format_exc()[-6000:]}", flush=True)
            raise
    GR._cuda_capture = capture
    run, _ = small_run(True, f"compiled-{mode}")
    g = run.ctx.graphs
    units = units_of()
    for s in range(1, 4):
        r = train_step(run.ctx, units, s)
        print(f"compiled[{mode}] step {s}: loss {r.loss:.4f} captures {g.captures} shapes {list(g.graphs)} "
              f"disabled {g.disabled} checks {json.dumps(g.checks)}", flush=True)
    GR._cuda_capture = original


def main() -> None:
    from gpu_common import provenance
    print(json.dumps(provenance(" ".join(["python"] + sys.argv))), flush=True)
    parts = sys.argv[1].split(",") if len(sys.argv) > 1 else ["sdpa", "warmup", "compiled"]
    for p in parts:
        try:
            if p == "sdpa":
                part_sdpa()
            elif p == "warmup":
                part_warmup()
            elif p.startswith("compiled"):
                part_compiled(p.split(":")[1] if ":" in p else "plain")
        except Exception:
            print(f"part {p} failed:\n{traceback.format_exc()[-4000:]}", flush=True)


if __name__ == "__main__":
    main()
