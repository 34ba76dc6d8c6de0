"""The doctor's thread prior (qlorafit/doctor/thread_prior.py): where the rules only guess, the cause labelled public
threads with the report's words had. Invariants: evidence is never overruled; the rules-only switch keeps the rules;
the committed weights are fitted on studied splits only and reproduce from their script."""

import json
import os
import sys
from pathlib import Path

import pytest

from qlorafit.doctor import Inputs, diagnose, thread_prior
from qlorafit.doctor.cause import Cause
from qlorafit.doctor.report import confidence

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
import doctor_threads as corpus  # noqa: E402

USES_THREAD_PRIOR = True  # conftest leaves the prior out of every other module


def _toy(word: str = "kvcacheword", cause: str = "vllm_memory") -> dict:
    """A model whose one word points hard at one cause, with neutral rule weights."""
    causes = sorted({"batch_or_seq", "cpu_ram", "long_sample", cause})
    return {"causes": causes, "threads": 10, "bias": {c: 0.0 for c in causes},
            "words": {word: [5.0 if c == cause else 0.0 for c in causes]},
            "rules": {f: 0.5 for f in ("first:fallback", "first:inferred")}, "overruled_out_of_sample": [3, 10]}


@pytest.fixture
def toy(monkeypatch):
    m = _toy()
    monkeypatch.setattr(thread_prior, "model", lambda: m)
    return m


def test_words_are_latin_words_and_cjk_pairs():
    assert thread_prior.words("CUDA out_of_memory: 显存不足") == {"cuda", "out", "of", "memory", "显存", "存不", "不足"}


@pytest.mark.parametrize("strength", ["proven", "script", "numbers"])
def test_a_cause_with_evidence_is_never_overruled(toy, strength):
    rules = [Cause("cpu_ram", "host RAM", "why", strength=strength), Cause("batch_or_seq", "batch", "why")]
    assert thread_prior.reconsider("kvcacheword kvcacheword", rules) == rules


def test_a_cause_the_rules_inferred_from_the_words_or_phase_is_kept(toy):
    rules = [Cause("resume_state", "a saved state loaded onto the GPU", "why", strength="inferred")]
    assert thread_prior.reconsider("kvcacheword", rules) == rules


def test_the_fallback_is_overruled_by_the_words_and_says_so(toy):
    rules = [Cause("batch_or_seq", "the batch", "why", strength="inferred")]
    got = thread_prior.reconsider("oom with kvcacheword", rules)
    assert [c.id for c in got] == ["vllm_memory", "batch_or_seq"]
    assert got[0].strength == "words" and "labelled public OOM threads" in got[0].evidence[-1]
    assert got[0].actions and got[0].actions[0].id == "vllm_memory"  # the fix its threads accepted, unsized
    assert got[0].actions[0].saves_bytes is None
    # without the word the guess stands
    assert thread_prior.reconsider("oom", rules) == rules


def test_a_listed_cause_moves_ahead_with_its_own_evidence(toy):
    own = Cause("vllm_memory", "the engine's reservation", "why", evidence=["sized: 0.9 of the card"],
                strength="inferred")
    rules = [Cause("batch_or_seq", "the batch", "why", strength="inferred"), own]
    got = thread_prior.reconsider("kvcacheword", rules)
    assert got[0] is own and got[0].evidence[0] == "sized: 0.9 of the card" and len(got) == 2


def test_nothing_named_by_the_rules_gets_the_words_cause(toy):
    got = thread_prior.reconsider("kvcacheword", [])
    assert [c.id for c in got] == ["vllm_memory"]


def test_rules_only_keeps_the_rules_and_the_default_asks_the_prior(monkeypatch):
    text = "RuntimeError: CUDA out of memory. zzqword zzqword"
    rules = diagnose(Inputs(error_text=text, thread_prior=False))
    assert (rules.primary.id, rules.primary.strength) == ("batch_or_seq", "inferred")  # the fallback
    other = next(c for c in sorted(thread_prior.GENERIC) if c != rules.primary.id)
    m = _toy("zzqword", other)
    monkeypatch.setattr(thread_prior, "model", lambda: m)
    assert diagnose(Inputs(error_text=text, thread_prior=False)).primary.id == rules.primary.id
    d = diagnose(Inputs(error_text=text))
    assert d.primary.id == other and d.primary.strength == "words"
    assert d.case.oom.phase is None  # a cause picked by words places nothing
    level, why = confidence(d)
    assert level == "low" and "right on 3 of 10 threads it had not seen" in why


def test_the_cli_switch_keeps_the_rules(tmp_path, capsys):
    from qlorafit.cli import main

    err = tmp_path / "err.txt"
    err.write_text("RuntimeError: CUDA out of memory.\n")
    main(["doctor", str(err), "--rules-only", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["causes"][0]["strength"] != "words"


def test_every_labelled_cause_has_a_generic_entry_with_known_fix_ids():
    labels = {corpus.load(n)["label"]["cause"] for n in corpus.names()}
    assert labels <= set(thread_prior.GENERIC)
    for cause, (_, _, acts) in thread_prior.GENERIC.items():
        assert acts and all(i in corpus.FIX_CLASS for _, _, i in acts), cause


def test_the_committed_prior_is_fitted_on_studied_splits_only():
    m = thread_prior.model()
    sp = corpus.split()
    held = corpus.held_out(sp)
    assert held and not set(m["splits"]) & held
    from test_doctor_threads import UNMEASURED
    assert not set(m["splits"]) & set(UNMEASURED)
    assert m["threads"] == sum(len(sp[s]) for s in m["splits"])


def test_the_committed_prior_reproduces_from_its_script(tmp_path, monkeypatch):
    pytest.importorskip("numpy")
    monkeypatch.delenv("QLORAFIT_THREADS_SKIP", raising=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import fit_doctor

    out = tmp_path / "prior.json"
    fit_doctor.write_prior(fit_doctor.seen_threads(), out)
    got, kept = json.loads(out.read_text()), json.loads(thread_prior.MODEL.read_text())
    # the same fit; a BLAS summing in another order may move a weight's last rounded digit
    assert {k: v for k, v in got.items() if k not in ("words", "bias", "rules")} == \
        {k: v for k, v in kept.items() if k not in ("words", "bias", "rules")}
    assert got["words"].keys() == kept["words"].keys()
    for w, v in kept["words"].items():
        assert got["words"][w] == pytest.approx(v, abs=2e-3), w
    assert got["bias"] == pytest.approx(kept["bias"], abs=2e-3)
    assert got["rules"] == pytest.approx(kept["rules"], abs=2e-3)
