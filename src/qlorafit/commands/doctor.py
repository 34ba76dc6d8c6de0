"""Explain a CUDA out-of-memory error and prescribe ranked fixes, each with the GiB it saves (from the estimator).

Give any combination of: the error text (a file, or piped on stdin), your training script (read with `ast`, never
run), a qlorafit YAML config (or another trainer's YAML: axolotl, LLaMA-Factory), a qlorafit run directory. The
doctor parses the numbers in the OOM message, finds the phase (load, first step, mid-training, eval, save/merge),
names the primary cause, lists every cause that applies, flags known script mistakes, and writes the corrected
settings: a patch of your script's arguments, or a qlorafit YAML.

examples:
  python train.py 2>&1 | tail -60 | qlorafit doctor --script train.py
  qlorafit doctor --error oom.txt --model llama-3.1-8b --gpu rtx4090
  qlorafit doctor --script train.py --gpu t4            # before running: does it fit, what is wrong
  qlorafit doctor --config run.yaml --gpu rtx3090 --json
  qlorafit doctor --run runs/qlorafit
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
    p.add_argument("--error", metavar="FILE", help="the error text or log: a file, or - for stdin (stdin is read "
                   "anyway when piped)")
    p.add_argument("--script", metavar="train.py", help="your training script; analysed statically, never executed")
    p.add_argument("--config", metavar="run.yaml", help="a qlorafit YAML config (another trainer's YAML works too)")
    p.add_argument("--run", metavar="RUN_DIR", help="a qlorafit run directory (config.yaml, metrics.jsonl, events.jsonl)")
    p.add_argument("--model", help="model for the estimate: catalogue name, directory with config.json, or cached hub id")
    p.add_argument("--gpu", help="GPU from the catalogue (t4, rtx4090, a100-80gb, ...); else read from the error")
    p.add_argument("--json", action="store_true", help="print JSON instead of the report")


def _read_error(a) -> str:
    """The error text or log, streamed: a long log is cut to the lines the doctor reads (doctor/logtext.py)."""
    from qlorafit.doctor.logtext import read_log

    if a.error and a.error != "-":
        path = Path(a.error)
        if not path.is_file():
            raise UserError(f"--error {a.error}: no such file")
        with path.open(encoding="utf-8", errors="replace") as f:
            return read_log(f)
    if a.error == "-" or _stdin_is_piped():
        return read_log(sys.stdin)
    return ""


def _stdin_is_piped() -> bool:
    """A pipe or a redirected file: read it. A terminal, /dev/null or an inherited descriptor: do not wait on it."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return isinstance(sys.stdin, io.StringIO)  # an in-memory stream handed in by a caller
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _read_config(path: str):
    """(qlorafit Config, None) for a qlorafit YAML, (None, settings) for another trainer's YAML."""
    from qlorafit.core import config as qconfig

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"--config {path}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"--config {path}: expected a mapping of settings")
    if any(isinstance(raw.get(k), dict) for k in ("model", "lora", "data", "train", "guard")):
        return qconfig.load(path), {}
    return None, raw


def run(a) -> int:
    from qlorafit.doctor import Inputs, diagnose
    from qlorafit.doctor.report import text_report, to_json
    from qlorafit.doctor.rundir import read_run
    from qlorafit.doctor.script import read_script

    inputs = Inputs(error_text=_read_error(a), model=a.model, gpu=a.gpu)
    if a.script:
        inputs.script = read_script(a.script)
    if a.config:
        inputs.config, inputs.settings = _read_config(a.config)
    if a.run:
        inputs.run = read_run(a.run)
        if inputs.config is None:
            inputs.config = inputs.run.config
    if not (inputs.error_text.strip() or inputs.script or inputs.config or inputs.settings or inputs.run):
        raise UserError("nothing to examine: pipe or pass the error (--error FILE), or give --script, --config or --run")
    d = diagnose(inputs)
    if a.json:
        json.dump(to_json(d), sys.stdout, indent=2, default=str)
        print()
    else:
        print(text_report(d))
    return 0
