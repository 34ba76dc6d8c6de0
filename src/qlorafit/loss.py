"""The training loss: the sum of next-token cross-entropies over target tokens, three ways.

    loss_sum, n_tokens = forward_loss(model, batch, "chunked")
    (loss_sum / step_tokens).backward()   # the loop normalizes by the whole step's target count

The logits of a causal LM are (tokens x vocab): at vocab 128,256 that is 250 KiB per token in bf16, and the standard
loss keeps 10-14 bytes x vocab per token (bf16 logits, their fp32 copy, log-softmax, the fp32 gradient). That is most
of the step's memory growth per token. The three implementations:
  standard  the model's own forward: full logits, then fp32 cross-entropy (what transformers does).
  chunked   LinearCrossEntropy below: C target tokens at a time; each chunk's logits exist only inside the loop.
  fused     liger-kernel's fused linear cross entropy (Triton, CUDA only); falls back to chunked elsewhere.
Positions whose label is -100 (padding, prompt tokens) are dropped before the head matmul in chunked and fused.
"""

import warnings

import torch
import torch.nn.functional as F

from qlorafit.estimate import loss_chunk_tokens

IGNORE = -100
IMPLS = ("standard", "chunked", "fused")


def forward_loss(model, batch: dict, impl: str, chunk_tokens: int | None = None) -> tuple[torch.Tensor, int]:
    """(sum of target-token cross-entropies as an fp32 scalar, number of target tokens) for one micro-batch.

    model: a PEFT-wrapped causal LM; batch: input_ids, labels (aligned with input_ids, -100 = no loss; shifted here),
    attention_mask and/or position_ids. chunk_tokens overrides the chunk size (tests); by default it comes from
    qlorafit.estimate.loss_chunk_tokens so the estimator and the code agree.
    """
    if impl not in IMPLS:
        raise ValueError(f"loss impl {impl!r}: choose from {', '.join(IMPLS)}")
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = labels[:, 1:].reshape(-1)  # (B*(T-1),) token t predicts label t+1
    if impl == "standard":
        logits = model(**inputs).logits  # (B, T, V) in the compute dtype, softcapped by the model if it does that
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets,
                               ignore_index=IGNORE, reduction="sum")  # + (tokens x V) fp32 copy and log-softmax
        return loss, int((targets != IGNORE).sum())

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(**inputs).last_hidden_state  # (B, T, h): the final norm's output, no logits yet
    keep = (targets != IGNORE).nonzero().squeeze(1)  # drop ignored positions before the (N x h) @ (h x V) matmul
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, keep)  # (N, h)
    y = targets.index_select(0, keep)  # (N,)
    n = int(keep.numel())
    head = base.get_output_embeddings()
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    if n == 0:
        return h.sum(dtype=torch.float32) * 0.0, 0  # keeps the graph connected; no token contributes
    if impl == "fused" and h.is_cuda and _plain_linear(head):
        fused = _liger_loss(softcap)
        if fused is not None:
            return fused(head.weight, h, y).float(), n
    elif impl == "fused":
        warnings.warn("loss_impl=fused needs liger-kernel and a CUDA device: using the chunked loss", stacklevel=2)
    chunk = chunk_tokens or loss_chunk_tokens(head.weight.shape[0], n)
    if _plain_linear(head):
        return LinearCrossEntropy.apply(h, head.weight, head.bias, y, chunk, softcap), n
    return _checkpointed_chunks(head, h, y, chunk, softcap), n


def _plain_linear(head) -> bool:
    """A head we can multiply by its weight ourselves (not a LoRA or modules_to_save wrapper)."""
    return type(head) is torch.nn.Linear


def _liger_loss(softcap):
    """liger's LigerFusedLinearCrossEntropyLoss(reduction=sum), or None (with a warning) when it cannot be imported."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        warnings.warn("loss_impl=fused: liger-kernel is not installed (pip install liger-kernel); using the chunked "
                      "loss", stacklevel=3)
        return None
    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum", softcap=softcap)


def _chunk_logits(h: torch.Tensor, weight, bias, softcap) -> torch.Tensor:
    """(C, V) fp32 logits of one chunk: matmul in the compute dtype (2 C V bytes), then the fp32 copy (4 C V)."""
    logits = F.linear(h, weight, bias).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


class LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(softcap(h_i W^T + b), y_i), chunk by chunk, with the gradients computed during the forward.

    Per chunk of C tokens: logits (C, V) -> fp32 -> logsumexp -> loss; softmax - onehot is the logits' gradient,
    which is multiplied back into grad_h (N, h) and, if the head trains, grad_W (V, h). Only these gradients are
    saved for backward, which scales them by grad_output: no (N x V) tensor is ever held, and backward does no
    recompute. Peak extra memory: about 12 C V bytes for one chunk. If no gradient is needed (eval), only the loss is
    computed.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, y, chunk: int, softcap):
        need_h, need_w = h.requires_grad, weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        grad_h = torch.empty_like(h) if need_h else None  # (N, h) compute dtype, the only activation kept
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, h.shape[0], chunk):
            hc, yc = h[s:s + chunk], y[s:s + chunk]
            logits = _chunk_logits(hc, weight, bias, softcap)  # (C, V) fp32
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            if not (need_h or need_w or need_b):
                continue
            if softcap:  # a second (C, V) fp32 buffer: the capped logits give d(c tanh(x/c))/dx = 1 - (logits/c)^2
                g = (logits - lse[:, None]).exp_()
                g[torch.arange(g.shape[0], device=g.device), yc] -= 1.0
                g.mul_(logits.div_(softcap).square_().neg_().add_(1.0))
            else:
                g = logits.sub_(lse[:, None]).exp_()  # softmax, in place over the fp32 logits
                g[torch.arange(g.shape[0], device=g.device), yc] -= 1.0  # d CE / d logits
            g16 = g.to(h.dtype)  # what autograd would feed the linear's backward in the standard loss
            del g
            if need_h:
                grad_h[s:s + chunk] = g16 @ weight  # (C, h)
            if need_w:
                grad_w.addmm_(g16.t().float(), hc.float())
            if need_b:
                grad_b += g16.float().sum(0)
            del g16, logits
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_out.to(torch.float32)
        w_dtype, b_dtype = ctx.dtypes
        gh = grad_h * scale.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * scale).to(w_dtype) if grad_w is not None else None  # accumulated in fp32, returned as W's dtype
        gb = (grad_b * scale).to(b_dtype) if grad_b is not None else None
        return gh, gw, gb, None, None, None


def _checkpointed_chunks(head, h: torch.Tensor, y: torch.Tensor, chunk: int, softcap) -> torch.Tensor:
    """For heads that are wrapped modules (LoRA on lm_head, modules_to_save): each chunk under checkpoint, so only
    its input slice is saved and its logits are recomputed, one chunk at a time, in backward."""
    from torch.utils.checkpoint import checkpoint

    def chunk_loss(hc, yc):
        logits = head(hc).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, yc, reduction="sum")

    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for s in range(0, h.shape[0], chunk):
        total = total + checkpoint(chunk_loss, h[s:s + chunk], y[s:s + chunk], use_reentrant=False)
    return total
