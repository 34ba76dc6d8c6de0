"""The doctor on text it has never seen never crashes: every public thread's words (tests/fixtures/oom_threads) cut,
shuffled and mixed the ways people paste (a title alone, a traceback's tail, a config pasted into the error box, lines
out of order, two threads in one paste) give a diagnosis and a report, and one that names a cause wherever the text
says memory ran out on a GPU. Seeded, so a failure names the variant that broke."""

import json
import random

import pytest

import doctor_threads as corpus
from qlorafit.doctor import Inputs, diagnose
from qlorafit.doctor.foreign import read_posted
from qlorafit.doctor.report import text_report, to_json

SPLIT = corpus.split()
NAMES = [n for n in corpus.names() if n not in corpus.skipped(SPLIT)
         and n not in {m for s in corpus.held_out(SPLIT) for m in SPLIT[s]}]


def _variants(fx: dict, rng: random.Random) -> dict:
    text = f"{fx.get('title', '')}\n{fx.get('error', '')}"
    lines = text.splitlines()
    cut = rng.randrange(1, max(2, len(text)))
    shuffled = lines[:]
    rng.shuffle(shuffled)
    return {
        "title": fx.get("title", ""),
        "head": text[:cut],
        "tail": text[cut:],
        "shuffled": "\n".join(shuffled),
        "config_as_error": f"{text}\n{fx.get('config') or ''}\n{fx.get('script') or ''}",
        "one_line": "\n".join(lines[rng.randrange(len(lines))] for _ in range(1)) if lines else "",
        "doubled": f"{text}\n\n{text}",
    }


@pytest.mark.parametrize("name", NAMES)
def test_any_cut_of_a_thread_gives_a_diagnosis_and_a_report(name):
    fx = corpus.load(name)
    rng = random.Random(name)
    other = corpus.load(NAMES[rng.randrange(len(NAMES))])
    variants = _variants(fx, rng)
    variants["two_threads"] = f"{fx.get('error', '')}\n---\n{other.get('error', '')}"
    for kind, text in variants.items():
        for inputs in (Inputs(error_text=text), read_posted(text, config=fx.get("config") or "")):
            d = diagnose(inputs)
            assert isinstance(text_report(d), str), (name, kind)
            json.dumps(to_json(d))  # the --json report serialises
            if d.case.oom.kind == "cuda" and d.case.oom.form not in ("words", "presumed"):
                # a CUDA OOM message always gets a cause, however little else the text says
                assert d.primary is not None, (name, kind, text[:200])
