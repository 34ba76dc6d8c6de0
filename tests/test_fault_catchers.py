"""Tests aimed at faults the rest of the suite let through (issue 11): each fails when its fault is put back.

  - guard.rescale_grads doing nothing, or a truncated sample not updating the step's token total: the gradients after
    a skip or a truncation must equal a clean step over the remaining samples, normalized by their own token count;
  - evaluate leaving the model in eval mode;
  - a resumed `--plan auto` run forgetting a planned field.
"""

import dataclasses

import pytest
import torch

from qlorafit.core import config as C
from qlorafit.runtime.step import _truncate, evaluate, train_step, unit_targets
from qlorafit.runtime.train import next_units, setup
from test_train_helpers import make_cfg

# 8 samples per step in micro-batches of 4: the victim sits in the second micro-batch, so the first one's gradients
# are already in .grad (divided by the old token total) when the victim is skipped or cut
STEP = dict(train={"max_steps": 1, "micro_batch_size": 4, "grad_accum": 2}, data={"group_by_length": False})
VICTIM = 5  # position in the step


def _grads(run) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in run.ctx.params]


def _step_grads(model_dir, data, out, fault=None, guard=None, edit=None):
    """The LoRA gradients just before the first update (captured at the optimizer phase), the step's units and its
    result. `fault(phase, info, victim_id)` may raise an OOM; `edit(units)` changes the units before the step."""
    got, victim = [], {}

    def hook(phase, info):
        if phase == "optimizer":
            got.append(_grads(run))
        elif fault is not None:
            fault(phase, info, victim["id"])

    run = setup(make_cfg(model_dir, data, out, guard=guard or {}, **STEP), fault=hook, quiet=True)
    units = next_units(run)
    victim["id"] = units[VICTIM].id
    if edit is not None:
        units = edit(units)
    res = train_step(run.ctx, units, 1)
    return got[0], units, res


def _oom():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")


def test_skipped_sample_leaves_the_gradient_of_a_clean_step_over_the_rest(model_dir, data, tmp_path):
    def fault(phase, info, victim):  # the victim never fits, whatever the split or the checkpointing
        if phase == "forward" and victim in info["sample_ids"]:
            raise _oom()

    got, units, res = _step_grads(model_dir, data, tmp_path / "a", fault, guard={"on_oom": "skip"})
    assert [x["sample_id"] for x in res.skipped] == [units[VICTIM].id]
    rest = units[:VICTIM] + units[VICTIM + 1:]
    assert res.tokens == sum(unit_targets(u) for u in rest) < sum(unit_targets(u) for u in units)
    want, _, _ = _step_grads(model_dir, data, tmp_path / "b", edit=lambda u: u[:VICTIM] + u[VICTIM + 1:])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-4)


def test_truncated_sample_leaves_the_gradient_of_a_clean_step_with_it_cut(model_dir, data, tmp_path):
    def fault(phase, info, victim):  # the victim fits only when it is at most 12 tokens long
        if phase == "forward" and victim in info["sample_ids"] and info["seq_len"] > 12:
            raise _oom()

    got, units, res = _step_grads(model_dir, data, tmp_path / "a", fault, guard={"on_oom": "adapt"})
    assert len(res.truncated) == 1 and res.truncated[0]["sample_id"] == units[VICTIM].id
    n = res.truncated[0]["to_tokens"]

    def cut(us):
        return us[:VICTIM] + [_truncate(us[VICTIM], n)] + us[VICTIM + 1:]

    assert res.tokens == sum(unit_targets(u) for u in cut(units)) < sum(unit_targets(u) for u in units)
    want, _, _ = _step_grads(model_dir, data, tmp_path / "b", edit=cut)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-4)


def test_evaluate_leaves_the_model_training(model_dir, data, tmp_path):
    run = setup(make_cfg(model_dir, data, tmp_path / "run", lora={"dropout": 0.1}), quiet=True)
    units = next_units(run)
    assert evaluate(run.ctx, units, 1) is not None
    assert all(m.training for m in run.ctx.model.modules())  # dropout, LoRA and 4-bit layers all back in train mode

    def broken(phase, info):
        if phase == "eval":
            raise ValueError("a bug inside the evaluation")

    run.ctx.fault = broken
    with pytest.raises(ValueError):
        evaluate(run.ctx, units, 1)
    assert all(m.training for m in run.ctx.model.modules())  # even when it fails
    assert torch.is_grad_enabled()


def test_resumed_plan_auto_keeps_every_planned_field(tmp_path):
    """Whatever a plan wrote into the config (every searched field and grad_accum), a --resume keeps all of it."""
    from qlorafit.core.plan import Candidate, apply_to_config
    from qlorafit.core.setup import Setup
    from qlorafit.runtime.train import plan_auto

    d = Setup()  # every planned value differs from the default, so each one shows
    planned_setup = dataclasses.replace(d, batch_size=2, packing=True, grad_checkpointing="offload",
                                        optimizer="paged_adamw_8bit", loss_impl="fused",
                                        offload_embedding=not d.offload_embedding, offload_lm_head=True,
                                        mlp_tile_tokens=8192, compile=not d.compile)
    saved = apply_to_config(C.Config(), Candidate(planned_setup, 3, 0, 0.0, True, 0.0))
    (tmp_path / "config.yaml").write_text(C.to_yaml(saved))
    fresh = C.from_dict({"train": {"micro_batch_size": 16, "grad_accum": 1}}, "new")
    planned = {k for k, v in _flat(saved).items() if v != _flat(C.Config())[k]}
    assert len(planned) == 10  # the nine searched fields and grad_accum
    cfg = plan_auto(fresh, "unused", None, None, tmp_path, resume=True)
    assert {k: _flat(cfg)[k] for k in planned} == {k: _flat(saved)[k] for k in planned}


def _flat(cfg) -> dict:
    return {f"{sec}.{k}": v for sec, d in C.to_dict(cfg).items() if isinstance(d, dict) for k, v in d.items()}
