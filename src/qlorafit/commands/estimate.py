"""Predict the peak GPU memory of one QLoRA training configuration, broken down by component, from the model's
config.json alone (no GPU, no download, no torch).

examples:
  qlorafit estimate llama-3.1-8b --gpu rtx4090 --seq 2048 --batch 1
  qlorafit estimate ./my-model-dir --budget 24GiB --targets all-linear --rank 64 --json
  qlorafit estimate llama-3.1-8b --stack hf --loss standard   # what the usual Trainer + PEFT recipe needs
  qlorafit estimate --table                                   # the tutorials' claims, checked for 7B-70B
  qlorafit estimate llama-3.1-70b --gpus 2 --strategy fsdp --budget 24GiB   # per GPU, sharded vs replicated
  qlorafit estimate Qwen/Qwen3-8B --gpu rtx4090               # a Hub id: only its config.json is fetched
  qlorafit estimate llama-3.1-8b --measure-context            # on a GPU machine: use this card's CUDA context

The CUDA context (memory a process holds outside PyTorch's allocator: context, cuBLAS, loaded kernels) is 767 MiB
in the estimate: measured on an H200 with CUDA 13. Other cards and CUDA versions differ by a few hundred MiB;
--measure-context runs a QLoRA step's kernels on this machine's GPU (torch needed) and uses what it reads, and
--context-mib N uses a figure you measured before.
"""

import argparse
import json
import sys

from qlorafit.core import catalog
from qlorafit.core.estimate import Setup, estimate
from qlorafit.core import estimate_view
from qlorafit.core.setup import KNOBS, STACK_DEFAULTS, choices, with_stack_defaults
from qlorafit.core.sizes import parse_bytes
from qlorafit.errors import UserError


def add_knob_arguments(group, fields, defaults: Setup | None = None) -> None:
    """One flag per Setup field, as declared in its metadata (qlorafit.core.setup): name, choices, help, default."""
    for f in fields:  # the declared defaults ('auto' checkpointing resolves once batch and length are known)
        flags, meta = f.metadata["flag"], f.metadata
        default = f.default if defaults is None else getattr(defaults, f.name)
        kw = {"dest": f.name, "default": default, "help": meta["help"] + " (default %(default)s)"}
        if any(f.name in d for d in STACK_DEFAULTS.values()):  # the stack decides when the user does not
            by_stack = ", ".join(f"{d[f.name]} with --stack {k}" for k, d in STACK_DEFAULTS.items() if f.name in d)
            kw["help"] = f"{meta['help']} (default {default}; {by_stack})"
            kw["default"] = None
        if f.type in (bool, "bool", bool | None, "bool | None"):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kw.update(type=lambda text: tuple(x.strip() for x in text.split(",") if x.strip()),
                      default=",".join(default), metavar="A,B")
        else:
            kw.update(type=type(default), choices=choices(f), metavar=None if choices(f) else flags[0][2:].upper())
        group.add_argument(*flags, **kw)


def add_setup_arguments(p) -> None:
    """The flags that describe one training configuration: every Setup field."""
    add_knob_arguments(p.add_argument_group("configuration"), KNOBS)


def setup_from_args(a) -> Setup:
    return Setup(**with_stack_defaults({f.name: getattr(a, f.name) for f in KNOBS if hasattr(a, f.name)}))


def budget_from_args(a) -> tuple[int | None, str]:
    """--budget wins over --gpu; neither gives (None, '')."""
    if getattr(a, "budget", None):
        return parse_bytes(a.budget, "--budget"), a.budget
    if getattr(a, "gpu", None):
        g = catalog.get_gpu(a.gpu)
        return g.memory_bytes, g.name
    return None, ""


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", help="catalogue name (see --list), a directory with config.json, or a Hub id "
                   "(org/name: only its config.json is fetched, once)")
    p.add_argument("--gpu", help="GPU from the catalogue (t4, rtx4090, a100-80gb, h100, ...)")
    p.add_argument("--budget", help="a memory budget instead of a GPU, e.g. 24GiB")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ctx = p.add_mutually_exclusive_group()
    ctx.add_argument("--measure-context", action="store_true",
                     help="measure this machine's CUDA context on its GPU (idle, torch needed) and use it")
    ctx.add_argument("--context-mib", type=int, metavar="MIB", help="use this CUDA context instead of the H200's 767 MiB")
    p.add_argument("--list", action="store_true", help="list the catalogue's models and GPUs")
    p.add_argument("--table", action="store_true",
                   help="the tutorials' claims checked: 7B, 8B, 13B, 70B at a few batches and lengths on common cards")
    d = p.add_argument_group("several GPUs (qlorafit train --nproc N)")
    d.add_argument("--gpus", type=int, default=1, help="GPUs the run spans; --batch is per GPU (default %(default)s)")
    d.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp",
                   help="ddp: the whole model on each GPU; fsdp: weights, LoRA and optimizer state sharded "
                        "(default %(default)s)")
    d.add_argument("--cpu-offload", action="store_true", help="fsdp: the shards in host RAM (dist.cpu_offload)")
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
    if a.gpus > 1 or a.strategy != "ddp" or a.cpu_offload:  # per GPU: the view of core.dist_estimate
        from qlorafit.core import dist_estimate as view
        est = view.estimate_ranks(shape, setup_from_args(a), a.gpus, a.strategy, a.cpu_offload, context_from_args(a))
    else:
        view, est = estimate_view, estimate(shape, setup_from_args(a), context_from_args(a))
    print(json.dumps(view.to_json(est, budget, bname), indent=2) if a.json else view.table_text(est, budget, bname))
    return 0


def context_from_args(a) -> int | None:
    """--context-mib, or --measure-context read on this machine's GPU (printed to stderr), or None (the H200's)."""
    if getattr(a, "context_mib", None) is not None:
        if a.context_mib < 0:
            raise UserError(f"--context-mib: must be 0 or more, got {a.context_mib}")
        return a.context_mib * 1024**2
    if not getattr(a, "measure_context", False):
        return None
    from qlorafit.runtime.context import measure_context_bytes  # torch: only here

    m = measure_context_bytes()
    print(f"CUDA context on {m['gpu']} (CUDA {m['cuda']}, torch {m['torch']}): {m['context_bytes'] / 1024**2:.0f} MiB "
          f"(H200 reference: 767 MiB); reuse it with --context-mib {round(m['context_bytes'] / 1024**2)}",
          file=sys.stderr)
    return m["context_bytes"]
