"""Pick the fastest configuration that fits the GPU at the dataset's LONGEST sample, keeping the effective batch, and
write it as a YAML that `qlorafit train plan.yaml` runs as is.

Searched: micro-batch x grad_accum, checkpointing (off/on/offload), optimizer, loss (standard/chunked/fused),
packing, embedding and lm_head offload. Fixed (your choice): quant, rank, targets, dropout, attention, max_seq_length.

examples:
  qlorafit plan llama-3.1-8b --gpu rtx4090 --max-seq-length 2048 --batch-size 32 --out plan.yaml
  qlorafit plan ./my-model --budget 16GiB --lengths 4096,1800,420     # max, p99, mean of your data's token lengths
  qlorafit plan llama-3.1-8b --gpu a10 --data train.jsonl            # lengths measured with the model's tokenizer
  qlorafit plan llama-3.1-8b                                         # free memory of the local GPU (needs torch)
  qlorafit plan llama-3.1-70b --gpu rtx4090 --gpus 2 --out plan.yaml # ddp if one GPU fits it, else fsdp (+ offload)
"""

import dataclasses
import importlib.util
import json
from pathlib import Path

from qlorafit.core import catalog
from qlorafit.commands.estimate import add_knob_arguments, budget_from_args, context_from_args
from qlorafit.core.config import Config, to_yaml
from qlorafit.atomic import write_atomic
from qlorafit.errors import UserError
from qlorafit.core import options as O
from qlorafit.core.estimate import Setup
from qlorafit.core.plan import (LOSSES_ALL, Candidate, Lengths, PlanRequest, PlanResult, apply_to_config, distinct,
                           lengths_of, losses_available, nothing_fits_message, plan, plan_ranks)
from qlorafit.core.setup import apply_setup, knobs, resolve_dtype
from qlorafit.core.sizes import GIB, fmt_gib
from qlorafit.core.throughput import load_calibration


