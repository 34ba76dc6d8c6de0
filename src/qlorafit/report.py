"""`qlorafit report RUN_DIR`: one self-contained HTML page (inline SVG plots, inline CSS, no scripts, nothing fetched)
showing where a run's memory went, plus the same plots as PNG files next to it.

Reads the run directory's files (docs/TEAM.md): metrics.jsonl (one line per logged step), events.jsonl
(oom_recovery, skip_sample, first_step_memory, ...), estimate.json (the estimator's predicted breakdown) and
config.yaml. Plots use matplotlib's object API with the Agg canvas: no pyplot, no global backend switch.
"""

import html
import io
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qlorafit.atomic import write_atomic
from qlorafit.core.catalog import read_json
from qlorafit.core.sizes import GIB
from qlorafit.errors import UserError
from qlorafit.runlog import rank_dirs, read_rows

PLOTS = ("memory", "breakdown", "loss", "tokens")
_COLORS = {"alloc": "#1f77b4", "reserved": "#ff7f0e", "peak_alloc": "#2ca02c", "peak_reserved": "#d62728",
           "oom": "#c00000", "pred": "#7f7f7f"}


@dataclass
class RunData:
    dir: Path
    metrics: list[dict]
    events: list[dict] = field(default_factory=list)
    estimate: dict | None = None
    config: dict | None = None
    notes: list[str] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)   # samples.jsonl: {step, prompt, output} at each evaluation
    ranks: dict[int, "RunData"] = field(default_factory=dict)  # a multi-GPU run's other ranks (ranks/rank-N/)

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("kind") == kind]


# --- reading ------------------------------------------------------------------------------------------------------

def load_run(run_dir: str | Path) -> RunData:
    d = Path(run_dir)
    if not d.exists():
        raise UserError(f"{d}: no such run directory")
    if not d.is_dir():
        raise UserError(f"{d}: not a directory (give the run directory, the output_dir of `qlorafit train`)")
    mpath = d / "metrics.jsonl"
    if not mpath.is_file():
        raise UserError(f"{d}: not a run directory (no metrics.jsonl); give the output_dir of `qlorafit train`")
    notes: list[str] = []
    metrics = read_rows(mpath, notes, required=("step",))
    if not metrics:
        raise UserError(f"{mpath}: empty: the run has not logged a step yet")
    events = read_rows(d / "events.jsonl", notes, required=("kind",))
    est = None
    if (d / "estimate.json").is_file():
        est = read_json(d / "estimate.json")
        if isinstance(est, dict) and est.get("error"):
            notes.append(f"no prediction: the estimator could not model this run ({est['error']})")
            est = None
    cfg = None
    if (d / "config.yaml").is_file():
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text())
        except yaml.YAMLError:
            notes.append("config.yaml could not be read; configuration not shown")
    samples = read_rows(d / "samples.jsonl", notes, required=("step",))
    return RunData(d, sorted(metrics, key=lambda m: m["step"]), events, est, cfg if isinstance(cfg, dict) else None,
                   notes, samples, _other_ranks(d, notes))


def _other_ranks(d: Path, notes: list[str]) -> dict[int, RunData]:
    """ranks/rank-N/{metrics,events}.jsonl: what the other processes of a multi-GPU run logged (rank 0 writes the run
    directory itself). A rank that logged nothing yet is left out with a note."""
    ranks = {}
    for n, sub in rank_dirs(d):
        metrics = read_rows(sub / "metrics.jsonl", notes, ("step",))
        events = read_rows(sub / "events.jsonl", notes, ("kind",))
        if not metrics and not events:
            notes.append(f"{sub}: rank {n} logged nothing")
            continue
        ranks[n] = RunData(sub, sorted(metrics, key=lambda m: m["step"]), events)
    return ranks


# --- the numbers --------------------------------------------------------------------------------------------------

def _gib(n) -> str:
    return "n/a" if n is None else f"{n / GIB:.2f} GiB"


def measured_peak(run: RunData) -> int | None:
    """Peak GPU memory measured (reserved + outside the allocator) at the first step, else the largest reserved peak."""
    first = run.events_of("first_step_memory")
    if first and first[0].get("measured_peak_bytes"):
        return int(first[0]["measured_peak_bytes"])
    peaks = [m.get("mem_peak_reserved") or 0 for m in run.metrics]
    return max(peaks) if any(peaks) else None


