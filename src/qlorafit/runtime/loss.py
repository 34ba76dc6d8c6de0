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

With lm_head in host RAM (model.offload_lm_head, qlorafit.runtime.offload.offload_lm_head) a fourth way is used whatever impl
says: StreamedLinearCrossEntropy, one pass over the vocabulary in slices copied to the GPU, with an online softmax.
"""

import warnings

import torch
import torch.nn.functional as F

from qlorafit.errors import UserError
from qlorafit.core import options as O
from qlorafit.core.estimate import lm_head_slice_rows, loss_chunk_tokens
from qlorafit.runtime.data import IGNORE
from qlorafit.runtime.offload import in_host_ram


def forward_loss(model, batch: dict, impl: str, chunk_tokens: int | None = None,
                 slice_rows: int | None = None) -> tuple[torch.Tensor, int]:
    """(sum of target-token cross-entropies as an fp32 scalar, number of target tokens) for one micro-batch.

    model: a PEFT-wrapped causal LM; batch: input_ids, labels (aligned with input_ids, -100 = no loss; shifted here),
    attention_mask and/or position_ids. chunk_tokens and slice_rows override the chunk size and the streamed head's
    slice (tests); by default they come from qlorafit.core.estimate (loss_chunk_tokens, lm_head_slice_rows) so the
    estimator and the code agree. A head in host RAM is always streamed, whatever impl says.
    """
    spec = O.loss(impl)  # its properties, not its name, pick the path below
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    streamed = _head_in_host_ram(head, batch["labels"].device)
    if not spec.chunked and not streamed:
        targets = batch["labels"][:, 1:].reshape(-1)  # (B*(T-1),) token t predicts label t+1
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, T, V), softcapped
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets,
                               ignore_index=IGNORE, reduction="sum")  # + (tokens x V) fp32 copy and log-softmax
        return loss, int((targets != IGNORE).sum())

    h, y, softcap = target_hidden(base, batch)
    n = len(y)
    if n == 0:
        return h.sum(dtype=torch.float32) * 0.0, 0  # keeps the graph connected; no token contributes
    if streamed:
        return _streamed_loss(head, h, y, chunk_tokens, slice_rows, softcap), n
    if spec.builder and h.is_cuda and _plain_linear(head):
        fused = _kernel_loss(spec, softcap)
        if fused is not None:
            return fused(head.weight, h, y).float(), n
    elif spec.builder:
        warnings.warn(f"loss_impl={impl} needs {spec.requires} and a CUDA device: using the chunked loss", stacklevel=2)
    chunk = chunk_tokens or loss_chunk_tokens(head.weight.shape[0], n)
    if _plain_linear(head):
        return LinearCrossEntropy.apply(h, head.weight, head.bias, y, chunk, softcap), n
    return _checkpointed_chunks(head, h, y, chunk, softcap), n


def masked_loss(model, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sum of target-token cross-entropies of a right-padded micro-batch given as embeddings (B, T, h), with
    ignored labels masked rather than dropped: no host sync, so that a CUDA graph can hold it (train.cuda_graphs).
    No attention mask: under causal attention, right padding cannot change a real token's output."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(inputs_embeds=embeds).last_hidden_state  # (B, T, h)
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1)  # token t predicts label t+1; IGNORE kept in place
    head = base.get_output_embeddings()
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    chunk = loss_chunk_tokens(head.weight.shape[0], h.shape[0])
    if _plain_linear(head):
        return LinearCrossEntropy.apply(h, head.weight, head.bias, y, chunk, softcap, True)
    return _checkpointed_chunks(head, h, y, chunk, softcap)  # F.cross_entropy skips IGNORE itself


def target_hidden(base, batch: dict) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """(h, y, softcap): the final norm's output at the N positions that take loss (N, h), no logits yet; their
    next-token labels (N,); the model's logit softcap. Ignored positions go before any (N x h) @ (h x V) matmul."""
    hidden = base.model(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state  # (B, T, h)
    targets = batch["labels"][:, 1:].reshape(-1)  # token t predicts label t+1
    keep = (targets != IGNORE).nonzero().squeeze(1)
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, keep)
    return h, targets.index_select(0, keep), getattr(base.config.get_text_config(), "final_logit_softcapping", None)


