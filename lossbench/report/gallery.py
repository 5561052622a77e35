"""Which figures a sweep gets, their captions, and saving them (PNG + SVG, atomically).

Figures use matplotlib's ``Figure`` with the Agg canvas directly (no pyplot, no global backend
change); matplotlib is imported by the report's figure modules only, never by a training run.
"""

from __future__ import annotations

from pathlib import Path

from lossbench.report.common import TASK_METRICS
from lossbench.report.drawing import FigureSpec, Helper, hello, render_all
from lossbench.report.diagnostics import ECE_NAME, _gradient_figure, _reliability_figure, _why_figure
from lossbench.report.figures import _curves_figure, _final_figure, _heatmap_figure, _heatmap_specs
from lossbench.report.layout import CURVE_METRICS, FIGURE_PREFIXES, FigureFile, Layout, _eval_split, _metric_label
from lossbench.report.output import write_bytes
from lossbench.report.tables import Runs
from lossbench.report.tuning import _lr_figure, _sensitivity_figure
from lossbench.report.comparisons import BAND_METHOD
from lossbench.report.views import TunedView

WALL_CLOCK = ("Training time is wall-clock time on the machine that ran the runs (other machines, "
              "thread counts or concurrent jobs give other times); compare it within one sweep only.")


def remove_figures(report_dir: Path) -> None:
    """Delete the figure files (PNG, SVG) of an earlier build of the report in ``report_dir``."""
    for stale in report_dir.iterdir():
        if stale.suffix in (".png", ".svg") and stale.stem.startswith(FIGURE_PREFIXES):
            stale.unlink()


def _all_figures(runs: Runs, tuned: TunedView | None, layout: Layout, report_dir: Path,
                 helper: Helper | None = None) -> list[FigureFile]:
    """Draw, save (PNG + SVG) and return every figure that applies to this sweep.

    The figures are drawn by :func:`lossbench.report.drawing.render_all`: with a helper process
    (two or more cores), it draws some while this one draws the others; the files are the same bytes.
    """
    figures = figure_specs(runs, tuned, layout)
    if helper is not None:
        helper.expected = hello(runs, figures)
    rendered = render_all(figures, helper)
    remove_figures(report_dir)  # figures of an earlier build that no longer apply
    saved = []
    for spec, result in zip(figures, rendered):
        if result is None:
            continue
        caption, png, svg = result
        write_bytes(report_dir / f"{spec.name}.png", png)
        write_bytes(report_dir / f"{spec.name}.svg", svg)
        saved.append(FigureFile(spec.name, spec.title, caption, png))
    return saved


