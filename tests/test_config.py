import pytest
import yaml

from qlorafit.core import config as c
from qlorafit.errors import UserError


def test_defaults_roundtrip_through_yaml():
    cfg = c.resolve(c.Config())  # a loaded config is resolved: 'auto' checkpointing is on or offload
    assert c.from_dict(yaml.safe_load(c.to_yaml(cfg))) == cfg


def test_auto_checkpointing_offloads_gpu_bound_micro_batches_only():
    """train.grad_checkpointing auto (the default) is offload from 8,192 tokens per micro-batch, on below and under
    fsdp; the estimator's Setup resolves it the same way, and an explicit choice is kept."""
    from qlorafit.core.setup import Setup, setup_from_config
    assert c.Config().train.grad_checkpointing == "auto"
    for batch, seq, fsdp, want in ((4, 2048, False, "offload"), (1, 16384, False, "offload"), (1, 2048, False, "on"),
                                   (2, 512, False, "on"), (4, 2048, True, "on")):
        raw = {"train": {"micro_batch_size": batch}, "data": {"max_seq_length": seq}}
        if fsdp:
            raw["dist"] = {"strategy": "fsdp"}
        cfg = c.from_dict(raw)
        assert cfg.train.grad_checkpointing == want, (batch, seq, fsdp)
        assert setup_from_config(cfg).grad_checkpointing == want
        if not fsdp:
            assert Setup(batch_size=batch, seq_len=seq).grad_checkpointing == want
    assert c.from_dict({"train": {"micro_batch_size": 8, "grad_checkpointing": "on"},
                        "data": {"max_seq_length": 4096}}).train.grad_checkpointing == "on"


def test_every_field_is_documented():
    import dataclasses
    for sec in (c.ModelConfig, c.LoraConfig, c.DataConfig, c.TrainConfig, c.GuardConfig):
        for f in dataclasses.fields(sec):
            assert len(f.metadata.get("help", "")) > 10, f"{sec.__name__}.{f.name} has no help"


def test_unknown_keys_suggest_and_all_problems_reported_at_once(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lrr: 0.1\n  micro_batch_size: many\nlora:\n  rank: 8\n  dropout: 2\n")
    with pytest.raises(UserError) as e:
        c.load(str(p))
    msg = str(e.value)
    assert "train.lrr" in msg and "did you mean 'lr'" in msg
    assert "micro_batch_size: expected int" in msg
    assert "lora.rank" in msg and "did you mean 'r'" in msg
    assert "lora.dropout" in msg and str(p) in msg


def test_bad_yaml_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: [1,\n")
    with pytest.raises(UserError, match=r"c.yaml: not valid YAML at line"):
        c.load(str(p))


def test_overrides_typed():
    cfg = c.load(None, c.parse_overrides(["train.lr=1e-4", "lora.targets=all-linear", "guard.enabled=false"]))
    assert cfg.train.lr == 1e-4 and cfg.lora.targets == ["all-linear"] and cfg.guard.enabled is False
    with pytest.raises(UserError, match="did you mean 'train.lr'"):
        c.parse_overrides(["train.lrate=1"])


def test_choices_enforced():
    with pytest.raises(UserError, match="train.optimizer: 'sgd' is not one of"):
        c.from_dict({"train": {"optimizer": "sgd"}})


def test_generated_reference_is_current():
    """docs/config.md is generated from the field docs: regenerate it with
    python -c "from qlorafit.core.config import reference_markdown; open('docs/config.md','w').write(reference_markdown())"
    """
    from pathlib import Path
    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text() == c.reference_markdown()


def test_offload_lm_head_needs_a_frozen_head():
    assert c.from_dict({"model": {"offload_lm_head": True}}).model.offload_lm_head is True
    assert c.from_dict({"lora": {"targets": ["q_proj", "lm_head"]}}).lora.targets[-1] == "lm_head"  # fine without
    with pytest.raises(UserError) as e:
        c.from_dict({"model": {"offload_lm_head": True}, "lora": {"targets": ["q_proj", "lm_head"],
                                                                 "modules_to_save": ["lm_head"]}})
    msg = str(e.value)
    assert "lora.targets: names lm_head" in msg and "lora.modules_to_save: names lm_head" in msg  # both, at once
    assert "model.offload_lm_head" in msg
    doc = c.help_for("model.offload_lm_head")
    assert "vocab x hidden x 2 bytes" in doc and "PCIe" in doc  # what it saves, what it costs
