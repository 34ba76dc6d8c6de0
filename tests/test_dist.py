"""Two processes on CPU (gloo, torchrun) with the tiny 4-bit Llama: DDP trains the same adapter as one process with
the same effective batch; FSDP trains the same again and resumes from its sharded checkpoint; an OOM on one rank moves
every rank to the same split; a run resumes under a different rank count with every sample trained once."""

import doctest
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from qlorafit.core import config as C
from qlorafit.errors import UserError
from qlorafit.runtime import dist as D
from qlorafit.runtime.train import train
from test_train_helpers import assert_adapters_close, ledger_ids, make_cfg, read_jsonl, write_jsonl

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
# 24 samples; 2 ranks x micro-batch 2 x accumulation 2 = 8 per step: 3 steps are one epoch
PER_RANK = {"train": {"micro_batch_size": 2, "grad_accum": 2, "max_steps": 3}, "data": {"group_by_length": False}}
ONE_PROC = {"train": {"micro_batch_size": 4, "grad_accum": 2, "max_steps": 3}, "data": {"group_by_length": False}}


def _env() -> dict:
    # PYTHONFAULTHANDLER: a rank killed by a signal (SIGABRT from C++) prints every thread's Python stack
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONFAULTHANDLER="1")
    for k in D.LAUNCH_VARS + ("MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
        env.pop(k, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(spec: dict, tmp: Path, expect_ok: bool = True) -> subprocess.CompletedProcess:
    """tests/dist_worker.py on 2 ranks: config sections, faults per rank, resume."""
    path = tmp / f"spec-{abs(hash(json.dumps(spec, sort_keys=True)))}.json"
    path.write_text(json.dumps(spec))
    out, aborted = Path(spec["out"]), False
    before = tmp / (out.name + "-before")  # what a resumed run starts from, to start the retry from the same
    if out.exists():
        shutil.copytree(out, before)
    for _ in range(3):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
               f"--master-port={_free_port()}", str(HERE / "dist_worker.py"), str(path)]
        p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
        # the free port picked can be taken by another job before the rendezvous binds it: retried
        if re.search(r"EADDRINUSE|address already in use", p.stderr, re.I):
            continue
        # a rank aborted from C++ ('terminate called without an active exception', SIGABRT): seen in CI at the end of
        # session 16, not reproduced in 70 runs here, with and without CPU load. Retried once, from a fresh output folder (the first
        # attempt may have written part of it) or from the folder a resume started from, and reported as a warning
        # with where it was, so the next time says whether it happens at teardown; a second abort, or any other
        # failure, fails the test.
        if expect_ok and p.returncode != 0 and not aborted and "terminate called without an active exception" in p.stderr:
            aborted = True
            warnings.warn(f"torchrun rank aborted by C++ (final/ written: {(out / 'final').is_dir()}); retried "
                          f"once:\n{p.stderr[-3000:]}")
            if out.exists():
                out.rename(out.with_name(out.name + "-aborted"))
            if before.exists():
                shutil.copytree(before, out)
            continue
        break
    if expect_ok and p.returncode != 0:
        raise AssertionError(p.stderr[-4000:])
    return p


def spec(model_dir, data, out, sections, faults=(), resume=False) -> dict:
    return {"model_dir": str(model_dir), "data": str(data), "out": str(out), "sections": sections,
            "faults": list(faults), "resume": resume}


def with_(base: dict, **sections) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for sec, kv in sections.items():
        out.setdefault(sec, {}).update(kv)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl")


@pytest.fixture(scope="module")
def single(model_dir, data, tmp_path_factory):
    """One process, micro-batch 4 x accumulation 2: the same 8 samples per step as 2 ranks x 2 x 2."""
    out = tmp_path_factory.mktemp("single") / "run"
    train(make_cfg(model_dir, data, out, **ONE_PROC), quiet=True)
    return out


@pytest.fixture(scope="module")
def ddp(model_dir, data, tmp_path_factory):
    """`qlorafit train run.yaml --nproc 2`: the CLI relaunches itself under torchrun (2 ranks, ddp, gloo)."""
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = make_cfg(model_dir, data, tmp / "run", **with_(PER_RANK, dist={"strategy": "ddp"}))
    (tmp / "run.yaml").write_text(C.to_yaml(cfg))
    p = subprocess.run([sys.executable, "-m", "qlorafit", "train", str(tmp / "run.yaml"), "--nproc", "2"],
                       env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    assert p.stdout.count("trained 3 steps") == 1, p.stdout  # rank 0 reports for both
    return tmp / "run"


def test_ddp_trains_the_same_adapter_as_one_process(ddp, single):
    assert read_jsonl(ddp / "ledger.jsonl") == read_jsonl(single / "ledger.jsonl")  # the same samples per step
    assert sorted(ledger_ids(ddp)) == list(range(24))  # every sample once, across both ranks
    assert_adapters_close(single / "final", ddp / "final")
    # rank 1 trained its own half and wrote its own logs, never the run's files or a checkpoint
    r1 = ddp / "ranks" / "rank-1"
    own = [i for row in read_jsonl(r1 / "ledger.jsonl") for i in row["sample_ids"]]
    assert len(own) == 12 and set(own) < set(range(24))
    assert not (r1 / "final").exists() and not (r1 / "config.yaml").exists()
    assert json.loads((ddp / "final" / "trainer_state.json").read_text())["world_size"] == 2
    est = json.loads((ddp / "estimate.json").read_text())  # the first step is checked against the per-rank peak
    assert est["per_rank"]["strategy"] == "ddp" and est["peak_bytes"] == est["per_rank"]["peak_bytes_per_gpu"]


def test_oom_on_one_rank_moves_every_rank_to_the_same_split(model_dir, data, ddp, tmp_path):
    faults = [{"rank": 1, "phase": "forward", "step": 1, "min_units": 2, "times": 1},  # rank 1 fits 1 sample only
              {"rank": 0, "phase": "backward", "step": 2, "times": 1}]  # after its backward: partial grads undone
    out = tmp_path / "run"
    torchrun(spec(model_dir, data, out, with_(PER_RANK, dist={"strategy": "ddp"}), faults), tmp_path)
    assert read_jsonl(out / "ledger.jsonl") == read_jsonl(ddp / "ledger.jsonl")  # every sample once, same steps
    assert_adapters_close(ddp / "final", out / "final")  # the global normalization held through both re-splits
    for log in (out / "events.jsonl", out / "ranks" / "rank-1" / "events.jsonl"):  # both ranks took both rungs
        rec = [e for e in read_jsonl(log) if e["kind"] == "oom_recovery"]
        assert [(e["step"], e["action"], e["ranks"]) for e in rec] == [(1, "halve", [1]), (2, "checkpointing_on", [0])]
    # rank 0 (metrics.jsonl) kept the micro-batch of 2 it finished in the failed round, then went on in ones
    m = read_jsonl(out / "metrics.jsonl")
    assert [r["micro_batch_size"] for r in m] == [1, 1, 1] and [r["grad_accum"] for r in m] == [3, 4, 4]


def test_fsdp_trains_the_same_adapter_and_resumes_from_its_sharded_checkpoint(model_dir, data, ddp, tmp_path):
    """5 samples per rank per step: steps of 10, 10 and 4, the last all on rank 0, so rank 1 runs FSDP's all-label-
    ignored passes to keep the all-gathers paired. Crashed after step 2, resumed from the sharded checkpoint."""
    out, one = tmp_path / "run", tmp_path / "one"
    uneven = {"train": {"micro_batch_size": 1, "grad_accum": 5, "max_steps": 3, "save_every": 1},
              "data": {"group_by_length": False}}
    train(make_cfg(model_dir, data, one, **with_(uneven, train={"grad_accum": 10})), quiet=True)
    sections = with_(uneven, dist={"strategy": "fsdp"})
    crash = [{"rank": 0, "phase": "forward", "step": 3, "times": 1, "kind": "crash"}]
    p = torchrun(spec(model_dir, data, out, sections, crash), tmp_path, expect_ok=False)
    assert p.returncode != 0 and (out / "checkpoints" / "step-2" / "trainer_state.json").is_file()
    # the sharded optimizer state was written whole: the same tensors, the same shapes, as one process writes
    from safetensors import safe_open
    with safe_open(str(out / "checkpoints" / "step-2" / "optimizer.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    with safe_open(str(ddp / "final" / "optimizer.safetensors"), "pt") as f:
        assert shapes == {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    torchrun(spec(model_dir, data, out, sections, resume=True), tmp_path)
    assert read_jsonl(out / "ledger.jsonl") == read_jsonl(one / "ledger.jsonl")
    assert [len(r["sample_ids"]) for r in read_jsonl(out / "ledger.jsonl")] == [10, 10, 4]
    assert_adapters_close(one / "final", out / "final")


def test_resume_on_one_process_a_run_saved_on_two(model_dir, data, ddp, tmp_path):
    out = tmp_path / "run"
    sections = with_(PER_RANK, dist={"strategy": "ddp"}, train={"save_every": 1})
    crash = [{"rank": 1, "phase": "forward", "step": 3, "times": 1, "kind": "crash"}]
    assert torchrun(spec(model_dir, data, out, sections, crash), tmp_path, expect_ok=False).returncode != 0
    # one process, grad_accum doubled: the same 8 samples per step, the last 8 of the epoch
    train(make_cfg(model_dir, data, out, **with_(PER_RANK, train={"grad_accum": 4})), resume=True, quiet=True,
          allow_changes=True)  # grad_accum changed: the order stays (no length grouping), the step size holds
    assert read_jsonl(out / "ledger.jsonl") == read_jsonl(ddp / "ledger.jsonl")
    assert_adapters_close(ddp / "final", out / "final")
    changed = [e for e in read_jsonl(out / "events.jsonl") if e["kind"] == "world_size_changed"]
    assert [(e["saved"], e["now"]) for e in changed] == [(2, 1)]


def test_launch_detection_split_and_strategy_rules():
    assert doctest.testmod(D).failed == 0
    with pytest.raises(UserError, match="names 2 GPUs"):
        C.from_dict({"model": {"max_memory": {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}}})
    C.from_dict({"model": {"max_memory": {0: "20GiB", "cpu": "64GiB"}}})  # one GPU + host RAM: accelerate's split
    cfg = C.from_dict({"train": {"optimizer": "paged_adamw_8bit"}, "model": {"offload_lm_head": True}})
    assert len(D.fsdp_problems(cfg)) == 2  # (offload_embedding and compile are turned off under fsdp, not refused)
    with pytest.raises(UserError, match="DeepSpeed"):
        D.pick_strategy("auto", True, {"ACCELERATE_USE_DEEPSPEED": "true"})
