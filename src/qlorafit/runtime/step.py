"""One optimizer step over a list of samples: micro-batches, gradient accumulation, loss normalization, the guard.

    total = target tokens of every sample in the step       # fixed up front, before the first forward
    for each micro-batch:  (loss_sum(micro-batch) / total).backward()
    clip, optimizer.step(), zero_grad

Dividing every micro-batch by the step's total (not by its own count) makes the update independent of the split:
1 x 8 and 8 x 1 give the same gradient. That is what lets the OOM guard re-split a step mid-way: the micro-batches
already done keep their gradients, the rest go through in smaller pieces, and the sum is the same.

The unit a micro-batch is made of is a Sample, or with packing a PackedRow holding several samples.
"""

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from qlorafit.errors import NotLearning
from qlorafit.runtime import guard as G
from qlorafit.runtime.collate import PackedRow, collate, collate_packed
from qlorafit.runtime.data import IGNORE
from qlorafit.runtime.loss import forward_loss


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
    if ctx.guard.checkpointing == "offload" and ctx.offload is not None:
        return ctx.offload()
    return contextlib.nullcontext()


def _info(step: int, micro_index: int, units: list) -> dict:
    return {"step": step, "micro_index": micro_index, "n_units": len(units),
            "seq_len": max(len(u.input_ids) for u in units), "sample_ids": [i for u in units for i in unit_ids(u)]}


def _forward_backward(ctx: StepContext, units: list, denom: int, step: int, micro_index: int):
    """One micro-batch. Returns (its loss sum, detached, None), or (None, phase) after an OOM.

    On OOM this returns from outside the `except` block, so the exception, its traceback and this frame's batch and
    loss (which hold the activations through the autograd graph) are all dropped before the caller frees memory.
    """
    phase = "forward"
    try:
        batch = _to_device(_batch(ctx, units), ctx.device)  # (B, T) each
        with _memory_context(ctx):
            if ctx.fault is not None:
                ctx.fault("forward", _info(step, micro_index, units))
            with _autocast(ctx):
                loss_sum, _ = forward_loss(ctx.model, batch, ctx.cfg.train.loss_impl)
            phase = "backward"
            ctx.scaler.scale(loss_sum / denom).backward()  # frees the graph (activations) as it goes
        if ctx.fault is not None:  # after backward: a fault here leaves partial sums in .grad, as a real one would
            ctx.fault("backward", _info(step, micro_index, units))
        return loss_sum.detach(), None
    except Exception as e:
        if not (ctx.cfg.guard.enabled and G.is_oom(e)):
            raise
    return None, phase


def _recover(ctx: StepContext, res: StepResult, pending: list, total: int, phase: str, step: int) -> tuple[list, int]:
    """Pick the next rung after an OOM of pending[:micro_batch]; returns the new pending list and step total."""
    g = ctx.guard
    n = min(len(pending), g.micro_batch_size)
    old_mb = g.micro_batch_size
    action = G.escalate(g, n, offload_ok=ctx.offload is not None)
    if action in ("checkpointing_on", "offload"):
        G.apply_checkpointing(ctx.model, g.checkpointing)
    detail = {}
    if action == "single":
        u = pending[0]
        if isinstance(u, PackedRow) and len(u.sample_ids) > 1:
            pending = _split_row(u) + pending[1:]
            action = "split_row"
        else:
            pending, total, action, detail = _single_unit(ctx, res, pending, total, step, phase)
    mem = ctx.monitor.memory()
    ctx.monitor.event("oom_recovery", step, phase=phase, old_micro_batch=old_mb, new_micro_batch=g.micro_batch_size,
                      mem_allocated=mem.get("mem_allocated", 0), mem_reserved=mem.get("mem_reserved", 0),
                      action=action, checkpointing=g.checkpointing, **detail)
    return pending, total


