"""Tiling the MLP over the sequence, for long contexts.

Inside one decoder layer the MLP is the memory hog at long lengths: gate and up outputs and act(gate) are kept for
backward (3 x 2 x intermediate bytes per token, 86 KB at Llama-3-8B's 14,336) and its backward briefly holds as
much again in gradients. With checkpointing on, that is what one layer's recompute costs per token.

Tiling runs the MLP on slices of `tile_tokens` positions, each under its own (non-reentrant) checkpoint: forward
keeps only each slice's input (a view of the MLP's input, which the layer keeps anyway), and backward rebuilds one
slice's intermediates at a time. The per-token MLP cost becomes one slice's worth, whatever the length; the price is
one more MLP forward per step (the MLP is position-wise, so the result is the same to the last bit).
"""

import torch
from torch.utils.checkpoint import checkpoint


def _tiled(forward, tile_tokens: int):
    def tiled_forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        t = x.shape[-2]  # (B, T, h)
        if t <= tile_tokens or not torch.is_grad_enabled():
            return forward(x, *args, **kwargs)  # short rows and eval: nothing to save, no tiling needed
        outs = [checkpoint(forward, x[..., s:s + tile_tokens, :], *args, use_reentrant=False, **kwargs)
                for s in range(0, t, tile_tokens)]
        return torch.cat(outs, dim=-2)  # (B, T, h); cat keeps nothing for backward

    tiled_forward.__wrapped__ = forward
    return tiled_forward


def tile_mlps(model, tile_tokens: int) -> int:
    """Wrap the forward of every decoder layer's `mlp` so sequences longer than tile_tokens run in slices.
    Returns how many MLPs were wrapped (0 when tile_tokens <= 0 or the model has no `.mlp` layers)."""
    if tile_tokens <= 0:
        return 0
    n = 0
    for name, module in model.named_modules():
        if name.endswith(".mlp") and not hasattr(module.forward, "__wrapped__"):
            module.forward = _tiled(module.forward, tile_tokens)
            n += 1
    return n
