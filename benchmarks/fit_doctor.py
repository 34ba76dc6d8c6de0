"""Leave-one-split-out on the studied OOM threads: how a doctor method does on threads it has never seen.

    PYTHONPATH=src python benchmarks/fit_doctor.py cv [--rules first-sight|current] [--out FILE]
    PYTHONPATH=src python benchmarks/fit_doctor.py record      # writes src/qlorafit/assets/doctor_first_sight.json
    PYTHONPATH=src python benchmarks/fit_doctor.py dump-first-sight   # rebuilds FIRST_SIGHT from old commits
    PYTHONPATH=src python benchmarks/fit_doctor.py prior       # writes src/qlorafit/assets/doctor_thread_prior.json
    PYTHONPATH=src python benchmarks/fit_doctor.py prior-cv    # writes benchmarks/results/doctor-thread-prior-cv.json

Only the studied splits are ever read: train, seen and every split whose `<split>_status` in split.json says it was
studied, and of those the ones with a known first measurement (FIRST_COMMIT). A split still held out (no
`<split>_status`; none at the end of session 17) and every split named in QLORAFIT_THREADS_SKIP is never
loaded (`seen_threads`).

Where the rules' causes come from:
- `first-sight` (the default): each thread as answered by the rules of its own split's first measurement (the commit
  of its frozen results file), which had never seen it. This is the rules' fair first-sight baseline (it reproduces
  each split's first measurement), and the records a learned layer has to be trained on, since on the threads a user
  brings the rules are at first sight too. Cached in FIRST_SIGHT by `dump-first-sight`.
- `current`: the rules on main now, tuned on every studied split: optimistic.

`cv` fits, for each studied split held out in turn, on the other studied splits only, and predicts the held split:
- the learned re-ranking (benchmarks/doctor_scorer.py) over all causes, and the same scorer used only where the rules
  named no cause, and the scorer blind to the rules (words and prior only);
- the first-sight record (qlorafit/doctor/first_sight.py): the share of first causes known each way that were right,
  from the other splits, against the held split's own (expected right vs right, and the Brier score against one rate
  for every answer).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import doctor_prior as prior  # noqa: E402
import doctor_scorer as scorer  # noqa: E402
import doctor_threads as corpus  # noqa: E402

from qlorafit.doctor import diagnose, first_sight, thread_prior  # noqa: E402

FIRST_SIGHT = ROOT / "benchmarks" / "results" / "doctor-candidates-first-sight.json"
# Each studied split's first measurement: the commit whose rules had never seen it, and its results file. A split
# that becomes studied is added here with the commit of its frozen measurement, then `dump-first-sight` and `record`.
FIRST_COMMIT = {"train": ("cee5fcb", "doctor-threads-baseline.json"),
                "seen": ("cea6c7a", "doctor-threads-first-test-measurement.json"),
                "test2": ("1e7716d", "doctor-threads-test2-frozen.json"),
                "test3": ("e24ad63", "doctor-threads-test3-base.json"),
                "test4": ("b29da4c", "doctor-threads-test4-frozen.json"),
                "test5": ("424ace7", "doctor-threads-test5-frozen.json"),
                "test6": ("84448f5", "doctor-threads-test6-frozen.json"),
                "test7": ("97f454d", "doctor-threads-test7-frozen.json"),
                "test8": ("9c80851", "doctor-threads-test8-frozen.json"),
                "test9": ("65b8ceb", "doctor-threads-test9-frozen.json"),
                "test10": ("824e0d4", "doctor-threads-test10-s10-start.json"),
                "test11": ("11dac54", "doctor-threads-test11-frozen.json"),
                "test12": ("f61bdf0", "doctor-threads-test12-frozen.json"),
                "test13": ("534bef4", "doctor-threads-test13-frozen.json"),
                "test14": ("bcb845b", "doctor-threads-test14-frozen.json"),
                "test15": ("50fba32", "doctor-threads-test15-frozen.json"),
                "test16": ("71a4fe9", "doctor-threads-test16-frozen.json"),
                "test17": ("15103f2", "doctor-threads-test17-frozen.json"),
                "test18": ("8782a74", "doctor-threads-test18-frozen.json"),
                "test19": ("d1bbff2", "doctor-threads-test19-frozen.json"),
                "test20": ("3f68b19", "doctor-threads-test20-frozen.json"),
                "test21": ("3f68b19", "doctor-threads-test21-frozen.json"),
                "test22": ("ebd7e17", "doctor-threads-test22-frozen.json"),
                "test23": ("ebd7e17", "doctor-threads-test23-frozen.json"),
                "test24": ("3c219be", "doctor-threads-test24-frozen.json"),
                "test25": ("3c219be", "doctor-threads-test25-frozen.json"),
                "test26": ("5c54abf", "doctor-threads-test26-frozen.json"),
                "test27": ("5c54abf", "doctor-threads-test27-frozen.json"),
                "test28": ("e972e22", "doctor-threads-test28-frozen.json"),
                "test29": ("d53a936", "doctor-threads-test29-frozen.json"),
                "test30": ("d53a936", "doctor-threads-test30-frozen.json"),
                "test31": ("8e2e351", "doctor-threads-test31-frozen.json"),
                "test32": ("8e2e351", "doctor-threads-test32-frozen.json"),
                "test33": ("d3a5b62", "doctor-threads-test33-frozen.json"),
                "test34": ("d3a5b62", "doctor-threads-test34-frozen.json"),
                "test35": ("9d9279f", "doctor-threads-test35-frozen.json"),
                "test36": ("9d9279f", "doctor-threads-test36-frozen.json"),
                "test37": ("fe1da9e", "doctor-threads-test37-frozen.json"),
                "test38": ("fe1da9e", "doctor-threads-test38-frozen.json"),
                "test39": ("54ca95b", "doctor-threads-test39-frozen.json"),
                "test40": ("54ca95b", "doctor-threads-test40-frozen.json"),
                "test41": ("0cfc161", "doctor-threads-test41-frozen.json"),
                "test42": ("0cfc161", "doctor-threads-test42-frozen.json"),
                "test43": ("e89dd47", "doctor-threads-test43-frozen.json"),
                "test44": ("e89dd47", "doctor-threads-test44-frozen.json"),
                "test45": ("3270fb9", "doctor-threads-test45-frozen.json"),
                "test46": ("3f8bee9", "doctor-threads-test46-frozen.json"),
                "test47": ("da8f9e8", "doctor-threads-test47-frozen.json"),
                "test48": ("ba3a3a3", "doctor-threads-test48-frozen.json"),
                "test49": ("9174200", "doctor-threads-test49-frozen.json"),
                "test50": ("9174200", "doctor-threads-test50-frozen.json"),
                "test51": ("5752ab5", "doctor-threads-test51-frozen.json"),
                "test52": ("5752ab5", "doctor-threads-test52-frozen.json"),
                "test53": ("5092791", "doctor-threads-test53-frozen.json"),
                "test54": ("5092791", "doctor-threads-test54-frozen.json"),
                "test55": ("7e2bb01", "doctor-threads-test55-frozen.json"),
                "test56": ("7e2bb01", "doctor-threads-test56-frozen.json"),
                "test57": ("1afe62b", "doctor-threads-test57-frozen.json"),
                "test58": ("1afe62b", "doctor-threads-test58-frozen.json"),
                "test59": ("be69e7d", "doctor-threads-test59-frozen.json"),
                "test60": ("be69e7d", "doctor-threads-test60-frozen.json"),
                "test61": ("3c3d354", "doctor-threads-test61-frozen.json"),
                "test62": ("3c3d354", "doctor-threads-test62-frozen.json"),
                "test63": ("cf692ce", "doctor-threads-test63-frozen.json"),
                "test64": ("cf692ce", "doctor-threads-test64-frozen.json"),
                "test65": ("fad3257", "doctor-threads-test65-frozen.json"),
                "test66": ("fad3257", "doctor-threads-test66-frozen.json")}
RESULTS_SPLIT = {"seen": "test"}  # the first test split was called 'test' when it was first measured


def seen_threads() -> dict[str, list[str]]:
    """split -> thread names, for the studied splits with a known first measurement only: never a held-out split
    (no `<split>_status` in split.json) nor one named in QLORAFIT_THREADS_SKIP."""
    sp = corpus.split()
    skip = {s.strip() for s in os.environ.get("QLORAFIT_THREADS_SKIP", "").split(",") if s.strip()}
    return {s: sp[s] for s in FIRST_COMMIT if s in sp and s not in corpus.held_out(sp) and s not in skip}


def report_text(fx: dict) -> str:
    """The words a report gives the doctor: the pasted text (title and error) and a posted script."""
    inp = corpus.inputs(fx)
    return inp.error_text + ("\n" + inp.script.text if inp.script is not None else "")


def _record(name: str, split: str, causes, oom_kind) -> dict:
    fx = corpus.load(name)
    return {"name": name, "split": split, "label": fx["label"]["cause"],
            **scorer.summary(causes, oom_kind, report_text(fx))}


def current_records(threads: dict) -> list[dict]:
    out = []
    for s, names in threads.items():
        for n in names:
            inp = corpus.inputs(corpus.load(n))
            inp.thread_prior = False  # the rules' causes only
            d = diagnose(inp)
            out.append(_record(n, s, [(c.id, c.strength) for c in d.causes], d.case.oom.kind))
    return out


def first_sight_records(threads: dict) -> list[dict]:
    """Every studied thread as the rules of its own split's first measurement answered it."""
    cached = json.loads(FIRST_SIGHT.read_text())["causes"]
    out = []
    for s, names in threads.items():
        for n in names:
            got = cached[FIRST_COMMIT[s][0]][n]
            out.append(_record(n, s, got["causes"], got["oom"]))
    return out


