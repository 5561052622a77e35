"""Figures and a self-contained HTML report for one or more sweep directories.

``build_report(sweep_dirs)`` reads the runs with ``lossbench.results.load_runs`` and writes, into
``out_dir`` (default: the first sweep directory):

- ``results.csv``: one row per run (``Runs.results``); ``curves.csv``: every run's metrics.csv rows,
  long format (``Runs.curves``);
- ``report/index.html``: the question, then the answer (summary sentences, headline figures, the
  final-metric table), then the runs, details and every other figure; each figure is embedded as a
  base64 PNG, so the file opens offline on its own;
- ``report/<figure>.png`` and ``report/<figure>.svg`` for every figure, and ``report/stats.csv``
  (the per-group statistics shown in the tables, with ``view`` and ``compared_within`` columns).

What is compared
    The swept keys define the groups (``lossbench.results``). When ``optimizer.lr`` is swept, the
    answer, the curves and the reliability diagram show each group at its own best learning rate
    (the tuned view); the shared-rate numbers are in a table of their own. With two or more
    compared keys (besides ``dataset``), the last one becomes the panel key: figures draw one panel
    per value of it (e.g. one per label-noise level) and colour the groups by the other keys, and
    the tables rank and test the groups within each panel value. ``report.headline`` in the runs'
    config (an experiment file may set it) names the figures shown with the answer; by default the
    heat map when there is one, else the primary metric's convergence curves.

Figures use matplotlib's ``Figure`` with the Agg canvas directly (no pyplot, no global backend
change); matplotlib is imported here only, never by a training run. Colours are the Okabe-Ito
palette (colour-blind safe), each group also with its own line style, so overlapping curves stay
visible and the figures read in grey.

Command line: ``lossbench-report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--target-fraction F]``.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from lossbench import results as res
from lossbench.results import LR_KEY, NoRunsError, Runs, TunedView

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#999999"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
CURVE_METRICS = {  # loss-independent metrics drawn as convergence curves, per task
    "classification": ("accuracy", "log_loss", "ece"),
    "regression": ("mse", "mae", "r2"),
}
METRIC_NAMES = {  # name, unit (axis labels add the unit)
    "loss": ("loss", "each run's own loss function"),
    "accuracy": ("accuracy", "fraction correct"),
    "log_loss": ("log loss", "nats per sample"),
    "brier": ("Brier score", "mean squared error of probabilities"),
    "ece": ("expected calibration error", "ECE"),
    "mse": ("mean squared error", "target units²"),
    "mae": ("mean absolute error", "target units"),
    "r2": ("R²", "fraction of variance explained"),
}
METRIC_RANGE = {  # the values a metric can take: confidence bands are clipped to it for display
    "accuracy": (0.0, 1.0), "ece": (0.0, 1.0), "brier": (0.0, 2.0), "r2": (-np.inf, 1.0),
    "loss": (0.0, np.inf), "log_loss": (0.0, np.inf), "mse": (0.0, np.inf), "mae": (0.0, np.inf),
}
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
LOG_METRICS = ("loss", "log_loss", "mse", "mae")  # unbounded: drawn on a log axis when they span decades
Z_RANGE = (-10.0, 10.0)
MAX_PANEL_VALUES = 6   # a compared key with more values than this is not used as the panel key
MAX_BOX_ROWS = 24      # the per-seed box figure is left out beyond this many groups in a panel
NBSP = "\u00a0"          # keeps "0.97 ± 0.01" on one line in a table cell
SIGNIFICANCE = 0.05    # "significantly worse than the best" in the answer sentences (Holm-corrected p)
FIGURE_PREFIXES = ("curves_", "final_metrics", "heatmap", "learning_rate", "gradients", "reliability")
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
      "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
      "svg.hashsalt": "lossbench", "figure.dpi": 100}


@dataclass
class FigureFile:
    """One saved figure: its file stem in report/, a heading, a one-sentence caption, PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclass
class Layout:
    """How a report compares the groups of its view (see the module docstring).

    ``view_results``/``view_keys``: the runs and group keys compared (the tuned view when the
    learning rate is swept). ``colour_keys``: the keys that tell the groups of one panel apart
    (colour, line style, marker). ``panel_key``: the key with one panel per value (None: one panel
    per dataset only). ``within``: block keys plus the panel key, the keys within whose values
    groups are ranked and tested.
    """

    view_results: pd.DataFrame
    view_keys: list[str]
    colour_keys: list[str]
    panel_key: str | None
    within: list[str]


# ---------------------------------------------------------------------------------------------
# Entry points


def build_report(sweep_dirs: list[Path], out_dir: Path | None = None,
                 target_fraction: float = 0.95) -> Path:
    """Write results.csv, curves.csv and report/ (index.html, figures) for ``sweep_dirs``.

    ``sweep_dirs``: one or more sweep directories, merged (see ``lossbench.results.load_runs``).
    ``out_dir``: where to write, default the first sweep directory. ``target_fraction``: the
    fraction of the best group's final primary metric that defines "reached the target".
    Returns the path of ``report/index.html``. Raises ``NoRunsError`` (a ValueError) for a
    directory that is missing or holds no runs.
    """
    runs = res.load_runs([Path(d) for d in sweep_dirs], target_fraction=target_fraction)
    out_dir = Path(out_dir) if out_dir is not None else runs.sweep_dirs[0]
    report_dir = out_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    runs.results.to_csv(out_dir / "results.csv", index=False)
    runs.curves.to_csv(out_dir / "curves.csv", index=False)

    tuned = res.tuned_view(runs)
    layout = _layout(runs, tuned)
    panel = [layout.panel_key] if layout.panel_key else []
    if tuned is not None:
        answer_stats = res.tuned_stats(runs, tuned, compare_within=panel)
        shared = res.shared_stats(runs)
        tables = [answer_stats.assign(view="tuned", compared_within=", ".join(layout.within)),
                  shared.assign(view="shared", compared_within=", ".join(runs.block_keys + [LR_KEY]))]
    else:
        answer_stats = res.shared_stats(runs, compare_within=panel)
        tables = [answer_stats.assign(view="shared", compared_within=", ".join(layout.within))]
    pd.concat(tables, ignore_index=True).to_csv(report_dir / "stats.csv", index=False)

    with matplotlib.rc_context(RC):
        figures = _all_figures(runs, tuned, layout, report_dir)
    index = report_dir / "index.html"
    index.write_text(_html(runs, tuned, layout, answer_stats, figures), encoding="utf-8")
    return index


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
    parser.add_argument("--target-fraction", type=float, default=0.95, metavar="F",
                        help="a run reaches the target at F times the best group's final "
                             "accuracy / R² (default 0.95; in (0, 1])")
    args = parser.parse_args(argv)
    if not 0.0 < args.target_fraction <= 1.0:
        parser.error(f"--target-fraction must be in (0, 1], got {args.target_fraction}")
    try:
        index = build_report(args.sweep_dirs, args.out, args.target_fraction)
    except NoRunsError as error:
        parser.error(str(error))
    out_dir = index.parent.parent.resolve()
    print(f"results: {out_dir / 'results.csv'}")
    print(f"curves:  {out_dir / 'curves.csv'}")
    print(f"report:  {index.resolve()}")
    return 0


# ---------------------------------------------------------------------------------------------
# What is plotted


def _layout(runs: Runs, tuned: TunedView | None) -> Layout:
    """The view compared (tuned when lr is swept), its colour keys and its panel key."""
    view_results, view_keys = (tuned.results, tuned.group_keys) if tuned is not None else (
        runs.results, runs.group_keys)
    colour_keys, panel_key = _split_keys(runs, view_keys)
    return Layout(view_results=view_results, view_keys=view_keys, colour_keys=colour_keys,
                  panel_key=panel_key, within=runs.block_keys + ([panel_key] if panel_key else []))


def _split_keys(runs: Runs, keys: list[str]) -> tuple[list[str], str | None]:
    """``(colour keys, panel key)``: with two or more compared keys the last one gets panels."""
    label_keys = _label_keys(keys, runs.block_keys)
    if len(label_keys) >= 2 and len(res.ordered_values(runs.results[label_keys[-1]])) <= MAX_PANEL_VALUES:
        return label_keys[:-1], label_keys[-1]
    return label_keys, None