def _single_unit(ctx: StepContext, res: StepResult, pending: list, total: int, step: int, phase: str):
    """One sample that cannot fit even alone with every memory saving on: guard.on_oom decides."""
    u, policy = pending[0], ctx.cfg.guard.on_oom
    sid = unit_ids(u)[0]
    if policy == "fail":
        raise G.GuardGaveUp(f"sample {sid} ({len(u.input_ids)} tokens) does not fit in GPU memory even alone with "
                            f"checkpointing {ctx.guard.checkpointing} (guard.on_oom=fail). Lower data.max_seq_length, "
                            f"or set guard.on_oom=adapt (truncate it) or skip.")
    new_len = len(u.input_ids) // 2
    if policy == "adapt" and new_len >= 2 and unit_targets(_truncate(u, new_len)) > 0:
        short = _truncate(u, new_len)
        new_total = total - unit_targets(u) + unit_targets(short)
        G.rescale_grads(ctx.params, total, new_total)  # micro-batches done were divided by the old total
        prev = next((x for x in res.truncated if x["sample_id"] == sid), None)  # cut again: one entry per sample
        if prev is None:
            res.truncated.append({"sample_id": sid, "from_tokens": len(u.input_ids), "to_tokens": new_len})
        else:
            prev["to_tokens"] = new_len
        return [short] + pending[1:], new_total, "truncate", {"sample_id": sid, "to_tokens": new_len}
    reason = f"out of memory in {phase} at {len(u.input_ids)} tokens, alone, checkpointing {ctx.guard.checkpointing}"
    new_total = total - unit_targets(u)
    G.rescale_grads(ctx.params, total, new_total)
    res.skipped.append({"sample_id": sid, "reason": reason})
    ctx.monitor.event("skip_sample", step, sample_id=sid, reason=reason)
    return pending[1:], new_total, "skip", {"sample_id": sid}


def train_step(ctx: StepContext, units: list, step: int) -> StepResult:
    """Forward and backward over all units in micro-batches, then one update. Never leaves .grad behind."""
    g, max_retries = ctx.guard, ctx.cfg.guard.max_retries
    res = StepResult(0.0, 0, 0, 0.0, True)
    total = sum(unit_targets(u) for u in units)  # the step's normalizer, known before the first forward
    loss_sum = torch.zeros((), device=ctx.device)  # summed on the device: no host sync per micro-batch
    pending, micro_index = list(units), 0
    while pending:
        mb = pending[: g.micro_batch_size]
        snap = G.snapshot_grads(ctx.params, micro_index) if ctx.cfg.guard.enabled else None
        part, failed = _forward_backward(ctx, mb, max(total, 1), step, micro_index)
        if failed is None:
            loss_sum += part
            res.sample_ids += [i for u in mb for i in unit_ids(u)]
            res.input_tokens += sum(len(u.input_ids) for u in mb)
            pending, micro_index = pending[len(mb):], micro_index + 1
            continue
        # Outside the except block: the failed micro-batch's tensors died with _forward_backward's frame.
        G.restore_grads(ctx.params, snap)  # undo the partial sums a half-done backward left in .grad
        del snap, part, mb
        G.free_memory()
        res.recoveries += 1
        if res.recoveries > max_retries:
            raise G.GuardGaveUp(G.gave_up_message(step, failed, res.recoveries - 1))
        pending, total = _recover(ctx, res, pending, total, failed, step)
    res.micro_batches, res.tokens, res.micro_batch_size = micro_index, total, g.micro_batch_size
    _update(ctx, res, loss_sum, total, step)
    return res


def _update(ctx: StepContext, res: StepResult, loss_sum: torch.Tensor, total: int, step: int) -> None:
    """Clip, check for NaN/inf, optimizer step (retried after an OOM), zero_grad."""
    opt, t = ctx.optimizer, ctx.cfg.train
    ctx.scaler.unscale_(opt)  # no-op unless fp16 loss scaling is on
    if any(p.grad is not None for p in ctx.params):
        gn = torch.nn.utils.clip_grad_norm_(ctx.params, t.max_grad_norm if t.max_grad_norm > 0 else math.inf)
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
        opt.zero_grad(set_to_none=True)  # the bad gradients go; weights and optimizer state stay as they were
        return
    for attempt in range(ctx.cfg.guard.max_retries + 1):
        failed = _optimizer_step(ctx, step)
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
    else:
        raise G.GuardGaveUp(G.gave_up_message(step, "optimizer", ctx.cfg.guard.max_retries))
    ctx.scaler.update()
    opt.zero_grad(set_to_none=True)  # flush the gradients as soon as we can


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
    and checkpointing stay as they are."""
    with eval_mode(ctx.model):
        return _evaluate(ctx, units, step)


def _evaluate(ctx: StepContext, units: list, step: int) -> dict | None:
    loss_sum, tokens, i = torch.zeros((), device=ctx.device), 0, 0
    correct = torch.zeros((), device=ctx.device, dtype=torch.long)
    counted = True  # every batch counted its correct predictions
    ctx.eval_batch = ctx.eval_batch or ctx.cfg.train.micro_batch_size
    t0 = time.time()
    while i < len(units):
        mb = units[i: i + ctx.eval_batch]
        part, right, n, failed = _eval_batch(ctx, mb, step)
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
