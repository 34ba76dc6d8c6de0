"""Fault injection: the promises qlorafit keeps when a run is killed, interrupted, starved of disk, fed damaged files or
pointed at someone else's folder. Each test name is one promise; read top to bottom, the file is the table.

After every fault: no data lost (the resumed run trains exactly the samples, and ends with exactly the adapter, of an
uninterrupted run), and the user gets either a working resume or one clear line naming what to fix.

Faults are real where that is cheap: kill -9, SIGTERM and SIGINT are sent to a real `qlorafit train` process
(tests/fault_child.py plants the signal at a chosen step or half-way through a chosen checkpoint file). A full disk
is simulated by making the writes raise ENOSPC; damaged files are truncated on disk.
"""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import qlorafit
from qlorafit import rundir, runlog
from qlorafit.core import config as QC
from qlorafit.errors import UserError
from qlorafit.runtime import checkpoint as C
from qlorafit.runtime import train as T
from qlorafit.runtime.stop import Stopped
from test_train_helpers import assert_adapters_close, make_cfg, read_jsonl, write_jsonl

# 24 samples, 8 per step: 3 steps an epoch, 6 steps cross into epoch 1; dropout draws from the RNG; step checkpoints
# at 2 and 4, final/ at 6
RUN = dict(train={"max_steps": 6, "micro_batch_size": 4, "grad_accum": 2, "save_every": 2}, lora={"dropout": 0.1})
SEED = int(os.environ.get("QLORAFIT_FAULT_SEED", "12"))  # the "random" points; set it to explore others
CKPT_FILES = ("adapter_model.safetensors", "optimizer.safetensors", "rng.safetensors", C.STATE_FILE)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl")


def cfg_for(model_dir, data, out, **over):
    sections = {k: {**RUN.get(k, {}), **over.get(k, {})} for k in set(RUN) | set(over)}
    return make_cfg(model_dir, data, out, **sections)


@pytest.fixture(scope="module")
def reference(model_dir, data, tmp_path_factory):
    """The uninterrupted run every fault is compared with."""
    out = tmp_path_factory.mktemp("ref") / "run"
    T.train(cfg_for(model_dir, data, out), quiet=True)
    return out