def _label_keys(keys: list[str], block_keys: list[str]) -> list[str]:
    return [key for key in keys if key not in block_keys]


def _group_label(values: dict, label_keys: list[str]) -> str:
    return res.group_label(values, label_keys) if label_keys else "all runs"


def _facet_title(values: tuple, block_keys: list[str]) -> str:
    return res.group_label(dict(zip(block_keys, values)), block_keys) if block_keys else ""


def _panels(table: pd.DataFrame, block_keys: list[str], panel_key: str | None,
            panel_values: list | None = None) -> list[tuple[str, pd.DataFrame, int]]:
    """``(title, rows, block index)`` per dataset block and panel-key value, in sweep order."""
    panels = []
    for b, (block_values, block) in enumerate(res.iter_groups(table, block_keys)):
        block_title = _facet_title(block_values, block_keys)
        if panel_key is None:
            panels.append((block_title, block, b))
            continue
        for value in panel_values if panel_values is not None else res.ordered_values(block[panel_key]):
            rows = block[res.mask_equal(block[panel_key], value)]
            title = ", ".join(t for t in (block_title, res.group_label({panel_key: value}, [panel_key])) if t)
            panels.append((title, rows, b))
    return panels


def _eval_split(primary: str) -> str:
    return primary.split("_", 1)[0]


def _metric_label(metric: str, unit: bool = True) -> str:
    """``test_log_loss`` -> ``test log loss (nats per sample)`` (without the unit for prose)."""
    split, _, base = metric.removeprefix("final_").partition("_")
    if split not in SPLIT_NAMES:
        return metric
    name, unit_text = METRIC_NAMES.get(base, (base, ""))
    return f"{SPLIT_NAMES[split]} {name}" + (f" ({unit_text})" if unit and unit_text else "")


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _styles(runs: Runs, colour_keys: list[str]) -> dict[str, dict]:
    """A fixed colour, line style, marker and width per group of ``colour_keys``, in every figure.

    Later groups get thinner lines and another dash pattern, so a curve drawn over an identical
    one (CE and KL with the same gradient, say) still shows.
    """
    labels = []
    for values, _ in res.iter_groups(runs.results, colour_keys):
        label = _group_label(dict(zip(colour_keys, values)), colour_keys)
        if label not in labels:
            labels.append(label)
    return {label: {"color": PALETTE[i % len(PALETTE)],
                    "linestyle": LINESTYLES[i % len(LINESTYLES)],
                    "marker": MARKERS[i % len(MARKERS)],
                    "linewidth": max(2.6 - 0.35 * i, 1.3)}
            for i, label in enumerate(labels)}


def _all_figures(runs: Runs, tuned: TunedView | None, layout: Layout, report_dir: Path) -> list[FigureFile]:
    """Draw, save (PNG + SVG) and return every figure that applies to this sweep."""
    view_results, view_keys = layout.view_results, layout.view_keys
    figures: list[tuple[str, str, str, Figure | None]] = []
    tasks = set(runs.results["task"].dropna())
    primaries = runs.results["primary_metric"].dropna()
    split = _eval_split(primaries.iloc[0]) if len(primaries) else "test"
    tuned_note = (" Each group is shown at its own best learning rate (tuned view)."
                  if tuned is not None else "")
    panel_note = (f" One panel per {layout.panel_key} value." if layout.panel_key else "")

    view_curves = runs.curves[runs.curves["run_id"].isin(view_results["run_id"])]
    curve_metrics = ["train_loss"] + [f"{split}_{m}" for task in ("classification", "regression")
                                      if task in tasks for m in CURVE_METRICS[task]]
    for metric in curve_metrics:
        caption = (f"Mean {_metric_label(metric)} over completed seeds with its 95% t-confidence "
                   "band, against epoch" + (" (top row) and training time (bottom row)."
                                            if layout.panel_key else
                                            " (left) and training time (right).")
                   + " Diverged and failed runs are excluded." + panel_note + tuned_note)
        if metric == "train_loss":
            caption += (" Each run's training loss is its own loss function: levels are comparable "
                        "only between losses with the same minimum, shapes always.")
        figures.append((f"curves_{metric}", f"Convergence: {_metric_label(metric)}", caption,
                        _curves_figure(runs, layout, view_curves, metric)))

    final_metrics = [f"{split}_{m}" for task in ("classification", "regression") if task in tasks
                     for m in res.TASK_METRICS[task]]
    if tuned is not None:
        figures.append(("final_metrics_shared_lr", "Final metrics at every learning rate",
                        "Final value per seed (points) over a box of quartiles and median "
                        "(thick black bar: mean), for every group and learning rate; labels say "
                        "how many runs completed.",
                        _final_figure(runs, runs.results, runs.group_keys, final_metrics,
                                      "Final metrics per group and learning rate")))
    figures.append(("final_metrics", "Final metrics per group",
                    "Final value per seed (points) over a box of quartiles and median (thick "
                    "black bar: mean); labels say how many runs completed." + tuned_note,
                    _final_figure(runs, view_results, view_keys, final_metrics,
                                  "Final metrics per group" + (" (each at its best learning rate)"
                                                               if tuned is not None else ""))))

    for name, table, keys, two, panel_keys, view_title, outline in _heatmap_specs(runs, tuned):
        metric_name = _metric_label(table["primary_metric"].dropna().iloc[0], unit=False) \
            if table["primary_metric"].notna().any() else "primary metric"
        figures.append((name, f"Heat map: {two[0]} × {two[1]}{view_title}",
                        f"Mean final {metric_name} over completed seeds (± std) for each {two[0]} "
                        f"and {two[1]}{view_title}; '(k/n)' marks cells where only k of n runs "
                        "completed; grey cells have no completed run (or were not run). The colour scale spans at "
                        "least four typical standard deviations across seeds, so differences "
                        "within seed-to-seed noise do not look large."
                        + (" Outlined: the learning rate chosen on the validation split."
                           if outline is not None else ""),
                        _heatmap_figure(table, keys, two, panel_keys, view_title, outline)))

    if tuned is not None:
        figures.append(("learning_rate", "Sensitivity to the learning rate",
                        "Mean final validation metric (train if there is no val split) with 95% "
                        "CI against the learning rate; the star marks each group's chosen rate."
                        + panel_note, _lr_figure(runs, tuned)))

    if "classification" in tasks:
        figure, skipped = _gradient_figure(runs)
        caption = ("dL/dz against the logit z for one sample with target 1 and target 0, for every "
                   "loss in the sweep (built from each run's .hydra/config.yaml); losses needing "
                   "two outputs are evaluated at logits (0, z), their curve is d/dz of the second.")
        if skipped:
            caption += " Not drawn: " + "; ".join(skipped) + "."
        figures.append(("gradients", "Gradient with respect to the logit", caption, figure))
        calibration = _reliability_figure(runs, layout)
        if calibration is not None:
            figures.append(("reliability", "Reliability diagram",
                            "Observed accuracy against mean confidence per bin, pooled over the "
                            "completed seeds of each group (bins weighted by their counts; ECE of "
                            "the pooled bins in the legend); the diagonal is perfect calibration."
                            + panel_note + tuned_note, calibration))

    for stale in report_dir.iterdir():  # figures of an earlier build that no longer apply
        if stale.suffix in (".png", ".svg") and stale.stem.startswith(FIGURE_PREFIXES):
            stale.unlink()
    saved = []
    for name, title, caption, figure in figures:
        if figure is None:
            continue
        png_path, svg_path = report_dir / f"{name}.png", report_dir / f"{name}.svg"
        figure.savefig(png_path, dpi=110, metadata={"Software": None})
        figure.set_layout_engine("none")  # keep the layout the PNG got: constrained layout is slow
        figure.savefig(svg_path, metadata={"Date": None})
        saved.append(FigureFile(name, title, caption, png_path.read_bytes()))
    return saved