def add_arguments(p) -> None:
    p.add_argument("model", help="catalogue name (qlorafit estimate --list), a directory with config.json, or a Hub id "
                   "(only its config.json is fetched)")
    b = p.add_argument_group("budget")
    b.add_argument("--gpu", help="GPU from the catalogue (its memory is the budget, its speed ranks the plans)")
    b.add_argument("--budget", help="a memory budget, e.g. 24GiB (wins over --gpu's memory; --gpu still gives the speed)")
    b.add_argument("--margin", type=float, default=0.05, help="fraction of the budget kept free (default %(default)s; "
                   "never below the estimator's 4%% out-of-sample under-prediction)")
    b.add_argument("--context-mib", type=int, metavar="MIB",
                   help="this machine's CUDA context (`qlorafit estimate --measure-context`) instead of the H200's 767")
    b.add_argument("--calibration", metavar="FILE", help="the speed model's calibration JSON (default: the H200 fit "
                   "shipped with qlorafit, or $QLORAFIT_THROUGHPUT_CALIBRATION)")
    w = p.add_argument_group("workload")
    w.add_argument("--batch-size", type=int, default=16,
                   help="effective batch: sequences per optimizer step, kept fixed (default %(default)s)")
    w.add_argument("--tokens-per-step", type=int, default=0, help="effective batch in tokens instead of sequences")
    w.add_argument("--max-seq-length", "--seq", type=int, default=512, help="truncate samples to this (default %(default)s)")
    w.add_argument("--lengths", help="token lengths of your data as MAX,P99,MEAN (the plan is sized for MAX)")
    w.add_argument("--data", help="training data file: token lengths measured with the model's tokenizer")
    s = p.add_argument_group("fixed choices (not searched)")
    fixed = knobs("fixed")
    add_knob_arguments(s, [f for f in fixed if f.name != "compute_dtype"])
    s.add_argument("--compute-dtype", dest="compute_dtype", choices=("auto",) + O.names(O.DTYPES), default="auto",
                   help="auto: bf16 where the GPU has it, else fp16 (default %(default)s)")
    x = p.add_argument_group("search")
    x.add_argument("--packing", choices=("auto", "on", "off"), default="auto",
                   help="auto: try both when lengths are known (default %(default)s)")
    x.add_argument("--losses", default="auto",
                   help="loss implementations to try, comma list; auto: fused only if liger-kernel is installed here")
    x.add_argument("--compile", choices=("off", "on", "auto"), default="on",
                   help="train.compile (torch.compile each decoder layer, CUDA): auto lets the plan decide; it is "
                        "predicted faster wherever the GPU waits on the host (small micro-batches) (default %(default)s)")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs of this machine to train on (qlorafit train --nproc N): ddp when the run fits one GPU, "
                        "else fsdp, else fsdp with dist.cpu_offload; --batch-size stays the effective batch over all "
                        "GPUs (default %(default)s)")
    o = p.add_argument_group("output")
    o.add_argument("--out", "-o", help="write the chosen configuration as a train YAML here")
    o.add_argument("--output-dir", default=Config().output_dir, help="output_dir written into the YAML")
    o.add_argument("--top", type=int, default=8, help="runner-ups to show (default %(default)s)")
    o.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(a) -> int:
    _check_args(a)
    shape = catalog.resolve_model(a.model)
    budget, budget_name, gpu = _budget(a)
    dtype = resolve_dtype(a.compute_dtype, None if gpu is None else gpu.bf16)
    base = Setup(**{f.name: getattr(a, f.name) for f in knobs("fixed")} | {"compute_dtype": dtype})
    req = PlanRequest(
        budget_bytes=budget, max_seq_length=a.max_seq_length, lengths=_lengths(a), effective_batch=a.batch_size,
        effective_tokens=a.tokens_per_step, safety_margin=a.margin, base=base, gpu=gpu, losses=_losses(a.losses),
        context_bytes=context_from_args(a),
        packing={"auto": None, "on": (True,), "off": (False,)}[a.packing],
        compile={"auto": (False, True), "on": (True,), "off": (False,)}[a.compile],
        calibration=load_calibration(gpu.name if gpu else None, a.calibration), top=a.top,
    )
    if a.gpus > 1:
        return _run_gpus(a, shape, req, budget_name)
    r = plan(shape, req)
    if r.chosen is None:
        if a.json:
            print(json.dumps(result_json(r, budget_name), indent=2))
        raise UserError(nothing_fits_message(r))
    cfg = build_config(r.chosen, a)
    if a.out:
        c = r.chosen
        head = (f"written by `qlorafit plan` for {shape.name} on {budget_name or fmt_gib(budget)}\n"
                f"predicted peak {fmt_gib(c.peak_bytes)} at the longest sample ({r.size_len} tokens) of "
                f"{fmt_gib(r.usable_bytes)} usable; predicted {c.tokens_per_s:,.0f} tokens/s on {r.gpu.name}")
        write_atomic(Path(a.out), to_yaml(cfg, header=head))
    if a.json:
        print(json.dumps(result_json(r, budget_name, a.out), indent=2))
    else:
        print(result_text(r, shape, budget_name, a.out))
        if a.out and not a.data:
            print(f"note: {a.out} has no data.path (plan had no --data): set it there, or add "
                  f"--set data.path=train.jsonl to `qlorafit train`")
    return 0