@pytest.fixture(scope="module")
def stopped_run(model_dir, data, tmp_path_factory):
    """A run that died in step 5: checkpoints step-2 and step-4, four steps logged."""
    out = tmp_path_factory.mktemp("stopped") / "run"

    def die(phase, info):
        if phase == "forward" and info["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train(cfg_for(model_dir, data, out), fault=die, quiet=True)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def resume_matches_reference(model_dir, data, out: Path, reference: Path) -> dict:
    s = T.train(cfg_for(model_dir, data, out), resume=True, quiet=True)
    assert s["steps"] == 6
    assert read_jsonl(out / "ledger.jsonl") == read_jsonl(reference / "ledger.jsonl")  # every sample, once each
    assert_adapters_close(reference / "final", out / "final", atol=1e-6, rtol=1e-5)
    return s


def child(model_dir, data, out: Path, spec: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `qlorafit train` in a process of its own, with the fault in `spec` planted."""
    yaml_path = out.parent / "run.yaml"
    yaml_path.write_text(QC.to_yaml(cfg_for(model_dir, data, out)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(qlorafit.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    spec = {"argv": ["train", str(yaml_path)], **spec}
    return subprocess.run([sys.executable, str(Path(__file__).with_name("fault_child.py")), json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=timeout)


# --- killed: kill -9 anywhere loses at most the steps since the last checkpoint -----------------------------------

def test_kill_9_at_a_random_step_resumes_to_the_same_adapter(model_dir, data, reference, tmp_path):
    step = random.Random(SEED).randint(3, 6)
    out = tmp_path / "run"
    p = child(model_dir, data, out, {"signal": signal.SIGKILL, "step": step})
    assert p.returncode == -signal.SIGKILL, (step, p.stderr[-2000:])
    assert C.latest_checkpoint(out).name == f"step-{2 * ((step - 1) // 2)}", step
    resume_matches_reference(model_dir, data, out, reference)


def test_kill_9_half_way_through_writing_a_checkpoint_keeps_the_previous_one(model_dir, data, reference, tmp_path):
    rng = random.Random(SEED)
    target, name = rng.choice(["step-4", "final"]), rng.choice(CKPT_FILES)
    out = tmp_path / "run"
    p = child(model_dir, data, out, {"signal": signal.SIGKILL, "save": target, "file": name})
    assert p.returncode == -signal.SIGKILL, (target, name, p.stderr[-2000:])
    assert list((out / "checkpoints").glob(f".{target}.tmp-*")) or list(out.glob(f".{target}.tmp-*"))
    assert not (out / "final").exists()
    assert C.latest_checkpoint(out).name == ("step-2" if target == "step-4" else "step-4")
    resume_matches_reference(model_dir, data, out, reference)
    assert not list(out.rglob(".*.tmp-*"))  # the half-written directory is gone


# --- interrupted: Ctrl-C and SIGTERM save at the next step boundary and say how to resume ------------------------

def test_sigterm_saves_a_checkpoint_at_the_step_boundary_and_prints_the_resume_command(model_dir, data, reference,
                                                                                         tmp_path):
    out = tmp_path / "run"
    p = child(model_dir, data, out, {"signal": signal.SIGTERM, "step": 3})
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-2000:]
    assert "stopped after step 3 on SIGTERM" in p.stderr and "--resume" in p.stderr.splitlines()[-1]
    assert C.latest_checkpoint(out).name == "step-3"  # not a step lost: step 3 finished, then saved
    assert len(read_jsonl(out / "ledger.jsonl")) == 3
    resume_matches_reference(model_dir, data, out, reference)


def test_a_second_sigterm_ends_the_process_at_once(model_dir, data, tmp_path):
    out = tmp_path / "run"
    p = child(model_dir, data, out, {"signal": signal.SIGTERM, "step": 3, "times": 2})
    assert p.returncode == -signal.SIGTERM, p.stderr[-2000:]  # killed by the signal: no save, no wait
    assert C.latest_checkpoint(out).name == "step-2"
    assert len(read_jsonl(out / "ledger.jsonl")) == 2


def test_ctrl_c_saves_at_the_step_boundary_and_the_resumed_run_matches(model_dir, data, reference, tmp_path):
    out = tmp_path / "run"

    def ctrl_c(phase, info):
        if phase == "forward" and info["step"] == 3 and info["micro_index"] == 0:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Stopped) as e:
        T.train(cfg_for(model_dir, data, out), fault=ctrl_c, quiet=True)
    assert (e.value.step, e.value.exit_code) == (3, 130)
    assert Path(e.value.checkpoint) == out / "checkpoints" / "step-3"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back
    resume_matches_reference(model_dir, data, out, reference)


def test_a_second_ctrl_c_interrupts_the_step_at_once(model_dir, data, tmp_path):
    out = tmp_path / "run"

    def ctrl_c_twice(phase, info):
        if info["step"] == 3 and info.get("micro_index") == 0 and phase in ("forward", "backward"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        T.train(cfg_for(model_dir, data, out), fault=ctrl_c_twice, quiet=True)
    assert C.latest_checkpoint(out).name == "step-2"


def test_a_checkpoint_is_saved_by_time_as_well_as_by_steps(model_dir, data, tmp_path, monkeypatch):
    """train.save_every_minutes: a checkpoint once that much training time has passed (a fake clock: 7 minutes a
    step, so 20 minutes pass after steps 3 and 6)."""
    import time as real_time

    clock = {"now": 0.0}

    class FakeTime:
        time = staticmethod(real_time.time)
        monotonic = staticmethod(lambda: clock["now"])

    def tick(phase, info):
        if phase == "optimizer":
            clock["now"] += 7 * 60

    monkeypatch.setattr(T, "time", FakeTime)
    out = tmp_path / "run"
    T.train(cfg_for(model_dir, data, out, train={"save_every": 0, "save_every_minutes": 20, "max_steps": 7,
                                                  "keep_checkpoints": 0}), fault=tick, quiet=True)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-6"]


def test_plan_writes_a_periodic_checkpoint_and_no_demo_data_path(tmp_path, capsys):
    from qlorafit.cli import main

    path = tmp_path / "plan.yaml"
    assert main(["plan", "llama-3.1-8b", "--gpu", "rtx4090", "--out", str(path)]) == 0
    assert "set data.path" in capsys.readouterr().out
    cfg = QC.load(str(path))
    assert cfg.train.save_every_minutes > 0 and cfg.data.path == ""
    with pytest.raises(UserError, match=r"^data.path: not set"):
        T.train(cfg, quiet=True)


def test_a_finished_run_resumed_says_so_and_exits_0(model_dir, data, reference, tmp_path, capsys):
    from qlorafit.cli import main

    out = copy_of(reference, tmp_path)
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text(QC.to_yaml(cfg_for(model_dir, data, out)))
    before = (out / "final" / "adapter_model.safetensors").read_bytes()
    assert main(["train", str(yaml_path), "--resume"]) == 0
    assert "already finished at step 6; nothing to do" in capsys.readouterr().out
    assert (out / "final" / "adapter_model.safetensors").read_bytes() == before


def test_the_summary_after_a_resume_counts_this_invocation_and_the_whole_run(model_dir, data, stopped_run, tmp_path):
    from qlorafit.commands.train import summary_line

    out = copy_of(stopped_run, tmp_path)
    s = T.train(cfg_for(model_dir, data, out), resume=True, quiet=True)
    line = summary_line(s)
    assert "trained 2 steps (steps 5-6; 6 in the whole run)" in line
    first = next(r for r in read_jsonl(out / "metrics.jsonl") if r["step"] == 5)
    assert f"loss {first['loss']:.4f} (step 5)" in line


# --- resume with changed fields: what would break "every sample once" is refused, naming each field --------------

def test_every_config_key_declares_what_changing_it_on_resume_does():
    """The resume class is declared once per field (config.py metadata); the issue's lists hold."""
    from qlorafit.core.resume import flat, resume_class

    classes = {key: resume_class(key) for key in flat(QC.Config())}
    assert set(classes.values()) <= set(QC.RESUME_CLASSES)
    for key in ("train.micro_batch_size", "train.grad_accum", "data.path", "train.seed"):
        assert classes[key] == "samples", key
    for key in ("lora.r", "lora.targets", "model.name_or_path"):
        assert classes[key] == "shape", key
    assert classes["train.optimizer"] == "state"
    for key in ("train.lr", "train.eval_every", "train.log_every", "train.save_every", "train.save_every_minutes",
                "train.max_steps"):
        assert classes[key] == "safe", key


def test_resume_refuses_changes_to_the_samples_naming_each_field(model_dir, data, stopped_run, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    other = write_jsonl(tmp_path / "other.jsonl")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    msg = _raises(r"--resume: changed .*--allow-changes", lambda: T.train(
        cfg_for(model_dir, other, out, train={"micro_batch_size": 2, "grad_accum": 4, "seed": 7}), resume=True,
        quiet=True))
    for field in ("data.path", "train.micro_batch_size 4 -> 2", "train.grad_accum 2 -> 4", "train.seed 42 -> 7"):
        assert field in msg, field
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # refused before anything was written


def test_resume_refuses_another_optimizer_unless_allowed_and_then_starts_it_fresh(model_dir, data, stopped_run,
                                                                                   tmp_path, capsys):
    out = copy_of(stopped_run, tmp_path)
    cfg = cfg_for(model_dir, data, out, train={"optimizer": "paged_adamw_32bit"})
    msg = _raises(r"train.optimizer 'adamw' -> 'paged_adamw_32bit'.*optimizer/adapter state would no longer match",
                  lambda: T.train(cfg, resume=True, quiet=True))
    assert "--allow-changes" in msg
    s = T.train(cfg, resume=True, allow_changes=True, quiet=False)
    assert (s["start_step"], s["steps"]) == (4, 6)
    assert "the optimizer starts from fresh state" in capsys.readouterr().err


def test_resume_refuses_another_rank_or_targets_even_when_allowed(model_dir, data, stopped_run, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    for lora in ({"r": 16}, {"targets": ["q_proj"]}):
        cfg = cfg_for(model_dir, data, out, lora=lora)
        _raises(r"--resume: the checkpoint cannot load into the changed model: lora\.(r 8 -> 16|targets)",
                lambda: T.train(cfg, resume=True, allow_changes=True, quiet=True))


def test_resume_lists_the_safe_changes_and_continues(model_dir, data, stopped_run, tmp_path, capsys):
    out = copy_of(stopped_run, tmp_path)
    cfg = cfg_for(model_dir, data, out, train={"lr": 5e-3, "eval_every": 3, "log_every": 2, "save_every": 1})
    s = T.train(cfg, resume=True, quiet=False)
    assert (s["start_step"], s["steps"]) == (4, 6)
    err = capsys.readouterr().err
    assert "--resume: changed train.lr 0.01 -> 0.005, train.eval_every 0 -> 3, train.save_every 2 -> 1, " \
           "train.log_every 1 -> 2 (allowed" in err


def test_resume_with_allowed_micro_batch_change_uses_the_new_micro_batch(model_dir, data, stopped_run, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    cfg = cfg_for(model_dir, data, out, train={"micro_batch_size": 2, "grad_accum": 4})
    T.train(cfg, resume=True, allow_changes=True, quiet=True)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [(r["step"], r["micro_batch_size"]) for r in rows[4:]] == [(5, 2), (6, 2)]
    assert all(len(r["sample_ids"]) == 8 for r in read_jsonl(out / "ledger.jsonl"))  # the effective batch is kept


# --- a full disk: the previous checkpoint survives, and the run resumes ------------------------------------------

def test_disk_full_during_a_log_write_stops_with_a_message_and_the_resume_repairs_the_log(model_dir, data, reference,
                                                                                         tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = runlog.LogWriter.write

    def write(self, name, row):
        if name == "ledger" and row["step"] == 5:  # half the line reaches the disk, then the disk is full
            self.files[name].write(json.dumps(row)[:25])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, name, row)

    monkeypatch.setattr(runlog.LogWriter, "write", write)
    with pytest.raises(UserError, match=r"disk full while writing ledger.jsonl.*step-4 is intact.*--resume"):
        T.train(cfg_for(model_dir, data, out), quiet=True)
    assert not (out / "ledger.jsonl").read_text().endswith("\n")  # the partial line is there
    monkeypatch.setattr(runlog.LogWriter, "write", real)
    resume_matches_reference(model_dir, data, out, reference)


# --- damaged checkpoints: the newest intact one is used, the bad file is named ----------------------------------

@pytest.mark.parametrize("name", CKPT_FILES)
def test_a_damaged_checkpoint_file_falls_back_to_the_previous_checkpoint(model_dir, data, reference, stopped_run,
                                                                         tmp_path, name, capsys):
    out = copy_of(stopped_run, tmp_path)
    bad = out / "checkpoints" / "step-4" / name
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    s = T.train(cfg_for(model_dir, data, out), resume=True, quiet=False)
    err = capsys.readouterr().err
    assert f"{bad} is damaged" in err and "checkpoints/step-2, the newest intact checkpoint" in err
    assert s["start_step"] == 2 and s["steps"] == 6
    assert read_jsonl(out / "ledger.jsonl") == read_jsonl(reference / "ledger.jsonl")
    assert_adapters_close(reference / "final", out / "final", atol=1e-6, rtol=1e-5)


def test_every_checkpoint_damaged_is_one_clear_error(model_dir, data, stopped_run, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    for step in (2, 4):
        (out / "checkpoints" / f"step-{step}" / C.STATE_FILE).write_text("{")
    with pytest.raises(UserError, match=r"every checkpoint in .* is damaged.*trainer_state.json"):
        T.train(cfg_for(model_dir, data, out), resume=True, quiet=True)


@pytest.mark.parametrize("name", ["metrics", "ledger", "events"])
def test_a_partial_last_log_line_is_repaired_on_resume(model_dir, data, reference, stopped_run, tmp_path, name):
    out = copy_of(stopped_run, tmp_path)
    with open(out / f"{name}.jsonl", "a") as f:
        f.write('{"step": 5, "los')
    resume_matches_reference(model_dir, data, out, reference)
    assert all(line.endswith("}") for line in (out / f"{name}.jsonl").read_text().splitlines())


def test_a_partial_last_log_line_does_not_block_a_plain_rerun(model_dir, data, tmp_path):
    out = tmp_path / "run"
    cfg = cfg_for(model_dir, data, out, train={"save_every": 0, "max_steps": 2})
    T.train(cfg, quiet=True)
    shutil.rmtree(out / "final")  # as if killed before any checkpoint
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')
    assert T.train(cfg, quiet=True)["steps"] == 2
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]


# --- never delete what qlorafit did not write --------------------------------------------------------------------

def _users_folder(d: Path) -> Path:
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "my_model.pt").write_bytes(b"precious")
    (d / "config.yaml").write_text("my: own config\n")
    (d / "notes.txt").write_text("mine")
    return d


def test_overwrite_in_a_folder_qlorafit_did_not_create_deletes_nothing(model_dir, data, tmp_path):
    out = _users_folder(tmp_path / "project")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(UserError, match=r"--overwrite: .* has no \.qlorafit-run\.json.*will not delete"):
        T.train(cfg_for(model_dir, data, out), overwrite=True, quiet=True)
    with pytest.raises(UserError, match="config.yaml, which qlorafit did not write"):
        T.train(cfg_for(model_dir, data, out), quiet=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "checkpoints" / "my_model.pt").read_bytes() == b"precious"


def test_overwrite_of_a_run_removes_only_the_files_qlorafit_wrote(model_dir, data, reference, tmp_path):
    out = copy_of(reference, tmp_path)
    (out / "checkpoints" / "my_model.pt").write_bytes(b"precious")
    (out / "final" / "README.md").write_text("my notes on this adapter")
    (out / "notes.txt").write_text("mine")
    T.train(cfg_for(model_dir, data, out, train={"max_steps": 1, "lr": 5e-3}), overwrite=True, quiet=True)
    assert (out / "checkpoints" / "my_model.pt").read_bytes() == b"precious"
    assert (out / "final" / "README.md").is_file() and (out / "notes.txt").is_file()
    assert not list((out / "checkpoints").glob("step-*")) and len(read_jsonl(out / "ledger.jsonl")) == 1


def test_demo_refuses_a_non_empty_folder_or_a_training_run(reference, tmp_path, capsys):
    from qlorafit.cli import main

    users = _users_folder(tmp_path / "project")
    assert main(["demo", "--output-dir", str(users), "--steps", "1"]) == 2
    assert "no .qlorafit-run.json" in capsys.readouterr().err
    run = copy_of(reference, tmp_path)
    files = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert main(["demo", "--output-dir", str(run), "--steps", "1"]) == 2
    assert "holds a qlorafit train run" in capsys.readouterr().err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files


def test_remove_run_keeps_foreign_files_inside_checkpoint_folders(tmp_path):
    d = tmp_path / "run"
    rundir.write_marker(d, "train")
    C.write_dir_atomic(d / "checkpoints" / "step-2", {n: b"x" for n in CKPT_FILES})
    (d / "checkpoints" / "step-2" / "mine.bin").write_bytes(b"y")
    (d / "metrics.jsonl").write_text("")
    left = rundir.remove_run(d)
    assert [p.name for p in left] == ["checkpoints"]
    assert [p.name for p in (d / "checkpoints" / "step-2").iterdir()] == ["mine.bin"]


# --- bad input: one clear line naming the key or file, before anything slow ---------------------------------------

def _raises(match, fn):
    with pytest.raises(UserError, match=match) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("section,key,value,match", [
    ("train", "max_steps", -5, r"train.max_steps: must be zero or more, got -5"),
    ("train", "epochs", 0, r"train.epochs: must be above 0"),
    ("train", "epochs", -1, r"train.epochs: must be above 0"),
    ("train", "warmup_steps", -3, r"train.warmup_steps: must be zero or more"),
    ("train", "log_every", 0, r"train.log_every: must be at least 1"),
    ("train", "save_every_minutes", -1, r"train.save_every_minutes: must be zero or more"),
])
def test_a_bad_number_names_its_key_before_anything_runs(section, key, value, match, tmp_path):
    raw = {"output_dir": str(tmp_path / "run"), section: {key: value}}
    if key == "epochs":
        raw[section]["max_steps"] = 0
    _raises(match, lambda: QC.from_dict(raw, "run.yaml"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,needle", [
    (["train", "--set", "lora.targets=[q_proj, v_proj"], "--set lora.targets: '[q_proj, v_proj' is not a valid list"),
    (["demo", "--steps", "-1"], "demo --steps: must be at least 1, got -1"),
    (["demo", "--steps", "0"], "demo --steps: must be at least 1, got 0"),
])
def test_a_bad_command_line_is_one_line(argv, needle, capsys):
    from qlorafit.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_the_output_dir_is_checked_before_the_model_loads(model_dir, data, tmp_path, monkeypatch):
    import qlorafit.runtime.model as M

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the output directory was checked")

    monkeypatch.setattr(M, "load_model", no_load)
    f = tmp_path / "a-file"
    f.write_text("x")
    _raises(r"output_dir: .*a-file is a file, not a directory", lambda: T.train(cfg_for(model_dir, data, f), quiet=True))
    _raises(r"output_dir: .*a-file/run cannot be created: .*a-file is a file",
            lambda: T.train(cfg_for(model_dir, data, f / "run"), quiet=True))
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(rundir.os, "access", lambda p, mode: Path(p) != ro)  # read-only for this user (even root)
    _raises(r"output_dir: .*ro/run is not writable \(its parent .*ro is read-only",
            lambda: T.train(cfg_for(model_dir, data, ro / "run"), quiet=True))


def test_lora_rank_above_the_hidden_size_is_refused_before_the_load(model_dir, data, tmp_path):
    _raises(r"lora.r: 128 is larger than the hidden size 64",
            lambda: T.train(cfg_for(model_dir, data, tmp_path / "run", lora={"r": 128}), quiet=True))
    assert not (tmp_path / "run").exists()


def test_config_json_that_does_not_match_the_weights_is_named(model_dir, data, tmp_path):
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    conf = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**conf, "num_hidden_layers": 4}))
    _raises(r"config.json: num_hidden_layers is 4, but the weights .* hold 2 layers",
            lambda: T.train(cfg_for(bad, data, tmp_path / "run"), quiet=True))
    (bad / "config.json").write_text(json.dumps({**conf, "hidden_size": 128}))
    _raises(r"config.json: says vocab_size \d+ x hidden_size 128, but the weights' embed_tokens is \d+ x 64",
            lambda: T.train(cfg_for(bad, data, tmp_path / "run"), quiet=True))


def test_an_all_empty_text_dataset_is_refused_and_empty_records_are_named(model_dir, tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", "   ", ""])
    _raises(r"empty.jsonl: every record's text is empty \(first: .*empty.jsonl line 1\)",
            lambda: T.train(make_cfg(model_dir, empty, tmp_path / "run"), quiet=True))


def test_a_csv_row_with_extra_or_missing_cells_is_named(model_dir, tmp_path):
    for body, line in (('text\n"a b"\n"c", "d"\n', 3), ("text,label\nhello,1\nworld\n", 3)):
        path = tmp_path / "rows.csv"
        path.write_text(body)
        _raises(rf"rows.csv line {line}: \d cells, but the header has \d",
                lambda: T.train(make_cfg(model_dir, path, tmp_path / "run"), quiet=True))


def test_merge_refuses_a_base_other_than_the_adapters_and_other_shapes(model_dir, reference, tmp_path):
    from qlorafit.runtime.merge import merge
    from test_train_helpers import tiny_model_dir

    other = tmp_path / "other-model"  # the same shape, other weights
    shutil.copytree(model_dir, other)
    w = other / "model.safetensors"
    from safetensors.torch import load_file, save_file
    save_file({k: v + 1 for k, v in load_file(str(w)).items()}, str(w), metadata={"format": "pt"})
    _raises(r"--base .*other-model is not the model this adapter was trained on: .*adapter_config.json records",
            lambda: merge(reference / "final", other, tmp_path / "m1", device="cpu"))
    assert merge(reference / "final", other, tmp_path / "m2", device="cpu", any_base=True)["merged"] == 6
    wide = tiny_model_dir(tmp_path / "models", hidden=32)
    _raises(r"does not fit --base .*: .*\.weight is \d+ x 32 in the base, the adapter was trained on \d+ x 64",
            lambda: merge(reference / "final", wide, tmp_path / "m3", device="cpu", any_base=True))
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m3").exists()


# --- quiet, honest output -----------------------------------------------------------------------------------------

def test_known_harmless_library_messages_are_filtered_and_real_ones_kept(capsys):
    import logging
    import warnings

    from qlorafit.cli import quiet_known_warnings

    quiet_known_warnings()
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert not log.filter(logging.makeLogRecord({"msg": "Failed to load CPU gemm_4bit_forward from kernels-community"}))
    assert log.filter(logging.makeLogRecord({"msg": "CUDA kernel missing"}))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet_known_warnings()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in seen] == ["something else is deprecated"]


def test_plan_auto_prints_what_it_chose(model_dir, data, tmp_path, capsys):
    T.train(cfg_for(model_dir, data, tmp_path / "run", train={"max_steps": 1}), plan=True, budget_bytes=8 * 1024**3)
    err = capsys.readouterr().err
    chosen = QC.load(str(tmp_path / "run" / "config.yaml")).train
    assert "--plan auto chose: " in err and f"train.micro_batch_size={chosen.micro_batch_size}" in err
    assert f"train.grad_accum={chosen.grad_accum}" in err and f"train.optimizer={chosen.optimizer}" in err


def test_doctor_streams_a_large_log_to_the_same_diagnosis():
    """A long log is cut to its head, tail and key lines: the same cause and numbers from a fraction of the text.
    (The sizes are scaled down from the defaults, 2 MiB / 64 KiB / 256 KiB / 4 MiB, so the full text is quick to
    diagnose too; the blocks, the carry-over between them and the cut are the same code.)"""
    import io

    from qlorafit.doctor import Inputs, diagnose
    from qlorafit.doctor.logtext import read_log

    lines = ["***** Running training *****", "  Instantaneous batch size per device = 8",
             "  Gradient Accumulation steps = 4"]
    lines += [f"{{'loss': {1 + i % 7 / 10:.4f}, 'grad_norm': 0.5, 'epoch': {i / 1000:.3f}}}" for i in range(6000)]
    lines.insert(3000, "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 32768")
    lines += ["Traceback (most recent call last):", '  File "train.py", line 9, in <module>', "    trainer.train()",
              "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
              "23.64 GiB of which 1.50 GiB is free. Including non-PyTorch memory, this process has 22.10 GiB memory in "
              "use. Of the allocated memory 20.00 GiB is allocated by PyTorch, and 1.60 GiB is reserved by PyTorch but "
              "unallocated."]
    text = "\n".join(lines) + "\n"
    sizes = dict(small=64 * 1024, head_bytes=4 * 1024, tail_bytes=16 * 1024, block_bytes=32 * 1024)
    small = read_log(io.StringIO(text), **sizes)
    assert len(text) > 4 * sizes["small"] and len(small) < 0.2 * len(text)
    assert "reducing loss scale" in small and "left out" in small
    full, cut = diagnose(Inputs(error_text=text)), diagnose(Inputs(error_text=small))
    assert cut.primary.id == full.primary.id
    assert cut.case.oom == full.case.oom  # every parsed number, the phase, the fp16 sign, the trainer's settings
    assert read_log(io.StringIO("short\n"), **sizes) == "short\n"
