"""Offloaded checkpointing, the host-RAM embedding and lm_head: the same numbers as without them, on a 4-bit tiny
Llama.

On CPU the copies are no-ops (everything is already in host RAM), so these tests check what the GPU path shares with
them: which tensors are routed (exactly each layer's input, once), the byte accounting and its bound, the handle's
life cycle, and that gradients are unchanged. The copies themselves: benchmarks/levers_check.py on a GPU.
"""

import pytest
import torch

from qlorafit.core.config import Config
from qlorafit.runtime.loss import forward_loss
from qlorafit.runtime.model import load_model
from qlorafit.errors import UserError
from qlorafit.runtime.offload import (active_handle, enable_offloaded_checkpointing, in_host_ram, offload_embedding,
                              offload_lm_head, offloaded_checkpointing)

LAYERS, HIDDEN, VOCAB = 3, 64, 512
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128,
                                      num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("tiny-llama")
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return str(path)


def load(model_dir, checkpointing="on", offload_emb=False, dropout=0.1, offload_head=False, **lora):
    """nf4 (bitsandbytes on CPU), fp32 compute for exact comparisons, LoRA with dropout (checks the recompute's RNG)."""
    cfg = Config()
    cfg.model.quant, cfg.model.compute_dtype, cfg.model.offload_embedding = "nf4", "fp32", offload_emb
    cfg.model.offload_lm_head = offload_head
    for k, v in lora.items():
        setattr(cfg.lora, k, v)
    cfg.lora.dropout, cfg.lora.targets = dropout, ["q_proj", "v_proj", "gate_proj"]
    cfg.train.grad_checkpointing = checkpointing
    torch.manual_seed(0)
    loaded = load_model(cfg, model_dir, CPU)
    g = torch.Generator().manual_seed(1)
    for name, p in loaded.model.named_parameters():
        if "lora_B" in name:  # B starts at zero; random B gives every LoRA weight a gradient
            p.data = torch.randn(p.shape, generator=g) * 0.1
    loaded.model.train()
    return loaded


def batch(b=2, t=16):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, VOCAB, (b, t), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}


def grads_of(loaded, during_forward=None, impl="chunked"):
    torch.manual_seed(3)  # the dropout masks
    loss, _ = forward_loss(loaded.model, batch(), impl)
    if during_forward:
        during_forward()
    loss.backward()
    out = {k: p.grad.clone() for k, p in loaded.model.named_parameters() if p.requires_grad}
    assert len(out) == 2 * 3 * LAYERS and all(g.abs().sum() > 0 for g in out.values())
    return out


def test_offload_gradients_equal_plain_checkpointing_and_none(model_dir):
    ref_off = grads_of(load(model_dir, "off"))
    ref_on = grads_of(load(model_dir, "on"))
    loaded = load(model_dir, "offload")
    assert loaded.offload is not None and active_handle(loaded.model) is loaded.offload
    got = grads_of(loaded)
    for k in ref_on:
        assert torch.equal(got[k], ref_on[k]), k  # the same computation, the input only took a detour
        torch.testing.assert_close(got[k], ref_off[k], rtol=1e-5, atol=1e-7)


def test_each_layer_input_goes_through_once_and_is_counted(model_dir):
    loaded = load(model_dir, "offload")
    h = loaded.offload
    tokens = batch()["input_ids"].numel()
    layer_input = tokens * HIDDEN * 4  # (B, T, h) fp32

    def check():
        assert len(h._order) == LAYERS  # one saved tensor per layer: its input, nothing else
        assert [p().host.shape for p in h._order] == [torch.Size((2, 16, HIDDEN))] * LAYERS
        assert h.host_bytes == LAYERS * layer_input and h.kept_bytes == 0

    grads_of(loaded, check)
    assert h.host_bytes == 0 and h.peak_host_bytes == LAYERS * layer_input  # released once backward used them
    assert (h.fetched_on_demand, h.prefetched) == (1, LAYERS - 1)  # only the top layer waits for its copy
    grads_of(loaded, check)  # a second micro-batch starts a fresh order
    assert h.host_bytes == 0 and (h.fetched_on_demand, h.prefetched) == (2, 2 * LAYERS - 2)


def test_host_bound_keeps_the_rest_on_the_device(model_dir):
    ref = grads_of(load(model_dir, "on"))
    loaded = load(model_dir, "on")
    layer_input = batch()["input_ids"].numel() * HIDDEN * 4
    h = enable_offloaded_checkpointing(loaded.model, max_host_bytes=int(1.5 * layer_input))

    def check():
        assert h.host_bytes == layer_input and h.kept_bytes == (LAYERS - 1) * layer_input

    got = grads_of(loaded, check)
    assert h.host_bytes == 0 and h.kept_bytes == 0
    for k in ref:
        assert torch.equal(got[k], ref[k]), k


