"""MLP tiling over the sequence: same loss and gradients, fewer MLP intermediates alive at once."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from qlorafit.core.catalog import resolve_model
from qlorafit.core.estimate import Setup, estimate
from qlorafit.runtime.tiling import tile_mlps


def _model(checkpointing: bool):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256)
    m = LlamaForCausalLM(cfg)
    m.config.use_cache = False
    if checkpointing:
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(m, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))


def _grads(model, ids):
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_tiled_mlp_gives_the_same_loss_and_gradients():
    ids = torch.randint(0, 97, (2, 70))
    for checkpointing in (False, True):
        model = _model(checkpointing)
        model.train()
        ref_loss, ref = _grads(model, ids)
        assert tile_mlps(model, 16) == 2
        loss, got = _grads(model, ids)
        assert torch.allclose(loss, ref_loss, atol=1e-6)
        for n in ref:
            assert torch.allclose(got[n], ref[n], atol=1e-6, rtol=1e-5), n
        for name, module in model.named_modules():  # untile
            if name.endswith(".mlp"):
                module.forward = module.forward.__wrapped__
        assert tile_mlps(model, 0) == 0


def test_tiling_keeps_fewer_intermediates_for_backward():
    """Bytes saved for backward by one forward: tiled keeps the slices' inputs, not every gate/up/act output."""
    ids = torch.randint(0, 97, (1, 128))

    def saved_bytes(model):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, labels=ids).loss
        return total

    model = _model(False)
    plain = saved_bytes(model)
    tile_mlps(model, 16)
    tiled = saved_bytes(model)
    # per layer the plain MLP keeps gate, up and act outputs (3 x 96 fp32 per token) and LoRA inputs
    assert plain - tiled >= 2 * 128 * 3 * 96 * 4


def test_estimator_models_tiling():
    shape = resolve_model("llama-3.1-8b")
    base = Setup(seq_len=65536, lora_targets=("all-linear",), grad_checkpointing="offload", lora_dropout=0.0)
    plain = estimate(shape, base).peak_bytes
    tiled = estimate(shape, Setup(**{**base.__dict__, "mlp_tile_tokens": 4096})).peak_bytes
    assert tiled < plain - 5 * 1024**3
    short = Setup(seq_len=2048, mlp_tile_tokens=4096, cuda_graphs="off")  # rows shorter than a tile: no effect
    assert estimate(shape, short).peak_bytes == estimate(shape, Setup(seq_len=2048, cuda_graphs="off")).peak_bytes
