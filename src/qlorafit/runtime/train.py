"""qlorafit's training loop: setup, then one straight loop over optimizer steps.

    run = setup(cfg)      # run dir, seed, tokenizer, data, model, estimate, optimizer, resume
    loop(run)             # next samples -> train_step -> log -> checkpoint, until total_steps

Setup order, and why:
  1. the allocator is configured before anything touches CUDA (expandable segments only apply from the start);
  2. tokenizer and data before the model: a malformed dataset line fails in a second, not after a model load;
  3. `--plan auto` next (it needs the data's longest sample), then the run directory check, against the planned
     config, before anything slow happens;
  4. the model is seeded so the LoRA init is reproducible; the optimizer sees only the LoRA parameters;
  5. resume last, so it overwrites the fresh init, optimizer state and RNG with the checkpoint's.

Under torchrun / accelerate launch (qlorafit.runtime.dist) every rank runs this same setup and loop: rank 0 alone
checks and writes the run directory, the logs and the checkpoints; each step's units are split between the ranks; the
ledger holds every rank's samples. Other ranks write their own logs under ranks/rank-N/.
"""

import dataclasses
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from qlorafit.runtime import checkpoint as C
from qlorafit.runtime import dist as D
from qlorafit.core import config as config_mod
from qlorafit.core import options as O
from qlorafit.runtime import guard as G
from qlorafit.core.config import Config
from qlorafit.errors import UserError
from qlorafit import rundir, runlog
from qlorafit.core.sizes import fmt_gib as gib
from qlorafit.runtime.monitor import Monitor, non_torch_bytes
from qlorafit.runtime.graphs import MicroBatchGraphs
from qlorafit.runtime.graphs import unsupported as graphs_unsupported
from qlorafit.runtime.offload import offloaded_checkpointing
from qlorafit.runtime.optim import build_optimizer, lr_at, set_lr
from qlorafit.runtime.step import StepContext, evaluate, train_step
from qlorafit.runtime.stop import StopFlag, Stopped, stop_on_signals


@dataclass
class Position:
    """Where the run is: saved in every checkpoint, so --resume continues with the very next sample."""

    step: int = 0        # optimizer steps done
    updates: int = 0     # steps whose update was applied: the learning-rate schedule's clock
    epoch: int = 0
    index: int = 0       # next unit in this epoch's order
    bad_steps: int = 0   # consecutive steps with a NaN/inf loss


@dataclass
class Run:
    cfg: Config
    dir: Path
    ctx: StepContext
    samples: list                 # the training set
    eval_units: list | None
    total_steps: int
    pos: Position
    estimate: dict
    epoch_units: list | None = None   # this epoch's units, in order
    first_loss: float | None = None   # this invocation's first step
    last_loss: float | None = None
    tokenizer: object = None          # for train.sample_prompts
    best_eval: float | None = None    # lowest eval loss so far (early stopping)
    evals_without_gain: int = 0
    finished: bool = False            # resumed from final/ of a run that had already ended


# --- setup -------------------------------------------------------------------------------------------------------

def check_run_dir(cfg: Config, resume: bool, overwrite: bool) -> Path:
    """An output dir holding a different run is an error unless --resume or --overwrite; one qlorafit did not mark
    (qlorafit.rundir) is never overwritten. Deletes nothing: `--overwrite` removes the old run's files only once the
    model has loaded (`_start_run_dir`)."""
    d = Path(cfg.output_dir)
    rundir.check_writable(d)
    old = d / "config.yaml"
    if resume or rundir.is_empty(d):
        return d
    if overwrite:
        if not rundir.is_marked(d):
            raise rundir.refuse_unmarked(d, "--overwrite")
        return d
    if not rundir.is_marked(d):
        clash = rundir.owned_paths(d)
        if clash:
            raise UserError(f"output_dir {d} holds {clash[0].name}, which qlorafit did not write (no {rundir.MARKER}) "
                            f"and would replace; choose another --output-dir")
        return d  # a folder of the user's: qlorafit adds its files beside theirs and touches nothing else
    if not old.is_file():
        return d
    diff = config_diff(config_mod.load(str(old)), cfg)
    if diff:
        raise UserError(f"output_dir {d} already holds a different run (config.yaml differs in: {', '.join(diff)}). "
                        f"Use --resume to continue it, --overwrite to replace it, or another --output-dir.")
    if C.latest_checkpoint(d) is not None:
        raise UserError(f"output_dir {d} already holds this run, with checkpoints. Use --resume to continue it or "
                        f"--overwrite to start over.")
    return d