def _heatmap_specs(runs: Runs, tuned: TunedView | None) -> list[tuple]:
    """``(name, table, keys, [row key, column key], panel keys, title note, cells to outline)``.

    Two compared keys (besides dataset): rows × columns, a panel per dataset. One compared key and
    several datasets on the same metric: dataset × key. With the learning rate swept, also
    ``heatmap_lr``: the first other key × learning rate (the shared-rate view), a panel per value
    of a second other key.
    """
    keys, table = (tuned.group_keys, tuned.results) if tuned is not None else (runs.group_keys, runs.results)
    name, note = ("heatmap_tuned", ", each at its best learning rate") if tuned is not None else ("heatmap", "")
    label_keys = _label_keys(keys, runs.block_keys)
    specs = []
    if len(label_keys) == 2:
        specs.append((name, table, keys, label_keys, runs.block_keys, note, None))
    elif len(label_keys) == 1 and runs.block_keys and table["primary_metric"].nunique() == 1:
        specs.append((name, table, keys, [*runs.block_keys, *label_keys], [], note, None))
    if tuned is not None and 1 <= len(label_keys) <= 2:
        specs.append(("heatmap_lr", runs.results, runs.group_keys, [label_keys[0], LR_KEY],
                      runs.block_keys + label_keys[1:], " at every learning rate", tuned.best_lr))
    return specs


# ---------------------------------------------------------------------------------------------
# Figures


def _line_handle(style: dict, marker: bool = False) -> Line2D:
    return Line2D([], [], color=style["color"], linestyle=style["linestyle"],
                  linewidth=style["linewidth"], marker=style["marker"] if marker else None)


