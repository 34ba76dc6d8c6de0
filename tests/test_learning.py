"""Learning is checked, never assumed: the adapter keeps moving after mid-run evaluations, and a step that trained
tokens but moved nothing is an error, not a grad_norm of 0."""

from pathlib import Path

import pytest
import torch

from qlorafit.errors import NotLearning
from qlorafit.runtime.train import loop, setup, train
from test_train_helpers import make_cfg, read_jsonl


def _repacks_4bit_on_eval() -> bool:
    """bitsandbytes repacks 4-bit weights for inference on CPUs with AVX512-BF16."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return "avx512_bf16" in flags


@pytest.fixture
def repack_calls(monkeypatch):
    """Every call of a bitsandbytes 4-bit layer that meets its repack condition (CPU, eval mode, an input needing no
    gradient). On a CPU with AVX512-BF16 the real repack then happens, and the adapter test sees its effect; on any
    other CPU the repack cannot run, so these recorded calls are the forced repack path the test checks."""
    from bitsandbytes.nn import Linear4bit

    calls = []
    forward = Linear4bit.forward

    def watched(self, x):
        if x.device.type == "cpu" and not self.training and not x.requires_grad:
            calls.append(type(self).__name__)
        return forward(self, x)

    monkeypatch.setattr(Linear4bit, "forward", watched)
    return calls


def test_adapter_keeps_learning_after_mid_run_evals(model_dir, data, tmp_path, repack_calls):
    """An evaluation after every step, checkpointing off (the tiny model's setting): every step still changes the
    adapter. Before the fix, bitsandbytes repacked the 4-bit weights at the first eval and grad_norm went 0.39, 0, 0."""
    cfg = make_cfg(model_dir, data, tmp_path / "run", data={"eval_split": 0.25},
                   train={"max_steps": 4, "eval_every": 1, "lr": 1e-2})
    before_update = []

    def snapshot(phase, info):
        if phase == "optimizer":  # just before the step's update
            before_update.append([p.detach().clone() for p in run.ctx.params])

    run = setup(cfg, fault=snapshot, quiet=True)
    loop(run)
    after = [p.detach().clone() for p in run.ctx.params]
    states = before_update + [after]
    assert len(states) == 5
    evals = [e for e in read_jsonl(tmp_path / "run" / "events.jsonl") if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [1, 2, 3, 4]
    for k in range(1, 4):  # the updates of steps 2, 3 and 4, each after an evaluation
        moved = max((a - b).abs().max().item() for a, b in zip(states[k + 1], states[k]))
        assert moved > 0, f"step {k + 1}: the adapter did not change after the evaluation at step {k}"
    assert all(r["grad_norm"] > 0 for r in read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert not repack_calls, (f"{len(repack_calls)} 4-bit layer calls met bitsandbytes' repack condition "
                              f"(repacks on this CPU: {_repacks_4bit_on_eval()})")


def test_a_step_that_moves_nothing_is_an_error(model_dir, data, tmp_path):
    """Tokens trained, no LoRA gradient (here taken away after each backward): the step names the likely cause."""
    def drop_grads(phase, info):
        if phase == "backward":
            for p in run_params:
                p.grad = None

    cfg = make_cfg(model_dir, data, tmp_path / "run", train={"max_steps": 2})
    run = setup(cfg, fault=drop_grads, quiet=True)
    run_params = run.ctx.params
    with pytest.raises(NotLearning, match=r"step 1 trained \d+ target tokens, yet no LoRA parameter received a "
                                          r"gradient.*eval\(\)"):
        loop(run)
    assert not (tmp_path / "run" / "final").exists()  # nothing saved as if it had trained


def test_zero_gradients_are_not_learning_either(model_dir, data, tmp_path):
    def zero_grads(phase, info):
        if phase == "backward":
            for p in run_params:
                if p.grad is not None:
                    p.grad.zero_()

    run = setup(make_cfg(model_dir, data, tmp_path / "run", train={"max_steps": 1}), fault=zero_grads, quiet=True)
    run_params = run.ctx.params
    with pytest.raises(NotLearning):
        loop(run)


def test_a_step_whose_samples_were_all_skipped_is_not_an_error(model_dir, data, tmp_path):
    """No token trained (every sample skipped by the guard): nothing to learn from, so no error."""
    def oom(phase, info):
        if phase == "forward":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    s = train(make_cfg(model_dir, data, tmp_path / "run", train={"max_steps": 1, "micro_batch_size": 2,
                                                                  "grad_accum": 1},
                       guard={"on_oom": "skip", "max_retries": 20}), fault=oom, quiet=True)
    assert s["steps"] == 1
    row = read_jsonl(tmp_path / "run" / "ledger.jsonl")[0]
    assert row["sample_ids"] == [] and len(row["skipped"]) == 2
