"""QLoRA fine-tune: a 4-bit base, LoRA adapters, checkpointing and accumulation, and an OOM guard that recovers in
place (smaller micro-batches, same effective batch) instead of crashing.

  qlorafit train                                   # the embedded demo model and data (CPU is fine)
  qlorafit train run.yaml --set train.lr=1e-4 --set lora.r=8
  qlorafit train run.yaml --print-config           # the resolved configuration, every key documented
  qlorafit train run.yaml --resume                 # continue from the newest checkpoint, with the very next sample
  qlorafit train run.yaml --nproc 2                # one process per GPU through torchrun (dist.strategy: ddp|fsdp)
  torchrun --nproc-per-node 2 -m qlorafit train run.yaml     # the same, launched yourself
  accelerate launch --num_processes 2 -m qlorafit train run.yaml

The run directory (output_dir) receives config.yaml, estimate.json, metrics.jsonl, events.jsonl, ledger.jsonl,
checkpoints/step-N/ and final/ (a PEFT adapter: PeftModel.from_pretrained(base, "RUN/final")).
"""

import argparse
import os
import shlex
import signal
import sys
import textwrap


def _keys_epilog() -> str:
    from qlorafit.core import config as C
    from qlorafit.core.resume import flat

    lines = ["configuration keys (YAML sections, or --set section.key=value):"]
    defaults = flat(C.Config())
    for key, f in C.keyed_fields().items():
        choices = f.metadata.get("choices")
        lines.append(f"  {key} = {defaults[key]!r}" + (f"  [{'|'.join(choices)}]" if choices else ""))
        lines += textwrap.wrap(f.metadata.get("help", ""), 100, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML configuration (e.g. one written by `qlorafit plan`); "
                   "without it the defaults train the embedded demo model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one key, e.g. --set train.lr=1e-4 (repeatable)")
    p.add_argument("--output-dir", help="run directory (same as --set output_dir=...)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in output_dir from its newest checkpoint, with the very next sample")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue although fields that decide the samples (data, micro-batch x "
                   "accumulation, seed) or the saved state (optimizer, lora.alpha, quantization) changed; the rest "
                   "of the epoch is re-drawn under the new settings and a new optimizer starts from fresh state. "
                   "Safe fields (lr, schedule, eval, logging, saving, memory levers, max_steps) never need it")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir (only the "
                   "files qlorafit wrote, in a directory it marked)")
    p.add_argument("--plan", choices=("auto",), help="auto: pick micro-batch x accumulation, checkpointing, optimizer "
                   "and loss for the GPU's free memory at the longest sample (effective batch kept), then train")
    p.add_argument("--budget", help="memory budget for --plan auto instead of the GPU's free memory, e.g. 24GiB")
    p.add_argument("--nproc", type=int, metavar="N", help="train on N GPUs of this machine: relaunches itself under "
                   "torchrun, one process per GPU (dist.strategy picks ddp or fsdp; micro_batch_size and grad_accum "
                   "are per GPU, so the effective batch is N times larger). Ignored when already launched by "
                   "torchrun or accelerate launch")
    p.epilog = _keys_epilog()


def run(a) -> int:
    from qlorafit.core import config as C
    from qlorafit.errors import UserError

    overrides = C.parse_overrides(a.overrides) | ({"output_dir": a.output_dir} if a.output_dir else {})
    cfg = C.load(a.config, overrides)
    if a.print_config:
        sys.stdout.write(C.to_yaml(cfg, header="qlorafit train: resolved configuration"))
        return 0
    if a.resume and a.overwrite:
        raise UserError("--resume and --overwrite contradict each other: pick one")
    if a.allow_changes and not a.resume:
        raise UserError("--allow-changes only applies with --resume")
    from qlorafit.runtime.dist import launched_world_size
    if a.nproc is not None and launched_world_size() == 1:
        return launch(a)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from qlorafit.core.sizes import parse_bytes
    from qlorafit.runtime.stop import Stopped
    from qlorafit.runtime.train import train

    budget = parse_bytes(a.budget, "--budget") if a.budget else None
    try:
        summary = train(cfg, resume=a.resume, overwrite=a.overwrite, plan=a.plan == "auto", budget_bytes=budget,
                        allow_changes=a.allow_changes)
    except Stopped as e:
        print(f"qlorafit train: stopped after step {e.step} on {signal.Signals(e.signum).name}; checkpoint {e.checkpoint}.\n"
              f"resume with: {shlex.join(['qlorafit', 'train', *_same_run_args(a), '--resume'])}", file=sys.stderr)
        return e.exit_code
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports for all
    print(summary_line(summary))
    return 0


def summary_line(s: dict) -> str:
    """What this invocation did, and where the run stands: after a resume the two differ."""
    if s.get("finished"):
        return (f"the run already finished at step {s['steps']}; nothing to do (adapter in {s['final']}). To train "
                f"further, raise train.max_steps or train.epochs and --resume again.")
    start, end = s["start_step"], s["steps"]
    done = end - start
    if done == 0:
        return f"no step left to train (the run is at step {end}); adapter in {s['final']}"
    steps = f"{done} steps" if not start else f"{done} steps (steps {start + 1}-{end}; {end} in the whole run)"
    return (f"trained {steps} in {s['seconds']:.0f}s: loss {s['first_loss']:.4f} (step {start + 1}) -> "
            f"{s['last_loss']:.4f} (step {end}); adapter in {s['final']}")


def _same_run_args(a) -> list[str]:
    """The arguments that name this run again: the config, its overrides, --output-dir, --plan and --budget."""
    args = [a.config] if a.config else []
    for kv in a.overrides:
        args += ["--set", kv]
    for flag, value in (("--output-dir", a.output_dir), ("--plan", a.plan), ("--budget", a.budget)):
        if value:
            args += [flag, value]
    return args


def launch(a) -> int:
    """`--nproc N`: run this same command under torchrun (single node, a free rendezvous port), wait for it."""
    import subprocess

    from qlorafit.errors import UserError

    if a.nproc < 1:
        raise UserError(f"--nproc {a.nproc}: give the number of GPUs to train on (1 or more)")
    switches = (("--resume", a.resume), ("--overwrite", a.overwrite), ("--allow-changes", a.allow_changes))
    args = _same_run_args(a) + [flag for flag, on in switches if on]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={a.nproc}",
           "-m", "qlorafit", "train", *args]
    print("launching: " + " ".join(cmd[2:]), file=sys.stderr)
    return subprocess.run(cmd).returncode