def _legend(fig: Figure, styles: dict[str, dict], labels: list[str], marker: bool = False) -> None:
    """One legend for the whole figure, under the panels."""
    if labels:
        per_column = 0.07 * max(len(label) for label in labels) + 0.8  # inches: text at 9 pt + handle
        fits = max(1, min(len(labels), int(fig.get_figwidth() // per_column)))
        ncols = math.ceil(len(labels) / math.ceil(len(labels) / fits))  # rows as full as possible
        fig.legend([_line_handle(styles[label], marker) for label in labels], labels,
                   loc="outside lower center", ncols=ncols, frameon=False, handlelength=3.2)


def _curves_figure(runs: Runs, layout: Layout, view_curves: pd.DataFrame, metric: str) -> Figure | None:
    """Mean ± 95% CI of ``metric`` per group against epoch and training time.

    Without a panel key: a row per dataset, epoch left, time right. With one: a column per panel
    value, and per dataset a row against epoch and a row against training time. Panels of a row
    share the y axis, except training losses of different losses (``loss`` is the panel key),
    whose levels are not comparable. Time is on a log axis when the groups' training times differ
    by more than 1.5 decades (single-sample SGD against full-batch GD, say).
    """
    summary = res.curve_stats(view_curves, metric, layout.view_keys)
    if summary.empty:
        return None
    colour_keys, panel_key = layout.colour_keys, layout.panel_key
    styles = _styles(runs, colour_keys)
    panel_values = res.ordered_values(layout.view_results[panel_key]) if panel_key else None
    panels = _panels(summary, runs.block_keys, panel_key, panel_values)
    n_blocks = 1 + max(b for _, _, b in panels)
    n_rows, n_cols = (2 * n_blocks, len(panel_values)) if panel_key else (n_blocks, 2)
    share = not (metric == "train_loss" and panel_key == "loss")
    fig = Figure(figsize=(min(3.2 * n_cols + 1.2, 13.5) if panel_key else 11, 2.9 * n_rows + 1.3),
                 layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey="row" if share else False)
    low, high = METRIC_RANGE.get(metric.split("_", 1)[1], (-np.inf, np.inf))
    used = []
    blocks = {b: block for b, (_, block) in enumerate(res.iter_groups(summary, runs.block_keys))}
    for p, (title, part, b) in enumerate(panels):
        column = sum(1 for _, _, other in panels[:p] if other == b)  # panel index within its dataset
        y_values = (blocks[b] if share else part)["mean"].to_numpy(float)
        end_times = blocks[b].groupby(colour_keys + ([panel_key] if panel_key else []) or (lambda _: 0),
                                      dropna=False)["time_s"].max().to_numpy(float)
        end_times = end_times[np.isfinite(end_times) & (end_times > 0)]
        log_time = end_times.size > 1 and end_times.max() / end_times.min() > 10 ** 1.5
        x_axes = [("epoch", "epoch"),
                  ("time_s", "training time (s, log scale)" if log_time else "training time (s)")]
        for x_index, (x, x_label) in enumerate(x_axes):
            ax = axes[2 * b + x_index, column] if panel_key else axes[b, x_index]
            for values, group in res.iter_groups(part, colour_keys):
                label = _group_label(dict(zip(colour_keys, values)), colour_keys)
                style = styles[label]
                group = group.sort_values("epoch")
                if x == "time_s" and log_time:
                    group = group[group["time_s"] > 0]
                ax.plot(group[x], group["mean"], color=style["color"], linestyle=style["linestyle"],
                        linewidth=style["linewidth"])
                ax.fill_between(group[x].to_numpy(float),
                                np.clip(group["ci_low"].to_numpy(float), low, high),
                                np.clip(group["ci_high"].to_numpy(float), low, high),
                                color=style["color"], alpha=0.15, linewidth=0)
                if label not in used:
                    used.append(label)
            if x == "time_s" and log_time:
                ax.set_xscale("log")
            elif x == "time_s":
                ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # long decimals would overlap
            if _log_scale(y_values, metric):
                _log_axis(ax, y_values)
            ax.set_xlabel(x_label)
            if (column if panel_key else x_index) == 0 or not share:
                ax.set_ylabel(_metric_label(metric).replace(" (", "\n("))
            if panel_key:
                ax.set_title(title)
            else:
                ax.set_title(f"{title}: " * bool(title) + f"against {x_label.split(' (')[0]}")
    fig.suptitle(f"{_sentence_case(_metric_label(metric, unit=False))} during training "
                 "(mean and 95% CI over seeds)")
    _legend(fig, styles, used)
    return fig


def _log_axis(ax, values: np.ndarray) -> None:
    """Log y spanning ``values`` (the means drawn), plain-number tick labels; under 2 decades also
    minor labels at 2 and 5 only. Bands below the range run off the bottom, not to 1e-300."""
    ax.set_yscale("log", nonpositive="clip")  # a loss of exactly 0 (hinge) runs along the bottom
    values = values[np.isfinite(values) & (values > 0)]
    ax.set_ylim(values.min() / 2, values.max() * 1.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))

    def minor(value, _):
        leading = round(value / 10 ** math.floor(math.log10(value) + 1e-9)) if value > 0 else 0
        return f"{value:g}" if leading in (2, 5) else ""

    few_decades = np.log10(values.max() / values.min()) < 2
    ax.yaxis.set_minor_formatter(FuncFormatter(minor if few_decades else (lambda value, _: "")))


def _log_scale(values: np.ndarray, metric: str) -> bool:
    """Log y for unbounded loss-like metrics whose positive values span more than 1.5 decades."""
    if metric.split("_", 1)[-1] not in LOG_METRICS:
        return False
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and values.max() / values.min() > 10 ** 1.5


def _final_figure(runs: Runs, table: pd.DataFrame, keys: list[str], metrics: list[str],
                  title: str) -> Figure | None:
    """Per group: final value of each seed (points) over a box plot, a panel per metric.

    Groups are coloured by their colour keys (the learning rate and panel key are in the row
    labels). Left out (None) beyond ``MAX_BOX_ROWS`` groups per dataset: unreadable.
    """
    label_keys = _label_keys(keys, runs.block_keys)
    colour_keys = _split_keys(runs, [key for key in keys if key != LR_KEY])[0]
    styles = _styles(runs, colour_keys)
    facets = list(res.iter_groups(table, runs.block_keys))
    facet_groups = [list(res.iter_groups(facet, label_keys)) for _, facet in facets]
    if max((len(groups) for groups in facet_groups), default=0) > MAX_BOX_ROWS:
        return None
    facet_metrics = [[m for m in metrics if f"final_{m}" in facet and facet[f"final_{m}"].notna().any()]
                     for _, facet in facets]
    n_cols = max((len(m) for m in facet_metrics), default=0)
    if n_cols == 0:
        return None
    heights = [0.32 * len(groups) + 1.3 for groups in facet_groups]
    fig = Figure(figsize=(max(10, 2.6 * n_cols + 3), sum(heights) + 0.8), layout="constrained")
    axes = fig.subplots(len(facets), n_cols, squeeze=False, gridspec_kw={"height_ratios": heights})
    for row, ((facet_values, _), groups, metric_names) in enumerate(zip(facets, facet_groups, facet_metrics)):
        positions = np.arange(len(groups))[::-1]
        tick_labels = []
        for col in range(n_cols):
            ax = axes[row, col]
            if col >= len(metric_names):
                ax.set_visible(False)
                continue
            column = f"final_{metric_names[col]}"
            for y, (values, group) in zip(positions, groups):
                named = dict(zip(label_keys, values))
                colour = styles[_group_label(named, colour_keys)]["color"]
                completed = group[group["status"] == "completed"]
                finite = completed[column].to_numpy(dtype=float)
                finite = finite[np.isfinite(finite)]
                if col == 0:
                    tick_labels.append(f"{_group_label(named, label_keys)}  "
                                       f"({len(completed)}/{len(group)} completed)")
                if finite.size >= 3:
                    ax.boxplot(finite, positions=[y], orientation="horizontal", widths=0.55,
                               showfliers=False, patch_artist=True,
                               boxprops={"facecolor": colour, "alpha": 0.22,
                                         "edgecolor": "0.35"},
                               medianprops={"color": "0.2"}, whiskerprops={"color": "0.35"},
                               capprops={"color": "0.35"})
                if finite.size:
                    jitter = np.linspace(-0.16, 0.16, finite.size) if finite.size > 1 else np.zeros(1)
                    ax.scatter(finite, y + jitter, s=30, color=colour, marker="o",
                               edgecolors="black", linewidths=0.4, zorder=3)
                    ax.plot([finite.mean()] * 2, [y - 0.34, y + 0.34], color="black",
                            linewidth=2.2, zorder=4)
            ax.set_yticks(positions, tick_labels if col == 0 else [""] * len(positions))
            ax.set_ylim(-0.7, len(groups) - 0.3)
            ax.set_xlabel(_metric_label(metric_names[col]).replace(" (", "\n("))
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            facet_title = _facet_title(facet_values, runs.block_keys)
            if facet_title:
                ax.set_title(facet_title)
            ax.grid(axis="y", visible=False)
    fig.suptitle(title)
    return fig


def _heatmap_figure(table: pd.DataFrame, keys: list[str], two: list[str], panel_keys: list[str],
                    view_title: str = "", outline: pd.DataFrame | None = None) -> Figure | None:
    """Mean final primary metric (± std) for each combination of two keys, a panel per panel-key value.

    One colour scale for all panels when they share a metric, so colours compare across panels;
    it spans at least 4 × the median std of the cells, so seed noise does not look like an
    effect. ``outline``: rows holding ``two`` and ``panel_keys`` whose cells get a frame (the
    chosen learning rates).
    """
    panels = [(values, panel) for values, panel in res.iter_groups(table, panel_keys)
              if panel["primary_metric"].notna().any()]
    if not panels:
        return None
    row_values, col_values = (res.ordered_values(table[key]) for key in two)
    grids = []
    for panel_values, panel in panels:
        metric = "final_" + panel["primary_metric"].dropna().iloc[0]
        cells = res.group_stats(panel, metric, keys, panel_keys)
        means = np.full((len(row_values), len(col_values)), np.nan)
        texts = np.full(means.shape, "not run", dtype=object)  # e.g. skipped as impossible
        for _, cell in cells.iterrows():
            i, j = res.index_of(row_values, cell[two[0]]), res.index_of(col_values, cell[two[1]])
            means[i, j] = cell["mean"]
            texts[i, j] = "no\ncompleted run"
            if np.isfinite(cell["mean"]):
                texts[i, j] = f"{cell['mean']:.3f}" + (f"\n±{cell['std']:.3f}" if np.isfinite(cell["std"]) else "")
            if cell["n_completed"] < cell["n_runs"]:
                texts[i, j] += f"\n({cell['n_completed']}/{cell['n_runs']})"
        grids.append((panel_values, metric, means, texts))
    metrics = {metric for _, metric, _, _ in grids}
    shared_scale = len(metrics) == 1
    every = np.concatenate([means[np.isfinite(means)] for _, _, means, _ in grids])
    stds = res.group_stats(table, "final_" + table["primary_metric"].dropna().iloc[0], keys, panel_keys)["std"]
    min_span = 4 * float(np.nanmedian(stds)) if np.isfinite(stds.astype(float)).any() else 0.0
    n_panels = len(grids)
    fig = Figure(figsize=(min(n_panels * (2.0 + 1.15 * len(col_values)) + 2.0, 18),
                          1.6 + 0.6 * len(row_values) + 0.9), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    image = None
    for ax, (panel_values, metric, means, texts) in zip(axes, grids):
        finite = every if shared_scale else means[np.isfinite(means)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if high - low < min_span:
            low, high = (low + high - min_span) / 2, (low + high + min_span) / 2
        norm = Normalize(low, high)
        ax.set_facecolor("0.85")
        image = ax.imshow(np.ma.masked_invalid(means), cmap="cividis", norm=norm, aspect="auto")
        for i in range(len(row_values)):
            for j in range(len(col_values)):
                light = np.isfinite(means[i, j]) and norm(means[i, j]) > 0.5
                ax.text(j, i, texts[i, j], ha="center", va="center",
                        fontsize=9 if np.isfinite(means[i, j]) else 8,
                        color="black" if light or not np.isfinite(means[i, j]) else "white")
        if outline is not None:
            chosen = outline
            for key, value in zip(panel_keys, panel_values):
                chosen = chosen[res.mask_equal(chosen[key], value)]
            for _, row in chosen.iterrows():
                i, j = res.index_of(row_values, row[two[0]]), res.index_of(col_values, row[two[1]])
                ax.add_patch(Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False,
                                       edgecolor="#D55E00", linewidth=3, zorder=3))
        ax.set_xticks(range(len(col_values)), [res.format_value(v) for v in col_values],
                      rotation=30 if len(col_values) > 5 else 0)
        ax.set_yticks(range(len(row_values)), [res.format_value(v) for v in row_values])
        ax.set_xlabel(two[1])
        ax.set_ylabel(two[0])
        ax.grid(False)
        ax.set_title(_facet_title(panel_values, panel_keys))
        if not shared_scale:
            fig.colorbar(image, ax=ax, label=f"final {_metric_label(metric.removeprefix('final_'))}",
                         shrink=0.9)
    if shared_scale and image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.9,
                     label=f"final {_metric_label(next(iter(metrics)).removeprefix('final_'))}".replace(" (", "\n("))
    metric_text = _metric_label(next(iter(metrics)).removeprefix("final_"), unit=False) if shared_scale else "metric"
    fig.suptitle(f"Final {metric_text}: {two[0]} × {two[1]}\n({view_title.lstrip(', ')}{'; ' if view_title else ''}"
                 "mean ± std over seeds)")
    return fig


def _lr_figure(runs: Runs, tuned: TunedView) -> Figure | None:
    """Mean final validation metric against the learning rate, a line per group, star at the choice.

    A panel per dataset and panel-key value (see the module docstring).
    """
    colour_keys, panel_key = _split_keys(runs, tuned.group_keys)
    styles = _styles(runs, colour_keys)
    panels = [panel for panel in _panels(runs.results, runs.block_keys, panel_key)
              if not _chosen_in(tuned.best_lr, panel[1], runs.block_keys + [panel_key] * bool(panel_key)).empty]
    if not panels:
        return None
    fig = Figure(figsize=(min(5.6 * len(panels) + 1.0, 18), 5.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    used = []
    for ax, (title, panel, _) in zip(axes, panels):
        chosen = _chosen_in(tuned.best_lr, panel, runs.block_keys + [panel_key] * bool(panel_key))
        selected_on = chosen["selected_on"].iloc[0]
        low, high = METRIC_RANGE.get(selected_on.rsplit("_", 1)[-1], (-np.inf, np.inf))
        by_lr = res.group_stats(panel, selected_on, runs.group_keys, runs.block_keys)
        groups = list(res.iter_groups(by_lr, colour_keys))
        for i, (values, group) in enumerate(groups):
            label = _group_label(dict(zip(colour_keys, values)), colour_keys)
            group = group[np.isfinite(group["mean"].astype(float))].sort_values(LR_KEY)
            if group.empty:
                continue
            style = styles[label]
            # dodge groups sideways (a few % of a decade) so identical results stay visible
            dodge = 10 ** (0.025 * (i - (len(groups) - 1) / 2))
            mean = group["mean"].to_numpy(float)
            lower = mean - np.clip(group["ci_low"].to_numpy(float), low, high)
            upper = np.clip(group["ci_high"].to_numpy(float), low, high) - mean
            ax.errorbar(group[LR_KEY].to_numpy(float) * dodge, mean,
                        yerr=[np.nan_to_num(lower), np.nan_to_num(upper)],
                        color=style["color"], linestyle=style["linestyle"], marker=style["marker"],
                        capsize=3, linewidth=min(style["linewidth"], 1.8), markersize=5)
            best = _rows_matching(chosen, colour_keys, values)
            if not best.empty:
                ax.scatter(best[LR_KEY].to_numpy(float) * dodge, best["mean"].to_numpy(float),
                           marker="*", s=220, color=style["color"], edgecolors="black",
                           linewidths=0.8, zorder=5)
            used.append(label) if label not in used else None
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (optimizer.lr, log scale)")
        ax.set_title(title or "selection metric by learning rate")
    axes[0].set_ylabel(("final " + _metric_label(selected_on.removeprefix("final_"))).replace(" (", "\n("))
    fig.suptitle("Learning-rate sensitivity: mean and 95% CI over seeds, ★ = chosen rate\n"
                 "(groups slightly offset sideways so equal values stay visible)")
    _legend(fig, styles, used, marker=True)
    return fig


def _chosen_in(best_lr: pd.DataFrame, panel: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The chosen-rate rows of ``best_lr`` that belong to ``panel`` (same values of ``keys``)."""
    chosen = best_lr
    for key in keys:
        values = res.ordered_values(panel[key])
        if len(values) == 1:
            chosen = chosen[res.mask_equal(chosen[key], values[0])]
    return chosen


def _loss_nodes(runs: Runs) -> list[tuple[str, dict]]:
    """Distinct ``loss`` config nodes of the classification runs, labelled by their choice name."""
    import yaml

    nodes: list[tuple[str, dict]] = []
    seen = set()
    for run_id in runs.results.loc[runs.results["task"] == "classification", "run_id"]:
        choice, node = runs.loss_nodes.get(run_id, (None, None))
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        identity = yaml.safe_dump(node, sort_keys=True)
        if identity in seen:
            continue
        seen.add(identity)
        name = choice or node["_target_"].rsplit(".", 1)[-1]
        params = ", ".join(f"{k}={res.format_value(v)}" for k, v in node.items() if k != "_target_")
        nodes.append((f"{name}({params})" if params else name, node))
    return nodes


def _gradient_linewidth(i: int) -> float:
    """Later curves thinner and in another line style, so a curve drawn over an equal one shows."""
    return max(3.0 - 0.5 * i, 1.2)


def _gradient_figure(runs: Runs) -> tuple[Figure | None, list[str]]:
    """dL/dz against z for target 1 and 0, every loss of the sweep; returns (figure, skipped notes)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    z = np.linspace(*Z_RANGE, 401)
    curves, skipped = [], []
    for label, node in _loss_nodes(runs):
        try:
            loss = instantiate(OmegaConf.create(node))
        except Exception as error:  # a user's class that does not import: say so, draw the rest
            skipped.append(f"{label} (could not be built: {error})")
            continue
        gradients, two_outputs = {}, False
        try:
            for target in (1, 0):
                labels = np.full(z.size, target, dtype=np.int64)
                try:
                    _, dlogits = loss(z[:, None].copy(), labels)
                    gradients[target] = np.asarray(dlogits, dtype=float)[:, 0]
                except ValueError:  # a softmax loss needs k >= 2: logits (0, z), d/dz of the second
                    outputs = np.column_stack([np.zeros_like(z), z])
                    _, dlogits = loss(outputs, labels)
                    gradients[target] = np.asarray(dlogits, dtype=float)[:, 1]
                    two_outputs = True
        except Exception as error:
            skipped.append(f"{label} ({type(error).__name__}: {error})")
            continue
        label += " [2 outputs (0, z)]" if two_outputs else ""
        same = [other for other, earlier in curves
                if all(np.allclose(gradients[t], earlier[t], rtol=1e-9, atol=1e-12) for t in (1, 0))]
        if same:  # drawn dashed on top of it; say so, or the reader sees one line for two losses
            label += f" (same curve as {same[0].split(' [')[0]})"
        curves.append((label, gradients))
    if not curves:
        return None, skipped
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, target in zip(axes, (1, 0)):
        for i, (label, gradients) in enumerate(curves):
            ax.plot(z, gradients[target], color=PALETTE[i % len(PALETTE)],
                    linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=_gradient_linewidth(i))
        ax.axhline(0, color="0.4", linewidth=0.8)
        ax.axvline(0, color="0.4", linewidth=0.8)
        ax.set_xlabel("logit z")
        ax.set_title(f"target y = {target}" + (" (the wrong side is z < 0)" if target else
                                               " (the wrong side is z > 0)"))
        ax.set_xlim(*Z_RANGE)
        ax.set_xticks(np.linspace(*Z_RANGE, 5))
    axes[0].set_ylabel("dL/dz (per-sample gradient)")
    handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)],
                      linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=_gradient_linewidth(i))
               for i in range(len(curves))]
    fig.legend(handles, [label for label, _ in curves], loc="outside lower center",
               ncols=min(3, len(curves)), frameon=False)
    fig.suptitle("Gradient of each loss with respect to the logit (one sample)")
    return fig, skipped


def _reliability_figure(runs: Runs, layout: Layout) -> Figure | None:
    """Accuracy against confidence per bin, bins pooled over each group's completed seeds.

    A panel per dataset and panel-key value; each panel's legend gives the pooled ECE per group.
    """
    colour_keys = layout.colour_keys
    styles = _styles(runs, colour_keys)
    table = layout.view_results[layout.view_results["task"] == "classification"]
    panels = []
    for title, panel, _ in _panels(table, runs.block_keys, layout.panel_key):
        groups = []
        for values, group in res.iter_groups(panel, colour_keys):
            tables = [pd.read_csv(Path(run_dir) / "calibration.csv")
                      for run_dir in group.loc[group["status"] == "completed", "run_dir"]
                      if (Path(run_dir) / "calibration.csv").is_file()]
            if tables:
                groups.append((_group_label(dict(zip(colour_keys, values)), colour_keys),
                               _pool_bins(pd.concat(tables, ignore_index=True))))
        if groups:
            panels.append((title, groups))
    if not panels:
        return None
    n_cols = min(len(panels), 4)
    n_rows = math.ceil(len(panels) / n_cols)
    n_groups = max(len(groups) for _, groups in panels)
    fig = Figure(figsize=(4.0 * n_cols + 0.4, (4.4 + 0.2 * n_groups) * n_rows + 0.6), layout="constrained")
    # a subfigure per panel, so each panel's legend (its ECE values) sits under it in the layout
    subfigures = np.atleast_1d(fig.subfigures(n_rows, n_cols, squeeze=False)).ravel()
    for subfigure, (title, groups) in zip(subfigures, panels):
        ax = subfigure.subplots()
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1.2)
        handles, labels = [], []
        for label, pooled in groups:
            style = styles[label]
            ax.plot(pooled["confidence"], pooled["accuracy"], color=style["color"],
                    linestyle=style["linestyle"], marker=style["marker"], markersize=4.5,
                    linewidth=min(style["linewidth"], 2.0))
            handles.append(_line_handle(style, marker=True))
            labels.append(f"{label}: ECE {_pooled_ece(pooled):.3f}")
        subfigure.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False,
                         ncols=1 if len(labels) > 2 else len(labels))
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_box_aspect(1)
        ax.set_xlabel("mean confidence in bin\n(predicted probability)")
        ax.set_ylabel("observed accuracy in bin\n(fraction correct)")
        split = groups[0][1]["split"].iloc[0] if "split" in groups[0][1] else ""
        ax.set_title(", ".join(t for t in (title, f"{split} split" if split else "") if t))
    fig.suptitle("Reliability diagram (bins pooled over seeds; dotted diagonal = perfect calibration)")
    return fig


