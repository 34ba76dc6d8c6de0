"""Checkpoints: a run killed at step k and resumed ends with the same adapter as an uninterrupted run; a full disk
during a save leaves the previous checkpoint intact; nothing is read back with pickle."""

import errno

import pytest
import torch

from qlorafit.runtime import checkpoint as C
from qlorafit.errors import UserError
from qlorafit.runtime.train import train
from test_train_helpers import assert_adapters_close, ledger_ids, make_cfg, read_jsonl


class Killed(Exception):
    pass


def kill_at(step):
    def fault(phase, info):
        if phase == "forward" and info["step"] == step:
            raise Killed(f"killed at step {step}")
    return fault


# 24 samples, 8 per step: 3 steps per epoch; 5 steps cross into epoch 1; dropout draws from the RNG
RUN = dict(train={"max_steps": 5, "micro_batch_size": 4, "grad_accum": 2, "save_every": 2}, lora={"dropout": 0.1})


@pytest.mark.parametrize("optimizer", ["adamw", "paged_adamw_8bit"])
def test_killed_and_resumed_run_ends_with_the_same_adapter(model_dir, data, tmp_path, optimizer):
    sections = {**RUN, "train": {**RUN["train"], "optimizer": optimizer}}
    full = tmp_path / "full"
    train(make_cfg(model_dir, data, full, **sections), quiet=True)

    cut = tmp_path / "cut"
    cfg = make_cfg(model_dir, data, cut, **sections)
    with pytest.raises(Killed):
        train(cfg, fault=kill_at(4), quiet=True)  # dies in step 4; the newest checkpoint is step-2
    assert C.latest_checkpoint(cut).name == "step-2"
    assert len(read_jsonl(cut / "ledger.jsonl")) == 3
    s = train(cfg, resume=True, quiet=True)
    assert s["steps"] == 5
    assert_adapters_close(full / "final", cut / "final", atol=1e-6, rtol=1e-5)
    # the resumed run trained exactly the samples of the uninterrupted one, in the same steps
    assert read_jsonl(full / "ledger.jsonl") == read_jsonl(cut / "ledger.jsonl")
    assert sorted(ledger_ids(cut)[:24]) == list(range(24))


def test_disk_full_during_save_keeps_the_previous_checkpoint(model_dir, data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = make_cfg(model_dir, data, out, train={"max_steps": 5, "save_every": 2})
    real = C._write_bytes

    def writer(path, data):
        if "step-4" in str(path) and path.name == "optimizer.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(C, "_write_bytes", writer)
    with pytest.raises(UserError, match=r"disk full.*step-4.*step-2 is intact.*--resume"):
        train(cfg, quiet=True)
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-2"]  # no partial step-4, no temp dir left behind
    assert set(p.name for p in (out / "checkpoints" / "step-2").iterdir()) == {
        "adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "rng.safetensors",
        C.STATE_FILE}
    monkeypatch.setattr(C, "_write_bytes", real)
    s = train(cfg, resume=True, quiet=True)  # and the run can go on from it
    assert s["steps"] == 5


def test_checkpoint_files_load_without_pickle(model_dir, data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, train={"max_steps": 2, "optimizer": "paged_adamw_32bit"}), quiet=True)

    def no_pickle(*a, **k):
        raise AssertionError("pickle used")

    import pickle
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    cfg = make_cfg(model_dir, data, out, train={"max_steps": 3, "optimizer": "paged_adamw_32bit"})
    s = train(cfg, resume=True, quiet=True)
    assert s["steps"] == 3
    state = C.read_state(out / "final")
    assert state["position"]["step"] == 3 and state["position"]["index"] == 12


def test_atomic_write_leaves_no_partial_directory(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "step-1"
    C.write_dir_atomic(target, {"a": b"1", C.STATE_FILE: b'{"step": 1}'})
    calls = []

    def writer(path, data):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        path.write_bytes(data)

    monkeypatch.setattr(C, "_write_bytes", writer)
    with pytest.raises(UserError, match="disk full"):
        C.write_dir_atomic(target, {"a": b"2", C.STATE_FILE: b'{"step": 1}'})
    assert (target / "a").read_bytes() == b"1"  # the old directory, untouched
    assert [p.name for p in target.parent.iterdir()] == ["step-1"]


def test_keep_checkpoints_keeps_the_newest_step_checkpoints_and_final(model_dir, data, tmp_path):
    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, train={"max_steps": 5, "save_every": 1, "keep_checkpoints": 2}), quiet=True)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-4"]  # step 5 is final/
    assert C.latest_checkpoint(out).name == "final"