def test_context_form_enables_then_restores(model_dir):
    loaded = load(model_dir, "on")
    layers = loaded.model.get_base_model().model.layers
    before = [m._gradient_checkpointing_func for m in layers]
    with offloaded_checkpointing(loaded.model, max_host_bytes=2**30) as h:
        assert active_handle(loaded.model) is h
        with offloaded_checkpointing(loaded.model) as again:  # nested: the same handle
            assert again is h
        grads_of(loaded)
        assert h.peak_host_bytes > 0
    assert active_handle(loaded.model) is None and [m._gradient_checkpointing_func for m in layers] == before
    with pytest.raises(ValueError, match="gradient_checkpointing_enable"):
        enable_offloaded_checkpointing(load(model_dir, "off").model, 2**30)


def test_embedding_in_host_ram_gives_identical_outputs(model_dir):
    plain = load(model_dir, "on", dropout=0.0)
    moved = load(model_dir, "on", offload_emb=True, dropout=0.0)
    emb = moved.model.get_input_embeddings()
    assert isinstance(emb, torch.nn.Embedding) and emb.weight.shape == (VOCAB, HIDDEN)  # saving/merging still see it
    assert len(emb._forward_hooks) >= 1 and len(emb._forward_pre_hooks) == 1  # the lever is on, not a silent no-op
    assert torch.equal(emb.weight, plain.model.get_input_embeddings().weight)
    out = emb(batch()["input_ids"])
    assert out.grad_fn is None  # frozen: nothing flows back to host RAM
    b = batch()
    with torch.no_grad():
        assert torch.equal(moved.model(**b).logits, plain.model(**b).logits)
    assert all(torch.equal(a, c) for a, c in zip(grads_of(moved).values(), grads_of(plain).values()))


def test_tied_embedding_is_left_alone():
    model = _tied_llama()
    with pytest.warns(UserWarning, match="tied"):
        assert offload_embedding(model, CPU) is False
    assert not model.get_input_embeddings()._forward_hooks


def test_lm_head_in_host_ram_gives_the_same_loss_and_gradients(model_dir):
    plain = load(model_dir, "on", dropout=0.0)
    moved = load(model_dir, "on", dropout=0.0, offload_head=True)
    head = moved.model.get_output_embeddings()
    assert type(head) is torch.nn.Linear and head.weight.shape == (VOCAB, HIDDEN)  # saving/merging still see it
    assert in_host_ram(head) and head.weight.device.type == "cpu" and not head.weight.requires_grad
    assert not in_host_ram(moved.model.get_input_embeddings())  # untied: the embedding stays unless asked
    assert torch.equal(head.weight, plain.model.get_output_embeddings().weight)
    b = batch()
    with torch.no_grad():  # a direct call still works (hooks run the head where its weight is)
        assert torch.equal(moved.model(**b).logits, plain.model(**b).logits)
        loss, n = forward_loss(moved.model, b, "chunked")
        ref, ref_n = forward_loss(plain.model, b, "standard")
    assert loss.grad_fn is None and n == ref_n
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    ref_grads = grads_of(plain, impl="standard")
    for impl in ("chunked", "standard"):  # whatever impl says, a head in host RAM is streamed
        moved.model.zero_grad(set_to_none=True)
        got = grads_of(moved, impl=impl)
        for k in ref_grads:
            torch.testing.assert_close(got[k], ref_grads[k], rtol=1e-4, atol=1e-6 * ref_grads[k].abs().max().item())


def test_lm_head_offload_refuses_a_trained_head(model_dir):
    with pytest.raises(UserError, match="offload_lm_head.*frozen"):
        load(model_dir, "on", offload_head=True, modules_to_save=["lm_head"])


def _tied_llama():
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config)
    for p in model.parameters():
        p.requires_grad_(False)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    return model


def test_tied_lm_head_takes_the_embedding_along():
    """One matrix: offload_lm_head moves the lookup to the host too (the hooks of offload_embedding), so nothing on
    the GPU reads it; offload_embedding on top is a no-op, and the streamed loss equals the standard one."""
    model = _tied_llama()
    model.model.norm.weight.requires_grad_(True)  # something trains, so the loss has a graph to inspect
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(4))
    b = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    ref, _ = forward_loss(model, b, "standard")
    ref.backward()
    norm = model.model.norm.weight
    ref_grad, norm.grad = norm.grad, None
    assert offload_lm_head(model, CPU) is True
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert in_host_ram(emb) and in_host_ram(head) and emb.weight is head.weight  # still one shared matrix
    assert len(emb._forward_pre_hooks) == 1
    assert offload_embedding(model, CPU) is True and len(emb._forward_pre_hooks) == 1  # not hooked twice
    loss, _ = forward_loss(model, b, "standard", slice_rows=24)
    assert type(loss.grad_fn).__name__ == "StreamedLinearCrossEntropyBackward"
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    loss.backward()
    torch.testing.assert_close(norm.grad, ref_grad, rtol=1e-4, atol=1e-6)