def _pool_bins(table: pd.DataFrame) -> pd.DataFrame:
    """Sum counts per bin; confidence and accuracy as count-weighted means. Empty bins dropped."""
    table = table[table["count"] > 0].copy()
    table["confidence_sum"] = table["confidence"] * table["count"]
    table["accuracy_sum"] = table["accuracy"] * table["count"]
    pooled = table.groupby("bin", sort=True).agg(
        split=("split", "first"), count=("count", "sum"),
        confidence_sum=("confidence_sum", "sum"), accuracy_sum=("accuracy_sum", "sum")).reset_index()
    pooled["confidence"] = pooled["confidence_sum"] / pooled["count"]
    pooled["accuracy"] = pooled["accuracy_sum"] / pooled["count"]
    return pooled[["bin", "split", "count", "confidence", "accuracy"]]


def _pooled_ece(pooled: pd.DataFrame) -> float:
    """``Σ_b (n_b / n) |accuracy_b - confidence_b|`` over the pooled bins."""
    weights = pooled["count"] / pooled["count"].sum()
    return float((weights * (pooled["accuracy"] - pooled["confidence"]).abs()).sum())


# ---------------------------------------------------------------------------------------------
# HTML


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _pm(mean, std, digits: int = 3) -> str:
    """``"0.974 ± 0.003"`` with non-breaking spaces, so a table cell never breaks inside it."""
    return f"{_fmt(mean, digits)}{NBSP}±{NBSP}{_fmt(std, digits)}"


