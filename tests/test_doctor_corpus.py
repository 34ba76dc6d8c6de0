"""The doctor on real OOM reports: each fixture in tests/fixtures/oom_corpus holds a public issue's error text (in
our words where needed, numbers kept), the reporter's configuration, and the expected primary cause and top fix."""

from pathlib import Path

import pytest
import yaml

from qlorafit.doctor import Inputs, diagnose
from qlorafit.doctor.report import text_report, to_json
from qlorafit.doctor.script import read_script

CORPUS = Path(__file__).parent / "fixtures" / "oom_corpus"
CASES = sorted(CORPUS.glob("*.yaml"))


def load_case(path: Path) -> tuple[dict, Inputs]:
    fx = yaml.safe_load(path.read_text())
    inputs = Inputs(error_text=fx.get("error", ""), settings=dict(fx.get("settings") or {}),
                    model=fx.get("model"), gpu=fx.get("gpu"))
    if fx.get("script"):
        inputs.script = read_script(str(CORPUS / fx["script"]))
    return fx, inputs


def test_corpus_is_big_enough():
    real = [p for p in CASES if yaml.safe_load(p.read_text())["source"].startswith("https://github.com/")]
    assert len(real) >= 15
    assert {p.stem for p in CASES} >= {"tutorial_16gib_card", "tutorial_llama3_guide"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_primary_cause_and_top_fix(path):
    fx, inputs = load_case(path)
    d = diagnose(inputs)
    report = text_report(d)
    assert d.primary is not None, report
    assert d.primary.id == fx["expect"]["cause"], report
    assert d.fixes and d.fixes[0].id == fx["expect"]["top_fix"], report
    assert to_json(d)["primary_cause"] == fx["expect"]["cause"]
