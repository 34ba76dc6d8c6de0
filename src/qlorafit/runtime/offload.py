"""Moving what the step does not need right now into host RAM: checkpointed layer inputs, the input embedding, and
lm_head's weight.

Offloaded checkpointing. With non-reentrant checkpointing each decoder layer keeps only its input (B, T, h) for the
recompute: layers x tokens x h x 2 bytes, 64 MiB per layer at 8K tokens on an 8B model, 2 GiB for 32 layers. Here that
input goes to pinned host RAM on a side CUDA stream while the next layers compute, and comes back in backward, the
next layer down prefetched while this one recomputes. The hook point: torch's non-reentrant checkpoint saves its
inputs through the saved-tensor hooks active around the checkpoint call (everything inside the checkpointed region is
handled by the checkpoint's own hooks), so a `saved_tensors_hooks` context around each layer's checkpoint call sees
exactly the layer's input, once per layer.

    handle = enable_offloaded_checkpointing(model, max_host_bytes=32 * 2**30)
    ... train ...; handle.host_bytes, handle.peak_host_bytes, handle.kept_bytes; handle.remove()
    with offloaded_checkpointing(model): ...   # the step's form: the active handle, or one for this block

Embedding offload. `offload_embedding(model, device)` keeps the (frozen) input embedding in host RAM: the lookup runs
on the CPU and only the (B, T, h) result is copied to the GPU. Saves vocab x hidden x 2 bytes (1 GiB on Llama-3-8B).

lm_head offload. `offload_lm_head(model, device)` keeps the (frozen) head's weight in pinned host RAM; the loss
(qlorafit.runtime.loss.StreamedLinearCrossEntropy) streams it through the GPU in slices, one host->GPU copy of the whole head
per forward. Saves another vocab x hidden x 2 bytes. A tied model shares one matrix between lookup and head: it can
only leave the GPU if both stop reading it there, so offload_lm_head moves the lookup to the host as well.

On CPU all three are numerically exact no-ops (tensors already in host RAM are kept as they are), so CPU tests check the
bookkeeping and the gradients; the copies and streams need a GPU (benchmarks/levers_check.py).
"""

import contextlib
import os
import warnings
import weakref

import torch
from torch.utils.checkpoint import checkpoint


def default_max_host_bytes() -> int:
    """Half of the host RAM available now: room for the data loader, the page cache and paged optimizer states."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 8 * 1024**3


class _Kept:
    """A saved tensor left where it was: on CPU already, or over the host budget."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


class _Offloaded:
    """A layer input in host RAM; `ready` orders the device copy (prefetch) before its use. `order[index]` is this
    input in its forward's list, so backward can find the layer below."""

    __slots__ = ("host", "device", "fetched", "ready", "order", "index", "__weakref__")

    def __init__(self, host, device, order):
        self.host, self.device, self.order, self.index = host, device, order, len(order)
        self.fetched = self.ready = None