# Run inside an old commit's src: the rules' causes for each thread, however that commit named strength.
_DUMP = """
import json, sys
import doctor_threads as corpus
from qlorafit.doctor import diagnose
out = {}
for n in json.load(open(sys.argv[1])):
    inp = corpus.inputs(corpus.load(n))
    if hasattr(inp, "thread_prior"):  # the rules' causes only, never the thread prior's pick
        inp.thread_prior = False
    d = diagnose(inp)
    out[n] = {"causes": [[c.id, getattr(c, "strength", None)] for c in d.causes], "oom": d.case.oom.kind}
json.dump(out, open(sys.argv[2], "w"))
"""


def dump_first_sight(threads: dict) -> None:
    """Run each first-measurement commit's rules (from `git archive`) on its own split's threads; cache the causes."""
    by_commit = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, (commit, _) in FIRST_COMMIT.items():
            if split not in threads:
                continue
            names, src = Path(tmp, f"{split}.json"), Path(tmp, commit)
            names.write_text(json.dumps(threads[split]))
            if not src.exists():  # two splits first measured by one commit (test20, test21) share its rules
                src.mkdir()
                tar = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
                subprocess.run(["tar", "-x", "-C", str(src)], input=tar, check=True)
            env = {**os.environ, "PYTHONPATH": f"{src / 'src'}:{ROOT / 'tests'}", "HF_HUB_OFFLINE": "1"}
            out = Path(tmp, f"{split}.out.json")
            subprocess.run([sys.executable, "-c", _DUMP, str(names), str(out)], env=env, check=True)
            by_commit[commit] = {**by_commit.get(commit, {}), **json.loads(out.read_text())}
    FIRST_SIGHT.write_text(json.dumps({"date": _now(), "command": "python benchmarks/fit_doctor.py dump-first-sight",
                                       "first_commit": FIRST_COMMIT, "causes": by_commit}, indent=0) + "\n")