def figure_specs(runs: Runs, tuned: TunedView | None, layout: Layout) -> list[FigureSpec]:
    """Every figure that applies to this sweep, with its caption, in the report's order (not drawn)."""
    view_results, view_keys = layout.view_results, layout.view_keys
    figures: list[FigureSpec] = []
    tasks = set(runs.results["task"].dropna())
    primaries = runs.results["primary_metric"].dropna()
    split = _eval_split(primaries.iloc[0]) if len(primaries) else "test"
    tuned_note = (" Each group is shown at its own best learning rate (tuned view)."
                  if tuned is not None else "")
    stage_note = (" Confirmation runs only (the tuning runs are in the sensitivity figure)."
                  if len(runs.tune_results) else "")
    panel_note = (f" One panel per {layout.panel_key} value." if layout.panel_key else "")

    view_curves = runs.curves[runs.curves["run_id"].isin(view_results["run_id"])]
    curve_metrics = ["train_loss"] + [f"{split}_{m}" for task in ("classification", "regression")
                                      if task in tasks for m in CURVE_METRICS[task]]
    for metric in curve_metrics:
        caption = (f"Mean {_metric_label(metric)} over completed seeds with a 95% band for the mean "
                   f"({BAND_METHOD}, so inside the metric's range), against epoch"
                   + (" (top row) and training time (bottom row)." if layout.panel_key else
                      " (left) and training time (right).")
                   + " Diverged and failed runs are excluded. The epoch axis is logarithmic when "
                   "the curves do most of their change in the first few percent of the epochs. "
                   + WALL_CLOCK + panel_note + tuned_note + stage_note)
        if metric == "train_loss":
            caption += (" Each run's training loss is its own loss function: levels are comparable "
                        "only between losses with the same minimum, shapes always.")
        if metric.endswith("_ece"):
            caption += f" {ECE_NAME}."
        figures.append(FigureSpec(f"curves_{metric}", f"Convergence: {_metric_label(metric)}", caption,
                                  _curves_figure, (runs, layout, view_curves, metric), cost=1.0))

    final_metrics = [f"{split}_{m}" for task in ("classification", "regression") if task in tasks
                     for m in TASK_METRICS[task]]
    if tuned is not None:
        figures.append(FigureSpec("final_metrics_shared_lr", "Final metrics at every learning rate",
                        "Final value per seed (points) over a box of quartiles and median "
                        "(thick black bar: mean), for every group and learning rate; labels say "
                        "how many runs completed.",
                        _final_figure, (runs, runs.results, runs.group_keys, final_metrics,
                                        "Final metrics per group and learning rate")))
    figures.append(FigureSpec("final_metrics", "Final metrics per group",
                    "Final value per seed (points) over a box of quartiles and median (thick "
                    "black bar: mean); labels say how many runs completed. Metrics that need "
                    "class probabilities are left out for losses without a probabilistic link."
                    + tuned_note + stage_note,
                    _final_figure, (runs, view_results, view_keys, final_metrics,
                                    "Final metrics per group" + (" (each at its best learning rate)"
                                                                 if tuned is not None else ""))))

    for name, table, keys, two, panel_keys, view_title, outline in _heatmap_specs(runs, tuned):
        metric_name = _metric_label(table["primary_metric"].dropna().iloc[0], unit=False) \
            if table["primary_metric"].notna().any() else "primary metric"
        figures.append(FigureSpec(name, f"Heat map: {two[0]} × {two[1]}{view_title}",
                        f"Mean final {metric_name} over completed seeds (± std) for each {two[0]} "
                        f"and {two[1]}{view_title}; '(k/n)' marks cells where only k of n runs "
                        "completed; grey cells have no completed run (or were not run). The colour "
                        "scale spans at least four typical standard deviations across seeds, so "
                        "differences within seed-to-seed noise do not look large; panels of "
                        "different data sets get their own scale."
                        + (" Outlined: the learning rate chosen on the validation split."
                           if outline is not None else ""),
                        _heatmap_figure, (table, keys, two, panel_keys, view_title, outline)))

    if tuned is not None:
        figures.append(FigureSpec("learning_rate", "Sensitivity to the learning rate",
                        "Mean final validation metric (train if there is no val split) with its "
                        "95% interval (expanded percentile bootstrap) against the learning rate; the star marks each "
                        "group's chosen rate (never one where a seed diverged or failed when "
                        "another rate had none)." + panel_note, _lr_figure, (runs, tuned)))
    if len(runs.tune_results):
        figures.append(FigureSpec("sensitivity", "Sensitivity to the tuned settings (tuning stage)",
                        "Final objective of the tuning runs (validation split) against each tuned "
                        "key, mean over the tuning seeds, one line per arm; the star marks the "
                        "setting chosen in tuned.csv, a cross a setting where some tuning seed "
                        "diverged or failed.", _sensitivity_figure, (runs,)))

    caption = ("dL/dz against the varied logit z (the other logits at 0) for one sample, whose "
               "class is the target (target 1) or is not (target 0), for k = 1 output and for the "
               "runs' own number of outputs k; read from each run's gradients.csv, written when the "
               "run trained. With k outputs the softmax couples the logits and losses averaged "
               "over the outputs are 1/k as steep.")  # the figure adds "Not drawn: ..." notes
    figures.append(FigureSpec("gradients", "Gradient with respect to the logit", caption, _gradient_figure,
                              (runs,), cost=0.7))
    if "classification" in tasks:
        figures.append(FigureSpec("why_they_differ", "Why they differ: gradients on right and wrong samples",
                        "Per epoch on the training split: the mean per-sample gradient norm "
                        "‖dL/dz‖ over correctly and over wrongly classified samples, and the "
                        "fraction of wrongly classified samples whose gradient is below 1% of the "
                        "largest (a loss that stops pushing on its mistakes). Mean over completed "
                        "seeds, band from the lowest to the highest seed." + panel_note + tuned_note
                        + stage_note, _why_figure, (runs, layout, view_curves), cost=1.5))
        figures.append(FigureSpec("reliability", "Reliability diagram",
                        "Observed accuracy against mean confidence in each of 15 equal-width bins "
                        "of the top-label probability (the loss's own link), pooled over the "
                        "completed seeds of each group; below, the number of samples per bin. The "
                        f"legend gives the {ECE_NAME} as in the tables: the mean over seeds of each "
                        "run's final value. The diagonal is perfect calibration." + panel_note
                        + tuned_note + stage_note, _reliability_figure, (runs, layout)))

    return figures