def _run_gpus(a, shape, req: PlanRequest, budget_name: str) -> int:
    """--gpus N: plan one GPU's share of the effective batch. Fits: ddp (each GPU trains it alone, gradients summed
    once per step). Does not: fsdp at micro-batch 1 with the smallest configuration's checkpointing and loss, then
    fsdp with the shards in host RAM."""
    from qlorafit.core import dist_estimate as DE

    n = a.gpus
    share = dataclasses.replace(req, effective_batch=-(-req.effective_batch // n),
                                effective_tokens=-(-req.effective_tokens // n))
    try:
        r, cand, ranks = plan_ranks(shape, share, n)
    except UserError as e:
        raise UserError(str(e).replace(f"on {n} GPUs", f"on {n} x {budget_name}")) from None
    cfg = build_config(cand, a)
    cfg.dist.strategy, cfg.dist.cpu_offload = ranks.strategy, ranks.cpu_offload
    head = (f"written by `qlorafit plan --gpus {n}` for {shape.name} on {n} x {budget_name}: {ranks.strategy}"
            f"{' + cpu_offload' if ranks.cpu_offload else ''}, predicted peak {fmt_gib(ranks.peak_bytes)} per GPU\n"
            f"run it with: qlorafit train {a.out or 'plan.yaml'} --nproc {n}")
    if a.out:
        write_atomic(Path(a.out), to_yaml(cfg, header=head))
    if a.json:
        print(json.dumps({**DE.to_json(ranks, r.usable_bytes, budget_name), "micro_batch_size": cand.setup.batch_size,
                          "grad_accum": cand.grad_accum, "yaml": a.out}, indent=2))
        return 0
    why = ("the run fits one GPU: each GPU trains its share of the batch with the whole model (no per-layer "
           "collectives)" if ranks.strategy == "ddp" else
           f"no configuration fits one GPU ({fmt_gib(r.smallest.peak_bytes)} at the smallest): the weights, LoRA and "
           f"optimizer state are sharded over the {n} GPUs" + (", the shards kept in host RAM" if ranks.cpu_offload
                                                                 else ""))
    print(f"plan for {shape.name} on {n} x {budget_name}: {ranks.strategy}"
          f"{' + cpu_offload' if ranks.cpu_offload else ''}, micro_batch_size {cand.setup.batch_size} x grad_accum "
          f"{cand.grad_accum} per GPU, checkpointing {cand.setup.grad_checkpointing}\n  why: {why}\n")
    print(DE.table_text(ranks, r.usable_bytes, budget_name + " usable"))
    print(f"\nwrote {a.out}: run it with `qlorafit train {a.out} --nproc {n}`" if a.out else
          "\nwrite it as a train YAML with --out plan.yaml")
    return 0


def _check_args(a) -> None:
    problems = [f"{flag} must be positive, got {v}" for flag, v in
                (("--batch-size", a.batch_size), ("--max-seq-length", a.max_seq_length), ("--rank", a.lora_r)) if v <= 0]
    problems += [f"{flag} must not be negative, got {v}" for flag, v in
                 (("--tokens-per-step", a.tokens_per_step), ("--top", a.top)) if v < 0]
    problems += [msg for bad, msg in (
        (not 0 <= a.margin < 0.5, f"--margin is a fraction in [0, 0.5), got {a.margin}"),
        (a.lengths and a.data, "give --lengths or --data, not both"),
        (a.gpus < 1, f"--gpus must be 1 or more, got {a.gpus}"),
        (a.calibration and not Path(a.calibration).is_file(), f"--calibration: no such file {a.calibration}")) if bad]
    if problems:
        raise UserError("; ".join(problems))


def _losses(text: str) -> tuple[str, ...]:
    if text == "auto":
        return losses_available(importlib.util.find_spec)
    out = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in out if x not in LOSSES_ALL]
    if bad or not out:
        raise UserError(f"--losses: unknown {bad or '(none given)'}; choose from {', '.join(LOSSES_ALL)}")
    return out


def _budget(a):
    """(budget bytes, its name, the GPU whose speed ranks plans or None)."""
    gpu = catalog.get_gpu(a.gpu) if a.gpu else None
    budget, name = budget_from_args(a)
    if budget is not None:
        return budget, name, gpu
    free, dev_name, total = _detect_cuda()
    return free, f"free memory of {dev_name}", catalog.find_gpu(total, dev_name)


def _detect_cuda() -> tuple[int, str, int]:
    """Free and total memory of the current CUDA device; torch is imported only here."""
    hint = "give --gpu NAME (e.g. rtx4090) or --budget 24GiB"
    try:
        import torch
    except ImportError:
        raise UserError(f"no budget given and torch is not installed to detect a GPU: {hint}") from None
    if not torch.cuda.is_available():
        raise UserError(f"no budget given and no CUDA GPU detected: {hint}")
    free, total = torch.cuda.mem_get_info()
    return int(free), torch.cuda.get_device_name(), int(total)


def _lengths(a) -> Lengths | None:
    if a.lengths:
        parts = a.lengths.split(",")
        try:
            mx, p99, mean = int(parts[0]), int(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            raise UserError(f"--lengths: write MAX,P99,MEAN token counts, e.g. 4096,1800,420; got {a.lengths!r}") from None
        if len(parts) != 3 or not 0 < mean <= mx or not 0 < p99 <= mx:
            raise UserError(f"--lengths: need 0 < MEAN <= MAX and 0 < P99 <= MAX, got {a.lengths!r}")
        return Lengths(min(mx, a.max_seq_length), min(p99, a.max_seq_length), min(mean, a.max_seq_length))
    return _lengths_from_data(a) if a.data else None


def _lengths_from_data(a) -> Lengths:
    """Tokenize the data with the model's tokenizer (qlorafit.runtime.data; transformers imported only here)."""
    try:
        from qlorafit.runtime import data as qdata
        from qlorafit.core.config import DataConfig
    except ImportError as e:
        raise UserError(f"--data: cannot load data here ({e}); give --lengths MAX,P99,MEAN instead") from None
    if a.model == "qlorafit/tiny-llama":
        from qlorafit.demo_assets import demo_tokenizer
        tok = demo_tokenizer()
    else:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(catalog.hub_id_of(a.model) or a.model)  # the tokenizer files only
    st = qdata.load_data(DataConfig(path=a.data, max_seq_length=a.max_seq_length), tok).train.stats
    return lengths_of(st)


def build_config(c: Candidate, a) -> Config:
    """The train config: the planned fields from the candidate, the fixed choices from the flags."""
    cfg = apply_setup(Config(), c.setup, [f.name for f in knobs("fixed") if f.name != "compute_dtype"])
    cfg.output_dir = a.output_dir
    cfg.model.name_or_path = a.model
    cfg.model.compute_dtype = a.compute_dtype  # as asked: auto stays auto
    cfg.lora.alpha = 2 * a.lora_r
    cfg.data.max_seq_length = a.max_seq_length
    cfg.data.path = a.data or ""  # not the demo set's default: `train` stops and asks for it
    return apply_to_config(cfg, c)


# --- showing the result ------------------------------------------------------------------------------------------

def _row(c: Candidate, best: Candidate) -> list[str]:
    s = c.setup
    return [f"{s.batch_size} x {c.grad_accum}", s.grad_checkpointing, s.optimizer, s.loss_impl,
            "on" if s.packing else "off", "on" if s.offload_embedding else "off",
            "on" if s.offload_lm_head else "off", str(s.mlp_tile_tokens or "off"), f"{c.peak_bytes / GIB:.2f}",
            f"{c.tokens_per_s:,.0f}", f"{c.tokens_per_s / best.tokens_per_s:.0%}"]


def runner_ups_text(r: PlanResult) -> str:
    head = ["micro x accum", "checkpointing", "optimizer", "loss", "packing", "emb offload", "head offload",
            "mlp tile", "peak GiB", "tokens/s", "vs best"]
    rows = [head] + [_row(c, r.chosen) for c in distinct(r.ranked)[: r.request.top + 1]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if i >= 8 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def result_text(r: PlanResult, shape, budget_name: str, out: str | None) -> str:
    c = r.chosen
    s = c.setup
    lines = [
        f"plan for {shape.name} on {budget_name}: {len(r.ranked)} of {r.n_candidates} configurations fit",
        "",
        f"chosen: micro_batch_size {s.batch_size} x grad_accum {c.grad_accum}, checkpointing {s.grad_checkpointing}, "
        f"{s.optimizer}, {s.loss_impl} loss, packing {'on' if s.packing else 'off'}, "
        f"offload_embedding {'on' if s.offload_embedding else 'off'}"
        + (", lm_head in host RAM (streamed loss)" if s.offload_lm_head else "")
        + (f", MLP tiled in {s.mlp_tile_tokens}-token slices" if s.mlp_tile_tokens else "")
        + (", CUDA graphs" + (" with liger's fused layers" if s.fused_layers(shape) else "") if s.graphs()
           else ", compiled layers" if s.compile else ""),
        f"        peak {fmt_gib(c.peak_bytes)}, predicted {c.tokens_per_s:,.0f} tokens/s on {r.gpu.name}",
        "",
        "why:",
    ] + [f"  - {x}" for x in r.reasons] + ["", "runner-ups, the best of each shape (first row is the chosen one):", runner_ups_text(r)]
    if r.notes:
        lines += [""] + [f"note: {n}" for n in r.notes]
    if r.request.calibration and "not yet calibrated" in r.request.calibration.source:
        lines.append("note: the speed model is not yet calibrated on a GPU; the ranking is the estimate")
    lines += ["", f"wrote {out}: run it with `qlorafit train {out}`" if out else
              "write it as a train YAML with --out plan.yaml"]
    return "\n".join(lines)


def _cand_json(c: Candidate) -> dict:
    return {"setup": dataclasses.asdict(c.setup), "micro_batch_size": c.setup.batch_size, "grad_accum": c.grad_accum,
            "peak_bytes": c.peak_bytes, "tokens_per_s": round(c.tokens_per_s, 1), "fits": c.fits}


def result_json(r: PlanResult, budget_name: str, out: str | None = None) -> dict:
    return {
        "budget_name": budget_name, "budget_bytes": r.request.budget_bytes, "usable_bytes": r.usable_bytes,
        "safety_margin": r.request.safety_margin, "sized_for_tokens": r.size_len, "speed_gpu": r.gpu.name,
        "candidates": r.n_candidates, "fits": r.chosen is not None,
        "chosen": _cand_json(r.chosen) if r.chosen else None, "reasons": list(r.reasons),
        "runner_ups": [_cand_json(c) for c in distinct(r.ranked)[1: r.request.top + 1]],
        "min_budget_bytes": r.min_budget_bytes,
        "ways_out": [dataclasses.asdict(w) for w in r.ways_out], "notes": list(r.notes), "yaml": out,
    }
