"""Explain a CUDA out-of-memory error and prescribe ranked fixes, each with the GiB it saves (from the estimator).

Give any combination of: the error text or log (a file, or piped on stdin: plain, Colab or rich tracebacks, or
just your description), your training script (read with `ast`, never run), configs (a qlorafit YAML; LLaMA-Factory
or axolotl YAML, an accelerate config, a DeepSpeed JSON, a file of --flags), a qlorafit run directory. The doctor
parses the numbers in the OOM message, finds the phase from evidence only (load, tokenization, training, first or
later step, eval, generation, save, merge; 'unknown' when nothing says), names the primary cause (ranked by how it is
known: traceback, then your script or config, then the numbers), says in one line how sure it is, and writes ranked
fixes with the GiB each saves (a range when your settings had to be assumed) and the corrected settings.

examples:
  python train.py 2>&1 | tail -60 | qlorafit doctor --script train.py
  qlorafit doctor --error oom.txt --model llama-3.1-8b --gpu rtx4090
  qlorafit doctor --script train.py --gpu t4            # before running: does it fit, what is wrong
  qlorafit doctor --error oom.txt --config ds_zero2.json --config accelerate.yaml   # multi-GPU launch
  qlorafit doctor --config run.yaml --gpu rtx3090 --json
  qlorafit doctor --run runs/qlorafit
  qlorafit doctor oom.txt --method full --gpus 4   # answer the questions a first report asked

Where the report leaves out a setup fact that would change the cause (full fine-tune or LoRA, how many GPUs, which
model, the weights' precision), the doctor says so first: each question with the cause each answer points to. Answer
with --method, --gpus, --model or --dtype and run it again.
"""

import io
import json
import os
import stat
import sys
from pathlib import Path

import yaml

from qlorafit.errors import UserError


def add_arguments(p) -> None:
    p.add_argument("error_file", nargs="?", metavar="ERROR_FILE", help="the error text or log (the same as --error)")
    p.add_argument("--error", metavar="FILE", help="the error text or log: a file, or - for stdin (stdin is read "
                   "anyway when piped)")
    p.add_argument("--script", metavar="train.py", help="your training script; analysed statically, never executed")
    p.add_argument("--config", metavar="FILE", action="append", help="a qlorafit YAML config, or another trainer's "
                   "config: LLaMA-Factory or axolotl YAML, an accelerate config, a DeepSpeed JSON, a file of --flags "
                   "(repeat --config for several: the launch config and the training config)")
    p.add_argument("--run", metavar="RUN_DIR", help="a qlorafit run directory (config.yaml, metrics.jsonl, events.jsonl)")
    p.add_argument("--model", help="model for the estimate: catalogue name, directory with config.json, or cached hub id")
    p.add_argument("--gpu", help="GPU from the catalogue (t4, rtx4090, a100-80gb, ...); else read from the error")
    p.add_argument("--method", help="what the run does, when the report does not say: full (every weight "
                   "trained), lora (LoRA adapters; the base's precision is --dtype), qlora (LoRA on a 4-bit base) or inference")
    p.add_argument("--gpus", metavar="N", help="how many GPUs the run uses, when the report does not say")
    p.add_argument("--dtype", help="how the base weights are loaded, when the report does not say: fp32, 16bit, "
                   "8bit or 4bit")
    p.add_argument("--json", action="store_true", help="print JSON instead of the report")
    p.add_argument("--rules-only", action="store_true",
                   help="only causes the rules find evidence for: where they can only guess, the doctor otherwise asks "
                        "a word model learned from labelled public OOM threads, and says so")


def _read_error(a) -> str:
    """The error text or log, streamed: a long log is cut to the lines the doctor reads (doctor/logtext.py)."""
    from qlorafit.doctor.logtext import read_log

    if a.error and a.error != "-":
        path = Path(a.error)
        if not path.is_file():
            raise UserError(f"--error {a.error}: no such file")
        with path.open(encoding="utf-8", errors="replace") as f:
            return read_log(f)
    return read_log(sys.stdin) if a.error == "-" or _stdin_is_piped() else ""


def _stdin_is_piped() -> bool:
    """A pipe or a redirected file: read it. A terminal, /dev/null or an inherited descriptor: do not wait on it."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return isinstance(sys.stdin, io.StringIO)  # an in-memory stream handed in by a caller
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _read_config(path: str):
    """(qlorafit Config, {}) for a qlorafit YAML; (None, settings) for another trainer's config (YAML, JSON, --flags)."""
    from qlorafit.core import config as qconfig
    from qlorafit.doctor.foreign import read_settings

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {path}: no such file")
    text = p.read_text(errors="replace")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        if p.suffix in (".yaml", ".yml"):
            raise UserError(f"--config {path}: not valid YAML ({getattr(e, 'problem', e)})") from None
        raw = None
    if isinstance(raw, dict) and any(isinstance(raw.get(k), dict) for k in ("model", "lora", "data", "train", "guard")):
        return qconfig.load(path), {}
    settings = read_settings(text)
    if not settings:
        raise UserError(f"--config {path}: no settings found (expected a trainer's YAML/JSON config or --flags)")
    return None, settings


def run(a) -> int:
    from qlorafit.doctor import diagnose
    from qlorafit.doctor.foreign import read_posted
    from qlorafit.doctor.report import text_report, to_json
    from qlorafit.doctor.rundir import read_run
    from qlorafit.doctor.script import read_script

    from qlorafit.doctor.ask import questions, with_facts
    from qlorafit.doctor.facts import BY_ID, check

    if a.error_file and a.error and a.error_file != a.error:
        raise UserError(f"two error files given ({a.error_file} and --error {a.error}): give one")
    a.error = a.error or a.error_file
    answers = {k: check(BY_ID[k], getattr(a, k)) for k in ("method", "gpus", "dtype") if getattr(a, k) is not None}
    inputs = read_posted(_read_error(a))  # settings stated in the pasted text (a command line) count too
    inputs.model, inputs.gpu = a.model, a.gpu
    inputs.thread_prior = not a.rules_only
    if a.script:
        inputs.script = read_script(a.script)
    for path in a.config or []:
        cfg, settings = _read_config(path)
        if cfg is not None:
            inputs.config = cfg
        else:
            inputs.settings.update(settings)
            inputs.partial_settings = False
    if a.run:
        inputs.run = read_run(a.run)
        if inputs.config is None:
            inputs.config = inputs.run.config
    if not (inputs.error_text.strip() or inputs.script or inputs.config or inputs.settings or inputs.run):
        raise UserError("nothing to examine: pipe or pass the error (--error FILE), or give --script, --config or --run")
    inputs = with_facts(inputs, answers)  # the answers are read as the report's own words would be
    d = diagnose(inputs)
    d.questions = questions(inputs, d)
    print(json.dumps(to_json(d), indent=2, default=str) if a.json else text_report(d))
    return 0
