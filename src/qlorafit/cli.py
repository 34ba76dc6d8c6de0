"""`qlorafit` command line: one subcommand per job. Each lives in qlorafit/commands/<name>.py with two functions,
`add_arguments(parser)` and `run(args) -> int`, and imports torch only inside `run`, so `--help`, `estimate`, `plan`
and `doctor` start fast and work without a GPU."""

import argparse
import importlib
import os
import sys

from qlorafit import __version__
from qlorafit.errors import UserError

# (name, one-line help). Order is the order of --help.
COMMANDS = (
    ("estimate", "predict the peak GPU memory of a QLoRA run, component by component, before you run it"),
    ("plan", "pick the fastest configuration that fits your GPU, and write it as a train YAML"),
    ("train", "QLoRA fine-tune: NF4 + LoRA + checkpointing + accumulation, recovering from OOM in place"),
    ("demo", "train a tiny Llama on CPU in under a minute, offline, and watch the loss fall"),
    ("doctor", "explain a CUDA OOM from its error text, log, script or run directory, with ranked fixes"),
    ("report", "an HTML page with plots of where a run's memory went"),
    ("generate", "answer a prompt with a trained adapter on its 4-bit base, streaming tokens"),
    ("chat", "talk with a trained adapter in the terminal, through the model's chat template"),
    ("merge", "merge a LoRA adapter into a 16-bit copy of the base model, layer by layer"),
    ("push", "upload a run's adapter to the Hugging Face Hub with a model card of what it used and measured"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qlorafit",
        description="QLoRA fine-tuning that does not die of CUDA out of memory. Start with `qlorafit demo` (offline, "
        "CPU) or `qlorafit estimate llama-3.1-8b --gpu rtx4090`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qlorafit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in COMMANDS:
        mod = importlib.import_module(f"qlorafit.commands.{name}")
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def quiet_known_warnings() -> None:
    """Drop two library messages that read as errors and are not: bitsandbytes' note that an optional CPU kernel
    package is absent (it falls back to its own kernel) and transformers' FutureWarning about a renamed property.
    Every other warning still shows."""
    import logging
    import warnings

    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_not_the_cpu_kernel_note)  # added once
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _not_the_cpu_kernel_note(record) -> bool:
    return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


def main(argv: list[str] | None = None) -> int:
    quiet_known_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"qlorafit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qlorafit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
