"""One optimizer step over a list of samples: micro-batches, gradient accumulation, loss normalization, the guard.

    total = target tokens of every sample in the step       # fixed up front, before the first forward
    for each micro-batch:  (loss_sum(micro-batch) / total).backward()
    clip, optimizer.step(), zero_grad

Dividing every micro-batch by the step's total (not by its own count) makes the update independent of the split:
1 x 8 and 8 x 1 give the same gradient. That is what lets the OOM guard re-split a step mid-way: the micro-batches
already done keep their gradients, the rest go through in smaller pieces, and the sum is the same.

The unit a micro-batch is made of is a Sample, or with packing a PackedRow holding several samples.

Across ranks (qlorafit.runtime.dist) the step's total is the global one (summed over the ranks before the first
forward), each rank's micro-batches are rounds that every rank runs together, and an OOM on any rank moves every rank
one rung down the guard's ladder at once: the split stays the same everywhere, the sum stays exact.
"""

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from qlorafit.core import options as O
from qlorafit.runtime import dist as D
from qlorafit.errors import NotLearning
from qlorafit.runtime import guard as G
from qlorafit.runtime.collate import PackedRow, collate, collate_packed
from qlorafit.runtime.data import IGNORE
from qlorafit.runtime.graphs import causal_attention
from qlorafit.runtime.loss import forward_loss, masked_loss


@dataclass
class StepContext:
    """Everything a step needs; built once by train.setup."""

    model: object
    optimizer: torch.optim.Optimizer
    params: list                     # the trainable (LoRA) parameters
    scaler: torch.amp.GradScaler     # enabled only for fp16 on CUDA
    device: torch.device
    dtype: torch.dtype               # compute dtype: autocast target on CUDA
    cfg: object                      # qlorafit.core.config.Config
    guard: G.GuardState
    monitor: object                  # qlorafit.runtime.monitor.Monitor
    pad_id: int
    fault: Callable | None = None    # test hook: fault(phase, info) may raise torch.OutOfMemoryError
    offload: Callable | None = None  # () -> context manager for offloaded checkpointing, when available
    eval_batch: int = 0              # current eval micro-batch (shrinks on eval OOM only)
    world: D.World = field(default_factory=D.World)  # the ranks; World() for a single process
    graphs: object | None = None     # qlorafit.runtime.graphs.MicroBatchGraphs when train.cuda_graphs runs


@dataclass
class StepResult:
    loss: float              # mean cross-entropy per target token over the step
    tokens: int              # target tokens trained
    input_tokens: int        # non-padding input tokens (for tokens/s)
    grad_norm: float
    applied: bool            # False when the loss or the gradient norm was not finite: weights untouched
    sample_ids: list = field(default_factory=list)
    skipped: list = field(default_factory=list)     # [{sample_id, reason}]
    truncated: list = field(default_factory=list)   # [{sample_id, from_tokens, to_tokens}]
    micro_batches: int = 0
    micro_batch_size: int = 0    # the guard's micro-batch at the end of the step
    recoveries: int = 0


# --- units: a Sample, or a PackedRow of samples -------------------------------------------------------------------

def unit_ids(u) -> list[int]:
    return list(u.sample_ids) if isinstance(u, PackedRow) else [u.id]


def unit_targets(u) -> int:
    """Target tokens of a unit: labels[1:] that are not IGNORE (the loss predicts token t+1 from t)."""
    return sum(1 for y in u.labels[1:] if y != IGNORE)


def _batch(ctx: StepContext, units: list) -> dict:
    if isinstance(units[0], PackedRow):
        attn = getattr(getattr(ctx.model, "config", None), "_attn_implementation", None) or "sdpa"
        return collate_packed(units, ctx.pad_id, attn, ctx.dtype)  # sample boundaries passed to attention
    return collate(units, ctx.pad_id)