def _head_in_host_ram(head, device: torch.device) -> bool:
    """lm_head flagged by offload_lm_head, or its weight on the CPU while the batch is on a GPU."""
    weight = getattr(head, "weight", None)
    return in_host_ram(head) or (weight is not None and weight.device.type == "cpu" and device.type != "cpu")


def _plain_linear(head) -> bool:
    """A head we can multiply by its weight ourselves (not a LoRA or modules_to_save wrapper)."""
    return type(head) is torch.nn.Linear


def _kernel_loss(spec, softcap):
    """The spec's fused kernel (liger's LigerFusedLinearCrossEntropyLoss) summing over tokens, or None (with a
    warning) when it cannot be imported."""
    try:
        build = O.load(spec.builder)
    except ImportError:
        warnings.warn(f"loss_impl={spec.name}: {spec.requires} is not installed (pip install "
                      f"{spec.requires.replace('_', '-')}); using the chunked loss", stacklevel=3)
        return None
    return build(ignore_index=IGNORE, reduction="sum", softcap=softcap)


def chunk_logits(h: torch.Tensor, weight, bias, softcap) -> torch.Tensor:
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
    def forward(ctx, h, weight, bias, y, chunk: int, softcap, masked: bool = False):
        """masked: y may hold IGNORE; those positions add nothing (train.cuda_graphs, where no host sync may drop
        them first)."""
        need_h, need_w = h.requires_grad, weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        grad_h = torch.empty_like(h) if need_h else None  # (N, h) compute dtype, the only activation kept
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, h.shape[0], chunk):
            hc, yc = h[s:s + chunk], y[s:s + chunk]
            keep = None
            if masked:
                keep = (yc != IGNORE).to(torch.float32)  # (C,) 1 where the position takes loss
                yc = yc.clamp(min=0)  # any valid index: its row is zeroed below
            logits = chunk_logits(hc, weight, bias, softcap)  # (C, V) fp32
            lse = torch.logsumexp(logits, dim=-1)
            nll = lse - logits.gather(1, yc[:, None]).squeeze(1)
            total += (nll * keep).sum() if masked else nll.sum()
            if not (need_h or need_w or need_b):
                continue
            if softcap:  # a second (C, V) fp32 buffer: the capped logits give d(c tanh(x/c))/dx = 1 - (logits/c)^2
                g = (logits - lse[:, None]).exp_()
                g[torch.arange(g.shape[0], device=g.device), yc] -= 1.0
                g.mul_(logits.div_(softcap).square_().neg_().add_(1.0))
            else:
                g = logits.sub_(lse[:, None]).exp_()  # softmax, in place over the fp32 logits
                g[torch.arange(g.shape[0], device=g.device), yc] -= 1.0  # d CE / d logits
            if masked:
                g.mul_(keep[:, None])
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
        return gh, gw, gb, None, None, None, None


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


# --- lm_head in host RAM: the streamed loss -----------------------------------------------------------------------

def _streamed_loss(head, h, y, chunk_tokens, slice_rows, softcap) -> torch.Tensor:
    """The streamed loss over a frozen plain head; slice and chunk sizes from qlorafit.core.estimate unless given."""
    if not _plain_linear(head) or any(p.requires_grad for p in head.parameters()):
        raise UserError("model.offload_lm_head: lm_head is trained here (lora.targets or lora.modules_to_save name "
                        "it); only a frozen lm_head can be streamed from host RAM")
    rows = slice_rows or lm_head_slice_rows(*head.weight.shape)
    chunk = chunk_tokens or loss_chunk_tokens(rows, h.shape[0])  # one tile's logits stay under the chunked target
    return StreamedLinearCrossEntropy.apply(h, head.weight, head.bias, y, rows, chunk, softcap)


class StreamedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(softcap(h_i W^T + b), y_i) with W in host RAM: one pass over the vocabulary, slice by slice.

    Each slice W_j (R rows, LM_HEAD_SLICE_BYTES) is copied to the GPU once; while it is in use the next one arrives
    on a side stream (_SliceStream). For each chunk of C tokens the slice's logits l (C, R) update an online softmax
    (flash-attention style) kept for all N tokens: running max m and sum s (N fp32 each), the target's logit when
    it falls in the slice, and for the gradient acc (N, h) fp32 += exp(l - m) dcap @ W_j, old values rescaled by
    exp(m_old - m_new) (dcap = 1 - (l/c)^2 is the softcap's derivative, 1 without one). At the end lse = m + log s,
    loss = sum(lse - l_y), grad_h = acc / s - dcap_y W[y] (the target rows gathered in host RAM and copied over).
    The head is frozen: no gradient for W or b. Device memory: 2 slices + acc (N x h x 4) + W[y] (N x h x 2) + one
    (C, R) tile; backward only scales the saved grad_h.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, y, rows: int, chunk: int, softcap):
        if weight.requires_grad or (bias is not None and bias.requires_grad):
            raise ValueError("streamed loss: the head must be frozen (no gradient for a weight in host RAM)")
        n, need_h = h.shape[0], h.requires_grad
        f32 = dict(dtype=torch.float32, device=h.device)
        m = torch.full((n,), float("-inf"), **f32)  # running max of each token's logits
        s = torch.zeros(n, **f32)  # running sum of exp(logit - m)
        ly = torch.zeros(n, **f32)  # the target's logit, picked up in the slice that holds it
        acc = torch.zeros((n, h.shape[1]), **f32) if need_h else None  # N x h x 4 bytes, the largest state
        stream = _SliceStream(weight, bias, rows, h.device)
        target_rows = stream.gather(y) if need_h else None  # W[y] (N, h): ready once the slices are through
        for start, w, b in stream:
            for c in range(0, n, chunk):
                cs = slice(c, c + chunk)
                _fold_tile(h[cs], y[cs], w, b, start, softcap, m[cs], s[cs], ly[cs], acc[cs] if need_h else None)
        total = (m + s.log() - ly).sum()
        grad_h = None
        if need_h:
            acc.div_(s[:, None])  # sum_v softmax_v dcap_v W_v
            if softcap:
                acc.addcmul_(target_rows, ly.div(softcap).square_().neg_().add_(1.0)[:, None], value=-1.0)
            else:
                acc.sub_(target_rows)  # - onehot: the target row
            del target_rows
            grad_h = acc.to(h.dtype)  # what the chunked loss returns too: the gradient in the compute dtype
            del acc
        ctx.save_for_backward(grad_h)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        (grad_h,) = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        return gh, None, None, None, None, None, None


def _fold_tile(hc, yc, w, b, start: int, softcap, m, s, ly, acc) -> None:
    """One (C tokens x R vocabulary rows) tile into the running state m, s, ly (C,) and acc (C, h), in place."""
    logits = chunk_logits(hc, w, b, softcap)  # (C, R) fp32: the only vocabulary-wide tensor, 6-8 C R bytes
    r = logits.shape[1]
    inside = (yc >= start) & (yc < start + r)
    picked = logits.gather(1, (yc - start).clamp_(0, r - 1)[:, None]).squeeze(1)
    ly.copy_(torch.where(inside, picked, ly))  # a mask, not an index: no host sync per tile
    m_new = torch.maximum(m, logits.amax(1))
    scale = (m - m_new).exp_()  # rescales the old sum and acc to the new max (0 on the first slice: m was -inf)
    m.copy_(m_new)
    dcap = logits.div(softcap).square_().neg_().add_(1.0) if softcap and acc is not None else None  # + 4 C R
    p = logits.sub_(m_new[:, None]).exp_()  # in place over the logits
    s.mul_(scale).add_(p.sum(1))
    if acc is None:
        return
    if dcap is not None:
        p.mul_(dcap)
        del dcap
    # the matmul in the head's dtype (as the chunked loss feeds its gradient), accumulated in fp32
    acc.mul_(scale[:, None]).add_(p.to(w.dtype) @ w)