def _start_run_dir(run_dir: Path, overwrite: bool, say) -> None:
    """Mark the run directory; with --overwrite, first remove the old run's files (only those qlorafit wrote)."""
    if overwrite and rundir.is_marked(run_dir):
        left = rundir.remove_run(run_dir)
        if left:
            say(f"--overwrite: removed the previous run's files; kept {len(left)} that qlorafit did not write "
                f"({', '.join(p.name for p in left[:3])}{' ...' if len(left) > 3 else ''})")
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_marker(run_dir, "train")


def config_diff(a: Config, b: Config) -> list[str]:
    """The 'section.key' names whose values differ."""
    from qlorafit.core.resume import flat

    old, new = flat(a), flat(b)
    return [k for k in new if old.get(k) != new[k]]


def pick_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # LoRA init and dropout masks
    if deterministic:
        import os
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def load_tokenizer(path: str, cfg: Config):
    """Right padding for training; a pad token taken from the existing vocabulary when the model has none."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"model.name_or_path: no usable tokenizer in {path}: {str(e).splitlines()[0]}") from None
    tok.padding_side = "right"
    if tok.pad_token is None:
        vocab = tok.get_vocab()
        reserved = next((t for t in ("<|finetune_right_pad_id|>", "<pad>", "<|reserved_special_token_0|>")
                         if t in vocab), None)
        tok.pad_token = reserved or tok.eos_token  # never a new token: that would silently grow the vocab
    return tok


def build_estimate(cfg: Config, model_path: str, dtype: torch.dtype, max_len: int,
                   world: D.World | None = None) -> dict:
    """The estimator's prediction for this run (estimate.json); {'error': ...} where it cannot model the setup.

    Across ranks (`world` active) the per-rank estimate (core.dist_estimate) is added, and its peak becomes the one
    the first step is checked against; the one-GPU peak stays beside it."""
    from dataclasses import replace

    from qlorafit.core import dist_estimate as DE
    from qlorafit.core.estimate import estimate
    from qlorafit.core.estimate_view import to_json
    from qlorafit.core.plan import setup_from_config
    from qlorafit.core.shapes import shape_from_config

    dname = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    try:
        shape = shape_from_config(json.loads((Path(model_path) / "config.json").read_text()), cfg.model.name_or_path)
        setup = replace(setup_from_config(cfg), compute_dtype=dname, seq_len=max_len)  # the resolved dtype, longest row
        est = to_json(estimate(shape, setup))
    except (UserError, OSError, ValueError, KeyError) as e:
        return {"error": str(e)}
    if world is None or not world.active:
        return est
    try:
        r = DE.estimate_ranks(shape, setup, world.size, world.strategy, world.strategy == "fsdp" and cfg.dist.cpu_offload)
    except (UserError, ValueError, KeyError) as e:
        return {**est, "per_rank_error": str(e)}
    return {**est, "one_gpu_peak_bytes": est["peak_bytes"], "peak_bytes": r.peak_bytes, "per_rank": DE.to_json(r)}


def check_load_fits(cfg: Config, model_path: str, device: torch.device) -> None:
    """Refuse, before from_pretrained, a model whose weights alone (the estimator's load phase: 4-bit linears, 16-bit
    embeddings and MoE experts, CUDA context) exceed the whole GPU. The OOM guard only acts on training steps."""
    if device.type != "cuda" or cfg.model.device_map != "auto" or cfg.model.max_memory:
        return  # a device map of the user's may spread the model over several devices or the host
    est = build_estimate(cfg, model_path, torch.bfloat16, cfg.data.max_seq_length)
    need, total = est.get("phases_bytes", {}).get("load"), torch.cuda.get_device_properties(device).total_memory
    if need and need > total:
        experts = est.get("components", {}).get("MoE experts, 16-bit")
        why = (f", of which {gib(experts)} are MoE experts that load 16-bit (docs/moe.md)" if experts else "")
        raise UserError(f"model.name_or_path: loading {cfg.model.name_or_path} needs {gib(need)} of GPU memory"
                        f"{why}, and {torch.cuda.get_device_name(device)} has {gib(total)}: it would run out of "
                        f"memory while loading. `qlorafit estimate` shows the breakdown; use a larger GPU or a smaller "
                        f"model")


def plan_auto(cfg: Config, model_path: str, stats, budget_bytes: int | None, run_dir: Path, resume: bool,
              gpus: int = 1) -> Config:
    """`--plan auto`: the fastest configuration that fits the budget (default: the GPU's free memory) at the longest
    sample; under torchrun (gpus > 1) per GPU, with the strategy planned too (core.plan.plan_ranks). A resumed run
    keeps the plan it started with: a new split would change the data order mid-epoch."""
    from qlorafit.core.plan import plan_config
    from qlorafit.core.shapes import shape_from_config

    from qlorafit.core.setup import keep_planned

    saved = run_dir / "config.yaml"
    if resume and saved.is_file():
        return keep_planned(cfg, config_mod.load(str(saved)))
    if budget_bytes is None:
        if not torch.cuda.is_available():
            raise UserError("--plan auto sizes the run for the GPU's free memory, and there is no GPU; "
                            "give a budget (--budget 24GiB) or drop --plan")
        budget_bytes = torch.cuda.mem_get_info()[0]
    shape = shape_from_config(json.loads((Path(model_path) / "config.json").read_text()), cfg.model.name_or_path)
    return plan_config(cfg, shape, budget_bytes, stats, gpus=gpus)


def setup(cfg: Config, resume: bool = False, overwrite: bool = False, fault=None, quiet: bool = False,
          plan: bool = False, budget_bytes: int | None = None, allow_changes: bool = False) -> Run:
    from qlorafit.runtime.data import load_data
    from qlorafit.core.catalog import resolve_model_path
    from qlorafit.runtime.model import trainable_counts
    from qlorafit.runtime.preflight import check_data_path, check_model_files

    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr))
    G.configure_allocator(cfg.guard)
    world = D.init_world(torch.cuda.is_available())  # World() unless torchrun / accelerate launch started us
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    device = pick_device()

    rundir.check_writable(Path(cfg.output_dir))  # a bad output_dir fails in a second, not after the model load
    check_data_path(cfg)
    model_path = resolve_model_path(cfg.model.name_or_path)  # a Hub id downloads here, once
    check_model_files(cfg, model_path)  # config.json against the weights, lora.r against the hidden size
    tok = load_tokenizer(model_path, cfg)
    data = load_data(cfg.data, tok, cfg.train.seed)
    if plan:
        if world.active and budget_bytes is None and device.type == "cuda":  # one plan for all: the tightest GPU's
            budget_bytes = min(r[0] for r in D.gather_ints(world, [torch.cuda.mem_get_info(device)[0]]))
        cfg = plan_auto(cfg, model_path, data.train.stats, budget_bytes, Path(cfg.output_dir), resume, world.size)
        if not resume:  # the planned keys (qlorafit.core.setup.PLANNED_KEYS) and their values
            from qlorafit.core.resume import flat
            from qlorafit.core.setup import PLANNED_KEYS
            say("--plan auto chose: " + ", ".join(f"{key}={flat(cfg)[key]}" for key in PLANNED_KEYS))
    # after planning: the planned config is the one compared; rank 0 alone reads the directory and speaks
    run_dir = check_run_dir(cfg, resume, overwrite) if world.main else Path(cfg.output_dir)
    main_say = say if world.main else (lambda text: None)
    why = graphs_unsupported(cfg, device, world.active)
    if O.graphs_on(cfg.train.cuda_graphs) and why:  # auto turns off quietly where the setup does not allow graphs
        main_say(f"train.cuda_graphs: off, because {why}")
    graphs_on = O.resolve_cuda_graphs(cfg.train.cuda_graphs, cfg.train.micro_batch_size * cfg.data.max_seq_length, why)
    cfg.train.cuda_graphs = O.graphs_value(graphs_on)  # config.yaml records what ran (before a
    # resume compares it: auto there means what it resolved to); off: the layers compile
    changed = _check_resume(cfg, run_dir, allow_changes, main_say) if resume else None
    from qlorafit.runtime import trackers as T
    T.check_installed(cfg.train)

    max_len = cfg.data.max_seq_length if cfg.data.packing else data.train.stats.max
    world.strategy = _strategy(cfg, world, model_path, device, max_len)
    if world.strategy == "fsdp" and O.checkpointing(cfg.train.grad_checkpointing).to_host:
        # fsdp keeps each layer's input on its GPU (offloading them is not combined with sharding yet); auto resolved
        # to offload before dist.strategy=auto turned out fsdp
        main_say("train.grad_checkpointing=offload: under fsdp the layer inputs stay on the GPU (checkpointing on); "
                 "dist.cpu_offload=true moves the shards to host RAM")
        cfg.train.grad_checkpointing = "on"
    # resume reads the checkpoint whole first: its adapter goes in before fsdp shards the model, the rest after
    fresh_optimizer = changed is not None and "train.optimizer" in changed.keys("state")
    ckpt, saved = C.read_newest_intact(run_dir, main_say, not fresh_optimizer) if resume else (None, None)
    torch.manual_seed(cfg.train.seed)  # the LoRA init does not depend on how much data loading drew
    if world.strategy != "fsdp":  # fsdp shards the model: it need not fit one GPU
        check_load_fits(cfg, model_path, device)  # an OOM while loading is beyond the guard: say it before
    adapter = saved["adapter"] if saved else None
    loaded, params = D.load_and_wrap(cfg, model_path, device, world, adapter)  # load_model, and for ranks: wrap
    model = loaded.model
    model.train()
    trainable, total = trainable_counts(model)

    est = build_estimate(cfg, model_path, loaded.dtype, max_len, world)  # per GPU, when ranks
    if world.main:
        _start_run_dir(run_dir, overwrite, say)
        C.clean_partial(run_dir)
        (run_dir / "config.yaml").write_text(config_mod.to_yaml(cfg, header="qlorafit train: resolved configuration"))
        (run_dir / "estimate.json").write_text(json.dumps(est, indent=2) + "\n")
    D.barrier(world)  # the other ranks write under run_dir only once rank 0 has checked and cleared it

    optimizer = build_optimizer(params, cfg.train)  # fused on CUDA; fsdp + dist.cpu_offload: on the host
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and loaded.dtype == torch.float16)
    guard = G.GuardState(cfg.train.micro_batch_size, cfg.train.micro_batch_size, cfg.train.grad_checkpointing)

    eff = cfg.train.micro_batch_size * cfg.train.grad_accum * world.size  # per rank x ranks
    units_per_epoch = _units_per_epoch(cfg, data.train.samples)
    steps_per_epoch = math.ceil(units_per_epoch / eff)
    total_steps = cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * steps_per_epoch))

    pos = Position()
    if ckpt is not None:
        state = C.apply_checkpoint(saved, None, optimizer)  # the adapter went in before wrapping
        if world.strategy == "fsdp":
            D.shard_optimizer_state(optimizer)
        pos = Position(**state["position"])
        guard = G.GuardState(**state["guard"])
        if changed and {"train.micro_batch_size", "train.grad_checkpointing"} & set(changed.keys(*changed.by_class)):
            # the user chose anew: the guard starts from the new setting, not from where it had moved the old one
            guard = G.GuardState(cfg.train.micro_batch_size, cfg.train.micro_batch_size, cfg.train.grad_checkpointing,
                                 recoveries=guard.recoveries)
        G.apply_checkpointing(model, guard.checkpointing)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    if world.active:
        torch.manual_seed(cfg.train.seed + world.rank)  # after the shared LoRA init: each rank its own dropout masks
    log_dir = run_dir if world.main else runlog.rank_dir(run_dir, world.rank)
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in runlog.LOGS:  # lines written after the checkpoint describe steps that will run again
        runlog.trim(runlog.log_path(log_dir, name), pos.step)

    names = T.names(cfg.train) if world.main else []  # rank 0 reports for all
    trackers = T.Trackers(names, run_dir, config_mod.to_dict(cfg)) if names else None
    monitor = Monitor(log_dir, device, total_steps, pos.step, quiet or not world.main, trackers)
    offload = (lambda: offloaded_checkpointing(model)) if world.strategy != "fsdp" else None  # fsdp: ends at "on"
    graphs = MicroBatchGraphs(model, params) if O.graphs_on(cfg.train.cuda_graphs) and not scaler.is_enabled() else None
    ctx = StepContext(model, optimizer, params, scaler, device, loaded.dtype, cfg, guard, monitor,
                      tok.pad_token_id, fault=fault, offload=offload, world=world, graphs=graphs)
    monitor.say(f"model {cfg.model.name_or_path} ({cfg.model.quant}, {str(loaded.dtype).replace('torch.', '')}) on "
                f"{device}: {trainable:,} trainable of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)")
    if world.active:
        monitor.say(f"{world.size} ranks, dist.strategy={world.strategy}; each step: {eff // world.size} "
                    f"{'rows' if cfg.data.packing else 'samples'} per rank")
    elif device.type == "cuda" and torch.cuda.device_count() > 1:
        monitor.say(f"{torch.cuda.device_count()} GPUs visible, training on {device} only; to use them all: "
                    f"`qlorafit train CONFIG --nproc {torch.cuda.device_count()}`")
    from qlorafit.runtime.data import describe
    for line in describe(data.train):
        monitor.say(line)
    monitor.event("data", pos.step, source=data.train.source, samples=len(data.train.samples),
                  formats=data.train.formats, dropped=[{"where": w, "reason": r} for w, r in data.train.bad[:100]],
                  dropped_count=len(data.train.bad), no_target=data.train.dropped, truncated=data.train.truncated,
                  empty=len(data.train.empty))
    monitor.say(f"{total_steps} steps of {eff} {'rows' if cfg.data.packing else 'samples'} "
                f"(max_seq_length {cfg.data.max_seq_length})")
    if data.train.empty:
        monitor.say(f"data: skipped {len(data.train.empty)} records whose text is empty (first: {data.train.empty[0]})")
    if ckpt is not None and pos.step < total_steps:
        monitor.say(f"resumed from {ckpt} at step {pos.step} (epoch {pos.epoch}, sample {pos.index} of the epoch)")
        saved_world = state.get("world_size", 1)
        if saved_world != world.size:
            # sound: the data position counts units, the adapter and optimizer files are full tensors; what changes
            # is the units per step (micro_batch_size x grad_accum x ranks), and with it the steps left
            was = state["config"]["train"]["micro_batch_size"] * state["config"]["train"]["grad_accum"] * saved_world
            monitor.say(f"resumed on {world.size} rank(s) a run saved on {saved_world}: a step now takes {eff} "
                        f"{'rows' if cfg.data.packing else 'samples'} ({was} before); train.grad_accum sets it")
            monitor.event("world_size_changed", pos.step, saved=saved_world, now=world.size)
    elif resume:
        monitor.say(f"--resume: no checkpoint in {run_dir}, starting from step 0")
    if "peak_bytes" in est:
        monitor.say(f"estimated peak GPU memory {gib(est['peak_bytes'])} ({est['peak_phase']})")
    eval_units = data.eval.samples if data.eval is not None else None
    finished = ckpt is not None and ckpt.name == "final" and pos.step >= total_steps
    return Run(cfg, run_dir, ctx, data.train.samples, eval_units, total_steps, pos, est, finished=finished,
               tokenizer=tok)


def _check_resume(cfg: Config, run_dir: Path, allow: bool, say):
    """Compare with the run's saved config (qlorafit.core.resume): refuse what breaks the run, list what changed."""
    from qlorafit.core import resume as R

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return None
    changed = R.check(config_mod.load(str(saved)), cfg, allow)
    if changed.by_class["safe"]:
        say(f"--resume: changed {changed.describe('safe')} (allowed: the samples and the saved state stay valid)")
    if changed.keys("samples", "state"):
        say(f"--resume --allow-changes: changed {changed.describe('samples', 'state')}: the rest of this epoch is "
            f"re-drawn under the new settings" + (", and the optimizer starts from fresh state"
                                                 if "train.optimizer" in changed.keys("state") else ""))
    return changed


def _strategy(cfg: Config, world: D.World, model_path: str, device: torch.device, max_len: int) -> str:
    """The strategy every rank uses: the same inputs on every rank give the same answer, without a collective."""
    if not world.active:
        return "none"
    if cfg.model.device_map != "auto" or cfg.model.max_memory:
        raise UserError(f"model.device_map={cfg.model.device_map!r} / model.max_memory: under torchrun each rank "
                        f"loads onto its own GPU; leave model.device_map=auto and model.max_memory empty "
                        f"(dist.strategy=fsdp shards a model that does not fit one GPU)")
    fits = None
    if cfg.dist.strategy == "auto" and device.type == "cuda":
        from qlorafit.runtime.model import resolve_compute_dtype
        est = build_estimate(cfg, model_path, resolve_compute_dtype(cfg.model.compute_dtype, device), max_len)
        if "peak_bytes" in est:
            fits = est["peak_bytes"] <= torch.cuda.mem_get_info(device)[1]
    return D.pick_strategy(cfg.dist.strategy, fits)


def _units_per_epoch(cfg: Config, samples: list) -> int:
    if not cfg.data.packing:
        return len(samples)
    from qlorafit.runtime.collate import pack
    return len(pack(samples, cfg.data.max_seq_length))


# --- the loop ----------------------------------------------------------------------------------------------------

def next_units(run: Run) -> list:
    """The next step's units (samples, or packed rows), advancing the data position; a new epoch reshuffles."""
    pos = run.pos
    if run.epoch_units is None or pos.index >= len(run.epoch_units):
        if run.epoch_units is not None:
            pos.epoch, pos.index = pos.epoch + 1, 0
        run.epoch_units = _epoch_units(run)
    eff = run.cfg.train.micro_batch_size * run.cfg.train.grad_accum  # the effective batch: the guard never changes it
    world = run.ctx.world
    units = run.epoch_units[pos.index: pos.index + eff * world.size]  # the step's units, for every rank
    pos.index += len(units)
    return D.shard(units, world, eff)  # this rank's share


def loop(run: Run) -> dict:
    """Train until total_steps; returns the summary. A first SIGINT/SIGTERM stops at the next step boundary with a
    checkpoint (runtime/stop.py)."""
    cfg, ctx, pos, t = run.cfg, run.ctx, run.pos, run.cfg.train
    cuda = ctx.device.type == "cuda"
    t_start, tokens_seen, start_step, stopped = time.time(), 0, pos.step, False
    last_save = time.monotonic()
    if pos.index:  # resumed mid-epoch: rebuild that epoch's order and keep the index
        run.epoch_units = _epoch_units(run)
    with stop_on_signals(StopFlag(ctx.monitor.say)) as stop:
        while pos.step < run.total_steps:
            units = next_units(run)
            if cuda:
                torch.cuda.reset_peak_memory_stats()  # each step's peak is its own
            set_lr(ctx.optimizer, lr_at(pos.updates, run.total_steps, t))
            t0 = time.time()
            res = train_step(ctx, units, pos.step + 1)  # ends in one host sync (loss, grad norm): dt is real
            dt = time.time() - t0
            pos.step += 1
            mine, res = res, _merge_ranks(ctx.world, res)  # every rank's samples: the ledger is global
            tokens_seen += res.input_tokens
            shown = res if ctx.world.main else mine  # ranks/rank-N/ledger.jsonl: that rank's own samples
            ctx.monitor.ledger(pos.step, shown.sample_ids, shown.skipped, shown.applied, shown.truncated)
            _log_step(run, res, units, dt)
            _check_finite(run, res)
            if res.recoveries == 0 and G.maybe_grow_back(ctx.guard, cfg.guard):
                ctx.monitor.event("grow_back", pos.step, new_micro_batch=ctx.guard.micro_batch_size)
            evals = run.eval_units or t.sample_prompts
            if evals and t.eval_every and pos.step % t.eval_every == 0 and _eval(run):
                stopped = True
                break  # early stopping: the eval loss stopped improving; final/ is saved below
            if pos.step >= run.total_steps:
                break  # final/ is saved below, signal or not
            by_steps = t.save_every and pos.step % t.save_every == 0
            by_time = t.save_every_minutes and time.monotonic() - last_save >= 60 * t.save_every_minutes
            # across ranks, one decision: a signal or a clock seen by any rank saves on all (the save is collective)
            by_time, stopping = (n > 0 for n in D.agree_sum(ctx.world, [int(bool(by_time)), int(bool(stop))]))
            if by_steps or by_time or stopping:
                target = save(run, run.dir / "checkpoints" / f"step-{pos.step}")
                last_save = time.monotonic()
                if stopping:
                    raise Stopped(stop.signum or 15, pos.step, str(target))
    if (run.eval_units or t.sample_prompts) and not stopped and (not t.eval_every or pos.step % t.eval_every):
        _eval(run)
    save(run, run.dir / "final")
    ctx.monitor.close()
    if t.push_to_hub:  # after the logs are closed: the model card reads them
        from qlorafit.commands.push import push_run

        ctx.monitor.say(f"pushed final/ to {t.push_to_hub}: {push_run(run.dir, t.push_to_hub)}")
    return {"steps": pos.step, "start_step": start_step, "first_loss": run.first_loss, "last_loss": run.last_loss,
            "final": str(run.dir / "final"), "seconds": round(time.time() - t_start, 2), "tokens": tokens_seen,
            "stopped_early": stopped}


def _log_step(run: Run, res, units: list, dt: float) -> None:
    """metrics.jsonl, the progress bar, the first step's memory check and the leak watch."""
    ctx, pos, mon = run.ctx, run.pos, run.ctx.monitor
    mem = mon.memory()  # reads only: the loop reset the peaks at the start of the step
    if run.first_loss is None:
        run.first_loss = res.loss
        _first_step_memory(run, mem)
    run.last_loss = res.loss
    leak = mon.leaks.observe((res.micro_batch_size, max((len(u.input_ids) for u in units), default=0)),
                             mem["mem_allocated"])
    if leak:
        mon.event("leak_warning", pos.step, **leak)
        mon.say(f"warning: memory held between steps grew {gib(leak['grew_bytes'])} over {leak['steps']} steps of "
                f"the same shape: something keeps tensors alive (a logged loss tensor?)")
    tps = res.input_tokens / max(dt, 1e-9)
    if pos.step % run.cfg.train.log_every == 0 or pos.step == run.total_steps:
        mon.metrics({"step": pos.step, "epoch": pos.epoch, "loss": res.loss,
                     "lr": ctx.optimizer.param_groups[0]["lr"], "grad_norm": res.grad_norm, "tokens": res.tokens,
                     "tokens_per_s": round(tps, 1), "micro_batch_size": res.micro_batch_size,
                     "grad_accum": res.micro_batches, **mem})
    mon.progress(pos.step, res.loss, tps, mem)


def _merge_ranks(world: D.World, res):
    """The step's result with every rank's samples, skips, truncations and tokens (rank order: the order of the
    step's units). One small all-gather of Python objects on the host group."""
    if not world.active:
        return res
    parts = D.gather_objects(world, (res.sample_ids, res.skipped, res.truncated, res.input_tokens))
    return dataclasses.replace(res, sample_ids=[i for p in parts for i in p[0]], skipped=[x for p in parts for x in p[1]],
                               truncated=[x for p in parts for x in p[2]], input_tokens=sum(p[3] for p in parts))


def _epoch_units(run: Run) -> list:
    from qlorafit.runtime.collate import pack
    from qlorafit.runtime.data import epoch_order

    cfg = run.cfg
    order = epoch_order([len(s.input_ids) for s in run.samples], cfg.train.micro_batch_size, cfg.train.seed,
                        run.pos.epoch, cfg.data.group_by_length)
    ordered = [run.samples[i] for i in order]
    return pack(ordered, cfg.data.max_seq_length) if cfg.data.packing else ordered


def _check_finite(run: Run, res) -> None:
    """A NaN/inf step was skipped by train_step (weights untouched); stop after train.max_bad_steps in a row."""
    pos = run.pos
    if res.applied:
        pos.updates += 1
        pos.bad_steps = 0
        return
    if res.tokens == 0:
        return  # every sample skipped by the guard: nothing to apply, nothing wrong
    pos.bad_steps += 1
    run.ctx.monitor.event("nan_loss", pos.step, loss=str(res.loss), grad_norm=str(res.grad_norm),
                          consecutive=pos.bad_steps)
    run.ctx.monitor.say(f"step {pos.step}: loss {res.loss} / grad norm {res.grad_norm} is not finite; update skipped")
    if pos.bad_steps >= run.cfg.train.max_bad_steps:
        dt = run.ctx.dtype
        hint = ("compute in bf16 instead of fp16 (model.compute_dtype=bf16, if the GPU has it), " if dt == torch.float16
                else "")
        raise UserError(f"{pos.bad_steps} steps in a row had a NaN/inf loss or gradient (train.max_bad_steps); "
                        f"stopped at step {pos.step}. Try: {hint}a lower train.lr (now {run.cfg.train.lr:g}), "
                        f"train.max_grad_norm=1.0 or lower (now {run.cfg.train.max_grad_norm:g}), and check the data.")


def _first_step_memory(run: Run, mem: dict) -> None:
    """Predicted against measured at the first step: the estimator's error, logged and shown."""
    est, dev = run.estimate, run.ctx.device
    predicted = est.get("peak_bytes")
    measured = mem["mem_peak_reserved"] + non_torch_bytes(dev) if dev.type == "cuda" else None
    err = (predicted - measured) / measured if predicted and measured else None
    run.ctx.monitor.event("first_step_memory", run.pos.step, predicted_peak_bytes=predicted,
                          measured_peak_bytes=measured, measured_peak_allocated=mem["mem_peak_allocated"],
                          measured_peak_reserved=mem["mem_peak_reserved"], non_torch_bytes=non_torch_bytes(dev),
                          predicted_components=est.get("components", {}), error=err, device=str(dev))
    if err is not None:
        run.ctx.monitor.say(f"first step: peak GPU memory {gib(measured)} measured (reserved + non-PyTorch), "
                            f"{gib(predicted)} estimated: estimator error {100 * err:+.1f}%")


def _eval(run: Run) -> bool:
    """Eval loss, perplexity and token accuracy; samples for train.sample_prompts. True: stop early."""
    t, stop = run.cfg.train, False
    world = run.ctx.world
    units = D.shard(run.eval_units, world, math.ceil(len(run.eval_units) / world.size)) if run.eval_units else None
    res = evaluate(run.ctx, units, run.pos.step) if units is not None else None  # summed over the ranks
    if res is not None:
        acc = "" if res["token_accuracy"] is None else f", token accuracy {100 * res['token_accuracy']:.1f}%"
        run.ctx.monitor.say(f"step {run.pos.step}: eval loss {res['loss']:.4f}, perplexity {res['perplexity']:.2f}"
                            f"{acc}")
        stop = _early_stop(run, res["loss"])
    if t.sample_prompts and world.main and world.strategy != "fsdp":  # generation on rank 0 (fsdp: not yet)
        from qlorafit.runtime.generation import write_samples
        for row in write_samples(run, t.sample_prompts, t.sample_max_new_tokens):
            run.ctx.monitor.say(f"step {run.pos.step}: sample {row['prompt'][:60]!r} -> {row['output'][:200]!r}")
    return stop


def _early_stop(run: Run, loss: float) -> bool:
    """Patience counts evaluations in a row without a new lowest eval loss."""
    patience = run.cfg.train.early_stopping_patience
    if run.best_eval is None or loss < run.best_eval:
        run.best_eval, run.evals_without_gain = loss, 0
        return False
    run.evals_without_gain += 1
    if patience and run.evals_without_gain >= patience:
        run.ctx.monitor.event("early_stop", run.pos.step, best_eval_loss=run.best_eval, patience=patience)
        run.ctx.monitor.say(f"step {run.pos.step}: eval loss has not improved on {run.best_eval:.4f} for {patience} "
                            f"evaluations: stopping early (train.early_stopping_patience)")
        return True
    return False


def save(run: Run, target: Path) -> Path:
    """Rank 0 writes the checkpoint. ddp: its adapter and optimizer state are the whole (replicated) state. fsdp: every
    rank joins the all-gathers that assemble each sharded tensor, so the files are the same full ones: a checkpoint
    resumes under any rank count and strategy."""
    world = run.ctx.world
    state = {"step": run.pos.step, "position": dataclasses.asdict(run.pos), "guard": run.ctx.guard.to_json(),
             "scaler": run.ctx.scaler.state_dict() if run.ctx.scaler.is_enabled() else {},
             "total_steps": run.total_steps, "world_size": world.size, "config": config_mod.to_dict(run.cfg)}
    if world.main or world.strategy == "fsdp":
        C.save_checkpoint(target, run.ctx.model, run.ctx.optimizer, state, write=world.main)
    D.barrier(world)  # no rank runs ahead (or exits) before the checkpoint is on disk
    if world.main:
        run.ctx.monitor.event("checkpoint", run.pos.step, path=str(target.relative_to(run.dir)))
        _prune(run)
    return target


def _prune(run: Run) -> None:
    """train.keep_checkpoints: the newest step checkpoints stay, older ones go (final/ always stays)."""
    if run.cfg.train.keep_checkpoints > 0:
        steps = [p for p in C.checkpoints_newest_first(run.dir) if p.name != "final"]
        for p in steps[run.cfg.train.keep_checkpoints:]:
            shutil.rmtree(p, ignore_errors=True)


def train(cfg: Config, resume: bool = False, overwrite: bool = False, fault=None, quiet: bool = False,
          plan: bool = False, budget_bytes: int | None = None, allow_changes: bool = False) -> dict:
    """Set up and run; returns a summary (steps, first and last loss, path of the final adapter)."""
    run = setup(cfg, resume, overwrite, fault, quiet, plan, budget_bytes, allow_changes)
    if run.finished:
        run.ctx.monitor.close()
        D.close(run.ctx.world)
        return {"finished": True, "steps": run.pos.step, "start_step": run.pos.step, "final": str(run.dir / "final")}
    try:
        return loop(run)
    finally:
        run.ctx.monitor.close()
        D.close(run.ctx.world)
