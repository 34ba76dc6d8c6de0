"""Train the embedded tiny Llama on CPU (or GPU) in under a minute, offline, with real bitsandbytes NF4 weights, and
watch the loss fall. Everything ships inside the package: the model config, a tokenizer built on the spot, and a
small dataset of real text. The run directory is a normal qlorafit run: try `qlorafit report` on it afterwards.
"""

import os
import tempfile

DEMO_STEPS = 60
DEMO_PROMPT = "What is 7 plus 5?"


def demo_config(output_dir: str, steps: int):
    from qlorafit.core import config as C

    return C.from_dict({
        "output_dir": output_dir,
        "model": {"name_or_path": "qlorafit/tiny-llama", "quant": "nf4", "compute_dtype": "fp32"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": ["all-linear"]},
        "data": {"path": "qlorafit/demo", "max_seq_length": 128, "eval_split": 0.05},
        "train": {"micro_batch_size": 8, "grad_accum": 2, "max_steps": steps, "lr": 3e-3, "warmup_steps": 4,
                  "schedule": "cosine", "grad_checkpointing": "off", "loss_impl": "chunked", "eval_every": 0,
                  "save_every": 0, "optimizer": "adamw", "sample_prompts": [DEMO_PROMPT], "sample_max_new_tokens": 24},
    }, "demo")


def add_arguments(p) -> None:
    p.add_argument("--output-dir", help="run directory: a new or empty one, or an earlier demo's, which is replaced "
                   "(default: a new temporary directory)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="optimizer steps (default %(default)s)")


def prepare_output_dir(out: str) -> None:
    """The demo writes into a new or empty directory, or replaces an earlier demo; never anything else."""
    from qlorafit import rundir
    from qlorafit.errors import UserError

    rundir.check_writable(out, "--output-dir")
    if rundir.is_empty(out):
        rundir.write_marker(out, "demo")
        return
    kind = rundir.read_marker(out).get("kind") if rundir.is_marked(out) else None
    if kind is None:
        raise rundir.refuse_unmarked(out, "demo --output-dir")
    if kind != "demo":
        raise UserError(f"demo --output-dir: {out} holds a qlorafit {kind} run; the demo replaces only an earlier "
                        f"demo's directory. Choose another --output-dir")


def run(a) -> int:
    from qlorafit.errors import UserError

    if a.steps < 1:
        raise UserError(f"demo --steps: must be at least 1, got {a.steps}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = a.output_dir or tempfile.mkdtemp(prefix="qlorafit-demo-")
    prepare_output_dir(out)  # a new temporary directory is empty: it is just marked
    cfg = demo_config(out, a.steps)

    from qlorafit.runtime.train import train
    s = train(cfg, overwrite=True)
    drop = 100 * (1 - s["last_loss"] / s["first_loss"])
    print(f"\ndemo: {s['steps']} steps in {s['seconds']:.0f}s, loss {s['first_loss']:.3f} (first step) -> "
          f"{s['last_loss']:.3f} (last step), {drop:.0f}% lower")
    print(f"run directory: {out}  (metrics.jsonl, events.jsonl, ledger.jsonl, samples.jsonl, final/ adapter)")
    print(f"try: qlorafit generate {out} --prompt {DEMO_PROMPT!r}   or   qlorafit chat {out}")
    return 0
