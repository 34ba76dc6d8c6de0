"""The model catalogue: today's families, each entry with its source, and shapes that agree with transformers."""

import json

import pytest

from qlorafit.core.catalog import _load, hub_id_of, model_names, resolve_model
from qlorafit.core.shapes import shape_from_config
from qlorafit.errors import UserError

MODELS = _load("models.json")["models"]


def test_at_least_30_entries_each_with_its_config_json_source():
    assert len(MODELS) >= 30
    for name, m in MODELS.items():
        assert m["source"] == f"https://huggingface.co/{m['hf_id']}/blob/main/config.json", name
        assert hub_id_of(name) == m["hf_id"]


def test_todays_families_are_there():
    want = {"llama-3.1-8b", "llama-3.2-1b", "llama-3.2-3b", "llama-3.3-70b", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b",
            "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "gemma-3-1b", "gemma-3-4b",
            "gemma-3-12b", "gemma-3-27b", "mistral-small-3-24b", "mistral-small-3.1-24b", "mistral-nemo-12b",
            "phi-4", "phi-4-mini", "gpt-oss-20b", "gpt-oss-120b", "smollm3-3b", "deepseek-r1-distill-qwen-7b"}
    assert want <= set(model_names())


def _meta_param_count(cfg: dict) -> int:
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(cfg.get("text_config") or cfg)
    conf = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):  # shapes only: no memory, no init
        model = AutoModelForCausalLM.from_config(conf)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shape_counts_the_parameters_transformers_builds(name):
    """Each entry built by transformers itself (meta device): qlorafit's count of its parameters, experts, routers,
    q/k norms and fused modules included, is the same to 0.01 % (gpt-oss's attention sinks are the difference)."""
    built = _meta_param_count(MODELS[name]["config"])
    assert resolve_model(name).total_params() == pytest.approx(built, rel=1e-4)


def test_what_differs_between_families_is_modelled():
    q4, g1, g27, g2 = (resolve_model(n) for n in ("qwen3-4b", "gemma-3-1b", "gemma-3-27b", "gemma-2-9b"))
    assert q4.q_dim == 32 * 128 != q4.hidden_size and q4.qk_norm  # head_dim != hidden / heads
    assert g1.vocab_size == 262144 and g27.vocab_size == 262208 and g1.qk_norm and g1.norms_per_layer == 4
    assert g1.sliding_layers == 22 and g27.sliding_layers == 52  # 5 local : 1 global
    assert g2.final_softcap and not g1.final_softcap  # Gemma 2 softcaps its logits, Gemma 3 does not
    assert resolve_model("gpt-oss-20b").sliding_layers == 12
    phi = resolve_model("phi-4-mini")
    assert phi.fused and set(phi.linear_shapes()) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert phi.expand_targets(("q_proj", "v_proj")) == ("qkv_proj",)
    assert resolve_model("llama-3.1-8b").expand_targets(("qkv_proj",)) == ("q_proj", "k_proj", "v_proj")


BASE = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
        "vocab_size": 100}


@pytest.mark.parametrize("extra, experts, top_k, width, shared, moe_layers", [
    ({"model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2}, 8, 2, 256, 0, 4),
    ({"model_type": "qwen3_moe", "num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 32,
      "decoder_sparse_step": 1, "mlp_only_layers": [0]}, 16, 4, 32, 0, 3),
    ({"model_type": "qwen2_moe", "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
      "shared_expert_intermediate_size": 128, "decoder_sparse_step": 2}, 8, 2, 32, 128, 2),
    ({"model_type": "deepseek_v3", "n_routed_experts": 32, "num_experts_per_tok": 8, "moe_intermediate_size": 16,
      "n_shared_experts": 2, "first_k_dense_replace": 1}, 32, 8, 16, 32, 3),
    ({"model_type": "gpt_oss", "num_local_experts": 4, "experts_per_token": 2}, 4, 2, 256, 0, 4),
])
def test_moe_fields_from_each_familys_spelling(extra, experts, top_k, width, shared, moe_layers):
    s = shape_from_config({**BASE, **extra}, "m")
    assert (s.num_experts, s.experts_per_token, s.moe_intermediate_size, s.shared_intermediate_size,
            s.moe_layers) == (experts, top_k, width, shared, moe_layers)
    assert s.is_moe and s.dense_layers == 4 - moe_layers
    assert s.expert_params() >= moe_layers * experts * 3 * 64 * width


def test_moe_nonsense_is_a_user_error():
    with pytest.raises(UserError, match="num_experts_per_tok \\(9\\) is larger than the number of experts \\(8\\)"):
        shape_from_config({**BASE, "num_local_experts": 8, "num_experts_per_tok": 9}, "m", "x/config.json")


def test_dense_shapes_did_not_move():
    """Adding MoE and fused layouts left every dense, unfused entry's parameter count where it was."""
    s = resolve_model("llama-3.1-8b")
    assert s.quantized_linear_params() == s.num_layers * sum(a * b for a, b in s.linear_shapes().values())
    assert s.expert_params() == s.router_params() == 0 and s.total_params() == 8030261248
    assert json.dumps(MODELS["llama-3.1-8b"]["config"])  # plain JSON data
