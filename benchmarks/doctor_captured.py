"""The doctor on real out-of-memory failures caused on purpose on today's stack (tests/fixtures/oom_captured).

    PYTHONPATH=src python benchmarks/doctor_captured.py [--out benchmarks/results/doctor-captured-NAME.json]

Each fixture is run the way a user runs the doctor: `qlorafit doctor ERROR_FILE --json`, once with the error alone and
once with `--script train.py` as well. Scored: the primary cause against the cause the scenario was built for, and the
phase against the one its traceback shows, for all captures and per capture file (capture-s13c is the second batch,
written and labelled after the rules were changed from the first two: the out-of-sample check). CPU only, offline.
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
FIXTURES = ROOT / "tests" / "fixtures" / "oom_captured"


def doctor(error: str, script: str | None) -> dict:
    """`qlorafit doctor` as a user runs it, on the error (and the script), as JSON."""
    with tempfile.TemporaryDirectory() as d:
        err = Path(d) / "error.txt"
        err.write_text(error)
        cmd = [sys.executable, "-m", "qlorafit", "doctor", str(err), "--json"]
        if script is not None:
            (Path(d) / "train.py").write_text(script)
            cmd += ["--script", str(Path(d) / "train.py")]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT / "src"))
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise SystemExit(f"doctor failed on {err}: {p.stderr[-2000:]}")
        return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    a = ap.parse_args()
    rows = []
    for f in sorted(FIXTURES.glob("*.json")):
        fx = json.loads(f.read_text())
        for given, script in (("error", None), ("error+script", fx["script"])):
            d = doctor(fx["error"], script)
            cause = (d.get("primary_cause") or {}).get("id") if isinstance(d.get("primary_cause"), dict) \
                else d.get("primary_cause")
            rows.append({"name": fx["name"], "capture": Path(fx["capture_file"]).stem, "given": given, "label": fx["label"]["cause"], "cause": cause,
                         "cause_ok": cause == fx["label"]["cause"], "phase": d.get("phase"),
                         "phase_ok": (d.get("phase") or "unknown") == fx["label"]["phase"], "confidence": d.get("confidence"),
                         "second": [c["id"] for c in d.get("causes", [])[1:3]]})
            r = rows[-1]
            print(f"{'ok ' if r['cause_ok'] else 'MISS'} {r['name']:22} {given:13} cause={cause} (want {r['label']}) "
                  f"phase={r['phase']} (want {fx['label']['phase']})")
    scores = {}
    for cap in ["all"] + sorted({r["capture"] for r in rows}):
        for g in ("error", "error+script"):
            sel = [r for r in rows if r["given"] == g and cap in ("all", r["capture"])]
            scores[f"{cap} {g}"] = {"n": len(sel), "cause_right": sum(r["cause_ok"] for r in sel),
                                   "phase_right": sum(r["phase_ok"] for r in sel)}
    for k, s in scores.items():
        print(f"{k}: cause {s['cause_right']}/{s['n']}, phase {s['phase_right']}/{s['n']}")
    if a.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip() != ""
        Path(a.out).write_text(json.dumps({"commit": commit, "dirty_src": dirty,
                                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           "command": " ".join(["python"] + sys.argv), "scores": scores, "rows": rows},
                                          indent=1) + "\n")


if __name__ == "__main__":
    main()
