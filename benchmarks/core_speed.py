"""How fast the torch-free core is: microseconds per estimate and seconds per plan, on CPU.

The planner calls the estimator and the throughput model for every candidate, so both must stay cheap (the design
target: under 1 ms per estimate, under 1 s per plan). This measures them; the test suite only checks behaviour.

usage:
  python benchmarks/core_speed.py [--out benchmarks/results/core-speed-cpu-DATE.jsonl]
"""

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from qlorafit.core.catalog import resolve_model  # noqa: E402
from qlorafit.core.estimate import Setup, estimate  # noqa: E402
from qlorafit.core.plan import Lengths, PlanRequest, plan  # noqa: E402

GIB = 1024**3


def estimate_us(shape, n: int = 2000) -> float:
    """Mean microseconds per estimate over n setups of varied batch and length (those of the old timing test)."""
    setups = [Setup(batch_size=b % 8 + 1, seq_len=256 * (b % 16 + 1)) for b in range(1, n + 1)]
    t = time.perf_counter()
    for s in setups:
        estimate(shape, s)
    return (time.perf_counter() - t) / n * 1e6


def plan_s(shape, repeats: int = 5) -> tuple[float, int]:
    """Median seconds of one plan (batch 64 at 2,048 tokens with length statistics, as the old timing test) and the
    number of candidates it sized."""
    req = PlanRequest(budget_bytes=24 * GIB, max_seq_length=2048, effective_batch=64, lengths=Lengths(2048, 1500, 400))
    times, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = plan(shape, req).n_candidates
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def provenance() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"date": datetime.date.today().isoformat(), "python": platform.python_version(), "cpu": cpu,
            "commit": commit, "command": "python benchmarks/core_speed.py"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="append the result as one JSON line here")
    a = p.parse_args()
    shape = resolve_model("llama-3.1-8b")
    us = estimate_us(shape)
    seconds, n = plan_s(shape)
    row = {"model": shape.name, "estimate_us": round(us, 1), "plan_s": round(seconds, 3), "plan_candidates": n,
           **provenance()}
    print(f"{us:.0f} us per estimate, {seconds:.2f} s per plan of {n} candidates ({row['cpu']}, Python {row['python']})")
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
