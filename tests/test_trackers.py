"""train.report_to: wandb (offline mode), MLflow (a local file store) and trackio (a local directory) each receive
the same metrics and memory events as metrics.jsonl / events.jsonl, read back through each library's own files."""

import glob
import json
import struct
import sys

import pytest
import torch

from qlorafit.errors import UserError
from test_train_helpers import make_cfg, read_jsonl


def wandb_history(run_dir) -> list[dict]:
    """The history rows of an offline W&B run, from its .wandb file (a leveldb-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb
    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    b, pos, block, buf, rows = open(path, "rb").read(), 7, 32768, b"", []
    while pos + 7 <= len(b):
        if block - pos % block < 7:
            pos += block - pos % block  # a block's tail too short for a header is padding
            continue
        _, n, kind = struct.unpack("<IHB", b[pos:pos + 7])
        data, pos = b[pos + 7: pos + 7 + n], pos + 7 + n
        if kind == 0:
            break
        buf = data if kind in (1, 2) else buf + data  # full / first, middle / last
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            if rec.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return rows


def test_wandb_mlflow_and_trackio_log_the_same_metrics_and_memory_events(model_dir, data, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("trackio", reason="the trackio extra is not installed")
    from qlorafit.runtime.train import train
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("TRACKIO_PROJECT", "qlorafit-test")

    def fault(phase, info):  # one OOM at step 2: a memory event every tracker must show
        if phase == "forward" and info["step"] == 2 and info["n_units"] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    out = tmp_path / "run"
    cfg = make_cfg(model_dir, data, out, data={"eval_split": 0.25},
                   train={"max_steps": 3, "micro_batch_size": 4, "grad_accum": 1,
                          "report_to": ["wandb", "mlflow", "trackio"]})
    train(cfg, fault=fault, quiet=True)
    losses = {m["step"]: m["loss"] for m in read_jsonl(out / "metrics.jsonl")}
    (rec,) = [e for e in read_jsonl(out / "events.jsonl") if e["kind"] == "oom_recovery"]
    (ev,) = [e for e in read_jsonl(out / "events.jsonl") if e["kind"] == "eval"]

    # wandb, offline: its own run file
    hist = wandb_history(out)
    assert {r["_step"]: r["train/loss"] for r in hist if "train/loss" in r} == pytest.approx(losses)
    oom = [r for r in hist if "events/oom_recovery/count" in r]
    assert oom[0]["_step"] == rec["step"] == 2 and oom[0]["events/oom_recovery/new_micro_batch"] == \
        rec["new_micro_batch"]
    assert any(r.get("eval/loss") == pytest.approx(ev["loss"]) for r in hist)

    # MLflow, local file store: its own client
    from mlflow.tracking import MlflowClient
    c = MlflowClient()
    (run,) = c.search_runs([c.get_experiment_by_name("qlorafit").experiment_id])
    rid = run.info.run_id
    assert {m.step: m.value for m in c.get_metric_history(rid, "train/loss")} == pytest.approx(losses)
    assert [(m.step, m.value) for m in c.get_metric_history(rid, "events/oom_recovery/count")] == [(2, 1.0)]
    assert c.get_metric_history(rid, "eval/perplexity")[0].value == pytest.approx(ev["perplexity"])
    assert run.data.params["train.max_steps"] == "3"

    # trackio, local: its own storage
    from trackio.sqlite_storage import SQLiteStorage
    logs = SQLiteStorage.get_logs("qlorafit-test", "run")
    assert {r["step"]: r["train/loss"] for r in logs if "train/loss" in r} == pytest.approx(losses)
    assert [r["step"] for r in logs if "events/oom_recovery/count" in r] == [2]
    assert any("memory/host_rss" in r for r in logs)


def test_a_missing_tracker_is_one_line_with_the_pip_command(model_dir, data, tmp_path, monkeypatch):
    from qlorafit.runtime.train import train
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(UserError) as e:
        train(make_cfg(model_dir, data, tmp_path / "run", train={"report_to": ["wandb"]}), quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'qlorafit[wandb]'" in msg
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before the model load and the first step
