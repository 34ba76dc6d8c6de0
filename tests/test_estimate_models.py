"""What the estimator does with today's families: MoE experts and routed activations, fused Phi layouts, q/k norms,
softcapping, the hf stack's loss, and the CUDA context a user measured."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from qlorafit.core.catalog import get_gpu, resolve_model
from qlorafit.core.estimate import (CUDA_CONTEXT_BYTES, estimate, expert_weight_bytes,
                                    layer_activation_bytes_per_token, lora_params)
from qlorafit.core.setup import Setup
from qlorafit.core.shapes import shape_from_config

GIB = 1024**3


def test_moe_counts_its_experts_16_bit_not_as_a_dense_model():
    """The issue's two wrong answers: Mixtral sized as Mistral-7B, Qwen3-30B-A3B 'fits' a 4090."""
    mixtral, mistral = estimate(resolve_model("mixtral-8x7b"), Setup()), estimate(resolve_model("mistral-7b"), Setup())
    s = resolve_model("mixtral-8x7b")
    assert mixtral.component("MoE experts, 16-bit") == (s.expert_params() + s.router_params()) * 2
    assert mixtral.peak_bytes > 10 * mistral.peak_bytes
    q = estimate(resolve_model("qwen3-30b-a3b"), Setup())
    assert q.component("MoE experts, 16-bit") > 50 * GIB and not q.peak_bytes <= get_gpu("rtx4090").memory_bytes
    # the hf stack's prepare_model_for_kbit_training upcasts the experts to fp32 as well
    w, up = expert_weight_bytes(s, Setup(stack="hf"))
    assert up == w


def test_moe_activations_follow_the_routed_tokens_only():
    base = {"model_type": "qwen3_moe", "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 64,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
            "vocab_size": 1000, "num_experts_per_tok": 2}
    few, many = (shape_from_config({**base, "num_experts": n}, "m") for n in (8, 64))
    s = Setup(seq_len=1024)
    # 8x the experts: 8x the expert weights, but each token still visits 2: activations move by the router only
    assert expert_weight_bytes(many, s)[0] > 7 * expert_weight_bytes(few, s)[0]
    a_few, a_many = (layer_activation_bytes_per_token(x, s) for x in (few, many))
    assert a_many - a_few == 4 * (64 - 8)  # the router's fp32 softmax over the experts
    top4 = shape_from_config({**base, "num_experts": 8, "num_experts_per_tok": 4}, "m")
    assert layer_activation_bytes_per_token(top4, s) - a_few == 2 * (2 * 3 * 64 + 2 * 256)


def test_lora_on_a_moe_adapts_attention_only():
    q = resolve_model("qwen3-30b-a3b")
    assert lora_params(q, Setup(lora_targets=("all-linear",))) == lora_params(q, Setup())  # q,k,v,o either way
    assert lora_params(q, Setup(lora_targets=("gate_proj",))) == 0


def test_fused_phi_layout_counts_one_adapter_and_the_kept_qkv_buffer():
    phi = resolve_model("phi-4-mini")
    unfused = replace(phi, fused=False)
    s = Setup(lora_targets=("all-linear",), lora_dropout=0.05, grad_checkpointing="off")
    assert lora_params(phi, s) < lora_params(unfused, s)  # 4 adapters a layer, not 7
    # one dropped copy (bf16 + mask byte) of the input for qkv_proj instead of three, for gate_up_proj instead of
    # two, three fewer lora_A outputs; but the fused qkv output stays alive for v
    diff = layer_activation_bytes_per_token(unfused, s) - layer_activation_bytes_per_token(phi, s)
    h, qd, kvd = phi.hidden_size, phi.q_dim, phi.kv_dim
    assert diff == pytest.approx(3 * 3 * h + 3 * 2 * 16 - 2 * (qd + kvd), abs=1)


def test_qk_norms_and_softcap_come_from_the_shape():
    q3 = resolve_model("qwen3-8b")
    assert layer_activation_bytes_per_token(q3, Setup()) - layer_activation_bytes_per_token(
        replace(q3, qk_norm=False), Setup()) == 4 * (q3.q_dim + q3.kv_dim)
    s = Setup(loss_impl="standard", batch_size=1, seq_len=512)
    g2 = resolve_model("gemma-2-2b")
    assert estimate(g2, s).component("logits and loss") > estimate(replace(g2, final_softcap=False), s).component(
        "logits and loss")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "qlorafit", "estimate", *args], capture_output=True, text=True)


def test_hub_id_of_a_moe_gives_the_per_component_answer_offline():
    out = _cli("Qwen/Qwen3-30B-A3B", "--gpu", "rtx4090", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["components"]["MoE experts, 16-bit"] > 50 * GIB and d["model"] == "qwen3-30b-a3b"


def test_hf_stack_defaults_to_its_own_loss():
    hf, hf_chunked = (json.loads(_cli("llama-3.1-8b", "--stack", "hf", "--json", *x).stdout) for x in
                      ((), ("--loss", "chunked")))
    assert hf["setup"]["loss_impl"] == "standard" and hf["peak_bytes"] > hf_chunked["peak_bytes"]
    assert json.loads(_cli("llama-3.1-8b", "--json").stdout)["setup"]["loss_impl"] == "chunked"


def test_context_mib_replaces_the_h200_figure():
    a = json.loads(_cli("llama-3.1-8b", "--json").stdout)["peak_bytes"]
    b = json.loads(_cli("llama-3.1-8b", "--json", "--context-mib", "300").stdout)["peak_bytes"]
    assert a - b == CUDA_CONTEXT_BYTES - 300 * 1024**2
    out = _cli("llama-3.1-8b", "--measure-context")
    if out.returncode:  # no GPU here: one line that says what to do instead
        assert "needs a CUDA GPU" in out.stderr and "--context-mib" in out.stderr
