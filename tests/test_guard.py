"""The in-place OOM guard, with OOMs injected at chosen phases, micro-batches and sizes (torch.OutOfMemoryError
raised by the step's test hook): the run completes, the ledger holds every sample once, the final adapter matches an
uninterrupted run, an eval OOM leaves training untouched, `skip` logs its sample."""

import os

import pytest
import torch

from qlorafit.runtime import guard as G
from qlorafit.runtime.train import train
from test_train_helpers import assert_adapters_close, ledger_ids, make_cfg, read_jsonl, write_jsonl

# 24 samples, 8 per step (micro-batch 4 x 2): 3 steps = one epoch, every sample once
STEPS = dict(train={"max_steps": 3, "micro_batch_size": 4, "grad_accum": 2})


def oom(msg="CUDA out of memory. Tried to allocate 2.00 GiB (injected)"):
    return torch.OutOfMemoryError(msg)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl")


@pytest.fixture(scope="module")
def reference(model_dir, data, tmp_path_factory):
    """The same run with no OOM."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(make_cfg(model_dir, data, out, **STEPS), quiet=True)
    return out


def events(run, kind):
    return [e for e in read_jsonl(run / "events.jsonl") if e["kind"] == kind]


def test_forward_oom_on_big_micro_batches_recovers_in_place(model_dir, data, reference, tmp_path):
    def fault(phase, info):  # the card only fits 2 samples at once
        if phase == "forward" and info["n_units"] > 2:
            raise oom()

    out = tmp_path / "run"
    s = train(make_cfg(model_dir, data, out, **STEPS), fault=fault, quiet=True)
    assert s["steps"] == 3
    assert sorted(ledger_ids(out)) == list(range(24))  # every sample exactly once
    assert read_jsonl(out / "ledger.jsonl") == read_jsonl(reference / "ledger.jsonl")  # same samples per step
    assert_adapters_close(reference / "final", out / "final")
    rec = events(out, "oom_recovery")
    assert len(rec) == 1 and rec[0]["phase"] == "forward" and rec[0]["action"] == "halve"
    assert (rec[0]["old_micro_batch"], rec[0]["new_micro_batch"]) == (4, 2) and "mem_allocated" in rec[0]
    m = read_jsonl(out / "metrics.jsonl")
    assert [r["micro_batch_size"] for r in m] == [2, 2, 2] and [r["grad_accum"] for r in m] == [4, 4, 4]


def test_backward_oom_after_partial_accumulation_is_undone(model_dir, data, reference, tmp_path):
    """The fault fires after micro-batch 1's backward has added into .grad: the snapshot must take it back out."""
    fired = []

    def fault(phase, info):
        if phase == "backward" and info["step"] == 2 and info["micro_index"] == 1 and not fired:
            fired.append(info)
            raise oom("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)")

    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, **STEPS), fault=fault, quiet=True)
    assert fired and sorted(ledger_ids(out)) == list(range(24))
    assert_adapters_close(reference / "final", out / "final")
    rec = events(out, "oom_recovery")
    assert [(r["step"], r["phase"], r["new_micro_batch"]) for r in rec] == [(2, "backward", 2)]


def test_optimizer_step_oom_is_retried(model_dir, data, reference, tmp_path):
    fired = []

    def fault(phase, info):
        if phase == "optimizer" and info["step"] == 1 and not fired:
            fired.append(1)
            raise oom()

    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, **STEPS), fault=fault, quiet=True)
    assert_adapters_close(reference / "final", out / "final", atol=1e-7, rtol=1e-6)
    assert [r["phase"] for r in events(out, "oom_recovery")] == ["optimizer"]


def test_escalation_reaches_checkpointing_then_fits(model_dir, data, reference, tmp_path):
    state = {}

    def fault(phase, info):  # nothing fits until checkpointing is on
        if phase == "forward" and not state.get("ckpt"):
            raise oom()

    out = tmp_path / "run"
    cfg = make_cfg(model_dir, data, out, **STEPS)
    from qlorafit.runtime.train import loop, setup
    run = setup(cfg, fault=fault, quiet=True)
    orig = G.apply_checkpointing

    def spy(model, mode):
        state["ckpt"] = mode
        orig(model, mode)

    G.apply_checkpointing = spy
    try:
        loop(run)
    finally:
        G.apply_checkpointing = orig
    actions = [r["action"] for r in events(out, "oom_recovery")]
    assert actions == ["halve", "halve", "checkpointing_on"]
    assert run.ctx.guard.checkpointing == "on" and run.ctx.guard.micro_batch_size == 1
    assert_adapters_close(reference / "final", out / "final")


def test_skip_logs_the_sample_that_cannot_fit(model_dir, data, tmp_path):
    bad = 5

    def fault(phase, info):  # sample 5 never fits, whatever the split or the checkpointing
        if phase == "forward" and bad in info["sample_ids"]:
            raise oom()

    out = tmp_path / "run"
    s = train(make_cfg(model_dir, data, out, guard={"on_oom": "skip"}, **STEPS), fault=fault, quiet=True)
    assert s["steps"] == 3
    ids = ledger_ids(out)
    assert sorted(ids) == [i for i in range(24) if i != bad]
    skipped = [x for row in read_jsonl(out / "ledger.jsonl") for x in row["skipped"]]
    assert [x["sample_id"] for x in skipped] == [bad] and "out of memory" in skipped[0]["reason"]
    assert [e["sample_id"] for e in events(out, "skip_sample")] == [bad]


