"""The estimator on shapes it was never fitted to (issue 13, item 4), and a Qwen3-MoE-shaped model trained on the GPU.

The fit (tests/fixtures/calibration.json) saw four families: llama, mistral, qwen2 and gemma2. HELD_OUT below names
three others, frozen on 2026-11-29 before any estimator term was touched for them (git log of this file is the
record): qwen3 (q/k norms, head_dim 128 != hidden/heads), gemma3 (262K vocabulary, q/k norms, four norms per layer,
sliding-window layers) and phi3 in its Phi-4-mini form (200K vocabulary, fused qkv_proj/gate_up_proj, tied head).
Each family runs on both stacks, with checkpointing on, off and offloaded, all-linear, and the host-RAM head lever.
MOE is a Qwen3-30B-A3B layer (128 experts, top-8, hidden 2048, expert width 768) at its real expert count, cut to
6 of its 48 layers so that the random-weight checkpoint builds in seconds.

Measurement is calibrate.py's (same process per configuration, same peak = max reserved + non-PyTorch memory), so
in-sample and out-of-sample numbers compare like for like.

usage (GPU machine):  python benchmarks/holdout.py --out $OUT/holdout.jsonl [--groups ...]
report (anywhere):    python benchmarks/holdout.py --report benchmarks/results/holdout-h200-2026-11-29.jsonl
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

import calibrate  # noqa: E402

QKVO = calibrate.QKVO
ALL = calibrate.ALL
PHI_QKVO = "qkv_proj,o_proj"  # Phi-3/4 fuse q, k and v in one module
# (batch, seq, rank, targets, checkpointing, optimizer, dropout, loss, offload_embedding, mlp_tile, offload_lm_head)
HELD_OUT = {
    "qwen3-1.7b:qlorafit": [
        (2, 1024, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (1, 4096, 32, ALL, "off", "adamw", 0.0, "chunked"),
        (4, 2048, 16, ALL, "offload", "adamw", 0.05, "chunked", False, 0, True),
    ],
    "qwen3-1.7b:hf": [
        (2, 1024, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (1, 2048, 16, ALL, "off", "paged_adamw_32bit", 0.05, "standard"),
    ],
    "gemma-3-1b:qlorafit": [
        (2, 2048, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (1, 2048, 16, ALL, "off", "adamw", 0.0, "chunked"),
        (2, 4096, 32, ALL, "offload", "adamw", 0.0, "chunked", False, 0, True),
    ],
    "gemma-3-1b:hf": [
        (2, 1024, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (1, 2048, 16, ALL, "on", "adamw", 0.05, "standard"),
    ],
    "phi-4-mini:qlorafit": [
        (2, 2048, 16, PHI_QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (1, 2048, 16, ALL, "off", "adamw", 0.0, "chunked"),
        (1, 8192, 32, ALL, "offload", "adamw", 0.0, "chunked", False, 0, True),
    ],
    "phi-4-mini:hf": [
        (2, 1024, 16, PHI_QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (1, 2048, 16, ALL, "on", "adamw", 0.05, "standard"),
    ],
}
MOE_BASE, MOE_LAYERS = "qwen3-30b-a3b", 6
MOE = {
    f"{MOE_BASE}-{MOE_LAYERS}l:qlorafit": [
        (2, 1024, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (1, 2048, 16, ALL, "off", "adamw", 0.0, "chunked"),
    ],
}
GROUPS = {**MOE, **HELD_OUT}


def moe_config() -> dict:
    """The catalogue's Qwen3-30B-A3B config.json fields with MOE_LAYERS layers."""
    from qlorafit.core.catalog import model_config

    cfg = model_config(MOE_BASE)
    cfg["num_hidden_layers"] = MOE_LAYERS
    return cfg


def build_any(name: str, root: str = "/tmp/qf-models") -> str:
    """gpu_common.build_model, plus the cut-down MoE, which is not a catalogue entry."""
    from pathlib import Path

    if not name.startswith(f"{MOE_BASE}-"):
        return _build_catalogue(name, root)
    out = Path(root) / name
    if not (out / "config.json").exists():
        _save_random(moe_config(), out)
    return str(out)


_build_catalogue = None


