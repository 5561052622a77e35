"""Figures and a self-contained HTML report for one or more sweep directories.

``build_report(sweep_dirs)`` reads the runs with ``lossbench.report.tables.load_runs`` and writes, into
``out_dir`` (default: the first sweep directory):

- ``results.csv`` (+ ``results.parquet``): one row per run, typed and versioned
  (``lossbench.report.exports``); ``curves.csv`` (+ ``.parquet``): every run's metrics.csv rows;
- ``report/index.html``: the question, then the answer (summary sentences, headline figures, the
  final-metric table), then the runs, details and every other figure; each figure is embedded as a
  base64 PNG, so the file opens offline on its own;
- ``report/<figure>.png`` and ``report/<figure>.svg`` for every figure, ``report/stats.csv`` (the
  per-group statistics shown in the tables, with ``view`` and ``compared_within`` columns),
  ``report/pairs.csv`` (every pair compared) and the main table as ``report/stats.md`` / ``.tex``.
- with ``report.early_stopping: true``: under the main table, "Best epoch on the validation split
  (early-stopped view)": one sentence per block and the same statistics on ``early_<primary>``
  (each run at its first best validation epoch; ``views.early_stats``), also in stats.csv
  (``view`` "early") and stats.md/.tex (a ``view`` column). Runs without a val split: said once.

Every file is written atomically. Damaged run folders are listed with what is wrong and left out;
nothing read from a run folder is imported or instantiated (``lossbench.report.folders``).

What is compared
    The swept keys define the groups (``lossbench.report.tables``). When ``optimizer.lr`` is swept, the
    answer, the curves and the reliability diagram show each group at its own best learning rate
    (the tuned view); the shared-rate numbers are in a table of their own. With two or more
    compared keys (besides ``dataset``), the last one becomes the panel key: figures draw one panel
    per value of it (e.g. one per label-noise level) and colour the groups by the other keys, and
    the tables rank and test the groups within each panel value. ``report.headline`` in the runs'
    config (an experiment file may set it) names the figures shown with the answer; by default the
    heat map when there is one, else the primary metric's convergence curves.

Command line: ``lossbench-report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--target-fraction F]``.
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from lossbench.report.answers import _answer_items, _question, early_items
from lossbench.report.common import LR_KEY
from lossbench.report.comparisons import ALPHA, BAND_METHOD, pair_stats
from lossbench.report.exports import SchemaError, write_tables
from lossbench.report.folders import DamagedRun
from lossbench.report.drawing import Helper, helper_pays
from lossbench.report.gallery import _all_figures, remove_figures
from lossbench.report.layout import RC, FigureFile, Layout, _layout, _metric_label
from lossbench.report.output import write_csv, write_text
from lossbench.report.sections import (
    all_metrics_table, configuration_section, files_section, lr_table, paper_table, runs_section,
    stats_frames, stats_table)
from lossbench.report.tables import ReportInputError, Runs, load_runs
from lossbench.report.views import (TunedView, early_stats, metric_stats, no_early_view, shared_stats, tuned_stats,
                                    tuned_view)

# autoescape: every value the template prints is text; sections arrive as HTML built with html.escape
_TEMPLATES = Environment(loader=PackageLoader("lossbench.report", "templates"),
                         autoescape=select_autoescape(["html", "j2"]), keep_trailing_newline=True)


def build_report(sweep_dirs: list[Path], out_dir: Path | None = None,
                 target_fraction: float = 0.95, figures: bool = True, helper: Helper | None = None) -> Path:
    """Write results.csv, curves.csv and report/ (index.html, figures, stats) for ``sweep_dirs``.

    ``sweep_dirs``: one or more sweep directories, merged (see ``lossbench.report.tables.load_runs``).
    ``out_dir``: where to write, default the first sweep directory. ``target_fraction``: the
    fraction of the best group's final primary metric that defines "reached the target".
    ``figures=False`` (``report.figures=false``, ``lossbench-report --no-figures``): tables,
    statistics and the answer only, no figure drawn (drawing is most of a small report's time).
    ``helper``: a figure :class:`Helper` the caller started earlier (a sweep, while its runs
    trained), closed when the report is written; None starts one here when the study is large.
    Returns the path of ``report/index.html``. Raises ``NoRunsError`` (a ValueError) for a
    directory that is missing or holds no usable runs.
    """
    if figures and helper is not None and helper.alive():  # started by the sweep: it has imported by now
        helper.start(sweep_dirs, target_fraction)
    else:
        if helper is not None:
            helper.close()
        helper = _figure_helper(sweep_dirs, target_fraction) if figures else None
    try:
        return _build(sweep_dirs, out_dir, target_fraction, figures, helper)
    finally:
        if helper is not None:
            helper.close()


def _figure_helper(sweep_dirs, target_fraction: float) -> Helper | None:
    """A helper process for the figures of a study (two or more cores, many runs), started now so
    that its imports overlap the loading; None for a small sweep, whose figures are drawn here."""
    n_runs = 0
    for sweep_dir in sweep_dirs:
        try:
            n_runs += sum(1 for entry in os.scandir(sweep_dir) if entry.is_dir() and entry.name != "report")
        except OSError:
            return None  # load_runs says what is wrong with the folder
    return Helper(sweep_dirs, target_fraction) if helper_pays(n_runs) else None


def views(runs: Runs) -> tuple[TunedView | None, Layout]:
    """The tuned view (None for a plain grid) and the layout of groups, colours and panels."""
    tuned = tuned_view(runs)
    return tuned, _layout(runs, tuned)


def _build(sweep_dirs, out_dir, target_fraction: float, figures: bool, helper: Helper | None) -> Path:
    runs = load_runs([Path(d) for d in sweep_dirs], target_fraction=target_fraction)
    out_dir = Path(out_dir) if out_dir is not None else runs.sweep_dirs[0]
    report_dir = out_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)

    tuned, layout = views(runs)
    panel = [layout.panel_key] if layout.panel_key else []
    if tuned is not None:
        answer_stats = tuned_stats(runs, tuned, compare_within=panel)
        shared = shared_stats(runs)
        tables = [answer_stats.assign(view="tuned", compared_within=", ".join(layout.within)),
                  shared.assign(view="shared", compared_within=", ".join(runs.block_keys + [LR_KEY]))]
    else:
        answer_stats = shared_stats(runs, compare_within=panel)
        tables = [answer_stats.assign(view="shared", compared_within=", ".join(layout.within))]
    frames = stats_frames(answer_stats, runs, layout.view_results, layout.view_keys, layout.within)
    main_table = paper_table(frames)
    early = None
    if runs.early_stopping:
        early = early_stats(runs, tuned, compare_within=panel)
        early_frames = stats_frames(early, runs, layout.view_results, layout.view_keys, layout.within,
                                    early=True)
        if len(early):
            tables.append(early.assign(view="early" if tuned is None else "tuned, early",
                                       compared_within=", ".join(layout.within)))
        early_table = paper_table(early_frames)
        if len(early_table) and len(main_table):
            main_table = pd.concat([main_table.assign(view="final epoch"),
                                    early_table.assign(view="best validation epoch")], ignore_index=True)
            main_table = main_table[["view", *[c for c in main_table.columns if c != "view"]]]
        early = (early, early_frames, no_early_view(runs))
    also = []  # report.also_compare: the same tests on further final metrics (e.g. test_ece)
    for metric in runs.also_compare:
        stats = metric_stats(runs, tuned, metric, compare_within=panel)
        if len(stats):
            tables.append(stats.assign(view=f"also: {metric}", compared_within=", ".join(layout.within)))
            also.append((metric, stats_frames(stats, runs, layout.view_results, layout.view_keys, layout.within,
                                              targets=False)))
    written = write_tables(runs, out_dir, report_dir, pd.concat(tables, ignore_index=True), main_table)
    pairs = _pairs(answer_stats, layout)
    if pairs is not None:
        write_csv(report_dir / "pairs.csv", pairs)
        written.append("report/pairs.csv")

    drawn = figures
    if drawn:
        with matplotlib.rc_context(RC):
            figures = _all_figures(runs, tuned, layout, report_dir, helper)
    else:
        remove_figures(report_dir)
        figures = []
    index = report_dir / "index.html"
    write_text(index, _html(runs, tuned, layout, answer_stats, frames, figures, report_dir, out_dir, written,
                            early, also, drawn))
    return index


def _pairs(answer_stats: pd.DataFrame, layout: Layout) -> pd.DataFrame | None:
    """Every pair of groups compared in the answer (report/pairs.csv)."""
    if answer_stats.empty:
        return None
    parts = [pair_stats(layout.view_results[layout.view_results["primary_metric"] == metric.removeprefix("final_")],
                        metric, layout.view_keys, layout.within)
             for metric in answer_stats["metric"].dropna().unique()]
    return pd.concat(parts, ignore_index=True) if parts else None


def main(argv: list[str] | None = None) -> int:
    """``lossbench-report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--target-fraction F]``."""
    parser = argparse.ArgumentParser(
        prog="lossbench-report",
        description="Aggregate one or more lossbench sweep directories into results.csv, "
                    "curves.csv and a self-contained HTML report with figures.")
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR",
                        help="sweep directory (one run directory with summary.json per job); "
                             "several are merged")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output directory (default: the first SWEEP_DIR)")
    parser.add_argument("--no-figures", action="store_true",
                        help="tables, statistics and the answer only: draw no figure (faster)")
    parser.add_argument("--target-fraction", type=float, default=0.95, metavar="F",
                        help="a run reaches the target at F times the best group's final "
                             "accuracy / R² (default 0.95; in (0, 1])")
    args = parser.parse_args(argv)
    if not 0.0 < args.target_fraction <= 1.0:
        parser.error(f"--target-fraction must be in (0, 1], got {args.target_fraction}")
    try:
        index = build_report(args.sweep_dirs, args.out, args.target_fraction, figures=not args.no_figures)
    except (ReportInputError, DamagedRun, SchemaError) as error:
        parser.error(str(error))
    except OSError as error:  # a full disk, a read-only folder: one line, no traceback
        print(f"lossbench-report: cannot write the report: {error.strerror or error}"
              + (f": '{error.filename}'" if error.filename else ""), file=sys.stderr)
        return 1
    out_dir = index.parent.parent.resolve()
    print(f"results: {out_dir / 'results.csv'}")
    print(f"curves:  {out_dir / 'curves.csv'}")
    print(f"report:  {index.resolve()}")
    return 0


def _figure_html(figure: FigureFile) -> str:
    return (f"<figure id='{figure.name}'><h3>{html.escape(figure.title)}</h3>"
            f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,"
            f"{base64.b64encode(figure.png).decode('ascii')}'>"
            f"<figcaption>{html.escape(figure.caption)} "
            f"<span class='files'>Files: <a href='{figure.name}.png'>{figure.name}.png</a>, "
            f"<a href='{figure.name}.svg'>{figure.name}.svg</a></span></figcaption></figure>")


def _headline_names(runs: Runs, tuned: TunedView | None, figures: list[FigureFile]) -> tuple[list[str], list[str]]:
    """The figures shown with the answer, and the ``report.headline`` names that do not exist."""
    names = [f.name for f in figures]
    if runs.headline:
        return [n for n in runs.headline if n in names], [n for n in runs.headline if n not in names]
    primaries = runs.results["primary_metric"].dropna()
    for name in ("heatmap_tuned", "heatmap", f"curves_{primaries.iloc[0]}" if len(primaries) else ""):
        if name in names:
            return [name], []
    return [], []


def _view_note(runs: Runs, tuned: TunedView | None, layout: Layout) -> str:
    if len(runs.tune_results):
        note = ("Tune-then-confirm: each arm's settings were chosen on the validation split of the "
                "tuning seeds (tuned.csv, under Configuration); only the confirmation runs, on "
                "fresh seeds, enter this answer, the tables and the curves.")
    elif tuned is not None:
        note = ("Each group at its own best learning rate, chosen on the validation split "
                "(the tuned view); the same groups at every learning rate are in "
                "“Learning rate” below.")
    else:
        note = ("The learning rate was not swept, so every group trains at the rate its config sets; "
                "one rate can suit some groups better than others (sweep optimizer.lr, or use "
                "protocol=tune, to tune it per group).")
    if layout.panel_key:
        note += (f" Groups are compared within each value of {layout.panel_key}"
                 + (" and dataset." if runs.block_keys else "."))
    elif runs.block_keys:
        note += " Groups are compared within each dataset."
    return note


def _methods(runs: Runs, tuned: TunedView | None) -> str:
    return (
        "Groups are the combinations of swept keys; seeds are replicates. Only completed runs "
        "enter means, curves and tests; diverged and failed runs are counted and listed"
        + ("; with a tuning stage only the confirmation runs enter" if len(runs.tune_results) else "")
        + ". Interval of a group's mean: 95% expanded percentile bootstrap (Hesterberg 2015), "
        "which never leaves the metric's range (accuracy in [0, 1], R² at most 1, losses at "
        f"least 0); curves: a 95% {BAND_METHOD} band per epoch, also inside the range. "
        "Comparisons: every pair of groups of a table, paired by seed on the seeds both "
        "completed, by the sign-flip (paired permutation) test of the mean difference: exact "
        "over all 2^n sign patterns for up to 14 seeds (its smallest attainable p is 2/2^n: "
        "0.0625 with 5 seeds, 0.002 with 10), Monte Carlo beyond; the p-values of all pairs of a "
        f"table are Holm-adjusted together (family-wise error at most {ALPHA:g}). Effect size: "
        "the mean paired difference with the 95% interval obtained by inverting the same test. "
        "A group is worse than the best when its pair with the best is rejected; identical at "
        "every seed is a tie; otherwise it is not distinguishable with these seeds, which does "
        "not mean equal. "
        f"Target: {runs.target_fraction:g} × the best group's mean final value (for a "
        "lower-is-better metric, best / fraction); epochs to target: the Kaplan-Meier median, "
        "runs that never reached the target counted as censored at their last epoch (\"> N\" when "
        "at most half reached it), with \"k of n reached\". Primary metric: accuracy "
        "(classification) or R² (regression) on the test split, else validation, else training. "
        "Probabilities (log loss, Brier score, ECE) come from each loss's own link; a loss without "
        "one (hinge, squared loss on logits) has them \"not applicable\". ECE: 15 equal-width "
        "bins of the top-label probability. Regression errors are in standardised target units "
        "(the target scaled to zero mean and unit variance on the training split)."
        + (" When datasets vary, each is compared separately." if runs.block_keys else "")
        + (" The learning rate of the tuned view is chosen on the validation split, never on "
           "the test split, among the rates at which every seed completed." if tuned is not None else ""))


EARLY_TITLE = "Best epoch on the validation split (early-stopped view)"


def _early_html(early: tuple, answer_stats: pd.DataFrame, layout: Layout) -> str:
    """The early-stopped view (``report.early_stopping: true``): its sentences, then its table."""
    stats, frames, missing = early
    items = early_items(stats, answer_stats, layout, missing)
    body = ("<ul class='answer'>" + "".join(
        f"<li>{f'<b>{html.escape(where)}</b>: ' if where else ''}{html.escape(text)}</li>"
        for where, text in items) + "</ul>")
    return (f"<h3>{html.escape(EARLY_TITLE)}</h3>" + body
            + (stats_table(frames) if frames else ""))


def _html(runs: Runs, tuned: TunedView | None, layout: Layout, answer_stats: pd.DataFrame,
          frames: list, figures: list[FigureFile], report_dir: Path, out_dir: Path,
          written: list[str], early: tuple | None = None, also: list | None = None, drawn: bool = True) -> str:
    headline, unknown = _headline_names(runs, tuned, figures) if drawn else ([], [])
    by_name = {f.name: f for f in figures}
    answer = ("<ul class='answer'>" + "".join(
        f"<li>{f'<b>{html.escape(where)}</b>: ' if where else ''}{html.escape(text)}</li>"
        for where, text in _answer_items(answer_stats, runs, layout, tuned)) + "</ul>")
    warn = "".join(f"<p class='warn'>report.headline names '{html.escape(n)}', which this report "
                   "does not have.</p>" for n in unknown)
    if not drawn:
        warn += ("<p class='note'>Figures were not drawn (report.figures=false); draw them with: "
                 f"lossbench-report {html.escape(' '.join(str(d) for d in runs.sweep_dirs))}</p>")
    if runs.damaged:
        warn += (f"<p class='warn'>{len(runs.damaged)} damaged run folder(s) left out; see "
                 "<a href='#runs'>Runs</a>.</p>")
    if tuned is not None and tuned.notes:  # e.g. a rate chosen at the edge of the grid
        warn += ("<p class='warn'>Caveats of the tuned view: "
                 + html.escape(" ".join(tuned.notes)) + "</p>")
    table_title = "Final metric per group" + (" (tuned: each at its own best learning rate)"
                                              if tuned is not None else "")
    sections = [
        ("question", "Question", f"<p class='question'>{html.escape(_question(runs))}</p>"),
        ("answer", "Answer", f"<p class='note'>{html.escape(_view_note(runs, tuned, layout))}</p>{answer}{warn}"
         + "".join(_figure_html(by_name[name]) for name in headline)
         + f"<h3>{html.escape(table_title)}</h3>" + stats_table(frames)
         + (_early_html(early, answer_stats, layout) if early is not None else "")
         + "".join(f"<h3>Also compared: {html.escape(_metric_label(metric, unit=False))}</h3>"
                   + stats_table(metric_frames) for metric, metric_frames in also or [])),
        ("configuration", "Configuration", configuration_section(runs, runs.group_keys)),
        ("runs", "Runs", runs_section(runs, report_dir)),
    ]
    if tuned is not None:
        sections.append((
            "learning-rate", "Learning rate",
            "<p class='note'>Comparing groups at one shared learning rate is "
            "unfair to those whose good rates differ; the answer above uses each group's own "
            "best rate. The numbers at a shared learning rate:</p>"
            + "".join(f"<p class='warn'>{html.escape(note)}</p>" for note in tuned.notes)
            + lr_table(runs, tuned)))
    all_title = "All final metrics" + (" (tuned: each group at its own best learning rate)"
                                       if tuned is not None else "")
    sections.append(("all-metrics", all_title, "<p class='note'>Mean ± std over completed "
                     "seeds. The training loss is each run's own loss function (a CE and a KL run "
                     "differ by the constant entropy of the target, for example).</p>"
                     + all_metrics_table(runs, layout)))
    others = [f for f in figures if f.name not in headline]
    if others:
        sections.append(("figures", "More figures" if headline else "Figures",
                         "\n".join(_figure_html(f) for f in others)))
    sections.append(("files", "Files", files_section(runs, report_dir, out_dir, written, figures)))
    sections.append(("methods", "Methods", f"<p class='note'>{html.escape(_methods(runs, tuned))}</p>"))
    name = ", ".join(d.name for d in runs.sweep_dirs)
    return _TEMPLATES.get_template("index.html.j2").render(
        name=name, sweep_dirs=[str(d) for d in runs.sweep_dirs],
        sections=[{"id": i, "title": title, "html": body} for i, title, body in sections],
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
