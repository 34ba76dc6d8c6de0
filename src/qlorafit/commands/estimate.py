"""Predict the peak GPU memory of one QLoRA training configuration, broken down by component, from the model's
config.json alone (no GPU, no download, no torch).

examples:
  qlorafit estimate llama-3.1-8b --gpu rtx4090 --seq 2048 --batch 1
  qlorafit estimate ./my-model-dir --budget 24GiB --targets all-linear --rank 64 --json
  qlorafit estimate llama-3.1-8b --stack hf --loss standard   # what the usual Trainer + PEFT recipe needs
  qlorafit estimate --table                                   # the tutorials' claims, checked for 7B-70B
"""

import argparse
import json
import sys

from qlorafit.core import catalog
from qlorafit.core.estimate import Setup, estimate
from qlorafit.core.estimate_view import table_text, to_json
from qlorafit.core.setup import KNOBS, choices
from qlorafit.core.sizes import parse_bytes
from qlorafit.errors import UserError


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_knob_arguments(group, fields, defaults: Setup | None = None) -> None:
    """One flag per Setup field, as declared in its metadata (qlorafit.core.setup): name, choices, help, default."""
    d = defaults or Setup()
    for f in fields:
        flags, meta, default = f.metadata["flag"], f.metadata, getattr(d, f.name)
        kw = {"dest": f.name, "default": default, "help": meta["help"] + " (default %(default)s)"}
        if f.type in (bool, "bool", bool | None, "bool | None"):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kw.update(type=_comma_list, default=",".join(default), metavar="A,B")
        else:
            kw.update(type=type(default), choices=choices(f), metavar=None if choices(f) else flags[0][2:].upper())
        group.add_argument(*flags, **kw)


def add_setup_arguments(p) -> None:
    """The flags that describe one training configuration: every Setup field."""
    add_knob_arguments(p.add_argument_group("configuration"), KNOBS)


def setup_from_args(a) -> Setup:
    return Setup(**{f.name: getattr(a, f.name) for f in KNOBS if hasattr(a, f.name)})


def budget_from_args(a) -> tuple[int | None, str]:
    """--budget wins over --gpu; neither gives (None, '')."""
    if getattr(a, "budget", None):
        return parse_bytes(a.budget, "--budget"), a.budget
    if getattr(a, "gpu", None):
        g = catalog.get_gpu(a.gpu)
        return g.memory_bytes, g.name
    return None, ""


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", help="catalogue name (see --list), a directory with config.json, or a cached hub id")
    p.add_argument("--gpu", help="GPU from the catalogue (t4, rtx4090, a100-80gb, h100, ...)")
    p.add_argument("--budget", help="a memory budget instead of a GPU, e.g. 24GiB")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--list", action="store_true", help="list the catalogue's models and GPUs")
    p.add_argument("--table", action="store_true",
                   help="the tutorials' claims checked: 7B, 8B, 13B, 70B at a few batches and lengths on common cards")
    add_setup_arguments(p)


def run(a) -> int:
    if a.list:
        print("models: " + ", ".join(catalog.model_names()))
        print("gpus:   " + ", ".join(catalog.gpu_names()))
        return 0
    if a.table:
        from qlorafit.core.claims_table import claims_table
        print(claims_table(setup_from_args(a), as_json=a.json))
        return 0
    if not a.model:
        raise UserError("name a model (e.g. `qlorafit estimate llama-3.1-8b --gpu rtx4090`), or use --list / --table")
    shape = catalog.resolve_model(a.model)
    budget, bname = budget_from_args(a)
    est = estimate(shape, setup_from_args(a))
    if a.json:
        json.dump(to_json(est, budget, bname), sys.stdout, indent=2)
        print()
    else:
        print(table_text(est, budget, bname))
    return 0
