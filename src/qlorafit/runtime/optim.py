"""Optimizers and learning-rate schedules.

The schedule is a plain function of the number of applied updates (nanoGPT's `get_lr(it)`), so the only scheduler
state a checkpoint needs is that count. Optimizers are a table of small builders: first match wins.
"""

import math

import torch

from qlorafit.core.config import TrainConfig


def _torch_adamw(params, t: TrainConfig, device: torch.device):
    # fused: one kernel for all LoRA params on CUDA, no foreach temporaries (saves one fp32 copy of the params)
    fused = device.type == "cuda"
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused, foreach=False if fused else None)


def _bnb(name: str):
    def build(params, t: TrainConfig, device: torch.device):
        import bitsandbytes as bnb

        cls = {"paged_adamw_32bit": bnb.optim.PagedAdamW32bit,  # states in managed memory: spill to host under pressure
               "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,    # 2 B/param of states, paged
               "adamw_8bit": bnb.optim.AdamW8bit}[name]          # 2 B/param, always on the GPU
        return cls(params, lr=t.lr, weight_decay=t.weight_decay)
    return build


OPTIMIZERS = {
    "adamw": _torch_adamw,
    "paged_adamw_32bit": _bnb("paged_adamw_32bit"),
    "paged_adamw_8bit": _bnb("paged_adamw_8bit"),
    "adamw_8bit": _bnb("adamw_8bit"),
}


def build_optimizer(params: list, t: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer over the trainable (LoRA) parameters only: frozen 4-bit weights get no state."""
    return OPTIMIZERS[t.optimizer](params, t, device)


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
