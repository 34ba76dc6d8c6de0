"""A Qwen3-MoE-shaped model trained the way a user runs qlorafit: a YAML file and `qlorafit train` (issue 13, item 3).

The model is benchmarks/holdout.py's MoE: Qwen3-30B-A3B's layer (128 experts, top-8 routing, hidden 2048, expert
width 768, 32 heads with 4 KV heads of 128) at its real expert count, cut to 6 of its 48 layers, random bf16
weights, with the demo tokenizer saved beside it. Training is packed full rows of the demo data, so the memory is
that of full-length rows. Records the run's first-step event (measured peak = max reserved + non-PyTorch memory) and
what the 4-bit load made of the experts.

usage (GPU machine): python benchmarks/moe_train.py --out $OUT/moe-train.json
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import holdout  # noqa: E402

RUNS = (  # (micro-batch, max_seq_length, targets, checkpointing)
    (2, 1024, ["q_proj", "k_proj", "v_proj", "o_proj"], "on"),
    (1, 2048, ["all-linear"], "off"),
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    from gpu_common import provenance

    from qlorafit.demo_assets import demo_tokenizer

    name = f"{holdout.MOE_BASE}-{holdout.MOE_LAYERS}l"
    path = holdout.build_any(name)
    demo_tokenizer().save_pretrained(path)  # 1,024 ids: all inside the model's 151,936-row embedding
    results = {"model": name, "path": path, "runs": [], "provenance": provenance(" ".join(sys.argv))}
    for b, seq, targets, ckpt in RUNS:
        run_dir = Path("/tmp/qf-runs") / f"moe-b{b}-s{seq}-{ckpt}"
        cfg = {"output_dir": str(run_dir),
               "model": {"name_or_path": path},
               "lora": {"r": 16, "targets": targets, "dropout": 0.05 if ckpt == "on" else 0.0},
               "data": {"path": "qlorafit/demo", "max_seq_length": seq, "packing": True},
               "train": {"micro_batch_size": b, "grad_accum": 1, "max_steps": a.steps, "grad_checkpointing": ckpt,
                         "optimizer": "paged_adamw_32bit" if ckpt == "on" else "adamw", "log_every": 1}}
        yaml_path = run_dir.with_suffix(".yaml")
        yaml_path.parent.mkdir(parents=True, exist_ok=True)
        yaml_path.write_text(json.dumps(cfg))  # JSON is YAML
        proc = subprocess.run([sys.executable, "-m", "qlorafit", "train", str(yaml_path), "--overwrite"],
                              capture_output=True, text=True)
        print(proc.stdout[-3000:], proc.stderr[-3000:], flush=True)
        events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()] \
            if (run_dir / "events.jsonl").is_file() else []
        first = next((e for e in events if e.get("kind") == "first_step_memory"), None)
        metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()] \
            if (run_dir / "metrics.jsonl").is_file() else []
        results["runs"].append({"batch": b, "seq": seq, "targets": targets, "checkpointing": ckpt, "rc": proc.returncode,
                                "config": cfg, "first_step_memory": first,
                                "losses": [m.get("loss") for m in metrics],
                                "tokens_per_s": [m.get("tokens_per_s") for m in metrics],
                                "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""})
    Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
