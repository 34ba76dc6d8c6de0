"""Write a self-contained HTML page (no scripts, nothing fetched) with plots of a run: memory over steps with the
OOM recoveries marked, the predicted breakdown against the measured peak, loss and tokens/s, and a summary table.
The same plots are written as PNG files next to the page.

examples:
  qlorafit report runs/qlorafit                    # writes runs/qlorafit/report.html and report-*.png
  qlorafit report runs/qlorafit --out /tmp/r.html
"""


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the output_dir of `qlorafit train`)")
    p.add_argument("--out", "-o", help="HTML file to write (default RUN_DIR/report.html); PNGs go next to it")


def run(a) -> int:
    from qlorafit.errors import UserError
    from qlorafit.report import write_report  # matplotlib is imported only when a report is made

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("report: the plots need matplotlib, an optional extra: pip install 'qlorafit[report]'") from None

    paths = write_report(a.run_dir, a.out)
    print(f"wrote {paths['html']}")
    print("plots: " + ", ".join(str(p) for k, p in paths.items() if k != "html"))
    return 0