def _split_row(row: PackedRow) -> list[PackedRow]:
    """Cut a packed row in two at a sample boundary, labels kept as they were (the step's total stays exact)."""
    starts = [i for i, p in enumerate(row.position_ids) if p == 0]
    k = len(starts) // 2
    cut, n_ids = starts[k], k
    a = PackedRow(row.input_ids[:cut], row.labels[:cut], row.position_ids[:cut], row.sample_ids[:n_ids])
    b = PackedRow(row.input_ids[cut:], row.labels[cut:], row.position_ids[cut:], row.sample_ids[n_ids:])
    return [a, b]


def _truncate(u, n: int):
    if isinstance(u, PackedRow):
        return PackedRow(u.input_ids[:n], u.labels[:n], u.position_ids[:n], list(u.sample_ids))
    return dataclasses.replace(u, input_ids=u.input_ids[:n], labels=u.labels[:n])


# --- the step --------------------------------------------------------------------------------------------------------

def _to_device(batch: dict, device: torch.device) -> dict:
    if device.type != "cuda":
        return batch
    # pinned, then non_blocking: the copy overlaps the previous micro-batch's kernels instead of waiting for them
    return {k: v.pin_memory().to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}  # max_length_q/k stay Python ints


def _autocast(ctx: StepContext):
    if ctx.device.type == "cuda" and ctx.dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=ctx.dtype)
    return contextlib.nullcontext()  # CPU: the model already computes in its load dtype


def _memory_context(ctx: StepContext):
    if O.checkpointing(ctx.guard.checkpointing).to_host and ctx.offload is not None:
        return ctx.offload()
    return contextlib.nullcontext()


def _info(step: int, micro_index: int, units: list) -> dict:
    return {"step": step, "micro_index": micro_index, "n_units": len(units),
            "seq_len": max(len(u.input_ids) for u in units), "sample_ids": [i for u in units for i in unit_ids(u)]}


def _forward_backward(ctx: StepContext, units: list, denom: float, step: int, micro_index: int):
    """One micro-batch. Returns (its loss sum, detached, None), or (None, phase) after an OOM.

    On OOM this returns from outside the `except` block, so the exception, its traceback and this frame's batch and
    loss (which hold the activations through the autograd graph) are all dropped before the caller frees memory.
    """
    phase, in_model = "forward", False
    try:
        if ctx.graphs is not None:  # train.cuda_graphs: replayed, or captured now; None while a shape warms up
            in_model = True
            part = ctx.graphs.run(ctx, units, denom, lambda e, y, d: _graphed_pass(ctx, e, y, d))
            if part is not None:
                return part, None
            in_model = False
        batch = _to_device(_batch(ctx, units), ctx.device)  # (B, T) each
        with _memory_context(ctx):
            if ctx.fault is not None:
                ctx.fault("forward", _info(step, micro_index, units))
            in_model = True
            with _autocast(ctx):
                loss_sum, _ = forward_loss(ctx.model, batch, ctx.cfg.train.loss_impl)
            phase = "backward"
            ctx.scaler.scale(loss_sum / denom).backward()  # frees the graph (activations) as it goes
            in_model = False
        if ctx.fault is not None:  # after backward: a fault here leaves partial sums in .grad, as a real one would
            ctx.fault("backward", _info(step, micro_index, units))
        return loss_sum.detach(), None
    except Exception as e:
        if not (ctx.cfg.guard.enabled and G.is_oom(e)):
            raise
        if in_model and ctx.world.strategy == "fsdp":  # the other ranks wait inside this layer's all-gather
            raise G.GuardGaveUp(D.fsdp_oom_message(ctx.world.rank, phase)) from None
    return None, phase


