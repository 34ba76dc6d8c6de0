"""How often the doctor's first cause was right on public threads its rules had never seen, by how it was known.

The confidence line of a report says how a cause is known (`cause.STRENGTH`). This module adds what that has been
worth: for each way of knowing, how many first causes known that way were right at first sight, on the labelled public
threads (tests/fixtures/oom_threads) of every studied split, each answered by the rules as they were at that split's
first measurement, before anyone had read it. The counts are a data file (`assets/doctor_first_sight.json`),
written by `benchmarks/fit_doctor.py record`, with its provenance; `benchmarks/fit_doctor.py cv` checks that the counts
of the other splits predict each split's own.

    >>> bucket("batch_or_seq", "inferred"), bucket("long_sample", "inferred"), bucket("cpu_ram", "proven")
    ('inferred:fallback', 'inferred', 'proven')
"""

import json
from functools import lru_cache
from pathlib import Path

RECORD = Path(__file__).resolve().parents[1] / "assets" / "doctor_first_sight.json"


def bucket(cause_id: str, strength: str) -> str:
    """How a first cause was known, as the record counts it: the rules' fallback (the batch or the length, inferred
    with nothing else to go on) apart from other inferences, else the strength."""
    return "inferred:fallback" if (cause_id, strength) == ("batch_or_seq", "inferred") else strength


@lru_cache(maxsize=1)
def record() -> dict:
    """The committed counts ({} where the file is absent)."""
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def right_of(cause_id: str, strength: str) -> tuple[int, int] | None:
    """(right, threads) for first causes known this way, or None where the record has none."""
    got = record().get("buckets", {}).get(bucket(cause_id, strength))
    return (got[0], got[1]) if got and got[1] else None
