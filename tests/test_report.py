"""`qlorafit report`: reads a run directory, writes one self-contained HTML page and PNG plots, and says clearly what
is wrong with a broken run directory. The page is checked as a browser shows it, in headless Chromium."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qlorafit.cli import main
from qlorafit.errors import UserError
from qlorafit.report import load_run, summary, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_demo"


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run_demo"
    shutil.copytree(FIXTURE, d)
    return d


def test_writes_a_self_contained_page_and_pngs(run_dir):
    paths = write_report(run_dir)
    page = paths["html"].read_text()
    assert paths["html"] == run_dir / "report.html"
    for name in ("memory", "breakdown", "loss", "tokens"):
        png = paths[name]
        assert png.parent == run_dir and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert page.count("<svg") == 4
    assert "<script" not in page.lower()
    # nothing is fetched: no src/href to another resource (SVG namespace declarations are not fetches)
    assert not re.findall(r'(?:src|href)\s*=\s*"(?!#)', page)
    assert "<link" not in page and "@import" not in page
    assert not list(run_dir.glob(".*.tmp"))


def test_summary_numbers(run_dir):
    s = dict(summary(load_run(run_dir)))
    assert s["steps"] == "40"
    assert s["OOM recoveries"] == "2 (1 in backward, 1 in forward)"
    assert s["skipped samples"].startswith("1: ids 1234")
    assert s["estimator error at the first step"] == "+6.5%"
    assert s["micro-batch"] == "4 -> 1"


def test_cpu_run_without_memory_figures_still_renders(tmp_path):
    d = tmp_path / "cpu"
    d.mkdir()
    (d / "metrics.jsonl").write_text("".join(
        f'{{"step": {i}, "loss": {3 - i * 0.1}, "tokens_per_s": 90.0, "micro_batch_size": 2, "mem_allocated": 0, '
        f'"mem_reserved": 0, "mem_peak_allocated": 0, "mem_peak_reserved": 0}}\n' for i in range(1, 6)))
    (d / "estimate.json").write_text('{"error": "model not in the catalogue"}')
    page = write_report(d)["html"].read_text()
    assert "no GPU memory figures" in page or "a CPU run" in page  # the plot says why it is empty
    assert "n/a (no GPU measurement)" in page and "could not model" in page


@pytest.mark.parametrize("setup,needle", [
    (lambda d: None, "no such run directory"),
    (lambda d: d.mkdir(), "not a run directory (no metrics.jsonl)"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text("\n")), "metrics.jsonl: empty"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3, oops}\n{"step": 4}\n')),
     "metrics.jsonl line 3: not valid JSON"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"step": 1}\n[1, 2]\n')), "line 2: expected a JSON object"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"loss": 1.0}\n')), "line 1: missing field(s) step"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"step": 1}\n'), (d / "events.jsonl").write_text("nope\n")),
     "events.jsonl line 1: not valid JSON"),
])
def test_clear_errors_name_the_file_and_line(tmp_path, setup, needle):
    d = tmp_path / "run"
    setup(d)
    with pytest.raises(UserError) as e:
        load_run(d)
    assert needle in str(e.value)


def test_partial_last_line_is_skipped_with_a_note(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "lo')
    run = load_run(d)
    assert [m["step"] for m in run.metrics] == [1, 2]
    assert any("partial last line" in n for n in run.notes)


def test_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.is_file() and (out.parent / "r-memory.png").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qlorafit report: error:") and "no such run directory" in err and "\n" not in err


# --- as a browser shows it ----------------------------------------------------------------------------------------

def _chromium() -> str:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    return exe


def _chrome(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def test_without_matplotlib_one_line_names_the_extra(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if the report extra were not installed
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'qlorafit[report]'" in err


def test_page_in_headless_chromium(run_dir, tmp_path):
    exe = _chromium()
    page = write_report(run_dir)["html"]
    dom = _chrome(exe, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<title>qlorafit report: run_demo</title>" in html
    for title in ("Summary", "Memory over steps", "Predicted breakdown vs measured peak", "Loss", "Tokens per second",
                  "Recoveries and skipped samples"):
        assert f"<h2>{title}</h2>" in html
    assert "2 (1 in backward, 1 in forward)" in html and "+6.5%" in html and "4,821" in html
    assert "OOM in backward: micro-batch 4 -&gt; 2" in html and "skipped sample 1234" in html
    svgs = re.findall(r'<div class="plot" id="plot-(\w+)">(.*?)</div>', html, re.S)
    assert [k for k, _ in svgs] == ["memory", "breakdown", "loss", "tokens"]
    for name, svg in svgs:
        assert svg.count("<path") > 20, f"{name}: the plot has no drawing"
    # what it looks like: a full-page screenshot that is not blank
    shot = tmp_path / "shot.png"
    res = _chrome(exe, tmp_path / "profile2", "--hide-scrollbars", "--window-size=1100,2700", f"--screenshot={shot}",
                  page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    from matplotlib.image import imread
    img = imread(str(shot))
    assert img.shape[:2] == (2700, 1100)
    dark = (img[..., :3].mean(axis=2) < 0.5).mean()
    assert 0.01 < dark < 0.6  # text and plot lines drawn, not a blank or black page


def test_multi_gpu_run_shows_every_rank(run_dir):
    """A run under --nproc 2: rank 1 logs under ranks/rank-1/. The report shows each rank's peak and recoveries (an
    OOM on rank 1 alone must not vanish), and the doctor's --run reads rank 1's events."""
    from qlorafit.doctor.rundir import read_run
    r1 = run_dir / "ranks" / "rank-1"
    r1.mkdir(parents=True)
    (r1 / "metrics.jsonl").write_text("".join(
        f'{{"step": {i}, "loss": 2.0, "mem_peak_reserved": {(5 + i) * 2**30}}}\n' for i in range(1, 4)))
    (r1 / "events.jsonl").write_text(
        '{"kind": "first_step_memory", "measured_peak_bytes": 9663676416}\n'
        '{"kind": "oom_recovery", "step": 3, "phase": "forward", "old_micro_batch": 2, "new_micro_batch": 1}\n')
    (run_dir / "ranks" / "rank-2").mkdir()  # started, logged nothing yet
    run = load_run(run_dir)
    s = dict(summary(run))
    assert s["ranks"] == "2"
    assert s["measured peak per rank"].endswith("1: 9.00 GiB")
    assert s["OOM recoveries per rank"] == "0: 2, 1: 1"
    assert any("rank 2 logged nothing" in n for n in run.notes)
    assert "rank 1 peak reserved" in write_report(run_dir)["html"].read_text()
    info = read_run(str(run_dir))
    assert [e["rank"] for e in info.oom_events if "rank" in e] == [1]
    assert info.peak("mem_peak_reserved") >= 8 * 2**30  # rank 1's peak counts
