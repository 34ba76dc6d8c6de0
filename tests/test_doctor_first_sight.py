"""Issue 15, session 9: leave-one-split-out on the studied OOM threads (benchmarks/fit_doctor.py), the learned scorer it
measured (benchmarks/doctor_scorer.py), and the first-sight record the report's confidence line quotes
(qlorafit/doctor/first_sight.py). Offline, CPU, no model: the doctor is plain Python."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]  # tests/doctor_threads.py, not the benchmark's

import doctor_scorer as scorer  # noqa: E402
import doctor_threads as corpus  # noqa: E402
import fit_doctor  # noqa: E402

from qlorafit.doctor import diagnose, first_sight  # noqa: E402
from qlorafit.doctor.case import Inputs  # noqa: E402
from qlorafit.doctor.report import confidence, text_report  # noqa: E402


@pytest.fixture
def studied(monkeypatch):
    monkeypatch.delenv("QLORAFIT_THREADS_SKIP", raising=False)  # held-out splits stay out by split.json alone
    return fit_doctor.seen_threads()


# --- the harness never sees a held-out split -------------------------------------------------------------------------

def test_only_studied_splits_are_read(monkeypatch):
    sp = corpus.split()
    monkeypatch.delenv("QLORAFIT_THREADS_SKIP", raising=False)
    got = fit_doctor.seen_threads()
    assert set(got) == {s for s in fit_doctor.FIRST_COMMIT if s in sp and s not in corpus.held_out(sp)}
    assert not set(got) & corpus.held_out(sp)
    # a split whose status is taken away is held out again, and a skipped split is not read either
    fake = {k: v for k, v in sp.items() if k != "test6_status"}
    monkeypatch.setattr(corpus, "split", lambda: fake)
    monkeypatch.setenv("QLORAFIT_THREADS_SKIP", "test5")
    assert "test6" not in fit_doctor.seen_threads() and "test5" not in fit_doctor.seen_threads()


def test_leave_one_split_out_fits_on_the_other_splits_only(monkeypatch, studied):
    seen_fits, seen_buckets = [], []
    real_buckets = fit_doctor.buckets

    def fake_fit(train, l2=0.1):  # the harness, not the scorer, is under test: a constant model
        seen_fits.append({r["name"] for r in train})
        return {"nb": {"df": {}, "docs": {"batch_or_seq": 1}, "counts": {}}, "weights": {}}

    def spy_buckets(recs):
        seen_buckets.append({r["name"] for r in recs})
        return real_buckets(recs)

    monkeypatch.setattr(scorer, "fit", fake_fit)
    monkeypatch.setattr(fit_doctor, "buckets", spy_buckets)
    res = fit_doctor.cv(studied)
    every = {n for v in studied.values() for n in v}
    assert set(res) == set(studied)
    for held, fits, bks in zip(studied, zip(seen_fits[::2], seen_fits[1::2]), seen_buckets):
        for names in fits + (bks,):
            assert names == every - set(studied[held]), held  # all the others, none of the held split
        assert {x["name"] for x in res[held]["rows"]} == set(studied[held])


def test_the_first_sight_cache_reproduces_each_splits_first_measurement(studied):
    recs = fit_doctor.first_sight_records(studied)
    results = ROOT / "benchmarks" / "results"
    for split, (commit, fname) in fit_doctor.FIRST_COMMIT.items():
        frozen = json.loads((results / fname).read_text())
        # the commit whose rules answered (a measurement of old rules on new fixtures records both)
        assert frozen.get("rules_commit", frozen["commit"]) == commit
        want = frozen["scores"][fit_doctor.RESULTS_SPLIT.get(split, split)]
        mine = [r for r in recs if r["split"] == split]
        assert len(mine) == want["n"]
        assert sum(bool(r["causes"]) and r["causes"][0][0] == r["label"] for r in mine) == want["cause_right"], split


def test_the_committed_record_reproduces_from_the_script(tmp_path, studied):
    out = tmp_path / "record.json"
    fit_doctor.write_record(studied, out)
    mine, shipped = json.loads(out.read_text()), json.loads(first_sight.RECORD.read_text())
    assert mine == shipped
    assert sum(n for _, n in shipped["buckets"].values()) > 100


# --- the learned scorer that was measured ---------------------------------------------------------------------------

def _report(label, words, causes=()):
    return {"name": f"r{id(words)}{label}", "split": "x", "label": label, "causes": [list(c) for c in causes],
            "oom": "cuda", "words": sorted(words)}


def test_the_scorer_follows_the_rules_where_they_have_been_right_and_the_words_where_they_were_silent():
    train = ([_report("cpu_ram", {"killed", "ram", "load"}, [("cpu_ram", "proven")]) for _ in range(4)]
             + [_report("long_sample", {"vllm", "engine", "step"}, [("long_sample", "inferred")]) for _ in range(6)]
             + [_report("vllm_memory", {"vllm", "engine", "text"}) for _ in range(6)]
             + [_report("cpu_ram", {"killed", "load", "text"}) for _ in range(6)])
    m = scorer.fit(train)
    # where the rules speak and have always been right, their first cause wins over the words
    assert scorer.predict(_report("?", {"vllm", "engine"}, [("long_sample", "inferred")]), m) == "long_sample"
    # where they are silent, the words decide: change the words and the answer changes
    assert scorer.predict(_report("?", {"vllm", "engine"}), m) == "vllm_memory"
    assert scorer.predict(_report("?", {"killed", "load"}), m) == "cpu_ram"
    # and the rules' evidence moves the ranking: the same words, a proven cause listed first
    p = scorer.scores(_report("?", {"vllm", "engine"}, [("cpu_ram", "proven")]), m)
    assert next(iter(p)) == "cpu_ram" and abs(sum(p.values()) - 1) < 1e-9


def test_a_training_report_is_scored_as_if_unseen():
    rows = [_report(c, {"alpha", "beta", "gamma"} | ({"delta"} if i % 2 else set()))
            for i, c in enumerate(["a", "b", "a", "b", "a", "b", "a"])]
    left = rows[3]
    full, without = scorer.fit_nb(rows), scorer.fit_nb(rows[:3] + rows[4:])
    assert set(full["df"]) == set(without["df"])  # the same words survive the cut either way
    assert scorer.nb_scores(set(left["words"]), full, leave_out="b") == pytest.approx(
        scorer.nb_scores(set(left["words"]), without))


# --- the record in the report ---------------------------------------------------------------------------------------

_FALLBACK = ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity; 20.10 GiB already "
             "allocated; 1.20 GiB free; 21.00 GiB reserved in total by PyTorch)")


def test_the_confidence_line_quotes_the_record_for_the_way_the_cause_is_known(monkeypatch):
    d = diagnose(Inputs(error_text=_FALLBACK))
    right, n = first_sight.right_of(d.primary.id, d.primary.strength)
    assert f"right on {right} of {n} public threads at first sight" in confidence(d)[1]
    assert f"right on {right} of {n}" in text_report(d)
    fake = {"buckets": {first_sight.bucket(d.primary.id, d.primary.strength): [1, 7]}}
    first_sight.record.cache_clear()
    monkeypatch.setattr(first_sight, "record", lambda: fake)
    assert "right on 1 of 7 public" in confidence(d)[1]
    monkeypatch.setattr(first_sight, "record", lambda: {})
    assert "at first sight" not in confidence(d)[1]  # no record, no figure: never a made-up one


def test_the_fallback_is_counted_apart_from_other_inferences():
    assert first_sight.bucket("batch_or_seq", "inferred") == "inferred:fallback"
    assert first_sight.bucket("batch_or_seq", "numbers") == "numbers"
    assert first_sight.bucket("long_sample", "inferred") == "inferred"
    shipped = first_sight.record()["buckets"]
    assert {"inferred:fallback", "inferred", "proven"} <= set(shipped)