class OffloadHandle:
    """Offloads each checkpointed layer's input to pinned host RAM, up to max_host_bytes; more stays on the device.

    host_bytes: layer inputs now held in host RAM (tensor bytes; torch's pinned allocator may round each block up);
    peak_host_bytes: the most ever held at once; kept_bytes: inputs that stayed on the device because of the bound;
    prefetched / fetched_on_demand: copies back started while the layer above recomputed / when the recompute needed
    them (the top layer of each backward; more means the copies stall the compute).
    """

    def __init__(self, max_host_bytes: int):
        self.max_host_bytes = max_host_bytes
        self.host_bytes = self.peak_host_bytes = self.kept_bytes = 0
        self.prefetched = self.fetched_on_demand = 0
        self._order: list[weakref.ref] = []  # this forward's offloaded inputs, in layer order
        self._backward_started = False
        self._stream = None  # the side stream for the copies, made on first use on a CUDA device
        self._restore: list[tuple[object, object]] = []

    # --- what each layer's checkpoint call becomes ---------------------------------------------------------------

    def checkpoint(self, function, *args, **kwargs):
        """torch.utils.checkpoint (non-reentrant) with the saved inputs routed through pack/unpack below."""
        kwargs.pop("use_reentrant", None)
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            return checkpoint(function, *args, use_reentrant=False, **kwargs)

    def _pack(self, t: torch.Tensor):
        if self._backward_started:  # a new forward: the previous step's order is done with
            self._order, self._backward_started = [], False
        n = t.numel() * t.element_size()
        if self.host_bytes + n > self.max_host_bytes:
            self.kept_bytes += n  # over the bound: this input costs device memory, as with plain checkpointing
            weakref.finalize(k := _Kept(t), self._release, "kept_bytes", n)
            return k
        p = _Offloaded(self._to_host(t), t.device, self._order)
        self.host_bytes += n
        self.peak_host_bytes = max(self.peak_host_bytes, self.host_bytes)
        weakref.finalize(p, self._release, "host_bytes", n)  # when autograd frees the saved input
        self._order.append(weakref.ref(p))
        return p

    def _unpack(self, p):
        if isinstance(p, _Kept):
            return p.tensor
        self._backward_started = True
        if p.fetched is None:  # not prefetched: the top layer, or a forward that was cut short
            self._fetch(p, prefetch=False)
        out = self._take(p)
        if p.index > 0:  # backward goes down: bring the layer below in while this one recomputes
            below = p.order[p.index - 1]()
            if isinstance(below, _Offloaded) and below.fetched is None:
                self._fetch(below, prefetch=True)
        return out

    def _release(self, counter: str, n: int) -> None:
        setattr(self, counter, getattr(self, counter) - n)

    # --- the copies, on a side stream ------------------------------------------------------------------------------

    def _side_stream(self, device):
        if self._stream is None:
            self._stream = torch.cuda.Stream(device)
        return self._stream

    def _to_host(self, t: torch.Tensor) -> torch.Tensor:
        """Device -> pinned host, asynchronously: the copy waits for the layer that wrote t, not the layers after."""
        if t.device.type == "cpu":
            return t  # already in host RAM: keep it (and count it)
        side = self._side_stream(t.device)
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)  # torch's caching host allocator reuses blocks
        side.wait_stream(torch.cuda.current_stream(t.device))
        with torch.cuda.stream(side):
            host.copy_(t, non_blocking=True)
        t.record_stream(side)  # the allocator keeps t's block until the copy is done, though t is freed right away
        return host

    def _fetch(self, p: _Offloaded, prefetch: bool) -> None:
        """Pinned host -> device on the side stream (in order after the device -> host copy, same stream)."""
        if prefetch:
            self.prefetched += 1
        else:
            self.fetched_on_demand += 1
        if p.device.type == "cpu":
            p.fetched = p.host
            return
        # Memory decision: the landing buffer is allocated on the compute stream, where it is used and freed. The
        # caching allocator keeps one pool per stream: buffers made on the side stream left their blocks in a pool the
        # compute stream cannot reuse (2.67 GiB reserved but unallocated at 16K tokens in session 6, against 0.3 GiB
        # with plain checkpointing). The side stream waits for the compute stream's work queued so far, since the block
        # may have just been freed by it; the copy still overlaps the recompute and backward of the layer above.
        compute = torch.cuda.current_stream(p.device)
        p.fetched = torch.empty(p.host.shape, dtype=p.host.dtype, device=p.device)
        side = self._side_stream(p.device)
        side.wait_stream(compute)
        with torch.cuda.stream(side):
            p.fetched.copy_(p.host, non_blocking=True)
            p.ready = torch.cuda.Event()
            p.ready.record(side)
        p.fetched.record_stream(side)  # if the input is dropped before it is taken, its block waits for the copy

    def _take(self, p: _Offloaded) -> torch.Tensor:
        """The fetched input, safe to use on the compute stream; p lets go of it."""
        out, p.fetched = p.fetched, None
        if p.device.type != "cpu":
            compute = torch.cuda.current_stream(p.device)
            compute.wait_event(p.ready)  # the recompute starts once the copy has landed
        return out

    def remove(self) -> None:
        """Back to plain checkpointing on every layer this handle changed."""
        for module, func in self._restore:
            module._gradient_checkpointing_func = func
        self._restore = []


def enable_offloaded_checkpointing(model, max_host_bytes: int | None = None) -> OffloadHandle:
    """Offload every checkpointed decoder layer's input to host RAM. Call after gradient_checkpointing_enable.

    max_host_bytes bounds the host RAM held (default: half of what is available now); inputs beyond it stay on the
    device. Returns the handle with the byte counters and remove().
    """
    handle = OffloadHandle(default_max_host_bytes() if max_host_bytes is None else max_host_bytes)
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(module, "_gradient_checkpointing_func"):
            handle._restore.append((module, module._gradient_checkpointing_func))
            module._gradient_checkpointing_func = handle.checkpoint
    if not handle._restore:
        raise ValueError("offloaded checkpointing: no checkpointed layers; call "
                         "gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False}) first")
    return handle


def active_handle(model) -> OffloadHandle | None:
    """The handle whose offloading is on for this model's layers, if any (found on the layers, not in a global)."""
    for module in model.modules():
        owner = getattr(getattr(module, "_gradient_checkpointing_func", None), "__self__", None)
        if isinstance(owner, OffloadHandle):
            return owner
    return None


