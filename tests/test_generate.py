"""Seeing what the model learned: `generate` and `chat` on a trained run (CPU, the real 4-bit load), samples at each
evaluation, eval perplexity and token accuracy, early stopping."""

import json
import math

import pytest
import torch

from qlorafit import cli
from qlorafit.errors import UserError
from test_train_helpers import make_cfg


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo run (`qlorafit demo`), shortened to 3 steps, on its own cache."""
    import os
    root = tmp_path_factory.mktemp("demo")
    old = os.environ.get("QLORAFIT_CACHE")
    os.environ["QLORAFIT_CACHE"] = str(root / "cache")
    try:
        assert cli.main(["demo", "--output-dir", str(root / "run"), "--steps", "3"]) == 0
        yield root / "run"
    finally:
        if old is None:
            os.environ.pop("QLORAFIT_CACHE", None)
        else:
            os.environ["QLORAFIT_CACHE"] = old


def test_generate_streams_the_greedy_reply_of_the_demo_run(demo_run, capsys, monkeypatch):
    from qlorafit.runtime.generation import find_adapter, load_generator, prompt_ids, reply
    monkeypatch.setenv("QLORAFIT_CACHE", str(demo_run.parent / "cache"))
    capsys.readouterr()
    assert cli.main(["generate", str(demo_run), "--prompt", "What is 7 plus 5?", "--max-new-tokens", "12"]) == 0
    streamed = capsys.readouterr().out.strip()
    target = find_adapter(str(demo_run))
    assert target.adapter == demo_run / "final"
    gen = load_generator(target, torch.device("cpu"))
    want = reply(gen, [{"role": "user", "content": "What is 7 plus 5?"}], 12)
    assert streamed == want.strip()  # the adapter's greedy answer, token by token
    text = gen.tokenizer.apply_chat_template([{"role": "user", "content": "What is 7 plus 5?"}], tokenize=False,
                                             add_generation_prompt=True)
    assert text.endswith("<|user|>\nWhat is 7 plus 5?\n<|assistant|>\n")  # through the chat template
    x = torch.tensor([prompt_ids(gen, [{"role": "user", "content": "What is 7 plus 5?"}])])
    with torch.no_grad():
        tuned = gen.model.generate(input_ids=x, max_new_tokens=12, do_sample=False)
        with gen.model.disable_adapter():  # the adapter is applied: without it the base answers otherwise
            base = gen.model.generate(input_ids=x, max_new_tokens=12, do_sample=False)
    assert tuned[0, x.shape[1]:].tolist() != base[0, x.shape[1]:].tolist()
    assert gen.tokenizer.decode(tuned[0, x.shape[1]:], skip_special_tokens=True) == want


def test_generate_from_an_adapter_directory_and_errors(demo_run, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("QLORAFIT_CACHE", str(demo_run.parent / "cache"))
    assert cli.main(["generate", str(demo_run / "final"), "--prompt", "Hi", "--max-new-tokens", "3", "--raw"]) == 0
    assert cli.main(["generate", str(tmp_path), "--prompt", "Hi"]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert cli.main(["generate", str(tmp_path / "nope"), "--prompt", "Hi"]) == 2


def test_chat_keeps_the_conversation_and_quits_on_eof(demo_run, capsys, monkeypatch):
    monkeypatch.setenv("QLORAFIT_CACHE", str(demo_run.parent / "cache"))
    lines = iter(["What is 7 plus 5?", "/reset", "", "What is 9 plus 10?"])
    seen = []

    def fake_input(prompt):
        seen.append(prompt)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    import qlorafit.runtime.generation as G
    calls = []
    real = G.reply
    monkeypatch.setattr(G, "reply", lambda gen, msgs, *a, **k: calls.append(list(msgs)) or real(gen, msgs, *a, **k))
    assert cli.main(["chat", str(demo_run), "--max-new-tokens", "4", "--system", "Be brief."]) == 0
    assert len(seen) == 5 and len(calls) == 2
    assert [m["role"] for m in calls[1]] == ["system", "user"]  # /reset dropped the first exchange
    assert "model> " in capsys.readouterr().out


def test_demo_run_writes_samples_and_report_shows_them(demo_run):
    from qlorafit.report import write_report
    rows = [json.loads(x) for x in (demo_run / "samples.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] == 3 and rows[-1]["prompt"] == "What is 7 plus 5?"
    assert isinstance(rows[-1]["output"], str)
    page = write_report(demo_run)["html"].read_text()
    assert 'id="samples"' in page and "What is 7 plus 5?" in page
    assert "perplexity" in page and "token accuracy" in page  # the demo's held-out evaluation, in the summary


def test_eval_metrics_early_stopping_and_samples_at_each_eval(model_dir, data, tmp_path):
    from qlorafit.runtime.train import train
    cfg = make_cfg(model_dir, data, tmp_path / "run", data={"eval_split": 0.25},
                   train={"max_steps": 8, "eval_every": 1, "lr": 0.5, "early_stopping_patience": 2,
                          "sample_prompts": ["Question 3: what is 3 plus 3?"], "sample_max_new_tokens": 4})
    s = train(cfg, quiet=True)
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["kind"] == "eval"]
    for e in evals:
        assert math.isclose(e["perplexity"], math.exp(e["loss"]), rel_tol=1e-9)
        assert 0 <= e["token_accuracy"] <= 1
    samples = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in samples] == [e["step"] for e in evals]  # one sample per prompt at each evaluation
    # lr 0.5 diverges: the eval loss stops improving and patience 2 stops the run before max_steps
    best = min(range(len(evals)), key=lambda i: evals[i]["loss"])
    if s["stopped_early"]:
        assert len(evals) - 1 - best == 2 and s["steps"] < 8
        assert any(e["kind"] == "early_stop" for e in events)
    else:
        assert len(evals) - 1 - best < 2 and s["steps"] == 8


def test_token_accuracy_matches_the_logits():
    from transformers import LlamaConfig, LlamaForCausalLM

    from qlorafit.demo_assets import demo_model_config
    from qlorafit.runtime.eval_metrics import eval_sums
    cfg = demo_model_config(vocab_size=64)
    cfg.pop("model_type")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    ids = torch.randint(4, 64, (2, 12))
    labels = ids.clone()
    labels[0, :5] = -100
    labels[1, 9:] = -100
    with torch.no_grad():
        loss, right, n = eval_sums(model, {"input_ids": ids, "labels": labels}, "chunked")
        logits = model(input_ids=ids).logits[:, :-1].reshape(-1, 64)
    y = labels[:, 1:].reshape(-1)
    keep = y != -100
    assert n == int(keep.sum())
    assert int(right) == int((logits[keep].argmax(-1) == y[keep]).sum())
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum"))


def test_config_checks_trackers_and_prompts():
    from qlorafit.core import config as C
    with pytest.raises(UserError, match="unknown tracker 'comet'"):
        C.from_dict({"train": {"report_to": ["wandb", "comet"]}})
    with pytest.raises(UserError, match="sample_prompts"):
        C.from_dict({"train": {"sample_prompts": [""]}})
