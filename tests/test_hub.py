"""Hub ids in and out, through huggingface_hub's real HTTP path against a local Hub (tests/hub_server.py).

Each command runs as a user runs it, in a subprocess whose environment names the Hub (HF_ENDPOINT), the cache
(HF_HUB_CACHE) and offline mode (HF_HUB_OFFLINE), because huggingface_hub reads them when it is imported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import FakeHub

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def hub(model_dir, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for f in Path(model_dir).iterdir():
        (repo / f.name).write_bytes(f.read_bytes())
    (repo / "pytorch_model.bin").write_bytes(b"\0" * 4096)  # pickled duplicate: must never be downloaded
    (repo / "README.md").write_text("# tiny\n")
    with FakeHub() as h:
        h.add_folder("acme/tiny", repo)
        h.add_folder("acme/gated", repo, gated=True)
        yield h


def qlorafit(args, hub, cache, offline=False, cwd=None, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache), HF_HOME=str(Path(cache).parent / "hf-home"),
               PYTHONPATH=SRC, HF_HUB_DISABLE_TELEMETRY="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "qlorafit", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def one_line_error(out) -> str:
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    return lines[0]


def test_estimate_fetches_only_config_json(hub, tmp_path):
    out = qlorafit(["estimate", "acme/tiny", "--budget", "1GiB", "--json"], hub, tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"] == "acme/tiny"
    assert hub.fetched("acme/tiny") == {"config.json"}
    # offline now: the cached config.json answers, with no request at all
    n = len(hub.log)
    out = qlorafit(["estimate", "acme/tiny", "--budget", "1GiB"], hub, tmp_path / "cache", offline=True)
    assert out.returncode == 0, out.stderr
    assert len(hub.log) == n


def test_gated_missing_and_offline_are_one_line_errors(hub, tmp_path):
    line = one_line_error(qlorafit(["estimate", "acme/gated"], hub, tmp_path / "c1"))
    assert "acme/gated is gated" in line and "accept its licence" in line and "hf auth login" in line
    line = one_line_error(qlorafit(["estimate", "acme/nope"], hub, tmp_path / "c1"))
    assert "no model 'acme/nope'" in line and "llama-3.1-8b" in line  # names the catalogue
    line = one_line_error(qlorafit(["plan", "acme/tiny", "--budget", "8GiB"], hub, tmp_path / "c2", offline=True))
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in line and "llama-3.1-8b" in line
    assert hub.fetched("acme/gated") == set() and hub.fetched("acme/nope") == set()


def _run_yaml(tmp_path, data, name="acme/tiny") -> Path:
    from qlorafit.core import config as C
    from test_train_helpers import make_cfg

    cfg = make_cfg(name, data, tmp_path / "run", train={"max_steps": 2})
    path = tmp_path / "run.yaml"
    path.write_text(C.to_yaml(cfg))
    return path


def test_train_downloads_a_hub_id_then_offline_is_one_line(hub, tmp_path, data):
    run_yaml = _run_yaml(tmp_path, data)
    out = qlorafit(["train", str(run_yaml)], hub, tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
    got = hub.fetched("acme/tiny")
    assert "model.safetensors" in got and "config.json" in got and "tokenizer.json" in got
    assert "pytorch_model.bin" not in got and "README.md" not in got  # only what training reads
    # the adapter names its base as the user did, not by this machine's cache path
    acfg = json.loads((tmp_path / "run" / "final" / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == "acme/tiny"
    # the same file in a fresh cache, offline: one line that says what to do
    line = one_line_error(qlorafit(["train", str(run_yaml), "--overwrite"], hub, tmp_path / "cold", offline=True))
    assert line.startswith("qlorafit train: error: model.name_or_path: acme/tiny is not in the local Hugging Face "
                           "cache and HF_HUB_OFFLINE is set") and "hf download acme/tiny" in line
    # ... and in the warm cache, offline, it trains from the cached snapshot
    out = qlorafit(["train", str(run_yaml), "--overwrite"], hub, tmp_path / "cache", offline=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # merge takes the same Hub id as its base (a fresh cache: it downloads too)
    out = qlorafit(["merge", "--adapter", str(tmp_path / "run" / "final"), "--base", "acme/tiny", "--out",
                    str(tmp_path / "merged"), "--device", "cpu"], hub, tmp_path / "cache2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "merged" / "config.json").is_file()


def test_push_uploads_adapter_and_model_card(hub, tmp_path, model_dir, data):
    from qlorafit.runtime.train import train
    from test_train_helpers import make_cfg

    train(make_cfg(model_dir, data, tmp_path / "run", train={"max_steps": 2}), quiet=True)
    out = qlorafit(["push", str(tmp_path / "run"), "--repo", "me/tiny-lora"], hub, tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    files = hub.repos["me/tiny-lora"]
    assert set(files) == {"adapter_model.safetensors", "adapter_config.json", "README.md"}
    assert files["adapter_model.safetensors"] == (tmp_path / "run" / "final" / "adapter_model.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert "library_name: peft" in card and f"base model: `{model_dir}`" in card
    assert f"data: `{data}`" in card and "measured peak" in card and "tokens/s (median)" in card
    assert "micro_batch_size: 4" in card  # the configuration, as the run resolved it
    line = one_line_error(qlorafit(["push", str(tmp_path), "--repo", "me/x"], hub, tmp_path / "cache"))
    assert "holds no complete adapter" in line


def test_hub_id_shape_is_recognised():
    from qlorafit.hub import looks_like_hub_id

    assert looks_like_hub_id("Qwen/Qwen3-8B") and looks_like_hub_id("meta-llama/Llama-3.1-8B-Instruct")
    assert not any(looks_like_hub_id(x) for x in ("./a/b", "/abs/path", "~/m", "llama-3.1-8b", "a/b/c", "a b/c"))


def test_train_push_to_hub_uploads_at_the_end(hub, tmp_path, model_dir, data):
    from qlorafit.core import config as C
    from test_train_helpers import make_cfg

    cfg = make_cfg(model_dir, data, tmp_path / "run", train={"max_steps": 1, "push_to_hub": "me/at-the-end"})
    (tmp_path / "run.yaml").write_text(C.to_yaml(cfg))
    out = qlorafit(["train", str(tmp_path / "run.yaml")], hub, tmp_path / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    assert {"adapter_model.safetensors", "README.md"} <= set(hub.repos["me/at-the-end"])
    with pytest.raises(Exception, match="train.push_to_hub: must be a Hub repo as owner/name"):
        make_cfg(model_dir, data, tmp_path / "r2", train={"push_to_hub": "not a repo"})
