"""The chunked loss computes the standard loss, gradients included, without the (tokens x vocab) logits."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from qlorafit.runtime.loss import LinearCrossEntropy, forward_loss

VOCAB = 1024


def tiny_model(dtype=torch.float32, arch="llama", softcap=None):
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    if arch == "llama":
        config = transformers.LlamaConfig(**kw)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Gemma2Config(**kw, head_dim=16, final_logit_softcapping=softcap, sliding_window=8)
        model = transformers.Gemma2ForCausalLM(config)
    model.config._attn_implementation = "eager"
    model = model.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    # init_lora_weights=False: B is random, so A and B both get gradients; dropout 0 so two forwards are the same
    pc = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                    init_lora_weights=False)
    return get_peft_model(model, pc)


def make_batch(b=2, t=13, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (b, t), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100           # a prompt without loss
    labels[1, -3:] = -100          # padding
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, -3:] = 0
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def run(model, batch, impl, chunk=None, rows=None):
    """loss, n, LoRA grads by name, and the gradient reaching the final hidden states (rows: the streamed slice)."""
    model.zero_grad(set_to_none=True)
    seen = {}
    norm = model.get_base_model().model.norm

    def keep(module, args, out):  # returns None: the output is unchanged
        out.retain_grad()
        seen["h"] = out

    hook = norm.register_forward_hook(keep)
    loss, n = forward_loss(model, batch, impl, chunk_tokens=chunk, slice_rows=rows)
    loss.backward()
    hook.remove()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), n, grads, seen["h"].grad


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("chunk", [1, 5, 7, None])
def test_chunked_matches_standard(dtype, tol, chunk):
    model, batch = tiny_model(dtype), make_batch()
    ref_loss, ref_n, ref_g, ref_h = run(model, batch, "standard")
    loss, n, g, gh = run(model, batch, "chunked", chunk)
    assert n == ref_n == int((batch["labels"][:, 1:] != -100).sum())
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, ref_loss, rtol=tol, atol=tol)
    assert len(g) == 12 and all(v.abs().sum() > 0 for v in g.values())
    for k in ref_g:
        torch.testing.assert_close(g[k].float(), ref_g[k].float(), rtol=tol * 5, atol=tol * ref_g[k].abs().max().item())
    torch.testing.assert_close(gh.float(), ref_h.float(), rtol=tol * 5, atol=tol * ref_h.abs().max().item())


def test_loss_is_a_sum_over_targets():
    """n_tokens counts shifted targets; the ignored positions contribute nothing, even their hidden states."""
    model, batch = tiny_model(), make_batch()
    loss_a, n_a, _, gh = run(model, batch, "chunked", 4)
    assert gh[0, :3].abs().sum() == 0  # positions 0..2 predict prompt labels 1..3: ignored, no gradient
    assert gh[1, -4:].abs().sum() == 0  # the last real token predicts padding; padding predicts nothing
    batch["labels"][:] = -100
    loss_b, n_b, g, _ = run(model, batch, "chunked")
    assert n_b == 0 and loss_b.item() == 0.0
    assert n_a == 2 * 12 - 4 + 1 - 3 and loss_a.item() > n_a  # random weights: about ln(1024) ~ 6.9 per token


def test_gemma2_softcapping():
    model, batch = tiny_model(arch="gemma2", softcap=2.0), make_batch()
    model.get_base_model().lm_head.weight.data *= 100  # logits of tens, so that the cap of 2 bites
    ref_loss, _, ref_g, ref_h = run(model, batch, "standard")
    loss, _, g, gh = run(model, batch, "chunked", 5)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gh, ref_h, rtol=1e-4, atol=1e-6)
    for k in ref_g:
        torch.testing.assert_close(g[k], ref_g[k], rtol=1e-4, atol=1e-5 * ref_g[k].abs().max().item())
    model.get_base_model().config.final_logit_softcapping = None  # and the cap does change the answer
    assert abs(run(model, batch, "chunked", 5)[0] - loss) > 1.0


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_trainable_head_weight_and_bias(softcap):
    """lm_head is frozen in QLoRA, but a trained head (modules_to_save) gets the same gradients as autograd's."""
    torch.manual_seed(0)
    h = torch.randn(23, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    b = torch.randn(50, requires_grad=True)
    y = torch.randint(0, 50, (23,))

    def ref():
        logits = F.linear(h, w, b)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, y, reduction="sum")

    out = 2.5 * ref()  # a grad_output that is not 1
    ref_grads = torch.autograd.grad(out, (h, w, b))
    out2 = 2.5 * LinearCrossEntropy.apply(h, w, b, y, 6, softcap)
    grads = torch.autograd.grad(out2, (h, w, b))
    torch.testing.assert_close(out2, out)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_fused_falls_back_to_chunked_on_cpu():
    model, batch = tiny_model(), make_batch()
    ref_loss = run(model, batch, "chunked")[0]
    with pytest.warns(UserWarning, match="chunked"):
        loss = run(model, batch, "fused")[0]
    assert torch.equal(loss, ref_loss)
    with pytest.raises(ValueError, match="choose from"):
        forward_loss(model, batch, "fast")