# -- the first-sight record -----------------------------------------------------------------------------------------

def buckets(recs: list[dict]) -> dict[str, list[int]]:
    """[right, threads] of the rules' first cause, by how it was known (first_sight.bucket). Threads answered by a
    doctor that did not yet say how a cause was known (strength None) are left out."""
    out: dict[str, list[int]] = {}
    for r in recs:
        if r["causes"] and r["causes"][0][1]:
            k = first_sight.bucket(*r["causes"][0])
            out.setdefault(k, [0, 0])
            out[k][0] += r["causes"][0][0] == r["label"]
            out[k][1] += 1
    return dict(sorted(out.items()))


def _rate(b: dict, k: str) -> float:
    right, n = b.get(k, (0, 0))
    return (right + 1) / (n + 2)  # Laplace: a way of knowing the other splits never saw is a coin


# -- leave one split out --------------------------------------------------------------------------------------------

def cv(threads: dict, rules: str = "first-sight", l2: float = scorer.L2) -> dict:
    """Per studied split, fitted on the others: the rules' first cause right, the learned re-ranking right, the scorer
    only where the rules are silent right, the scorer blind to the rules right; and the first-sight record's
    expected right against the actual, with Brier scores (record by bucket vs one rate)."""
    recs = current_records(threads) if rules == "current" else first_sight_records(threads)
    out = {}
    for held in threads:
        train = [r for r in recs if r["split"] != held]
        test = [r for r in recs if r["split"] == held]
        assert not {r["name"] for r in train} & set(threads[held])
        model = scorer.fit(train, l2)
        blind = scorer.fit([{**r, "causes": []} for r in train], l2)
        b = buckets(train)
        one = sum(v[0] for v in b.values()) / max(1, sum(v[1] for v in b.values()))
        rows = []
        for r in test:
            first = r["causes"][0][0] if r["causes"] else None
            got = scorer.predict(r, model)
            row = {"name": r["name"], "label": r["label"], "rules": first, "learned": got,
                   "where_silent": first or got, "words_only": scorer.predict({**r, "causes": []}, blind)}
            if r["causes"] and r["causes"][0][1]:
                row["p_right"] = round(_rate(b, first_sight.bucket(*r["causes"][0])), 3)
                row["p_right_one_rate"] = round(one, 3)
            rows.append(row)
        rated = [x for x in rows if "p_right" in x]
        right = [float(x["rules"] == x["label"]) for x in rated]
        out[held] = {"n": len(rows), **{f"{k}_right": sum(x[k] == x["label"] for x in rows)
                                        for k in ("rules", "learned", "where_silent", "words_only")},
                     "record": {"answers": len(rated), "expected_right": round(sum(x["p_right"] for x in rated), 1),
                                "right": int(sum(right)),
                                "brier": _brier([x["p_right"] for x in rated], right),
                                "brier_one_rate": _brier([x["p_right_one_rate"] for x in rated], right)},
                     "rows": rows}
    return out


