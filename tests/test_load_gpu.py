"""Loading with the host-RAM levers on a GPU (run through the device tool: `pytest -m gpu tests/test_load_gpu.py`).

With model.offload_embedding and model.offload_lm_head the two 16-bit matrices load straight into host RAM: the GPU
never holds them, not even while loading (qlorafit.runtime.model.host_ram_modules). The model is shaped so those matrices
dwarf everything else on the GPU (vocab 32,000 x hidden 256: 15.6 MiB each in bf16, against ~0.3 MiB of 4-bit
layers), so a load that passed them through the GPU shows in the peak against a load without the levers.
"""

import pytest
import torch

import qlorafit.core.config as C
from qlorafit.runtime.loss import forward_loss
from qlorafit.runtime.model import load_model
from qlorafit.runtime.offload import in_host_ram

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

VOCAB, HIDDEN = 32000, 256


def big_vocab_model(root, tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    path = root / f"bigvocab-tied{int(tied)}"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=512, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2,
                                 tie_word_embeddings=tied)).save_pretrained(path)
    return path


def load_peak(path, levers: bool):
    """(PEFT model, peak bytes allocated on the GPU while qlorafit.runtime.model.load_model ran)."""
    cfg = C.from_dict({"model": {"name_or_path": str(path), "compute_dtype": "bf16", "offload_embedding": levers,
                                 "offload_lm_head": levers},
                       "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "train": {"loss_impl": "chunked"}}, "test")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    model = load_model(cfg, str(path), torch.device("cuda", 0)).model
    return model, torch.cuda.max_memory_allocated() - base


@pytest.mark.parametrize("tied", [False, True])
def test_offloaded_matrices_never_touch_the_gpu_and_the_model_trains(tmp_path, tied):
    path = big_vocab_model(tmp_path, tied)
    model, peak_plain = load_peak(path, levers=False)
    del model
    model, peak = load_peak(path, levers=True)
    matrix = VOCAB * HIDDEN * 2
    print(f"load peak allocated: {peak_plain / 2**20:.1f} MiB without the levers, {peak / 2**20:.1f} MiB with them")
    # transformers' allocator warm-up and the quantization staging are the same in both loads; the levers must take
    # every 16-bit matrix they move off the whole load (two untied, the one shared matrix tied)
    assert peak_plain - peak >= 0.9 * matrix * (1 if tied else 2), \
        f"load peak {peak / 2**20:.1f} MiB with the levers vs {peak_plain / 2**20:.1f} without"
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    for mod in (emb, head):
        assert in_host_ram(mod) and mod.weight.device.type == "cpu" and mod.weight.is_pinned()
        assert not hasattr(mod, "_hf_hook"), "accelerate's dispatch hooks were left on"
    assert (emb.weight is head.weight) == tied
    assert torch.isfinite(emb.weight.float()).all() and emb.weight.float().std() > 0  # real weights, not meta/zeros
    ids = torch.randint(0, VOCAB, (2, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        s, n = forward_loss(model, {"input_ids": ids, "labels": ids}, "chunked")
    (s / n).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert 0.5 * torch.log(torch.tensor(float(VOCAB))) < s.item() / n < 2 * torch.log(torch.tensor(float(VOCAB)))
