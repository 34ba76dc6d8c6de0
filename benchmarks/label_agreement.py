"""How high can a doctor score on the public OOM threads? Two blind human measurements (issue 15, session 12).

    python benchmarks/label_agreement.py second-labels FILE [--out OUT]   # a second labeller, whole thread
    python benchmarks/label_agreement.py post-only FILE [--out OUT]       # an expert, the post only

`second-labels`: a second person labelled a random sample of studied threads from the whole thread (post and accepted
answer), never seeing the first label (they read the threads through a printer that hides `label` and `note`).
Agreement with the first labels bounds any scorer from above: where two careful labellers differ, no doctor can match
both.

`post-only`: an expert read only what the doctor reads (title, error, config, script: the post before any answer) and
named the likeliest primary cause, with a second guess. Their accuracy against the labels is what careful reading of
the post achieves; the doctor's first-sight answers on the same threads are printed with it (for the studied threads
the first-sight record, `doctor-candidates-first-sight.json`, each split at the rules of its first measurement; for a
held-out split the rules at its landing, its `-frozen.json`). Only aggregates are printed, so that a held-out split
in the sample stays held out for whoever changes rules.

FILE: {thread name: {"cause": ..., "phase"/"fix" (second-labels), "second" (post-only), "confidence": ...}}.
Plain Python; reads the fixtures and committed results only.
"""

import argparse
import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import doctor_threads as corpus  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def kappa(a: list, b: list) -> float:
    """Cohen's kappa of two labellings of the same items."""
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in ca) / n / n
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def _fixes(f) -> set:
    return set(f if isinstance(f, list) else [f])


def first_sight() -> dict[str, str | None]:
    """Thread -> the doctor's primary cause at first sight: the record for studied splits, the frozen measurement for
    the held-out ones."""
    out = {}
    rec = json.loads((RESULTS / "doctor-candidates-first-sight.json").read_text())["causes"]
    for threads in rec.values():
        for n, v in threads.items():
            out[n] = v["causes"][0][0] if v["causes"] else None
    sp = corpus.split()
    for s in corpus.held_out(sp):
        f = RESULTS / f"doctor-threads-{s}-frozen.json"
        if f.exists():
            out.update({o["name"]: o["cause"] for o in json.loads(f.read_text())["outcomes"] if o["split"] == s})
    return out


def second_labels(got: dict) -> dict:
    names = sorted(got)
    lab = {n: corpus.load(n)["label"] for n in names}
    a, b = [lab[n]["cause"] for n in names], [got[n]["cause"] for n in names]
    by_conf = Counter()
    for n in names:
        by_conf[(got[n].get("confidence"), got[n]["cause"] == lab[n]["cause"])] += 1
    return {"n": len(names), "cause_agree": sum(x == y for x, y in zip(a, b)), "cause_kappa": round(kappa(a, b), 3),
            "phase_agree": sum(got[n].get("phase") == lab[n]["phase"] for n in names),
            "fix_overlap": sum(bool(_fixes(got[n].get("fix")) & _fixes(lab[n]["fix"])) for n in names),
            "by_confidence": {c: [by_conf[(c, True)], by_conf[(c, True)] + by_conf[(c, False)]]
                              for c in ("high", "medium", "low")},
            "disagreements": Counter(f"{x} / {y}" for x, y in zip(a, b) if x != y).most_common()}


def post_only(got: dict) -> dict:
    sp = corpus.split()
    held = corpus.held_out(sp)
    fs = first_sight()
    groups = {"studied": [n for n in got if corpus.split_name(n, sp) not in held],
              "held out": [n for n in got if corpus.split_name(n, sp) in held]}
    out = {}
    for g, names in groups.items():
        if not names:
            continue
        lab = {n: corpus.load(n)["label"]["cause"] for n in names}
        conf = Counter((got[n].get("confidence"), got[n]["cause"] == lab[n]) for n in names)
        out[g] = {"n": len(names), "splits": sorted({corpus.split_name(n, sp) for n in names}),
                  "expert_right": sum(got[n]["cause"] == lab[n] for n in names),
                  "expert_right_in_two": sum(lab[n] in (got[n]["cause"], got[n].get("second")) for n in names),
                  "doctor_first_sight_right": sum(fs.get(n) == lab[n] for n in names),
                  "both_right": sum(fs.get(n) == lab[n] == got[n]["cause"] for n in names),
                  "expert_and_doctor_agree": sum(fs.get(n) == got[n]["cause"] for n in names),
                  "expert_by_confidence": {c: [conf[(c, True)], conf[(c, True)] + conf[(c, False)]]
                                           for c in ("high", "medium", "low")}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("second-labels", "post-only"))
    ap.add_argument("file")
    ap.add_argument("--out")
    ap.add_argument("--note", default="", help="who answered, how the sample was drawn (kept with the results)")
    a = ap.parse_args()
    got = json.loads(Path(a.file).read_text())
    res = second_labels(got) if a.mode == "second-labels" else post_only(got)
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           "command": " ".join(["python"] + sys.argv), "note": a.note, "result": res,
                                           "answers": got}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