def test_adapt_truncates_the_sample_that_cannot_fit(model_dir, data, tmp_path):
    bad = 7

    def fault(phase, info):  # sample 7 fits only when it is at most 12 tokens long
        if phase == "forward" and bad in info["sample_ids"] and info["seq_len"] > 12:
            raise oom()

    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, guard={"on_oom": "adapt"}, **STEPS), fault=fault, quiet=True)
    assert sorted(ledger_ids(out)) == list(range(24))
    cut = [x for row in read_jsonl(out / "ledger.jsonl") for x in row["truncated"]]
    assert len(cut) == 1 and cut[0]["sample_id"] == bad and cut[0]["to_tokens"] <= 12


def test_fail_policy_and_bounded_retries(model_dir, data, tmp_path):
    def always(phase, info):
        if phase == "forward":
            raise oom()

    with pytest.raises(G.GuardGaveUp, match="guard.on_oom=fail"):
        train(make_cfg(model_dir, data, tmp_path / "a", guard={"on_oom": "fail"}, **STEPS), fault=always, quiet=True)
    with pytest.raises(G.GuardGaveUp, match=r"after 2 recoveries.*max_seq_length"):
        train(make_cfg(model_dir, data, tmp_path / "b", guard={"max_retries": 2}, **STEPS), fault=always, quiet=True)


def test_guard_disabled_lets_the_oom_through(model_dir, data, tmp_path):
    def fault(phase, info):
        raise oom()

    with pytest.raises(torch.OutOfMemoryError):
        train(make_cfg(model_dir, data, tmp_path / "r", guard={"enabled": False}, **STEPS), fault=fault, quiet=True)


def test_eval_oom_only_shrinks_the_eval_batch(model_dir, data, tmp_path):
    cfg = dict(train={**STEPS["train"], "eval_every": 1}, data={"eval_split": 0.25})
    clean = tmp_path / "clean"
    train(make_cfg(model_dir, data, clean, **cfg), quiet=True)

    def fault(phase, info):
        if phase == "eval" and info["n_units"] > 1:
            raise oom()

    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, **cfg), fault=fault, quiet=True)
    assert_adapters_close(clean / "final", out / "final", atol=0, rtol=0)  # training untouched, bit for bit
    rec = events(out, "oom_recovery")
    assert {r["phase"] for r in rec} == {"eval"} and rec[-1]["new_micro_batch"] == 1
    assert [r["micro_batch_size"] for r in read_jsonl(out / "metrics.jsonl")] == [4, 4, 4]
    evals_clean = [e["loss"] for e in events(clean, "eval")]
    evals = [e["loss"] for e in events(out, "eval")]
    assert evals == pytest.approx(evals_clean, rel=1e-5)


def test_grow_back_after_steady_steps(model_dir, data, tmp_path):
    fired = []

    def fault(phase, info):
        if phase == "forward" and info["step"] == 1 and not fired:
            fired.append(1)
            raise oom()

    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, guard={"grow_back_after": 1}, **STEPS), fault=fault, quiet=True)
    assert [r["micro_batch_size"] for r in read_jsonl(out / "metrics.jsonl")] == [2, 2, 4]  # grows after step 2
    assert [e["new_micro_batch"] for e in events(out, "grow_back")] == [4]


# --- the pieces ---------------------------------------------------------------------------------------------------

def test_is_oom_by_type_then_message():
    assert G.is_oom(torch.OutOfMemoryError("x"))
    assert G.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert G.is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert not G.is_oom(RuntimeError("shape mismatch"))
    assert not G.is_oom(KeyError("out of memory"))


def test_allocator_config_respects_the_user(monkeypatch):
    from qlorafit.core.config import GuardConfig

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    G.configure_allocator(GuardConfig())
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    G.configure_allocator(GuardConfig())
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"


def test_snapshot_is_free_at_the_first_micro_batch():
    p = torch.nn.Parameter(torch.ones(3))
    assert G.snapshot_grads([p], 0) is None
    p.grad = torch.full((3,), 2.0)
    snap = G.snapshot_grads([p], 1)
    p.grad += 5
    G.restore_grads([p], snap)
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    G.restore_grads([p], None)
    assert p.grad is None


def test_escalation_reaches_offloaded_checkpointing(model_dir, data, reference, tmp_path):
    from qlorafit.runtime.offload import active_handle

    seen = []

    def fault(phase, info):  # fits only once layer inputs go to host RAM
        if phase == "forward" and active_handle(run.ctx.model) is None:
            raise oom()
        seen.append(info["step"])

    from qlorafit.runtime.train import loop, setup
    out = tmp_path / "run"
    run = setup(make_cfg(model_dir, data, out, **STEPS), fault=fault, quiet=True)
    assert run.ctx.offload is not None
    loop(run)
    actions = [r["action"] for r in events(out, "oom_recovery")]
    assert actions[:4] == ["halve", "halve", "checkpointing_on", "offload"]
    assert run.ctx.guard.checkpointing == "offload"
    assert sorted(ledger_ids(out)) == list(range(24))
    assert_adapters_close(reference / "final", out / "final")
