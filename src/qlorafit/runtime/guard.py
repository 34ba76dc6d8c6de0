"""The in-place OOM guard: what to do after a CUDA out-of-memory error inside an optimizer step.

The discipline (STYLE.md habit 8):
  - detect OOM by type first (`torch.OutOfMemoryError`), then by the message forms other layers raise (`is_oom`);
  - leave the `except` block before cleaning up: while it runs, the traceback holds the failed micro-batch's
    frames, and with them its activations, so freeing memory inside it frees nothing;
  - drop every reference to the failed micro-batch, `gc.collect()`, `torch.cuda.empty_cache()` (`free_memory`);
  - keep the effective batch: the step's samples and its loss normalization stay the same, only the split changes;
  - bound the retries and log every recovery as an event.

Escalation, each rung tried once the one before is exhausted (`escalate`):
  1. halve the micro-batch (down to 1 sample);
  2. turn gradient checkpointing on;
  3. offloaded checkpointing (layer inputs kept in pinned host RAM);
  4. a single sample that still cannot fit: guard.on_oom = adapt (truncate it) | skip (log it) | fail.
The step itself (qlorafit.runtime.step) owns the micro-batch loop; this module holds the state and the decisions.
"""

import gc
import os
from dataclasses import dataclass

import torch

from qlorafit.core import options as O
from qlorafit.core.config import GuardConfig
from qlorafit.errors import UserError

OOM_MESSAGES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
                "cuda error: out of memory", "hip out of memory", "failed to allocate memory")


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error, by type first, then by the message forms cuBLAS/cuDNN/bnb raise.

    >>> is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    True
    >>> is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    True
    >>> is_oom(ValueError("out of range"))
    False
    """
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MESSAGES)


def configure_allocator(cfg: GuardConfig) -> None:
    """Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True unless the user set it. Call before CUDA initializes:
    segments that grow in place instead of new fixed-size blocks cut fragmentation (torchtune: 16.4 -> 10.8 GiB)."""
    if cfg.expandable_segments and "PYTORCH_CUDA_ALLOC_CONF" not in os.environ \
            and "PYTORCH_ALLOC_CONF" not in os.environ:
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


def free_memory() -> None:
    """Release what the failed micro-batch held. Call it outside the `except` block, after dropping references."""
    gc.collect()  # autograd graphs of the failed forward can sit in reference cycles with their frames
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()  # hand the freed blocks back so the next, smaller allocation can be carved fresh


class GuardGaveUp(UserError):
    """The guard ran out of rungs or retries; the message says what to change."""


@dataclass
class GuardState:
    """What the guard has changed so far. Lives for the whole run and is saved in checkpoints."""

    micro_batch_size: int          # current samples per forward pass
    configured_micro_batch: int    # the configured one, for grow-back
    checkpointing: str             # off | on | offload, as currently applied
    steady_steps: int = 0          # steps since the last OOM
    recoveries: int = 0            # over the whole run

    def to_json(self) -> dict:
        return dict(self.__dict__)


def escalate(g: GuardState, n_in_micro_batch: int, offload_ok: bool) -> str:
    """Move one rung down after an OOM of a micro-batch holding `n_in_micro_batch` samples.

    Returns the action taken: 'halve', 'checkpointing_on', 'offload', or 'single' (nothing left to shrink: the
    caller applies guard.on_oom to that one sample).

    >>> g = GuardState(4, 4, "off")
    >>> [escalate(g, 4, True), g.micro_batch_size, escalate(g, 1, True), escalate(g, 1, True), escalate(g, 1, True)]
    ['halve', 2, 'checkpointing_on', 'offload', 'single']
    """
    g.steady_steps = 0
    g.recoveries += 1
    if n_in_micro_batch > 1:
        g.micro_batch_size = max(1, min(g.micro_batch_size, n_in_micro_batch) // 2)
        return "halve"
    stronger = O.stronger_checkpointing(g.checkpointing, to_host_ok=offload_ok)
    if stronger is None:
        return "single"
    g.checkpointing = stronger.name
    return "offload" if stronger.to_host else "checkpointing_on"


def maybe_grow_back(g: GuardState, cfg: GuardConfig) -> bool:
    """After guard.grow_back_after steady steps, double the micro-batch again (up to the configured one)."""
    g.steady_steps += 1
    if cfg.grow_back_after and g.steady_steps >= cfg.grow_back_after and g.micro_batch_size < g.configured_micro_batch:
        g.micro_batch_size = min(g.configured_micro_batch, g.micro_batch_size * 2)
        g.steady_steps = 0
        return True
    return False


def apply_checkpointing(model, mode: str) -> None:
    """Non-reentrant checkpointing for a mode that recomputes (on, offload): each decoder layer keeps only its input
    (B, T, h) and recomputes the rest in backward. Offload's routing of those inputs to host RAM is
    qlorafit.runtime.offload's (at load: model.apply_memory_levers; after an escalation: step._memory_context)."""
    on = getattr(model, "is_activation_checkpointing", None)
    if on is None:
        on = getattr(model, "is_gradient_checkpointing", False)
    if O.checkpointing(mode).recompute and not on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def snapshot_grads(params: list, micro_index: int) -> list | None:
    """The LoRA gradients before a micro-batch's backward, to undo a backward that OOMed half-way (its partial
    sums already sit in .grad). Costs one copy of the LoRA grads (MBs); nothing at micro-batch 0, where they are None."""
    if micro_index == 0:
        return None
    have = [p.grad for p in params if p.grad is not None]
    copies = iter(torch._foreach_mul(have, 1.0) if have else [])  # one multi-tensor launch, not one per parameter
    return [next(copies) if p.grad is not None else None for p in params]


def restore_grads(params: list, snap: list | None) -> None:
    if snap is None:
        for p in params:
            p.grad = None
    else:
        for p, s in zip(params, snap):
            p.grad = s


def rescale_grads(params: list, old_tokens: int, new_tokens: int) -> None:
    """The step's normalizer changed (a sample skipped or truncated): grads so far were divided by old_tokens."""
    if new_tokens > 0 and old_tokens != new_tokens:
        for p in params:
            if p.grad is not None:
                p.grad.mul_(old_tokens / new_tokens)


def gave_up_message(step: int, phase: str, retries: int) -> str:
    return (f"out of GPU memory at step {step} ({phase}) after {retries} recoveries (guard.max_retries). Lower "
            f"data.max_seq_length, set train.grad_checkpointing=offload, a smaller lora.r, or run `qlorafit plan`.")