def _graphed_pass(ctx: StepContext, embeds: torch.Tensor, labels: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """What one CUDA graph holds (train.cuda_graphs): forward from the embeddings, the masked loss, backward."""
    with causal_attention(ctx.model, embeds.shape[1]):  # SDPA's causal kernel, no mask tensor (causal_only)
        with _autocast(ctx):
            loss_sum = masked_loss(ctx.model, embeds, labels)
        (loss_sum / denom).backward()  # accumulates into the .grad tensors the graph was captured with
    return loss_sum.detach()


def _recover(ctx: StepContext, res: StepResult, pending: list, n: int, failed: str | None, oom_ranks: list,
             step: int) -> tuple[list, int, bool]:
    """Take the next rung after the round's OOM (on this rank when `failed`, else on another): every rank calls this
    with the same n (the largest failed micro-batch), so every rank takes the same rung. Returns the new pending
    list, the change in this rank's target tokens (a sample truncated or skipped) and, when guard.on_oom=fail fired
    here, the message to stop with ('' otherwise)."""
    g = ctx.guard
    old_mb = g.micro_batch_size
    old_ckpt = g.checkpointing
    action = G.escalate(g, n, offload_ok=ctx.offload is not None)
    if g.checkpointing != old_ckpt:
        G.apply_checkpointing(ctx.model, g.checkpointing)
    detail, delta, fail = {}, 0, ""
    if action == "single" and failed is not None:  # only the ranks whose one unit did not fit act on it
        u = pending[0]
        if isinstance(u, PackedRow) and len(u.sample_ids) > 1:
            pending = _split_row(u) + pending[1:]
            action = "split_row"
        else:
            pending, delta, action, detail = _single_unit(ctx, res, pending, step, failed)
            fail = detail.pop("message", "")
    if ctx.world.active:
        detail["ranks"] = oom_ranks
    mem = ctx.monitor.memory()
    ctx.monitor.event("oom_recovery", step, phase=failed or "peer", old_micro_batch=old_mb,
                      new_micro_batch=g.micro_batch_size, mem_allocated=mem.get("mem_allocated", 0),
                      mem_reserved=mem.get("mem_reserved", 0), action=action, checkpointing=g.checkpointing, **detail)
    return pending, delta, fail


def _single_unit(ctx: StepContext, res: StepResult, pending: list, step: int, phase: str):
    """One sample that cannot fit even alone with every memory saving on: guard.on_oom decides. Returns (pending,
    change in target tokens, action, event detail); the caller rescales the gradients to the new step total."""
    u, policy = pending[0], ctx.cfg.guard.on_oom
    sid = unit_ids(u)[0]
    if policy == "fail":
        msg = (f"sample {sid} ({len(u.input_ids)} tokens) does not fit in GPU memory even alone with checkpointing "
               f"{ctx.guard.checkpointing} (guard.on_oom=fail). Lower data.max_seq_length, or set guard.on_oom=adapt "
               f"(truncate it) or skip.")
        return pending, 0, "fail", {"sample_id": sid, "message": msg}
    new_len = len(u.input_ids) // 2
    if policy == "adapt" and new_len >= 2 and unit_targets(_truncate(u, new_len)) > 0:
        short = _truncate(u, new_len)
        prev = next((x for x in res.truncated if x["sample_id"] == sid), None)  # cut again: one entry per sample
        if prev is None:
            res.truncated.append({"sample_id": sid, "from_tokens": len(u.input_ids), "to_tokens": new_len})
        else:
            prev["to_tokens"] = new_len
        delta = unit_targets(short) - unit_targets(u)
        return [short] + pending[1:], delta, "truncate", {"sample_id": sid, "to_tokens": new_len}
    reason = f"out of memory in {phase} at {len(u.input_ids)} tokens, alone, checkpointing {ctx.guard.checkpointing}"
    res.skipped.append({"sample_id": sid, "reason": reason})
    ctx.monitor.event("skip_sample", step, sample_id=sid, reason=reason)
    return pending[1:], -unit_targets(u), "skip", {"sample_id": sid}


def _dummy_unit(units: list, pad_id: int):
    """A two-token unit whose labels are all ignored: a rank with nothing left runs it under fsdp, so that it joins
    the other ranks' all-gathers; its loss and gradient are exactly zero."""
    if units and isinstance(units[0], PackedRow):
        return PackedRow([pad_id, pad_id], [IGNORE, IGNORE], [0, 1], [])
    from qlorafit.runtime.data import Sample
    return Sample(-1, [pad_id, pad_id], [IGNORE, IGNORE])


def train_step(ctx: StepContext, units: list, step: int) -> StepResult:
    """Forward and backward over all units in micro-batches, then one update. Never leaves .grad behind.

    Each pass of the loop is a round: every rank tries one micro-batch, then all ranks learn who ran out of memory
    (one host all-gather; nothing when single-process) and either move on or take the next rung together.
    """
    g, max_retries, world = ctx.guard, ctx.cfg.guard.max_retries, ctx.world
    lockstep = world.strategy == "fsdp"  # every rank runs a forward and a backward in every round
    res = StepResult(0.0, 0, 0, 0.0, True)
    # the step's normalizer over every rank, known before the first forward; whether any rank has work at all
    total, n_left = D.agree_sum(world, [sum(unit_targets(u) for u in units), len(units)])
    loss_sum = torch.zeros((), device=ctx.device)  # summed on the device: no host sync per micro-batch
    pending, micro_index, more = list(units), 0, n_left > 0
    while more:
        mb = pending[: g.micro_batch_size]
        run = mb or ([_dummy_unit(units, ctx.pad_id)] if lockstep else [])
        snap = G.snapshot_grads(ctx.params, micro_index) if ctx.cfg.guard.enabled and run else None
        part, failed = _forward_backward(ctx, run, D.loss_divisor(world, total), step, micro_index) if run else (None, None)
        rows = D.gather_ints(world, [failed is not None, len(mb), len(pending) - (len(mb) if failed is None else 0)])
        oom_ranks = [r for r, row in enumerate(rows) if row[0]]
        if failed is None:
            if mb:
                loss_sum += part
                res.sample_ids += [i for u in mb for i in unit_ids(u)]
                res.input_tokens += sum(len(u.input_ids) for u in mb)
                pending, micro_index = pending[len(mb):], micro_index + 1
            del part, snap
        else:
            # Outside the except block: the failed micro-batch's tensors died with _forward_backward's frame.
            G.restore_grads(ctx.params, snap)  # undo the partial sums a half-done backward left in .grad
            del snap, part, mb
            if ctx.graphs is not None:  # memory decision: the graphs' pool goes too, so the smaller micro-batch
                ctx.graphs.reset()      # the guard picks next has it; its shapes are captured again as they come
            G.free_memory()
        more = any(row[2] for row in rows) or bool(oom_ranks)
        if not oom_ranks:
            continue
        res.recoveries += 1  # the same count on every rank: all give up together
        if res.recoveries > max_retries:
            raise G.GuardGaveUp(G.gave_up_message(step, failed or "on another rank", res.recoveries - 1))
        n = max(rows[r][1] for r in oom_ranks)
        pending, delta, fail = _recover(ctx, res, pending, n, failed, oom_ranks, step)
        d_total, n_fail = D.agree_sum(world, [delta, int(bool(fail))])
        if n_fail:  # every rank stops, the one that holds the sample with its message
            raise G.GuardGaveUp(fail or "guard.on_oom=fail: a sample on another rank does not fit in GPU memory even "
                                "alone; that rank's message says which")
        if d_total:  # a sample truncated or skipped somewhere: grads so far were divided by the old total
            G.rescale_grads(ctx.params, total, total + d_total)
            total += d_total
    loss_sum = D.reduce_step(world, ctx.params, loss_sum)
    res.micro_batches, res.tokens, res.micro_batch_size = micro_index, total, g.micro_batch_size
    _update(ctx, res, loss_sum, total, step)
    return res


def _update(ctx: StepContext, res: StepResult, loss_sum: torch.Tensor, total: int, step: int) -> None:
    """Clip, check for NaN/inf, optimizer step (retried after an OOM), zero_grad."""
    opt, t = ctx.optimizer, ctx.cfg.train
    ctx.scaler.unscale_(opt)  # no-op unless fp16 loss scaling is on
    if any(p.grad is not None for p in ctx.params):
        gn = torch.nn.utils.clip_grad_norm_(ctx.params, t.max_grad_norm if t.max_grad_norm > 0 else math.inf)
        gn = D.local_value(gn)  # fsdp: the global norm, replicated
    else:
        gn = torch.zeros((), device=ctx.device)  # every sample skipped, or nothing reached the adapter (below)
    loss_v, gn_v = torch.stack([loss_sum.float() / max(total, 1), gn.float().to(loss_sum.device)]).tolist()  # the step's one sync
    res.loss, res.grad_norm = loss_v, gn_v
    finite = math.isfinite(loss_v) and (math.isfinite(gn_v) or ctx.scaler.is_enabled())
    if finite and total > 0 and gn_v == 0:
        raise NotLearning(not_learning_message(step, total))
    if not finite or total == 0:
        res.applied = False
        if ctx.scaler.is_enabled():
            ctx.scaler.update()
        # the bad gradients go; weights and optimizer state stay as they were. With CUDA graphs the tensors stay
        # (zeroed): the captured backward accumulates into them
        opt.zero_grad(set_to_none=ctx.graphs is None)
        return
    for attempt in range(ctx.cfg.guard.max_retries + 1):
        failed = _optimizer_step(ctx, step)  # no collective inside: each rank retries on its own
        if not failed:
            break
        G.free_memory()
        for group in opt.param_groups:  # per-parameter loop: no foreach temporaries the size of all LoRA params
            if group.get("foreach"):
                group["foreach"] = False
        mem = ctx.monitor.memory()
        ctx.monitor.event("oom_recovery", step, phase="optimizer", old_micro_batch=ctx.guard.micro_batch_size,
                          new_micro_batch=ctx.guard.micro_batch_size, mem_allocated=mem["mem_allocated"],
                          mem_reserved=mem["mem_reserved"], action="retry_optimizer_step")
    gave_up = D.agree_sum(ctx.world, [int(failed)])[0]
    if gave_up:
        raise G.GuardGaveUp(G.gave_up_message(step, "optimizer", ctx.cfg.guard.max_retries))
    ctx.scaler.update()
    opt.zero_grad(set_to_none=ctx.graphs is None)  # flush the gradients as soon as we can (graphs: zero them)


def not_learning_message(step: int, tokens: int) -> str:
    return (f"step {step} trained {tokens} target tokens, yet no LoRA parameter received a gradient (grad norm 0): "
            f"the adapter would not learn. Likely cause: the base model's 4-bit layers stopped passing gradients "
            f"(bitsandbytes on AVX512-BF16 CPUs repacks a 4-bit weight for inference once its layer runs in eval() "
            f"on an input needing no gradient, e.g. an evaluation outside qlorafit.runtime.step.evaluate), or the "
            f"LoRA parameters are frozen or off the forward path (check lora.targets).")


def _optimizer_step(ctx: StepContext, step: int) -> bool:
    """optimizer.step(); True if it ran out of memory (the state is lazily built on the first step: that is where
    an OOM usually strikes, before any weight moves)."""
    try:
        if ctx.fault is not None:
            ctx.fault("optimizer", {"step": step})
        ctx.scaler.step(ctx.optimizer)
        return False
    except Exception as e:
        if not (ctx.cfg.guard.enabled and G.is_oom(e)):
            raise
    return True


# --- evaluation ------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def eval_mode(model):
    """No gradients, no dropout, no checkpointing; back in train mode afterwards, whatever happens.

    The 4-bit base layers stay in train mode: on CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight
    into an inference-only layout the first time its layer runs in eval() on an input that needs no gradient, and
    from then on no gradient flows through it (the LoRA adapters stop learning). A 4-bit layer behaves the same in
    either mode otherwise, so this costs nothing.
    """
    model.eval()  # no dropout: eval draws nothing from the RNG, so it cannot change training
    for m in model.modules():
        if getattr(m._parameters.get("weight"), "quant_state", None) is not None:  # bitsandbytes Params4bit
            m.training = True
    try:
        with torch.no_grad():
            yield
    finally:
        model.train()


def evaluate(ctx: StepContext, units: list, step: int) -> dict | None:
    """{loss (mean per target token), perplexity, token_accuracy (None where the head is streamed), tokens}. Only
    scalars are kept between batches, never logits. An OOM here shrinks the eval batch only; training's micro-batch
    and checkpointing stay as they are. Across ranks, `units` is this rank's share and the sums are added over the
    ranks (fsdp: every rank runs as many batches as the busiest one)."""
    with eval_mode(ctx.model):
        return _evaluate(ctx, units, step)


def _evaluate(ctx: StepContext, units: list, step: int) -> dict | None:
    loss_sum, tokens, i = torch.zeros((), device=ctx.device), 0, 0
    correct = torch.zeros((), device=ctx.device, dtype=torch.long)
    counted = True  # every batch counted its correct predictions
    ctx.eval_batch = ctx.eval_batch or ctx.cfg.train.micro_batch_size
    t0 = time.time()
    fsdp = ctx.world.strategy == "fsdp"  # each forward holds all-gathers: the same count everywhere, no shrinking
    batches = D.agree_max(ctx.world, -(-len(units) // ctx.eval_batch)) if fsdp else 0
    while i < len(units) or batches > 0:  # fsdp: a rank out of units runs a dummy batch
        batches -= 1
        mb = units[i: i + ctx.eval_batch] or [_dummy_unit(units, ctx.pad_id)]
        part, right, n, failed = _eval_batch(ctx, mb, step)
        if failed and fsdp:
            raise G.GuardGaveUp(D.fsdp_oom_message(ctx.world.rank, "evaluation forward"))
        if failed:
            del part, right, mb
            G.free_memory()
            old = ctx.eval_batch
            if old == 1:  # one sample does not fit even alone: leave it out of this evaluation
                ctx.monitor.event("skip_sample", step, sample_id=unit_ids(units[i])[0], reason="out of memory in eval")
                i += 1
            ctx.eval_batch = max(1, old // 2)
            mem = ctx.monitor.memory()
            ctx.monitor.event("oom_recovery", step, phase="eval", old_micro_batch=old, new_micro_batch=ctx.eval_batch,
                              mem_allocated=mem["mem_allocated"], mem_reserved=mem["mem_reserved"],
                              action="shrink_eval_batch")
            continue
        loss_sum += part
        if right is None:
            counted = False
        else:
            correct += right
        tokens += n
        i += len(mb)
    loss_sum, tokens = D.sum_scalars(ctx.world, loss_sum, tokens)
    if ctx.world.active:
        correct = D.sum_scalars(ctx.world, correct.float(), 0)[0]
    if tokens == 0:
        return None
    loss_v, right_v = torch.stack([loss_sum.float(), correct.float()]).tolist()  # the evaluation's one sync
    res = {"loss": loss_v / tokens, "perplexity": math.exp(min(loss_v / tokens, 50.0)),
           "token_accuracy": right_v / tokens if counted else None, "tokens": tokens}
    ctx.monitor.event("eval", step, **res, seconds=round(time.time() - t0, 3))
    return res


def _eval_batch(ctx: StepContext, units: list, step: int):
    from qlorafit.runtime.eval_metrics import eval_sums

    try:
        batch = _to_device(_batch(ctx, units), ctx.device)
        if ctx.fault is not None:
            ctx.fault("eval", _info(step, 0, units))
        with _autocast(ctx):
            loss_sum, right, n = eval_sums(ctx.model, batch, ctx.cfg.train.loss_impl)
        return loss_sum.float(), right, n, False
    except Exception as e:
        if not G.is_oom(e):
            raise
    return None, None, 0, True