class _SliceStream:
    """lm_head's weight in slices of `rows`, on `device`, in order: (start, W_j, b_j).

    From host RAM to a GPU: two device buffers (2 x rows x h x 2 bytes); slice j+1 is copied on a side CUDA stream
    while slice j is used, and a buffer is refilled only once the compute stream is done reading it (events).
    Elsewhere (CPU tests, a head already on the device) the slices are views or plain copies.
    """

    def __init__(self, weight, bias, rows: int, device: torch.device):
        self.weight, self.rows, self.device = weight, rows, device
        self.bias = bias.to(device) if bias is not None else None  # V values: copied whole, once
        self.async_copy = weight.device.type == "cpu" and device.type == "cuda"
        if self.async_copy:
            self.compute = torch.cuda.current_stream(device)
            self.side = torch.cuda.Stream(device)

    def gather(self, y: torch.Tensor) -> torch.Tensor:
        """W[y] (N, h) on the device: the target rows gathered where W lives (N x h x 2 bytes over PCIe)."""
        if not self.async_copy:
            return self.weight.index_select(0, y.to(self.weight.device)).to(self.device)
        y_host = y.cpu()  # a sync: the ids are needed on the host to gather there
        host = torch.empty((y.shape[0], self.weight.shape[1]), dtype=self.weight.dtype, pin_memory=True)
        torch.index_select(self.weight, 0, y_host, out=host)
        out = torch.empty(host.shape, dtype=host.dtype, device=self.device)
        self.side.wait_stream(self.compute)  # out's block may have been freed by kernels still running
        with torch.cuda.stream(self.side):  # ordered before the slices; the loop's end waits for the side stream
            out.copy_(host, non_blocking=True)
        return out

    def _bias(self, start: int, stop: int):
        return self.bias[start:stop] if self.bias is not None else None

    def __iter__(self):
        v = self.weight.shape[0]
        starts = list(range(0, v, self.rows))
        if not self.async_copy:
            for st in starts:
                yield st, self.weight[st:st + self.rows].to(self.device), self._bias(st, st + self.rows)
            return
        bufs = [torch.empty((self.rows, self.weight.shape[1]), dtype=self.weight.dtype, device=self.device)
                for _ in range(2)]  # the 2 slice buffers: 2 x 64 MiB by default
        self.side.wait_stream(self.compute)  # their blocks may have been freed by kernels still running
        landed = [torch.cuda.Event(), torch.cuda.Event()]
        read: list = [None, None]  # per buffer: an event after the last kernel that read it

        def issue(j: int) -> None:
            k, st = j % 2, starts[j]
            with torch.cuda.stream(self.side):
                if read[k] is not None:
                    self.side.wait_event(read[k])  # never overwrite a slice the compute stream still reads
                bufs[k][:min(self.rows, v - st)].copy_(self.weight[st:st + self.rows], non_blocking=True)
                landed[k].record(self.side)

        try:
            issue(0)
            for j, st in enumerate(starts):
                if j + 1 < len(starts):
                    issue(j + 1)  # the next slice crosses PCIe while this one is multiplied
                k = j % 2
                self.compute.wait_event(landed[k])
                yield st, bufs[k][:min(self.rows, v - st)], self._bias(st, st + self.rows)
                read[k] = torch.cuda.Event()
                read[k].record(self.compute)
        finally:
            self.compute.wait_stream(self.side)  # the gather and any copy in flight land before the buffers go
