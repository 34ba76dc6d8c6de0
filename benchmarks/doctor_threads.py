"""Accuracy of `qlorafit doctor` on the public-thread corpus (tests/fixtures/oom_threads), per frozen split.

    PYTHONPATH=src python benchmarks/doctor_threads.py [--out benchmarks/results/doctor-threads-NAME.json] [--answers]

Primary cause right, first fix = the thread's accepted fix (by fix class), phase right; and every case's outcome.
A split still held out (no `<split>_status` in split.json) is run only when named with --split, so that whoever tunes
the rules does not see its outcomes by accident; QLORAFIT_THREADS_SKIP=SPLIT,... never runs those splits.
--answers: the doctor's questions answered. It asks the setup facts that would change its cause (doctor/ask.py), the
thread's `facts` (annotated blind from the post and the accepted answer) answer those they can, and it runs again,
until it asks nothing new the thread answers; the outcome is its last answer, printed with the first-sight scores. The primary measure stays the first-sight
one.
CPU only, offline, no model download: the doctor is plain Python.
"""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # measured offline, like the tests: a model name is resolved from the
# catalogue and the local cache only, so the result does not depend on the network
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import doctor_threads as corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the scores and every outcome here as JSON")
    ap.add_argument("--split", choices=("all",) + corpus.SPLITS, default="all",
                    help="which split to print case by case; a held-out split is run only when named here")
    ap.add_argument("--answers", action="store_true", help="the doctor's questions answered by the threads' annotated facts")
    ap.add_argument("--rules-only", action="store_true",
                    help="the rules alone, without the thread prior (which is fitted on the studied threads' labels, so "
                         "on them the full doctor is in-sample; only held-out splits measure it)")
    a = ap.parse_args()
    sp = corpus.split()
    hidden = {n for s in corpus.held_out(sp) - {a.split} for n in sp[s]} | corpus.skipped(sp)
    prior = not a.rules_only
    outcomes = [corpus.run(n, sp, answer=a.answers, prior=prior) for n in corpus.names() if n not in hidden]
    scores = corpus.score(outcomes)
    first = corpus.score([corpus.run(n, sp, prior=prior) for n in corpus.names() if n not in hidden]) if a.answers else None
    for o in outcomes:
        if a.split != "all" and o.split != a.split:
            continue
        mark = "ok " if o.cause_ok else "MISS"
        print(f"{mark} {o.split:6} {o.name:32} cause={o.cause} fix={o.fix} phase={o.phase}"
              + (f" asked={','.join(o.asked) or '-'} answered={','.join(o.answered) or '-'}" if a.answers else ""))
    for s, v in scores.items():
        if a.split != "all" and s != a.split:
            continue
        print(f"{s}: cause {v['cause_right']}/{v['n']}, first fix {v['first_fix_right']}/{v['n']}, "
              f"phase {v['phase_right']}/{v['n']}"
              + (f" (after the questions were answered; at first sight: cause {first[s]['cause_right']}/{v['n']}, first fix "
                 f"{first[s]['first_fix_right']}/{v['n']}; asked on {sum(bool(o.asked) for o in outcomes if o.split == s)}"
                 f", answered on {sum(bool(o.answered) for o in outcomes if o.split == s)})" if first else ""))
    if a.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src", "tests"], capture_output=True,
                               text=True).stdout.strip() != ""
        Path(a.out).write_text(json.dumps({"commit": commit, "dirty_tree": dirty,
                                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           "command": " ".join(["python"] + sys.argv), "scores": scores,
                                           "first_sight_scores": first,
                                           "outcomes": [asdict(o) for o in outcomes]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
