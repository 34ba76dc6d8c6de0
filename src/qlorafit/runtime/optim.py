"""Optimizers and learning-rate schedules.

The schedule is a plain function of the number of applied updates (nanoGPT's `get_lr(it)`), so the only scheduler
state a checkpoint needs is that count. Optimizers are built from their specs in qlorafit.core.options.
"""

import math

import torch

from qlorafit.core import options as O
from qlorafit.core.config import TrainConfig


def torch_adamw(params, lr: float, weight_decay: float):
    # fused: one kernel for all LoRA params on CUDA, no foreach temporaries (saves one fp32 copy of the params)
    fused = params[0].is_cuda
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=False if fused else None)


def build_optimizer(params: list, t: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer over the trainable (LoRA) parameters only: frozen 4-bit weights get no state. Its builder is the
    one its spec names (qlorafit.core.options), imported only now."""
    return O.load(O.optimizer(t.optimizer).builder)(params, lr=t.lr, weight_decay=t.weight_decay)


def lr_at(update: int, total_updates: int, t: TrainConfig) -> float:
    """Learning rate for the update with index `update` (0-based): linear warmup from 0, then the schedule.

    >>> from qlorafit.core.config import TrainConfig
    >>> lr_at(0, 100, TrainConfig(lr=1.0, warmup_steps=10))
    0.1
    """
    if update < t.warmup_steps:
        return t.lr * (update + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    span = max(1, total_updates - t.warmup_steps)
    frac = min(1.0, (update - t.warmup_steps) / span)
    if t.schedule == "linear":
        return t.lr * (1.0 - frac)
    return t.lr * 0.5 * (1.0 + math.cos(math.pi * frac))  # cosine down to 0


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