def _save_random(fields: dict, out) -> None:
    import gpu_common  # imports torch: only where a GPU run needs it

    gpu_common.save_random(fields, out)


def shape_of(model: str):
    from qlorafit.core.catalog import resolve_model
    from qlorafit.core.shapes import shape_from_config

    if model.startswith(f"{MOE_BASE}-"):
        return shape_from_config(moe_config(), model)
    return resolve_model(model)


def setup_of(r: dict):
    from qlorafit.core.estimate import Setup

    return Setup(batch_size=r["batch"], seq_len=r["seq"], lora_r=r["rank"], lora_targets=tuple(r["targets"].split(",")),
                 grad_checkpointing=r["checkpointing"], optimizer=r["optimizer"], lora_dropout=r["dropout"],
                 loss_impl=r["loss"], stack=r["stack"], offload_embedding=r["offload_embedding"],
                 offload_lm_head=r.get("offload_lm_head", False),
                 expandable_segments="expandable_segments:True" in r["alloc_conf"],
                 mlp_tile_tokens=r.get("mlp_tile_tokens", 0), compile=r.get("compile", False),
                 cuda_graphs=r.get("cuda_graphs", "off"))  # holdout.py's loop runs the layers eagerly, without
    # graphs (as calibrate.row_setup's rows): Setup's defaults (compiled, graphs auto) are not what ran


def report(path: str) -> str:
    """Markdown table of predicted vs measured, per row, and the summary per split and stack."""
    from qlorafit.core.estimate import estimate

    rows = [json.loads(x) for x in open(path) if x.strip()]
    rows = [r for r in rows if r.get("kind") == "step" and r.get("ok")]
    out = ["| split | model | stack | batch x seq | r | targets | ckpt | loss | head in RAM | predicted GiB | "
           "measured GiB | error |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    errs: dict[tuple, list] = {}
    for r in rows:
        pred = estimate(shape_of(r["model"]), setup_of(r)).peak_bytes
        e = (pred - r["measured"]) / r["measured"]
        split = "moe" if r["group"] in MOE else "held-out"
        if any("float32" in x for x in r.get("expert_params", [])):
            # measured before qlorafit kept LoRA off the experts: PEFT had wrapped them (fp32 adapters on experts)
            split = "moe, PEFT LoRA on experts (superseded)"
        errs.setdefault((split, r["stack"]), []).append(e)
        out.append(f"| {split} | {r['model']} | {r['stack']} | {r['batch']} x {r['seq']} | {r['rank']} | "
                   f"{'all' if r['targets'] == ALL else r['targets']} | {r['checkpointing']} | {r['loss']} | "
                   f"{'yes' if r.get('offload_lm_head') else 'no'} | {pred / 2**30:.2f} | {r['measured'] / 2**30:.2f} | "
                   f"{e * 100:+.1f} % |")
    out += ["", "| split | stack | runs | median abs error | worst abs error | most under |", "|---|---|---|---|---|---|"]
    for (split, stack), es in sorted(errs.items()):
        out.append(f"| {split} | {stack} | {len(es)} | {statistics.median(abs(e) for e in es) * 100:.1f} % | "
                   f"{max(abs(e) for e in es) * 100:.1f} % | {min(es) * 100:+.1f} % |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", default=",".join(GROUPS), help="comma list of model:stack groups")
    ap.add_argument("--out")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--report", metavar="JSONL", help="print the error table of a results file and exit")
    a = ap.parse_args()
    if a.report:
        print(report(a.report))
        return
    calibrate.GROUPS.update(GROUPS)
    if a.one:
        import gpu_common

        global _build_catalogue
        _build_catalogue, gpu_common.build_model = gpu_common.build_model, build_any
        group, index = a.one.rsplit("#", 1)
        calibrate.run_one(group, int(index), a.out, a.steps)
        return
    for group in a.groups.split(","):
        for index in range(len(GROUPS[group])):
            rc = subprocess.run([sys.executable, __file__, "--one", f"{group}#{index}", "--out", a.out,
                                 "--steps", str(a.steps)]).returncode
            if rc:
                print(f"[{group}#{index}] exit {rc}", flush=True)


if __name__ == "__main__":
    main()