def summary(run: RunData) -> list[tuple[str, str]]:
    """(label, value) rows for the summary table."""
    m = run.metrics
    ooms = run.events_of("oom_recovery")
    skips = run.events_of("skip_sample")
    first = run.events_of("first_step_memory")
    err = first[0].get("error") if first else None
    predicted = (run.estimate or {}).get("peak_bytes") or (first[0].get("predicted_peak_bytes") if first else None)
    tps = [x["tokens_per_s"] for x in m[1:] or m if isinstance(x.get("tokens_per_s"), (int, float))]
    losses = [x["loss"] for x in m if isinstance(x.get("loss"), (int, float))]
    phases = Counter(e.get("phase", "?") for e in ooms)
    mbs = [x.get("micro_batch_size") for x in m if x.get("micro_batch_size")]
    rows = [
        ("steps", f"{m[-1]['step']}" + (f" ({len(m)} logged)" if len(m) != m[-1]["step"] else "")),
        ("OOM recoveries", f"{len(ooms)}" + (" (" + ", ".join(f"{v} in {k}" for k, v in sorted(phases.items())) + ")"
                                              if ooms else "")),
        ("skipped samples", f"{len(skips)}" + (": ids " + ", ".join(str(e.get("sample_id")) for e in skips[:10])
                                                if skips else "")),
        ("estimator error at the first step", f"{err * 100:+.1f}%" if isinstance(err, (int, float))
         else "n/a (no GPU measurement)"),
        ("predicted peak", _gib(predicted)),
        ("measured peak", _gib(measured_peak(run))),
        ("micro-batch", f"{mbs[0]} -> {mbs[-1]}" if mbs and mbs[0] != mbs[-1] else (str(mbs[0]) if mbs else "n/a")),
        ("tokens/s (median)", f"{statistics.median(tps):,.0f}" if tps else "n/a"),
        ("loss (first -> last)", f"{losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "n/a"),
        ("leak warnings", str(len(run.events_of("leak_warning")))),
        *_eval_rows(run),
        ("NaN/inf steps", str(len(run.events_of("nan_loss")))),
    ]
    if isinstance(m[-1].get("time"), (int, float)):
        rows.append(("wall time", f"{m[-1]['time']:.0f} s"))
    if run.ranks:  # a multi-GPU run: the figures above are rank 0's; each rank's own peak and recoveries
        every = {0: run, **run.ranks}
        rows += [("ranks", str(len(every))),
                 ("measured peak per rank", ", ".join(f"{r}: {_gib(measured_peak(x))}" for r, x in sorted(every.items()))),
                 ("OOM recoveries per rank",
                  ", ".join(f"{r}: {len(x.events_of('oom_recovery'))}" for r, x in sorted(every.items())))]
    return rows


# --- the plots ----------------------------------------------------------------------------------------------------

def _figure(height: float):
    """(figure, axes) on the Agg canvas: no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _label(ax, run: RunData, title: str, ylabel: str, ooms_labelled: bool) -> None:
    _mark_ooms(ax, run, ooms_labelled)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _series(run: RunData, key: str) -> tuple[list, list]:
    xs, ys = [], []
    for m in run.metrics:
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(m["step"])
            ys.append(v)
    return xs, ys


def _mark_ooms(ax, run: RunData, label: bool = True) -> None:
    for i, e in enumerate(run.events_of("oom_recovery")):
        ax.axvline(e.get("step", 0), color=_COLORS["oom"], ls="--", lw=1.2, label="OOM recovered" if label and i == 0 else None)
        if label:
            ax.annotate(f"OOM {e.get('phase', '')}\n{e.get('old_micro_batch', '?')}->{e.get('new_micro_batch', '?')}",
                        (e.get("step", 0), 1), xycoords=("data", "axes fraction"), xytext=(3, -4),
                        textcoords="offset points", va="top", fontsize=7, color=_COLORS["oom"])


def plot_memory(run: RunData):
    fig, ax = _figure(4.0)
    any_mem = False
    for key, name, color in (("mem_allocated", "allocated", "alloc"), ("mem_reserved", "reserved", "reserved"),
                             ("mem_peak_allocated", "peak allocated", "peak_alloc"),
                             ("mem_peak_reserved", "peak reserved", "peak_reserved")):
        xs, ys = _series(run, key)
        if ys and any(ys):
            any_mem = True
            ax.plot(xs, [y / GIB for y in ys], label=name, color=_COLORS[color], lw=1.6, marker="." if len(xs) < 40 else None)
    for r, other in sorted(run.ranks.items()):  # a multi-GPU run: each other rank's peak, thin
        xs, ys = _series(other, "mem_peak_reserved")
        if ys and any(ys):
            ax.plot(xs, [y / GIB for y in ys], label=f"rank {r} peak reserved", lw=0.9, ls="-.")
    if run.estimate and run.estimate.get("peak_bytes"):  # the allocator's share: the lines above exclude the context
        pred = run.estimate["peak_bytes"] - (run.estimate.get("components") or {}).get("CUDA context", 0)
        ax.axhline(pred / GIB, color=_COLORS["pred"], ls=":", lw=1.4, label="predicted peak reserved")
    if not any_mem:
        ax.text(0.5, 0.5, "no GPU memory figures (a CPU run)", transform=ax.transAxes, ha="center", va="center")
    _label(ax, run, "GPU memory over steps", "GiB", True)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # room above the top line for the OOM labels
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=6, frameon=False)
    return fig


def plot_breakdown(run: RunData):
    fig, ax = _figure(3.2)
    comps = (run.estimate or {}).get("components") or {}
    if not comps:
        first = run.events_of("first_step_memory")
        comps = (first[0].get("predicted_components") if first else None) or {}
    left = 0.0
    cmap = __import__("matplotlib").colormaps["tab20"]
    for i, (name, b) in enumerate(sorted(comps.items(), key=lambda kv: -kv[1])):
        w = b / GIB
        ax.barh("predicted", w, left=left, color=cmap(i % 20), label=f"{name} {w:.2f}")
        left += w
    if comps:
        ax.annotate(f" {left:.2f} GiB", (left, 0), va="center", fontsize=8)
    meas = measured_peak(run)
    if meas:
        ax.barh("measured", meas / GIB, color="#333333", label=f"measured peak {meas / GIB:.2f}")
        ax.annotate(f" {meas / GIB:.2f} GiB", (meas / GIB, 1 if comps else 0), va="center", fontsize=8)
    if not comps and not meas:
        ax.text(0.5, 0.5, "no prediction and no measurement", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlim(0, max(left, (meas or 0) / GIB) * 1.15 or 1)
    ax.set_xlabel("GiB (measured: peak reserved + memory outside the allocator, at the first step)")
    ax.set_title("Predicted breakdown against the measured peak")
    ax.grid(axis="x", alpha=0.3)
    if comps or meas:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def _line_plot(run: RunData, key: str, title: str, ylabel: str, color: str):
    fig, ax = _figure(3.0)
    xs, ys = _series(run, key)
    ax.plot(xs, ys, color=color, lw=1.6, marker="." if len(xs) < 40 else None)
    _label(ax, run, title, ylabel, False)
    return fig


def make_figures(run: RunData) -> dict:
    return {"memory": plot_memory(run), "breakdown": plot_breakdown(run),
            "loss": _line_plot(run, "loss", "Loss", "loss", "#1f77b4"),
            "tokens": _line_plot(run, "tokens_per_s", "Throughput", "tokens/s", "#2ca02c")}


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG needs neither


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


# --- the page -----------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:980px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px} table{border-collapse:collapse;font-size:14px;margin-top:8px}
td,th{padding:4px 12px;border-bottom:1px solid #eee;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.plot svg{width:100%;height:auto} .note{color:#8a5a00;font-size:13px}
pre.sample{white-space:pre-wrap;margin:0;font-size:13px}
"""

_TITLES = {"memory": "Memory over steps", "breakdown": "Predicted breakdown vs measured peak",
           "loss": "Loss", "tokens": "Tokens per second"}


def _config_line(run: RunData) -> str:
    c = run.config or {}
    m, t, lo, d = c.get("model") or {}, c.get("train") or {}, c.get("lora") or {}, c.get("data") or {}
    if not c:
        return ""
    return (f"{m.get('name_or_path', '?')} · {m.get('quant', '?')} · LoRA r={lo.get('r', '?')} · "
            f"micro-batch {t.get('micro_batch_size', '?')} x accum {t.get('grad_accum', '?')} · "
            f"max_seq_length {d.get('max_seq_length', '?')} · checkpointing {t.get('grad_checkpointing', '?')} · "
            f"{t.get('optimizer', '?')} · {t.get('loss_impl', '?')} loss")


def _events_table(run: RunData) -> str:
    ooms = run.events_of("oom_recovery")
    skips = run.events_of("skip_sample")
    if not ooms and not skips:
        return "<p>No OOM recoveries and no skipped samples.</p>"
    rows = []
    for e in sorted(ooms + skips, key=lambda e: (e.get("step", 0), e.get("time", 0))):
        if e["kind"] == "oom_recovery":
            what = (f"OOM in {e.get('phase', '?')}: micro-batch {e.get('old_micro_batch', '?')} -> "
                    f"{e.get('new_micro_batch', '?')}, {e.get('action', '')}")
            mem = _gib(e.get("mem_reserved")) if e.get("mem_reserved") else ""
        else:
            what = f"skipped sample {e.get('sample_id', '?')}: {e.get('reason', '')}"
            mem = ""
        rows.append(f"<tr><td class=num>{e.get('step', '')}</td><td>{html.escape(what)}</td><td class=num>{mem}</td></tr>")
    return "<table><tr><th>step</th><th>event</th><th>reserved</th></tr>" + "".join(rows) + "</table>"


def _eval_rows(run: RunData) -> list[tuple[str, str]]:
    """The last evaluation: loss, perplexity, token accuracy; and an early stop if there was one."""
    evals = run.events_of("eval")
    if not evals:
        return []
    e = evals[-1]
    acc = e.get("token_accuracy")
    rows = [("eval (last, step {})".format(e.get("step", "?")),
             f"loss {e.get('loss', float('nan')):.4f}"
             + (f", perplexity {e['perplexity']:.2f}" if isinstance(e.get("perplexity"), (int, float)) else "")
             + (f", token accuracy {100 * acc:.1f}%" if isinstance(acc, (int, float)) else ""))]
    stop = run.events_of("early_stop")
    if stop:
        rows.append(("early stop", f"step {stop[0].get('step')}: best eval loss {stop[0].get('best_eval_loss', 0):.4f}"))
    return rows


def _samples_table(run: RunData, limit: int = 60) -> str:
    """What the model answered to train.sample_prompts at each evaluation, newest first."""
    if not run.samples:
        return ""
    rows = sorted(run.samples, key=lambda r: -r.get("step", 0))[:limit]
    body = "".join(f"<tr><td class=num>{r.get('step', '')}</td><td>{html.escape(str(r.get('prompt', '')))}</td>"
                   f"<td><pre class=sample>{html.escape(str(r.get('output', '')))}</pre></td></tr>" for r in rows)
    more = f"<p class=sub>{len(run.samples) - limit} older samples in samples.jsonl.</p>" if len(run.samples) > limit else ""
    return ("<h2>Samples</h2><table id=\"samples\"><tr><th>step</th><th>prompt</th><th>output</th></tr>"
            f"{body}</table>{more}")


def render_html(run: RunData, svgs: dict) -> str:
    title = f"qlorafit report: {run.dir.resolve().name}"
    summ = "".join(f"<tr><th>{html.escape(k)}</th><td class=num>{html.escape(v)}</td></tr>" for k, v in summary(run))
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in run.notes)
    plots = "".join(f'<h2>{_TITLES[k]}</h2><div class="plot" id="plot-{k}">{svgs[k]}</div>' for k in PLOTS)
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(_config_line(run))}</p>{notes}"
            f"<h2>Summary</h2><table id=summary>{summ}</table>"
            f"{plots}{_samples_table(run)}<h2>Recoveries and skipped samples</h2>{_events_table(run)}"
            f"<p class=sub>Generated by qlorafit report from {html.escape(str(run.dir))}.</p></body></html>\n")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> dict:
    """Write report.html (default RUN_DIR/report.html) and report-<plot>.png next to it. Returns the paths."""
    run = load_run(run_dir)
    html_path = Path(out) if out else run.dir / "report.html"
    figs = make_figures(run)  # write_atomic makes html_path's folder
    paths = {"html": html_path}
    for name, fig in figs.items():
        p = html_path.parent / f"{html_path.stem}-{name}.png"
        write_atomic(p, _png(fig))
        paths[name] = p
    write_atomic(html_path, render_html(run, {k: _svg(f) for k, f in figs.items()}).encode())
    return paths
