"""qlorafit merge: the merged 16-bit model computes the same logits as base + PEFT adapter."""

import json

import pytest
import torch

from qlorafit.errors import UserError
from qlorafit.runtime.merge import merge


def _trained_adapter(model_dir, out, modules_to_save=None, rslora=False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                         modules_to_save=modules_to_save, use_rslora=rslora,
                                         init_lora_weights=False))  # random A and B: a non-zero delta
    if modules_to_save:
        with torch.no_grad():
            pm.base_model.model.lm_head.modules_to_save["default"].weight.mul_(1.5)
    pm.save_pretrained(out)
    return pm


@pytest.mark.parametrize("extra", [{}, {"modules_to_save": ["lm_head"], "rslora": True}])
def test_merged_logits_equal_the_peft_models(model_dir, tmp_path, extra):
    from transformers import AutoModelForCausalLM

    pm = _trained_adapter(model_dir, tmp_path / "adapter", **extra)
    s = merge(tmp_path / "adapter", model_dir, tmp_path / "merged", device="cpu")
    assert s["merged"] == 2 * 3 and s["replaced"] == (1 if extra else 0)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    ids = torch.randint(0, 500, (2, 12))
    with torch.no_grad():
        want = pm(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)(input_ids=ids).logits
    assert not torch.allclose(want, plain, atol=1e-3)  # the adapter does change the output
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (tmp_path / "merged" / "tokenizer.json").is_file()


def test_merge_to_bf16_and_bad_inputs(model_dir, tmp_path):
    _trained_adapter(model_dir, tmp_path / "adapter")
    merge(tmp_path / "adapter", model_dir, tmp_path / "m16", dtype="bf16", device="cpu")
    assert json.loads((tmp_path / "m16" / "config.json").read_text())["dtype"] == "bfloat16"
    with pytest.raises(UserError, match="not empty"):
        merge(tmp_path / "adapter", model_dir, tmp_path / "m16")
    with pytest.raises(UserError, match="adapter_config.json"):
        merge(tmp_path, model_dir, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_merge(model_dir, tmp_path, capsys):
    from qlorafit.cli import main

    _trained_adapter(model_dir, tmp_path / "adapter")
    assert main(["merge", "--adapter", str(tmp_path / "adapter"), "--base", str(model_dir), "--out",
                 str(tmp_path / "m"), "--device", "cpu"]) == 0
    assert "merged 6 LoRA modules" in capsys.readouterr().out
