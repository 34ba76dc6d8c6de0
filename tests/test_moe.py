"""Mixture-of-experts models: how qlorafit loads and adapts them (CPU, a tiny random Qwen3-MoE), and how the
estimator counts them."""

import pytest

from qlorafit.errors import UserError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    from qlorafit.demo_assets import demo_tokenizer

    tok = demo_tokenizer()
    cfg = Qwen3MoeConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_experts=8, num_experts_per_tok=2, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("moe") / "tiny-qwen3-moe"
    AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _cfg(moe_dir, tmp_path, data, **lora):
    from test_train_helpers import make_cfg

    return make_cfg(moe_dir, data, tmp_path / "run", lora={"r": 4, "targets": ["all-linear"], "dropout": 0.05, **lora},
                    model={"compute_dtype": "bf16"}, train={"max_steps": 2})


def test_experts_load_16_bit_and_get_no_lora(moe_dir, tmp_path, data):
    """The loading-path fact the estimator counts: transformers 5 + bitsandbytes quantize the attention to 4 bit but
    leave the fused 3-D expert weights 16-bit. all-linear adapts the attention only, with the default dropout."""
    import bitsandbytes as bnb

    from qlorafit.runtime.model import load_model

    model = load_model(_cfg(moe_dir, tmp_path, data), str(moe_dir), torch.device("cpu")).model
    layer = model.get_base_model().model.layers[0]
    assert isinstance(layer.self_attn.q_proj.base_layer, bnb.nn.Linear4bit)
    experts = layer.mlp.experts
    assert experts.gate_up_proj.dtype == torch.bfloat16 and experts.gate_up_proj.ndim == 3
    assert not experts.gate_up_proj.requires_grad
    trained = {n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_mlp_only_targets_on_a_moe_are_one_clear_error(moe_dir, tmp_path, data):
    from qlorafit.runtime.model import load_model

    with pytest.raises(UserError, match="name no linear module of this mixture-of-experts model"):
        load_model(_cfg(moe_dir, tmp_path, data, targets=["gate_proj", "up_proj"]), str(moe_dir), torch.device("cpu"))


def test_a_moe_trains_end_to_end(moe_dir, tmp_path, data):
    from qlorafit.runtime.train import train
    from test_train_helpers import adapter

    out = train(_cfg(moe_dir, tmp_path, data), quiet=True)
    assert out["steps"] == 2 and all(torch.isfinite(torch.tensor(v)) for v in (out["first_loss"], out["last_loss"]))
    final = adapter(tmp_path / "run" / "final")
    b = [k for k in final if "lora_B" in k]
    assert b and all("self_attn" in k for k in b)
    assert any(final[k].abs().sum() > 0 for k in b)  # lora_B starts at zero: non-zero means the adapters learned


def test_train_refuses_a_model_whose_weights_alone_exceed_the_gpu(tmp_path, monkeypatch):
    """Qwen3-30B-A3B on a 24 GiB card: 54 GiB of 16-bit experts would OOM inside from_pretrained, where the guard
    cannot act; train says so first. A model that loads fits through."""
    import json
    import types

    from qlorafit.core import config as C
    from qlorafit.core.catalog import _load
    from qlorafit.runtime.train import check_load_fits

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: types.SimpleNamespace(total_memory=24 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "a 24 GiB card")
    for name in ("qwen3-30b-a3b", "llama-3.2-1b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(_load("models.json")["models"][name]["config"]))
    cfg = C.from_dict({"model": {"name_or_path": "Qwen/Qwen3-30B-A3B"}}, "t")
    msg = r"needs 5\d\.\d\d GiB .* of which 54\.\d\d GiB are MoE experts .* a 24 GiB card"
    with pytest.raises(UserError, match=msg):
        check_load_fits(cfg, str(tmp_path / "qwen3-30b-a3b"), torch.device("cuda", 0))
    check_load_fits(cfg, str(tmp_path / "llama-3.2-1b"), torch.device("cuda", 0))