def saved_logit_rows(model, batch, impl, chunk=None):
    """Rows of every tensor saved for backward whose last dimension is the vocabulary: logits and their kin."""
    sizes = [0]

    def pack(t):
        if t.dim() >= 1 and t.shape[-1] == VOCAB:
            sizes.append(t.numel() // VOCAB)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_loss(model, batch, impl, chunk_tokens=chunk)
    return sizes


class LargestTensor(TorchDispatchMode):
    """Records the most rows of any new (not a view) vocabulary-wide tensor an op produces, forward or backward."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not func.is_view and t.dim() and t.shape[-1] == VOCAB:
                self.largest = max(self.largest, t.numel() // VOCAB)
        return out


def test_chunked_never_holds_the_full_logits():
    model, batch = tiny_model(), make_batch()
    tokens = batch["input_ids"].numel()
    assert max(saved_logit_rows(model, batch, "standard")) >= tokens - 2  # the measurement sees the logits
    assert max(saved_logit_rows(model, batch, "chunked", 5)) == 0  # nothing vocabulary-sized is kept for backward

    for impl, chunk in (("standard", None), ("chunked", 5)):
        model.zero_grad(set_to_none=True)
        with LargestTensor() as mode:
            loss, _ = forward_loss(model, batch, impl, chunk_tokens=chunk)
            loss.backward()
        if impl == "standard":
            assert mode.largest >= tokens
        else:
            assert mode.largest == 5  # one chunk's logits is the largest thing ever built


# --- lm_head in host RAM: the streamed loss -------------------------------------------------------------------------

def host_head(model):
    """The same model with its head flagged as in host RAM (on CPU the weight is there already): the streamed path."""
    from qlorafit.runtime.offload import offload_lm_head
    assert offload_lm_head(model, torch.device("cpu")) is True
    return model


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("chunk,rows", [(5, 100), (7, 1000), (None, 300), (None, None)])
def test_streamed_matches_standard(dtype, tol, chunk, rows):
    """Several slices (1024 rows in slices of 100: the last one 24), several token chunks, ignored labels."""
    model, batch = tiny_model(dtype), make_batch()
    ref_loss, ref_n, ref_g, ref_h = run(model, batch, "standard")
    host_head(model)
    model.zero_grad(set_to_none=True)
    loss, n = forward_loss(model, batch, "standard", chunk_tokens=chunk, slice_rows=rows)  # impl is overridden
    assert type(loss.grad_fn).__name__ == "StreamedLinearCrossEntropyBackward"  # the streamed path, not chunked
    _, n2, g, gh = run(model, batch, "chunked", chunk, rows)
    assert n == n2 == ref_n
    torch.testing.assert_close(loss.detach(), ref_loss, rtol=tol, atol=tol)
    assert len(g) == 12 and all(v.abs().sum() > 0 for v in g.values())
    for k in ref_g:
        torch.testing.assert_close(g[k].float(), ref_g[k].float(), rtol=tol * 5, atol=tol * ref_g[k].abs().max().item())
    torch.testing.assert_close(gh.float(), ref_h.float(), rtol=tol * 5, atol=tol * ref_h.abs().max().item())
    assert gh[0, :3].abs().sum() == 0 and gh[1, -4:].abs().sum() == 0  # ignored positions get no gradient


def test_streamed_softcap_and_all_ignored():
    model, batch = tiny_model(arch="gemma2", softcap=2.0), make_batch()
    model.get_base_model().lm_head.weight.data *= 100  # logits of tens, so that the cap of 2 bites
    ref_loss, _, ref_g, ref_h = run(model, batch, "standard")
    host_head(model)
    loss, _, g, gh = run(model, batch, "chunked", 5, 100)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gh, ref_h, rtol=1e-4, atol=1e-6)
    for k in ref_g:
        torch.testing.assert_close(g[k], ref_g[k], rtol=1e-4, atol=1e-5 * ref_g[k].abs().max().item())
    model.get_base_model().config.final_logit_softcapping = None  # and the cap does change the answer
    assert abs(run(model, batch, "chunked", 5, 100)[0] - loss) > 1.0
    batch["labels"][:] = -100
    loss0, n0 = forward_loss(model, batch, "chunked", slice_rows=100)
    assert n0 == 0 and loss0.item() == 0.0


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_streamed_function_with_bias(softcap, dtype, tol):
    """The Function alone against autograd: bias streamed with its slices, a grad_output that is not 1, a vocabulary
    (50) that no slice size (7) divides, chunks (6) that do not divide the tokens (23), logits large enough to make
    the running max move from slice to slice."""
    from qlorafit.runtime.loss import StreamedLinearCrossEntropy

    torch.manual_seed(0)
    h = torch.randn(23, 16, dtype=dtype, requires_grad=True)
    w = (torch.randn(50, 16) * 2).to(dtype)
    b = torch.randn(50).to(dtype)
    y = torch.randint(0, 50, (23,))

    def ref():
        logits = F.linear(h, w, b).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, y, reduction="sum")

    out = 2.5 * ref()
    (ref_gh,) = torch.autograd.grad(out, h)
    out2 = 2.5 * StreamedLinearCrossEntropy.apply(h, w, b, y, 7, 6, softcap)
    (gh,) = torch.autograd.grad(out2, h)
    torch.testing.assert_close(out2, out, rtol=1e-5, atol=1e-4)
    assert gh.dtype == dtype
    torch.testing.assert_close(gh.float(), ref_gh.float(), rtol=tol, atol=tol * ref_gh.abs().max().item())
    with torch.no_grad():  # eval: the loss alone, no accumulator
        torch.testing.assert_close(StreamedLinearCrossEntropy.apply(h, w, b, y, 7, 6, softcap), out / 2.5,
                                   rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="frozen"):
        StreamedLinearCrossEntropy.apply(h, w.clone().requires_grad_(), b, y, 7, 6, softcap)


class TileShapes(TorchDispatchMode):
    """Rows of every new tensor whose last dimension is `width` (a vocabulary slice, or the whole vocabulary)."""

    def __init__(self, widths):
        super().__init__()
        self.rows = {w: 0 for w in widths}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not func.is_view and t.dim() and t.shape[-1] in self.rows:
                self.rows[t.shape[-1]] = max(self.rows[t.shape[-1]], t.numel() // t.shape[-1])
        return out


def test_streamed_holds_one_tile_of_logits():
    model, batch = host_head(tiny_model()), make_batch()
    assert max(saved_logit_rows(model, batch, "chunked", 5)) == 0  # nothing vocabulary-wide kept for backward
    model.zero_grad(set_to_none=True)
    with TileShapes((VOCAB, 100)) as mode:
        loss, _ = forward_loss(model, batch, "chunked", chunk_tokens=5, slice_rows=100)
        loss.backward()
    assert mode.rows[VOCAB] == 0  # no tensor spans the vocabulary
    assert mode.rows[100] == 5  # the largest logits: one chunk of 5 tokens x one slice of 100 rows


def test_streamed_refuses_a_trained_head():
    from qlorafit.errors import UserError
    from qlorafit.runtime.offload import HOST_RAM_FLAG

    model, batch = tiny_model(), make_batch()
    head = model.get_base_model().lm_head
    setattr(head, HOST_RAM_FLAG, True)  # flagged, but the head trains (as with modules_to_save)
    head.weight.requires_grad_(True)
    with pytest.raises(UserError, match="offload_lm_head"):
        forward_loss(model, batch, "chunked")


class FakeStream:
    """Stands in for a CUDA stream on CPU: logs what it is asked to wait for."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append((self.name, "wait_stream", other.name))

    def wait_event(self, event):
        self.log.append((self.name, "wait_event", event.recorded_on, event.tag))


def test_double_buffered_slices_on_fake_streams(monkeypatch):
    """The GPU path of _SliceStream, run on CPU with logged fake streams: the two buffers alternate, every slice
    arrives intact (the next copy never lands in the buffer being read), the compute stream waits for each copy,
    the side stream waits for the compute stream's last read of a buffer before refilling it, and the end waits
    for the side stream. What is left untested is real concurrency (benchmarks/levers_check.py on a GPU)."""
    import contextlib

    from qlorafit.runtime.loss import _SliceStream

    log, seen = [], []

    class FakeEvent:
        def __init__(self):
            self.recorded_on, self.tag = None, len(log)

        def record(self, stream):
            self.recorded_on, self.tag = stream.name, len(log)
            log.append((stream.name, "record", self.tag))

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    w = torch.randn(50, 8)
    st = _SliceStream(w, torch.arange(50.0), 7, torch.device("cpu"))
    st.async_copy, st.compute, st.side = True, FakeStream("compute", log), FakeStream("side", log)
    buffers = set()
    for start, wj, bj in st:
        assert torch.equal(wj, w[start:start + 7]) and torch.equal(bj, torch.arange(50.0)[start:start + 7])
        buffers.add(wj.untyped_storage().data_ptr())
        seen.append((start, wj.shape[0]))
        log.append(("compute", "used", start))
    assert seen == [(s, min(7, 50 - s)) for s in range(0, 50, 7)]  # 8 slices, the last one 1 row
    assert len(buffers) == 2  # two device buffers, reused
    uses = [i for i, e in enumerate(log) if e[1] == "used"]
    copies_waited = [e for e in log if e[0] == "compute" and e[1] == "wait_event"]
    assert len(copies_waited) == 8 and all(e[2] == "side" for e in copies_waited)
    refills = [e for e in log if e[0] == "side" and e[1] == "wait_event"]
    assert len(refills) == 6 and all(e[2] == "compute" for e in refills)  # slices 2..7 refill a used buffer
    for j, e in enumerate(refills, start=2):  # ... only after the compute stream's use of slice j - 2
        assert log.index(("compute", "record", e[3])) > uses[j - 2]
    assert log[-1] == ("compute", "wait_stream", "side")