@contextlib.contextmanager
def offloaded_checkpointing(model, max_host_bytes: int | None = None):
    """Offloaded checkpointing for the duration of a block (the step wraps forward and backward in it, when the guard
    has escalated to offload). Reuses the handle enabled at load; otherwise enables one and removes it on exit."""
    handle = active_handle(model)
    if handle is not None:
        yield handle
        return
    handle = enable_offloaded_checkpointing(model, max_host_bytes)
    try:
        yield handle
    finally:
        handle.remove()


# --- the input embedding and lm_head in host RAM ------------------------------------------------------------------

HOST_RAM_FLAG = "qlorafit_in_host_ram"  # set on the embedding / head module whose weight was moved to host RAM


def in_host_ram(module) -> bool:
    """Whether offload_embedding / offload_lm_head moved this module's weight to host RAM."""
    return bool(getattr(module, HOST_RAM_FLAG, False))


def offload_embedding(model, device: torch.device) -> bool:
    """Keep the input embedding in (pinned) host RAM; look tokens up there and copy (B, T, h) to `device`.

    The module stays in place (get_input_embeddings() still returns it, with its full weight, for saving and merging);
    only its weight and buffers move, and two hooks move the ids in and the result out. Returns False, changing
    nothing, when the embedding is tied to a head still on the GPU (that matrix is needed for the logits anyway: no
    saving) or placed by accelerate's hooks (multi-device maps).
    """
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    if in_host_ram(emb):
        return True  # already done (offload_lm_head does it for tied models)
    if head is not None and getattr(head, "weight", None) is emb.weight and not in_host_ram(head):
        warnings.warn("model.offload_embedding: the embedding is tied to lm_head, which needs it on the GPU; "
                      "not offloaded (no memory to save; model.offload_lm_head moves both)", stacklevel=2)
        return False
    if hasattr(emb, "_hf_hook"):
        warnings.warn("model.offload_embedding: the embedding is placed by accelerate (multi-device map); "
                      "not offloaded", stacklevel=2)
        return False
    emb.to("cpu")  # frees vocab x hidden x 2 bytes on the GPU
    if torch.cuda.is_available():
        emb.weight.data = emb.weight.data.pin_memory()  # pinned: the lookup's source pages never swap out
    emb.register_forward_pre_hook(lambda m, args: (args[0].to("cpu"),) + tuple(args[1:]))
    emb.register_forward_hook(lambda m, args, out: _to_device(out, device))
    setattr(emb, HOST_RAM_FLAG, True)
    return True


def _to_device(out: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The looked-up rows (B, T, h) to the compute device: one small copy per forward, the only embedding traffic.

    The embedding is frozen, so the copy is a new leaf: no gradient flows back to host RAM. It keeps requires_grad
    if an earlier hook (transformers' enable_input_require_grads) set it, for reentrant checkpointing's sake.
    """
    moved = out.detach().to(device)
    return moved.requires_grad_(out.requires_grad)


def offload_lm_head(model, device: torch.device) -> bool:
    """Keep lm_head's weight (and bias) in pinned host RAM; the loss streams it through `device` in slices.

    The module stays in place with its full weight (saving, merging), flagged for qlorafit.runtime.loss.forward_loss, which
    then never calls it. Called directly (model(...).logits) it still works, slowly: hooks run it on the host and
    copy the logits over. Tied to the embedding: the embedding goes to host RAM too (offload_embedding), since the
    one matrix leaves the GPU only if neither reads it there. Raises UserError when the head trains (LoRA on lm_head,
    modules_to_save); returns False, changing nothing, when accelerate's hooks place it (multi-device maps).
    """
    from qlorafit.errors import UserError

    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or any(p.requires_grad for p in head.parameters()):
        raise UserError("model.offload_lm_head: lm_head is trained (lora.targets or lora.modules_to_save name it); "
                        "only a frozen lm_head can stay in host RAM")
    if hasattr(head, "_hf_hook"):
        warnings.warn("model.offload_lm_head: lm_head is placed by accelerate (multi-device map); not offloaded",
                      stacklevel=2)
        return False
    head.to("cpu")  # frees vocab x hidden x 2 bytes on the GPU (the shared matrix, if tied)
    if torch.cuda.is_available():  # pinned: the slices' copies run asynchronously, on the side stream
        for p in head.parameters():
            p.data = p.data.pin_memory()
    setattr(head, HOST_RAM_FLAG, True)
    head.register_forward_pre_hook(lambda m, args: (args[0].to("cpu"),) + tuple(args[1:]))
    head.register_forward_hook(lambda m, args, out: out.to(device))  # only for direct calls, never in training
    emb = model.get_input_embeddings()
    if emb is not None and emb.weight is head.weight:
        offload_embedding(model, device)  # tied: the lookup must read the matrix where it now is
    return True