def _fmt_p(value) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="data", na_rep="–")


def _stats_table(stats: pd.DataFrame, runs: Runs, view_results: pd.DataFrame, keys: list[str],
                 table_keys: list[str]) -> str:
    """The final-metric table of one view, one table per value of ``table_keys``, with time to target."""
    if stats.empty:
        return "<p>No completed run has a final value of the primary metric.</p>"
    target = res.group_stats(view_results, "target_epoch", keys, runs.block_keys)
    target_time = res.group_stats(view_results, "target_time_s", keys, runs.block_keys)
    parts = []
    for block_values, block in res.iter_groups(stats, table_keys):
        metric = block["metric"].iloc[0]
        direction = "higher is better" if res.higher_is_better(metric) else "lower is better"
        rows = []
        for _, row in block.iterrows():
            values = tuple(row[k] for k in keys)
            reached = _rows_matching(target, keys, values).iloc[0] if len(target) else None
            seconds = _rows_matching(target_time, keys, values).iloc[0] if len(target_time) else None
            shown_keys = [key for key in keys if key not in table_keys]
            rows.append({
                **({key: res.format_value(row[key]) for key in shown_keys} or {"group": "all runs"}),
                "completed": row["completed"],
                "mean ± std": _pm(row["mean"], row["std"]),
                "95% CI": f"[{_fmt(row['ci_low'])},{NBSP}{_fmt(row['ci_high'])}]",
                "rank": _fmt(row["rank"], 0),
                "test vs best": "best" if row["best"] else (row["test"] or "–"),
                "p": _fmt_p(row["p_value"]),
                "p (Holm)": _fmt_p(row["p_holm"]),
                "epochs to target": _reached_text(reached),
                "time to target (s)": (f"{seconds['mean']:.2g}" if seconds is not None
                                       and np.isfinite(seconds["mean"]) else "–"),
                "not completed": row["messages"] or "",
            })
        title = _facet_title(block_values, table_keys)
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        target_value = _rows_matching(view_results, table_keys, block_values)["target_value"].dropna()
        target_text = (f" Target for 'epochs to target': {_metric_label(metric, unit=False)} "
                       f"{'≥' if res.higher_is_better(metric) else '≤'} {_fmt(target_value.iloc[0])} "
                       f"({runs.target_fraction:g} of the best mean final value of any group"
                       f"{' on this dataset' if runs.block_keys else ''})."
                       if len(target_value) else "")
        table = pd.DataFrame(rows)
        if not table["not completed"].any():
            table = table.drop(columns="not completed")
        parts.append(f"{heading}<p class='note'>Final {html.escape(_metric_label(metric))}"
                     f", {direction}, over completed seeds.{html.escape(target_text)}</p>"
                     + _table(table))
    return "\n".join(parts)


def _reached_text(reached) -> str:
    """"6.5 (2 of 3 reached)" from a group_stats row of target_epoch; "not reached (0 of 3)"."""
    if reached is None or reached["n_completed"] == 0:
        return "–"
    if reached["n"] == 0:
        return f"not reached (0 of {reached['n_completed']})"
    return f"{_fmt(reached['mean'], 1)} ({reached['n']} of {reached['n_completed']} reached)"


def _rows_matching(table: pd.DataFrame, keys: list[str], values: tuple) -> pd.DataFrame:
    """The rows of ``table`` whose ``keys`` equal ``values``."""
    mask = np.ones(len(table), dtype=bool)
    for key, value in zip(keys, values):
        mask &= res.mask_equal(table[key], value)
    return table[mask]


def _question(runs: Runs) -> str:
    if runs.question:
        return runs.question
    primaries = runs.results["primary_metric"].dropna()
    metric = _metric_label(primaries.iloc[0], unit=False) if len(primaries) else "the final metrics"
    if not runs.group_keys:
        return f"How much does {metric} vary across seeds?"
    keys = " and ".join(runs.group_keys)
    return (f"How do the runs differ across {keys} in final {metric}, and how fast does each "
            f"reach {runs.target_fraction:g} of the best group's value?")


def _all_metrics_table(runs: Runs, layout: Layout) -> str:
    """Mean ± std of the final training loss and every loss-independent metric, per group."""
    parts = []
    keys = layout.view_keys
    for block_values, block in res.iter_groups(layout.view_results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        split = _eval_split(primary.iloc[0])
        task = block["task"].dropna().iloc[0]
        metrics = ["final_train_loss"] + [f"final_{split}_{m}" for m in res.TASK_METRICS.get(task, ())]
        rows = {}
        for metric in (m for m in metrics if m in block):
            for _, row in res.group_stats(block, metric, keys, runs.block_keys).iterrows():
                group = rows.setdefault(row["group"], {
                    **{k: res.format_value(row[k]) for k in keys if k not in runs.block_keys},
                    "completed": row["completed"]})
                name = ("training loss (own loss)" if metric == "final_train_loss"
                        else _metric_label(metric.removeprefix("final_")))
                group[name] = _pm(row["mean"], row["std"], 4)
        title = _facet_title(block_values, runs.block_keys)
        parts.append((f"<h4>{html.escape(title)}</h4>" if title else "") + _table(pd.DataFrame(rows.values())))
    return "\n".join(parts)


def _answer_items(stats: pd.DataFrame, runs: Runs, layout: Layout,
                  tuned: TunedView | None) -> list[tuple[str, str]]:
    """``(where, sentences)`` per comparison (dataset × panel value): the best group, then the rest.

    A group is "worse" when its Holm-corrected p against the best is below ``SIGNIFICANCE``, else
    "not significantly different"; groups whose runs did not all complete say so. In the tuned
    view each group names its learning rate. Then the epochs each group took to reach the target.
    """
    if stats.empty:
        return [("", "No completed run has a final value of the primary metric.")]
    shown_keys = [key for key in layout.view_keys if key not in layout.within]
    targets = res.group_stats(layout.view_results, "target_epoch", layout.view_keys, runs.block_keys)
    losses = res.group_stats(layout.view_results, "final_train_loss", layout.view_keys, runs.block_keys)
    items = []
    for values, part in res.iter_groups(stats, layout.within):
        where = res.group_label(dict(zip(layout.within, values)), layout.within) if layout.within else ""
        metric = _metric_label(part["metric"].iloc[0], unit=False)
        name = {}
        short = {index: _group_label(row, shown_keys) for index, row in part.iterrows()}
        for index, row in part.iterrows():
            name[index] = short[index]
            if tuned is not None:
                chosen = _rows_matching(tuned.best_lr, layout.view_keys, tuple(row[k] for k in layout.view_keys))
                if len(chosen):
                    name[index] += f" (lr {res.format_value(chosen[LR_KEY].iloc[0])})"
        best = part[part["best"].astype(bool)]
        if best.empty:
            items.append((where, "no completed run." if where else "No completed run."))
            continue
        top = best.iloc[0]
        digits = _distinct_digits(part["mean"].to_numpy(float))
        ci = (f"95% CI {_fmt(top['ci_low'], digits)} to {_fmt(top['ci_high'], digits)}, "
              if np.isfinite(top["ci_low"]) else "")
        text = (f"{where + ': ' if where else ''}"
                + (f"best {name[best.index[0]]}, " if len(part) > 1 else "")
                + f"{metric} {_fmt(top['mean'], digits)} ({ci}{int(top['n'])} seed{'' if int(top['n']) == 1 else 's'}).")
        others = part.drop(index=best.index[0])
        others = others[np.isfinite(others["mean"].astype(float))]
        tied = others[others["p_holm"] >= SIGNIFICANCE]
        worse = others[others["p_holm"] < SIGNIFICANCE]
        untested = others[~np.isfinite(others["p_holm"].astype(float))]
        if len(tied):
            text += (" Not significantly different (Holm p ≥ 0.05): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)} ({_tie_text(r, top, losses, runs, layout)})"
                                 for i, r in tied.iterrows()) + ".")
        if len(worse):
            text += (" Worse (Holm p < 0.05): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)} (p {_fmt_p(r['p_holm'])})"
                                 for i, r in worse.iterrows()) + ".")
        if len(untested):
            text += (" Not tested (fewer than 2 seeds): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)}" for i, r in untested.iterrows()) + ".")
        incomplete = part[part["n_completed"] < part["n_runs"]]
        if len(incomplete):
            text += " Runs that did not complete: " + "; ".join(
                f"{name[i]} {r['n_runs'] - r['n_completed']} of {r['n_runs']} "
                f"({r['n_diverged']} diverged, {r['n_failed']} failed)" for i, r in incomplete.iterrows()) + "."
        text += _peak_sentence(part, short, layout)
        text += _target_sentence(part, short, targets, layout)
        items.append((where, text.removeprefix(f"{where}: ") if where else text))
    return items


