"""Progress bars in large logs (issue 15): the bar scanner reads a 5 MB log in one pass. The old single regex
(a lazy 60-character description, then unbounded `\\s*` and `[^|\\n]*`) backtracked quadratically on a long run of
blanks and never finished on the 5 MB cases below."""

import re
from re import _parser as sre_parse  # the stdlib regex parser, to check the patterns' structure

import pytest

from qlorafit.doctor import phase

MB5 = 5_000_000


def _unbounded_repeats(pattern: str) -> list:
    """Repeats in a compiled pattern with no upper bound (`*`, `+`, `{n,}`), anywhere in it."""
    found = []

    def walk(items):
        for op, arg in items:
            if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT):
                lo, hi, sub = arg
                if hi == sre_parse.MAXREPEAT:
                    found.append((op, lo))
                walk(sub)
            elif op == sre_parse.SUBPATTERN:
                walk(arg[-1])
            elif op == sre_parse.BRANCH:
                for alt in arg[1]:
                    walk(alt)

    walk(sre_parse.parse(pattern))
    return found


@pytest.mark.parametrize("rx", [phase._BAR_ANCHOR, phase._BAR_REST, phase._NOTEBOOK_BAR])
def test_bar_patterns_have_only_bounded_repeats(rx):
    assert _unbounded_repeats(rx.pattern) == []


def test_the_structure_check_sees_an_unbounded_repeat():
    assert _unbounded_repeats(r"(?P<d>[^\n]{0,60}?)\s*x") != []


def test_five_mb_of_carriage_return_bars_are_all_read():
    lines = [f"Map: {i % 100:3d}%|{'#' * (i % 40):<40}| {i}/62000 [00:{i % 60:02d}<00:10, 4.00it/s]\r"
             for i in range(62000)]
    text = "".join(lines)
    while len(text) < MB5:
        text += "Map: 100%|" + "#" * 40 + "| 90000/90000 [01:00<00:00, 4.00it/s]\r"
    text += "  7%|##     | 70/1000 [00:30<06:40, 2.32it/s]\n"
    bars = phase.progress_bars(text)
    assert len(text) >= MB5
    assert len(bars) == text.count("\r") + 1
    assert [b.phase for b in bars[:3]] == ["tokenization"] * 3
    assert (bars[0].n, bars[1].n) == (0, 1)
    last = bars[-1]
    assert (last.phase, last.n, last.total, last.elapsed_s) == ("training", 70, 1000, 30)
    ph, desc, pos = phase.last_marker(text)
    assert (ph, desc) == ("training", "progress bar 70/1000")


def test_a_bar_after_five_mb_of_blanks_and_of_percent_words():
    blanks = " " * MB5 + "\nSaving model checkpoint\n 81%|########  | 65/80 [02:12<00:30,  2.03s/it]"
    bars = phase.progress_bars(blanks)
    assert [(b.phase, b.n, b.total, b.elapsed_s) for b in bars] == [("save", 65, 80, 132)]
    words = "loss 5% | " * (MB5 // 10) + "\nTrain:  3%|#  | 3/100 [00:09<05:00]"
    bars = phase.progress_bars(words)
    assert [(b.phase, b.n, b.total) for b in bars] == [("training", 3, 100)]


def test_a_bar_alone_on_its_line_is_described_by_the_line_before():
    text = "Unsloth: Saving model... This might take 5 minutes ...\n 81%|████████▏ | 65/80 [02:12<00:30,  2.03s/it]"
    assert [b.phase for b in phase.progress_bars(text)] == ["save"]
    assert [b.phase for b in phase.progress_bars("Map:  45%|####  | 450/1000 [00:01<00:02]")] == ["tokenization"]

