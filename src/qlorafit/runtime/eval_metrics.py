"""Evaluation sums beyond the loss: next-token accuracy over target tokens (perplexity is exp of the mean loss).

The logits exist one chunk at a time, as in the chunked training loss and with its chunk size
(qlorafit.core.estimate.loss_chunk_tokens): evaluation never holds (tokens x vocab) logits, so it never needs more
memory than a training step. A head the loss streams from host RAM (model.offload_lm_head), or one wrapped by LoRA,
falls back to the training loss: loss and perplexity, no accuracy.
"""

import torch
import torch.nn.functional as F

from qlorafit.core.estimate import loss_chunk_tokens
from qlorafit.runtime.loss import chunk_logits, forward_loss, target_hidden


@torch.no_grad()
def eval_sums(model, batch: dict, impl: str) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(summed cross-entropy fp32, correct argmax predictions or None, target tokens) for one batch."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.weight.device != batch["labels"].device:
        loss_sum, n = forward_loss(model, batch, impl)
        return loss_sum.float(), None, n
    h, y, softcap = target_hidden(base, batch)  # (N, h), (N,)
    loss_sum = torch.zeros((), device=h.device)
    correct = torch.zeros((), device=h.device, dtype=torch.long)
    chunk = loss_chunk_tokens(head.weight.shape[0], max(1, len(y)))
    for hc, yc in zip(h.split(chunk), y.split(chunk)):
        logits = chunk_logits(hc, head.weight, head.bias, softcap)  # (C, V) fp32: one chunk alive at a time
        loss_sum += F.cross_entropy(logits, yc, reduction="sum")
        correct += (logits.argmax(-1) == yc).sum()
    return loss_sum, correct, int(len(y))