def _distinct_digits(values: np.ndarray) -> int:
    """3 decimals, or 4 when that tells apart values that print the same with 3."""
    values = values[np.isfinite(values)]
    three, four = ({f"{v:.{digits}f}" for v in values} for digits in (3, 4))
    return 4 if len(four) > len(three) else 3


def _tie_text(row: pd.Series, best: pd.Series, losses: pd.DataFrame, runs: Runs, layout: Layout) -> str:
    """"p 0.62", or, for a group whose primary-metric curve equals the best group's at every
    evaluation of every seed, "identical at every epoch", with both groups' final training loss when
    those differ (CE and KL with label smoothing: same gradient, different loss values)."""
    p_text = f"p {_fmt_p(row['p_holm'])}"
    if not row["same_as_best"]:
        return p_text
    metric = row["metric"].removeprefix("final_")
    curves = []
    for group in (row, best):
        members = _rows_matching(layout.view_results, layout.view_keys, tuple(group[k] for k in layout.view_keys))
        ids = members.loc[members["status"] == "completed", "run_id"]
        rows = runs.curves[runs.curves["run_id"].isin(ids)]
        curves.append(rows.set_index([res.REPLICATE_KEY, "epoch"])[metric].sort_index()
                      if metric in rows else pd.Series(dtype=float))
    if curves[0].empty or not curves[0].equals(curves[1]):
        return f"the same final value in every seed, {p_text}"
    text = "identical at every epoch of every seed"
    loss_of = [_rows_matching(losses, layout.view_keys, tuple(r[k] for k in layout.view_keys))["mean"]
               for r in (row, best)]
    if all(len(v) for v in loss_of) and not np.isclose(loss_of[0].iloc[0], loss_of[1].iloc[0]):
        text += (f", yet its final training loss is {_fmt(loss_of[0].iloc[0], 4)} against "
                 f"{_fmt(loss_of[1].iloc[0], 4)}")
    return text


def _peak_sentence(part: pd.DataFrame, name: dict, layout: Layout) -> str:
    """Groups whose final value fell from their best epoch by more than the final's 95% CI half-width.

    Uses the runs' ``best_<metric>`` (best epoch on the same split, so an optimistic number):
    a drop says the model got worse while its training loss kept falling (memorised noise).
    """
    metric = part["metric"].iloc[0].removeprefix("final_")
    if f"best_{metric}" not in layout.view_results or not res.higher_is_better(metric):
        return ""
    fell = []
    for index, row in part.iterrows():
        members = _rows_matching(layout.view_results, layout.view_keys, tuple(row[k] for k in layout.view_keys))
        best = members.loc[members["status"] == "completed", f"best_{metric}"].astype(float)
        best = best[np.isfinite(best)]
        half_width = row["ci_high"] - row["mean"]
        if best.size and np.isfinite(half_width) and best.mean() - row["mean"] > half_width:
            fell.append(f"{name[index]} {_fmt(best.mean())} → {_fmt(row['mean'])}")
    if not fell:
        return ""
    return (f" Fell from its best epoch (mean best-epoch {_metric_label(metric, unit=False)} → final, "
            "a drop beyond the final's 95% CI): " + ", ".join(fell) + ".")


def _target_sentence(part: pd.DataFrame, name: dict, targets: pd.DataFrame, layout: Layout) -> str:
    """" Epochs to the target (test accuracy ≥ 0.93): loss=ce 3.0, loss=l2 79.8 (4 of 5 runs)."."""
    first = part.iloc[0]
    rows = _rows_matching(layout.view_results, layout.view_keys, tuple(first[k] for k in layout.view_keys))
    threshold = rows["target_value"].dropna()
    if threshold.empty:
        return ""
    metric = first["metric"].removeprefix("final_")
    entries = []
    for index, row in part.sort_values("rank", kind="stable").iterrows():
        reached = _rows_matching(targets, layout.view_keys, tuple(row[k] for k in layout.view_keys))
        if reached.empty or reached["n_completed"].iloc[0] == 0:
            continue
        reached = reached.iloc[0]
        if reached["n"] == 0:
            entries.append(f"{name[index]} never")
        else:
            entries.append(f"{name[index]} {_fmt(reached['mean'], 1)}"
                           + (f" ({reached['n']} of {reached['n_completed']} runs)"
                              if reached["n"] < reached["n_completed"] else ""))
    if not entries:
        return ""
    return (f" Epochs to the target ({_metric_label(metric, unit=False)} "
            f"{'≥' if res.higher_is_better(metric) else '≤'} {_fmt(threshold.iloc[0])}): "
            + ", ".join(entries) + ".")