def _brier(p: list[float], y: list[float]) -> float | None:
    return round(sum((a - b) ** 2 for a, b in zip(p, y)) / len(y), 4) if y else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(threads: dict, out: Path) -> None:
    recs = first_sight_records(threads)
    out.write_text(json.dumps({
        "what": "[right, threads]: the rules' first cause at first sight, by how it was known (first_sight.bucket)",
        "date": json.loads(FIRST_SIGHT.read_text())["date"][:10], "command": "python benchmarks/fit_doctor.py record",
        "splits": {s: FIRST_COMMIT[s][0] for s in threads}, "buckets": buckets(recs)}, indent=1) + "\n")


def write_prior(threads: dict, out: Path) -> None:
    """The thread prior fitted on every studied split (never a held-out one: seen_threads)."""
    m = prior.fit(first_sight_records(threads))
    # what the report quotes when the prior overrules the rules' guess: how often that was right out of sample
    cv_ = json.loads((ROOT / "benchmarks" / "results" / "doctor-thread-prior-cv.json").read_text())
    rows = [r for k, v in cv_.items() if isinstance(v, dict) and "rows" in v for r in v["rows"]
            if r["doctor"] != r["rules"]]
    m["overruled_out_of_sample"] = [sum(r["doctor"] == r["label"] for r in rows), len(rows)]
    out.write_text(json.dumps({"what": "the doctor's thread prior (qlorafit/doctor/thread_prior.py)",
                               "command": "python benchmarks/fit_doctor.py prior", "splits": sorted(threads),
                               "l2": prior.L2, "min_docs": prior.MIN_DOCS, "steps": prior.STEPS, **m},
                              ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n")


def write_prior_cv(threads: dict, out: Path) -> None:
    """The prior out of sample: the early splits (which chose its settings) and the late ones (measured once), each
    by 5-fold cross-validation over whole splits."""
    recs = first_sight_records(threads)
    order = list(threads)
    cut = order.index(prior.CUT)
    res = {}
    for part, splits in (("early (chose the settings)", order[:cut]), ("late (measured once)", order[cut:])):
        rows = prior.cv(recs, splits)
        res[part] = {**prior.tally(rows), "rows": rows}
        print(part, {k: v for k, v in res[part].items() if k != "rows"})
    out.write_text(json.dumps({"date": _now(), "command": "python benchmarks/fit_doctor.py prior-cv",
                               "settings": {"l2": prior.L2, "min_docs": prior.MIN_DOCS, "steps": prior.STEPS},
                               "note": "rules: the rules' first cause at first sight; model: the prior's most likely "
                                       "cause everywhere; doctor: the prior only where it may overrule the rules "
                                       "(thread_prior.overrules: no cause, or the batch/length fallback), as "
                                       "qlorafit.doctor uses it",
                               **res}, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("cv", "record", "dump-first-sight", "prior", "prior-cv"))
    ap.add_argument("--rules", choices=("first-sight", "current"), default="first-sight")
    ap.add_argument("--l2", type=float, default=scorer.L2)
    ap.add_argument("--out")
    a = ap.parse_args()
    threads = seen_threads()
    if a.what == "dump-first-sight":
        dump_first_sight(threads)
    elif a.what == "prior":
        write_prior(threads, Path(a.out) if a.out else thread_prior.MODEL)
    elif a.what == "prior-cv":
        write_prior_cv(threads, Path(a.out) if a.out else ROOT / "benchmarks" / "results" / "doctor-thread-prior-cv.json")
    elif a.what == "record":
        write_record(threads, Path(a.out) if a.out else first_sight.RECORD)
    else:
        res = cv(threads, a.rules, a.l2)
        keys = ("n", "rules_right", "learned_right", "where_silent_right", "words_only_right")
        print("split   n  rules  re-ranked  scorer-where-silent  words+prior   record: expected/right  brier "
              "(one rate)")
        for s, v in res.items():
            rec = v["record"]
            print(f"{s:6} {v['n']:2}  {v['rules_right']:5}  {v['learned_right']:9}  {v['where_silent_right']:19}  "
                  f"{v['words_only_right']:11}   {rec['expected_right']:6}/{rec['right']:<3}  {rec['brier']} "
                  f"({rec['brier_one_rate']})")
        tot = {k: sum(v[k] for v in res.values()) for k in keys}
        print("all", tot)
        if a.out:
            Path(a.out).write_text(json.dumps({"date": _now(), "command": " ".join(["python"] + sys.argv),
                                               "rules": a.rules, "l2": a.l2, "total": tot, "splits": res},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
