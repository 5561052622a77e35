"""Tables, statistics, figures and the HTML page for lossbench sweep folders.

``build_report(sweep_dirs, out_dir=None, target_fraction=0.95)`` writes results.csv, curves.csv
and report/ (index.html, figures, stats); ``main`` is the ``lossbench-report`` command. Modules,
in the order the data flows: ``tables`` (sweep folders -> tidy frames), ``views`` (per-group
statistics and the tuned view), ``figures`` and ``diagnostics`` (matplotlib), ``answers``
(sentences), ``page`` (the Jinja2 page). Importing this package or ``tables`` does not import
matplotlib: the two entry points load ``page`` when called.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_report", "main"]


def build_report(sweep_dirs: list[Path], out_dir: Path | None = None,
                 target_fraction: float = 0.95, figures: bool = True, helper=None) -> Path:
    """Write the report of ``sweep_dirs``; see ``lossbench.report.page.build_report``."""
    from lossbench.report.page import build_report as build

    return build(sweep_dirs, out_dir, target_fraction, figures, helper)


def main(argv: list[str] | None = None) -> int:
    """``lossbench-report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--target-fraction F]``."""
    from lossbench.report.page import main as page_main

    return page_main(argv)