def _lr_table(runs: Runs, tuned: TunedView) -> str:
    """Final primary metric of every group at every learning rate (mean ± std), chosen rate starred."""
    parts = []
    other = tuned.group_keys
    shown = [key for key in other if key not in runs.block_keys]
    for block_values, block in res.iter_groups(runs.results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        metric = "final_" + primary.iloc[0]
        cells = res.group_stats(block, metric, runs.group_keys, runs.block_keys + [LR_KEY])
        rates = res.ordered_values(block[LR_KEY])
        rows = []
        for values, group in res.iter_groups(cells, shown):
            chosen = _rows_matching(_chosen_in(tuned.best_lr, block, runs.block_keys), shown, values)
            chosen_lr = chosen[LR_KEY].iloc[0] if len(chosen) else None
            row = {key: res.format_value(value) for key, value in zip(shown, values)} or {"group": "all runs"}
            for rate in rates:
                cell = group[res.mask_equal(group[LR_KEY], rate)]
                if cell.empty:
                    row[f"lr={res.format_value(rate)}"] = "–"
                    continue
                cell = cell.iloc[0]
                text = _pm(cell["mean"], cell["std"]) if np.isfinite(cell["mean"]) else "no completed run"
                if cell["n_completed"] < cell["n_runs"]:
                    text += f" ({cell['n_completed']} of {cell['n_runs']} completed)"
                if chosen_lr is not None and res.format_value(chosen_lr) == res.format_value(rate):
                    text = "★ " + text
                row[f"lr={res.format_value(rate)}"] = text
            row["chosen lr (on validation)"] = res.format_value(chosen_lr) if chosen_lr is not None else "–"
            rows.append(row)
        title = _facet_title(block_values, runs.block_keys)
        parts.append((f"<h4>{html.escape(title)}</h4>" if title else "")
                     + f"<p class='note'>Final {html.escape(_metric_label(primary.iloc[0]))}, mean ± std "
                       "over completed seeds, every group at every learning rate (the shared-rate "
                       "view). ★ marks the rate chosen for the tuned view (best mean final "
                       "validation value).</p>" + _table(pd.DataFrame(rows)))
    return "\n".join(parts)


def _runs_section(runs: Runs) -> str:
    """Counts by status, skipped combinations, missing and duplicate runs, the keys that vary."""
    counts = runs.status_counts
    status_text = ", ".join(f"{count} {status}" for status, count in counts.items())
    parts = [f"<p>{len(runs.results)} runs: {html.escape(status_text)}.</p>"]
    skipped = res.skipped_combinations(runs)
    if len(skipped):
        parts.append(f"<p>{int(skipped['jobs'].sum())} job(s) not run because the combination cannot "
                     "work (<code>sweep.skip_invalid=true</code>), one row per combination:</p>"
                     + _table(skipped))
    if runs.missing:
        parts.append(f"<p class='warn'>{len(runs.missing)} missing (interrupted, no summary.json): "
                     + html.escape(", ".join(str(p) for p in runs.missing)) + "</p>")
    if runs.duplicates:
        parts.append(f"<p class='note'>{len(runs.duplicates)} duplicate run(s) dropped (same config "
                     "hash): " + html.escape(", ".join(str(p) for p in runs.duplicates)) + "</p>")
    not_completed = runs.results[runs.results["status"] != "completed"]
    parts.append("<h3>Runs that did not complete</h3>" + (
        "<p>Every run completed.</p>" if not_completed.empty else _table(pd.DataFrame(
            [{**{key: res.format_value(row[key]) for key in runs.group_keys},
              res.REPLICATE_KEY: row[res.REPLICATE_KEY], "status": row["status"],
              "stopped at epoch": row["stop_epoch"], "message": row["message"] or "no message",
              "run": row["run_id"]} for _, row in not_completed.iterrows()]))))
    keys_table = _table(pd.DataFrame(
        [{"key": key, "values": ", ".join(res.format_value(v) for v in values), "count": len(values)}
         for key, values in runs.key_values.items()]
        + [{"key": f"{res.REPLICATE_KEY} (replicates)", "values": ", ".join(map(str, runs.seeds)),
            "count": len(runs.seeds)}]))
    parts.append("<h3>Keys that vary</h3><p class='note'>Each combination is a group; seeds are "
                 "replicates.</p>" + keys_table)
    return "\n".join(parts)


def _figure_html(figure: FigureFile) -> str:
    return (f"<figure id='{figure.name}'><h3>{html.escape(figure.title)}</h3>"
            f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,"
            f"{base64.b64encode(figure.png).decode('ascii')}'>"
            f"<figcaption>{html.escape(figure.caption)} "
            f"<span class='files'>Files: {figure.name}.png, {figure.name}.svg</span></figcaption></figure>")


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


def _html(runs: Runs, tuned: TunedView | None, layout: Layout, answer_stats: pd.DataFrame,
          figures: list[FigureFile]) -> str:
    headline, unknown = _headline_names(runs, tuned, figures)
    by_name = {f.name: f for f in figures}
    if tuned is not None:
        view_note = ("Each group at its own best learning rate, chosen on the validation split "
                     "(the tuned view); the same groups at every learning rate are in "
                     "“Learning rate” below.")
    else:
        view_note = ("The learning rate was not swept, so every group trains at the rate its config sets; "
                     "one rate can suit some groups better than others (sweep optimizer.lr for the tuned view).")
    if layout.panel_key:
        view_note += (f" Groups are compared within each value of {layout.panel_key}"
                      + (" and dataset." if runs.block_keys else "."))
    elif runs.block_keys:
        view_note += " Groups are compared within each dataset."
    answer = ("<ul class='answer'>" + "".join(
        f"<li>{f'<b>{html.escape(where)}</b>: ' if where else ''}{html.escape(text)}</li>"
        for where, text in _answer_items(answer_stats, runs, layout, tuned)) + "</ul>")
    warn = "".join(f"<p class='warn'>report.headline names '{html.escape(n)}', which this report "
                   "does not have.</p>" for n in unknown)
    if tuned is not None and tuned.notes:  # e.g. a rate chosen at the edge of the grid
        warn += ("<p class='warn'>Caveats of the tuned view: "
                 + html.escape(" ".join(tuned.notes)) + "</p>")
    table_title = "Final metric per group" + (" (tuned: each at its own best learning rate)"
                                              if tuned is not None else "")
    sections = [
        f"<h2>Question</h2><p class='question'>{html.escape(_question(runs))}</p>",
        f"<h2>Answer</h2><p class='note'>{html.escape(view_note)}</p>{answer}{warn}"
        + "".join(_figure_html(by_name[name]) for name in headline)
        + f"<h3>{html.escape(table_title)}</h3>"
        + _stats_table(answer_stats, runs, layout.view_results, layout.view_keys, layout.within),
        "<h2>Runs</h2>" + _runs_section(runs),
    ]
    if tuned is not None:
        sections.append(
            "<h2>Learning rate</h2><p class='note'>Comparing groups at one shared learning rate is "
            "unfair to those whose good rates differ; the answer above uses each group's own "
            "best rate. The numbers at a shared learning rate:</p>"
            + "".join(f"<p class='warn'>{html.escape(note)}</p>" for note in tuned.notes)
            + _lr_table(runs, tuned))
    all_title = "All final metrics" + (" (tuned: each group at its own best learning rate)"
                                       if tuned is not None else "")
    sections.append(f"<h2>{html.escape(all_title)}</h2><p class='note'>Mean ± std over completed "
                    "seeds. The training loss is each run's own loss function (a CE and a KL run "
                    "differ by the constant entropy of the target, for example).</p>"
                    + _all_metrics_table(runs, layout))
    others = [f for f in figures if f.name not in headline]
    if others:
        sections.append("<h2>" + ("More figures" if headline else "Figures") + "</h2>\n"
                        + "\n".join(_figure_html(f) for f in others))

    methods = (
        "Groups are the combinations of swept keys; seeds are replicates. Only completed runs "
        "enter means, curves and tests; diverged and failed runs are counted and listed. "
        "95% CI: mean ± t(0.975, n−1)·std/√n. Each group is tested against the best group of its "
        "table (two-sided t-test: paired by seed when both groups have exactly the same seeds, "
        "otherwise Welch's), and the p-values are Holm-corrected within each table. "
        f"Target: {runs.target_fraction:g} × the best group's mean final value (for a "
        "lower-is-better metric, best / fraction); epochs to target average the runs that "
        "reached it. Primary metric: accuracy (classification) or R² (regression) on the test "
        "split, else validation, else training."
        + (" When datasets vary, each is compared separately." if runs.block_keys else "")
        + (" The learning rate of the tuned view is chosen on the validation split, never on "
           "the test split." if tuned is not None else ""))
    sections.append(f"<h2>Methods</h2><p class='note'>{html.escape(methods)}</p>")
    name = ", ".join(d.name for d in runs.sweep_dirs)

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>lossbench report: {html.escape(name)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1250px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }}
table.data {{ border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0 1.2em; }}
table.data th, table.data td {{ border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: left;
                                vertical-align: top; }}
table.data th {{ background: #f2f2f2; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.92em; color: #333; }} .files {{ color: #777; }}
.question {{ font-size: 1.1em; }} ul.answer li {{ margin-bottom: 0.4em; }}
.note {{ color: #444; }} .warn {{ color: #8a4b00; }} .meta {{ color: #666; font-size: 0.9em; }}
</style></head><body>
<h1>lossbench report: {html.escape(name)}</h1>
<p class="meta">Sweep directories: {html.escape(", ".join(str(d) for d in runs.sweep_dirs))}<br>
Generated {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}. Data: results.csv, curves.csv,
report/stats.csv.</p>
{"".join(sections)}
</body></html>
"""


if __name__ == "__main__":
    sys.exit(main())
