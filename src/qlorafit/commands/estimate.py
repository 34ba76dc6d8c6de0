"""Predict the peak GPU memory of one QLoRA training configuration, broken down by component, from the model's
config.json alone (no GPU, no download, no torch).

examples:
  qlorafit estimate llama-3.1-8b --gpu rtx4090 --seq 2048 --batch 1
  qlorafit estimate ./my-model-dir --budget 24GiB --targets all-linear --rank 64 --json
  qlorafit estimate llama-3.1-8b --stack hf --loss standard   # what the usual Trainer + PEFT recipe needs
  qlorafit estimate --table                                   # the tutorials' claims, checked for 7B-70B
"""

import json
import sys

from qlorafit.core import catalog
from qlorafit.errors import UserError
from qlorafit.core.estimate import ATTENTION, CHECKPOINTING, DTYPES, LOSSES, OPTIMIZERS, QUANTS, STACKS, Setup, estimate
from qlorafit.core.estimate_view import table_text, to_json
from qlorafit.core.sizes import parse_bytes


def add_setup_arguments(p) -> None:
    """The flags that describe one training configuration (shared with `plan` and `doctor`)."""
    d = Setup()
    g = p.add_argument_group("configuration")
    g.add_argument("--quant", choices=QUANTS, default=d.quant, help="base weight format (default %(default)s)")
    g.add_argument("--no-double-quant", dest="double_quant", action="store_false", help="turn off double quant")
    g.add_argument("--compute-dtype", choices=DTYPES, default=d.compute_dtype, help="default %(default)s")
    g.add_argument("--rank", "-r", type=int, default=d.lora_r, help="LoRA rank (default %(default)s)")
    g.add_argument("--targets", default=",".join(d.lora_targets),
                   help="LoRA targets: comma list (q_proj,v_proj) or all-linear (default %(default)s)")
    g.add_argument("--dropout", type=float, default=d.lora_dropout, help="LoRA dropout (default %(default)s)")
    g.add_argument("--batch", "-b", type=int, default=d.batch_size, help="micro-batch size (default %(default)s)")
    g.add_argument("--seq", "-s", type=int, default=d.seq_len, help="sequence length in tokens (default %(default)s)")
    g.add_argument("--packing", action="store_true", help="samples packed into full rows")
    g.add_argument("--checkpointing", choices=CHECKPOINTING, default=d.grad_checkpointing,
                   help="gradient checkpointing (default %(default)s)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="default %(default)s")
    g.add_argument("--attn", choices=ATTENTION, default=d.attn_impl, help="attention implementation (default %(default)s)")
    g.add_argument("--loss", choices=LOSSES, default=d.loss_impl, help="loss implementation (default %(default)s)")
    g.add_argument("--stack", choices=STACKS, default=d.stack,
                   help="qlorafit's trainer, or hf: transformers Trainer + PEFT (default %(default)s)")
    g.add_argument("--offload-embedding", action="store_true", help="keep the input embedding in host RAM")
    g.add_argument("--offload-lm-head", action="store_true",
                   help="keep lm_head in host RAM, streamed through the GPU by the loss")
    g.add_argument("--mlp-tile", type=int, default=0, metavar="TOKENS",
                   help="run the MLP on slices of TOKENS positions (long contexts; 0 = off)")


def setup_from_args(a) -> Setup:
    return Setup(
        quant=a.quant, double_quant=a.double_quant, compute_dtype=a.compute_dtype, lora_r=a.rank,
        lora_targets=tuple(t.strip() for t in a.targets.split(",") if t.strip()), lora_dropout=a.dropout,
        batch_size=a.batch, seq_len=a.seq, packing=a.packing, grad_checkpointing=a.checkpointing,
        optimizer=a.optimizer, attn_impl=a.attn, loss_impl=a.loss, stack=a.stack,
        offload_embedding=a.offload_embedding, offload_lm_head=getattr(a, "offload_lm_head", False),
        mlp_tile_tokens=getattr(a, "mlp_tile", 0),
    )


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
