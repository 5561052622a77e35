"""Figures and a self-contained HTML report for one or more sweep directories.

``build_report(sweep_dirs)`` reads the runs with ``lossbench.results.load_runs`` and writes, into
``out_dir`` (default: the first sweep directory):

- ``results.csv``: one row per run (``Runs.results``); ``curves.csv``: every run's metrics.csv rows,
  long format (``Runs.curves``);
- ``report/index.html``: overview, tables and figures, every figure embedded as a base64 PNG, so the
  file opens offline on its own;
- ``report/<figure>.png`` and ``report/<figure>.svg`` for every figure, and ``report/stats.csv``
  (the per-group statistics shown in the tables, with a ``view`` column).

Figures use matplotlib's ``Figure`` with the Agg canvas directly (no pyplot, no global backend
change); matplotlib is imported here only, never by a training run. Colours are the Okabe-Ito
palette (colour-blind safe), with line styles added after eight groups.

When ``optimizer.lr`` is swept, the convergence curves and the reliability diagram show each group
at its own best learning rate (the tuned view); the tables show both views, labelled.

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
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

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
Z_RANGE = (-10.0, 10.0)
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

    shared = res.shared_stats(runs)
    tuned = res.tuned_view(runs)
    tuned_table = res.tuned_stats(runs, tuned) if tuned is not None else None
    tables = [shared.assign(view="shared")]
    if tuned_table is not None:
        tables.append(tuned_table.assign(view="tuned"))
    pd.concat(tables, ignore_index=True).to_csv(report_dir / "stats.csv", index=False)

    with matplotlib.rc_context(RC):
        figures = _all_figures(runs, tuned, report_dir)
    index = report_dir / "index.html"
    index.write_text(_html(runs, shared, tuned, tuned_table, figures), encoding="utf-8")
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


def _view(runs: Runs, tuned: TunedView | None) -> tuple[pd.DataFrame, list[str]]:
    """The runs and group keys figures compare: each group at its best rate when lr is swept."""
    if tuned is not None:
        return tuned.results, tuned.group_keys
    return runs.results, runs.group_keys


def _label_keys(keys: list[str], block_keys: list[str]) -> list[str]:
    return [key for key in keys if key not in block_keys]


def _group_label(values: dict, label_keys: list[str]) -> str:
    return res.group_label(values, label_keys) if label_keys else "all runs"


def _facet_title(values: tuple, block_keys: list[str]) -> str:
    return res.group_label(dict(zip(block_keys, values)), block_keys) if block_keys else ""


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


def _styles(runs: Runs, keys: list[str]) -> dict[str, dict]:
    """A fixed colour/line style/marker per group label, the same in every figure."""
    labels = []
    for values, _ in res.iter_groups(runs.results, _label_keys(keys, runs.block_keys)):
        label = _group_label(dict(zip(_label_keys(keys, runs.block_keys), values)),
                             _label_keys(keys, runs.block_keys))
        if label not in labels:
            labels.append(label)
    return {label: {"color": PALETTE[i % len(PALETTE)],
                    "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
                    "marker": MARKERS[i % len(MARKERS)]}
            for i, label in enumerate(labels)}


def _all_figures(runs: Runs, tuned: TunedView | None, report_dir: Path) -> list[FigureFile]:
    """Draw, save (PNG + SVG) and return every figure that applies to this sweep."""
    view_results, view_keys = _view(runs, tuned)
    figures: list[tuple[str, str, str, Figure | None]] = []
    tasks = set(runs.results["task"].dropna())
    primaries = runs.results["primary_metric"].dropna()
    split = _eval_split(primaries.iloc[0]) if len(primaries) else "test"
    tuned_note = (" Each group is shown at its own best learning rate (tuned view)."
                  if tuned is not None else "")

    view_curves = runs.curves[runs.curves["run_id"].isin(view_results["run_id"])]
    curve_metrics = ["train_loss"] + [f"{split}_{m}" for task in ("classification", "regression")
                                      if task in tasks for m in CURVE_METRICS[task]]
    for metric in curve_metrics:
        caption = (f"Mean {_metric_label(metric)} over completed seeds with its 95% t-confidence "
                   "band, against epoch (left) and training time (right); diverged and failed "
                   "runs are excluded." + tuned_note)
        if metric == "train_loss":
            caption += (" Each run's training loss is its own loss function, so levels are not "
                        "comparable across losses, only shapes.")
        figures.append((f"curves_{metric}", f"Convergence: {_metric_label(metric)}", caption,
                        _curves_figure(runs, view_curves, metric, view_keys)))

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

    for name, table_results, keys, view_title in (
            [("heatmap", runs.results, runs.group_keys, "")]
            + ([("heatmap_tuned", tuned.results, tuned.group_keys, ", each at its best learning rate")]
               if tuned is not None else [])):
        two, facet_keys = _label_keys(keys, runs.block_keys), runs.block_keys
        if len(two) != 2 and len(keys) == 2 and table_results["primary_metric"].nunique() == 1:
            two, facet_keys = keys, []  # dataset x one other key, on the same metric
        if len(two) == 2:
            figures.append((name, f"Heat map: {two[0]} × {two[1]}{view_title}",
                            f"Mean final primary metric over completed seeds (± std) for each "
                            f"{two[0]} and {two[1]}{view_title}; grey cells have no completed run.",
                            _heatmap_figure(table_results, keys, two, facet_keys)))

    if tuned is not None:
        figures.append(("learning_rate", "Sensitivity to the learning rate",
                        "Mean final validation metric (train if there is no val split) with 95% "
                        "CI against the learning rate; the star marks each group's chosen rate.",
                        _lr_figure(runs, tuned)))

    if "classification" in tasks:
        figure, skipped = _gradient_figure(runs)
        caption = ("dL/dz against the logit z for one sample with target 1 and target 0, for every "
                   "loss in the sweep (built from each run's .hydra/config.yaml); losses needing "
                   "two outputs are evaluated at logits (0, z), their curve is d/dz of the second.")
        if skipped:
            caption += " Not drawn: " + "; ".join(skipped) + "."
        figures.append(("gradients", "Gradient with respect to the logit", caption, figure))
        calibration = _reliability_figure(runs, view_results, view_keys)
        if calibration is not None:
            figures.append(("reliability", "Reliability diagram",
                            "Observed accuracy against mean confidence per bin, pooled over the "
                            "completed seeds of each group (bins weighted by their counts); the "
                            "diagonal is perfect calibration." + tuned_note, calibration))

    for stale in report_dir.iterdir():  # figures of an earlier build that no longer apply
        if stale.suffix in (".png", ".svg") and stale.stem.startswith(FIGURE_PREFIXES):
            stale.unlink()
    saved = []
    for name, title, caption, figure in figures:
        if figure is None:
            continue
        png_path, svg_path = report_dir / f"{name}.png", report_dir / f"{name}.svg"
        figure.savefig(png_path, dpi=110, metadata={"Software": None})
        figure.savefig(svg_path, metadata={"Date": None})
        saved.append(FigureFile(name, title, caption, png_path.read_bytes()))
    return saved


# ---------------------------------------------------------------------------------------------
# Figures


def _legend(fig: Figure, styles: dict[str, dict], labels: list[str]) -> None:
    """One legend for the whole figure, under the panels."""
    handles = [Line2D([], [], color=styles[label]["color"], linestyle=styles[label]["linestyle"],
                      linewidth=2) for label in labels]
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)),
                   frameon=False)


def _curves_figure(runs: Runs, view_curves: pd.DataFrame, metric: str, keys: list[str]) -> Figure | None:
    """Mean ± 95% CI of ``metric`` per group against epoch and training time, a row per dataset."""
    summary = res.curve_stats(view_curves, metric, keys)
    if summary.empty:
        return None
    label_keys = _label_keys(keys, runs.block_keys)
    styles = _styles(runs, keys)
    facets = list(res.iter_groups(summary, runs.block_keys))
    fig = Figure(figsize=(11, 3.4 * len(facets) + 1.2), layout="constrained")
    axes = fig.subplots(len(facets), 2, squeeze=False)
    used = []
    low, high = METRIC_RANGE.get(metric.split("_", 1)[1], (-np.inf, np.inf))
    for row, (facet_values, facet) in enumerate(facets):
        log_y = _log_scale(facet["mean"].to_numpy(dtype=float), metric)
        for col, (x, x_label) in enumerate([("epoch", "epoch"), ("time_s", "training time (s)")]):
            ax = axes[row, col]
            for values, group in res.iter_groups(facet, label_keys):
                label = _group_label(dict(zip(label_keys, values)), label_keys)
                style = styles[label]
                group = group.sort_values("epoch")
                ax.plot(group[x], group["mean"], color=style["color"], linestyle=style["linestyle"],
                        linewidth=1.8)
                ax.fill_between(group[x].to_numpy(float),
                                np.clip(group["ci_low"].to_numpy(float), low, high),
                                np.clip(group["ci_high"].to_numpy(float), low, high),
                                color=style["color"], alpha=0.18, linewidth=0)
                if label not in used:
                    used.append(label)
            if log_y:
                _log_axis(ax, facet["mean"].to_numpy(dtype=float))
            ax.set_xlabel(x_label)
            ax.set_ylabel(_metric_label(metric))
            facet_title = _facet_title(facet_values, runs.block_keys)
            ax.set_title(f"{facet_title}: " * bool(facet_title) + f"against {x_label}")
    fig.suptitle(f"{_sentence_case(_metric_label(metric, unit=False))} during training "
                 "(mean and 95% CI over seeds)")
    _legend(fig, styles, used)
    return fig


def _log_axis(ax, values: np.ndarray) -> None:
    """Log y with plain-number tick labels (minor ones too when the range is under 2 decades)."""
    ax.set_yscale("log")
    values = values[np.isfinite(values) & (values > 0)]
    ax.set_ylim(bottom=values.min() / 2)  # a band reaching 0 runs off the bottom, not to 1e-300
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    if np.log10(values.max() / values.min()) < 2:
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _log_scale(values: np.ndarray, metric: str) -> bool:
    """Log y for loss-like metrics spanning more than 1.5 decades (all positive)."""
    values = values[np.isfinite(values)]
    if res.higher_is_better(metric) or values.size == 0 or values.min() <= 0:
        return False
    return values.max() / values.min() > 10 ** 1.5


def _final_figure(runs: Runs, table: pd.DataFrame, keys: list[str], metrics: list[str],
                  title: str) -> Figure | None:
    """Per group: final value of each seed (points) over a box plot, a panel per metric."""
    label_keys = _label_keys(keys, runs.block_keys)
    # the same colour for a group at every learning rate: the y labels already tell rates apart
    colour_keys = [key for key in keys if key != LR_KEY] if len(label_keys) > 1 else keys
    colour_label_keys = _label_keys(colour_keys, runs.block_keys)
    styles = _styles(runs, colour_keys)
    facets = list(res.iter_groups(table, runs.block_keys))
    facet_groups = [list(res.iter_groups(facet, label_keys)) for _, facet in facets]
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
                label = _group_label(dict(zip(label_keys, values)), label_keys)
                colour = styles[_group_label(dict(zip(label_keys, values)), colour_label_keys)]["color"]
                completed = group[group["status"] == "completed"]
                finite = completed[column].to_numpy(dtype=float)
                finite = finite[np.isfinite(finite)]
                if col == 0:
                    tick_labels.append(f"{label}  ({len(completed)}/{len(group)} completed)")
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


def _heatmap_figure(table: pd.DataFrame, keys: list[str], two: list[str],
                    facet_keys: list[str]) -> Figure | None:
    """Mean final primary metric for each combination of two swept keys, a panel per facet."""
    facets = list(res.iter_groups(table, facet_keys))
    row_values, col_values = (res.ordered_values(table[key]) for key in two)
    fig = Figure(figsize=(min(4 + 1.2 * len(col_values), 16) * len(facets) ** 0.5 + 1,
                          1.2 + 0.6 * len(row_values) + 0.9),
                 layout="constrained")
    axes = fig.subplots(1, len(facets), squeeze=False)[0]
    for ax, (facet_values, facet) in zip(axes, facets):
        primary = facet["primary_metric"].dropna()
        if primary.empty:
            ax.set_visible(False)
            continue
        metric = "final_" + primary.iloc[0]
        table_stats = res.group_stats(facet, metric, keys, facet_keys)
        means = np.full((len(row_values), len(col_values)), np.nan)
        stds = np.full_like(means, np.nan)
        for _, cell in table_stats.iterrows():
            i = res.index_of(row_values, cell[two[0]])
            j = res.index_of(col_values, cell[two[1]])
            means[i, j], stds[i, j] = cell["mean"], cell["std"]
        ax.set_facecolor("0.85")
        image = ax.imshow(np.ma.masked_invalid(means), cmap="cividis", aspect="auto")
        finite = means[np.isfinite(means)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(len(row_values)):
            for j in range(len(col_values)):
                if np.isfinite(means[i, j]):
                    text = f"{means[i, j]:.3f}" + (f"\n±{stds[i, j]:.3f}" if np.isfinite(stds[i, j]) else "")
                    ax.text(j, i, text, ha="center", va="center", fontsize=9,
                            color="black" if means[i, j] > middle else "white")
                else:
                    ax.text(j, i, "no\ncompleted run", ha="center", va="center", fontsize=8, color="0.2")
        ax.set_xticks(range(len(col_values)), [res.format_value(v) for v in col_values],
                      rotation=30 if len(col_values) > 4 else 0)
        ax.set_yticks(range(len(row_values)), [res.format_value(v) for v in row_values])
        ax.set_xlabel(two[1])
        ax.set_ylabel(two[0])
        ax.grid(False)
        ax.set_title(_facet_title(facet_values, facet_keys) or _metric_label(primary.iloc[0]))
        fig.colorbar(image, ax=ax, label=f"final {_metric_label(primary.iloc[0])}", shrink=0.9)
    fig.suptitle(f"Mean final metric: {two[0]} × {two[1]}")
    return fig


def _lr_figure(runs: Runs, tuned: TunedView) -> Figure | None:
    """Mean final validation metric against the learning rate, a line per group, star at the choice."""
    label_keys = _label_keys(tuned.group_keys, runs.block_keys)
    styles = _styles(runs, tuned.group_keys)
    facets = list(res.iter_groups(runs.results, runs.block_keys))
    fig = Figure(figsize=(6.5 * len(facets) + 1.5, 5.2), layout="constrained")
    axes = fig.subplots(1, len(facets), squeeze=False)[0]
    used = []
    for ax, (facet_values, facet) in zip(axes, facets):
        chosen = tuned.best_lr
        for key, value in zip(runs.block_keys, facet_values):
            chosen = chosen[res.mask_equal(chosen[key], value)]
        if chosen.empty:
            ax.set_visible(False)
            continue
        selected_on = chosen["selected_on"].iloc[0]
        low, high = METRIC_RANGE.get(selected_on.rsplit("_", 1)[-1], (-np.inf, np.inf))
        by_lr = res.group_stats(facet, selected_on, runs.group_keys, runs.block_keys)
        groups = list(res.iter_groups(by_lr, label_keys))
        for i, (values, group) in enumerate(groups):
            label = _group_label(dict(zip(label_keys, values)), label_keys)
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
                        capsize=3, linewidth=1.6, markersize=5)
            best = _rows_matching(chosen, label_keys, values)
            if not best.empty:
                ax.scatter(best[LR_KEY].to_numpy(float) * dodge, best["mean"].to_numpy(float),
                           marker="*", s=220, color=style["color"], edgecolors="black",
                           linewidths=0.8, zorder=5)
            used.append(label) if label not in used else None
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (optimizer.lr, log scale)")
        ax.set_ylabel("final " + _metric_label(selected_on.removeprefix("final_")))
        ax.set_title(_facet_title(facet_values, runs.block_keys) or "selection metric by learning rate")
    fig.suptitle("Learning-rate sensitivity (mean, 95% CI over seeds; star = chosen rate; "
                 "groups slightly offset sideways)")
    _legend(fig, styles, used)
    return fig


def _loss_nodes(runs: Runs) -> list[tuple[str, dict]]:
    """Distinct ``loss`` config nodes of the classification runs, labelled by their choice name."""
    import json

    import yaml

    nodes: list[tuple[str, dict]] = []
    seen = set()
    for _, run in runs.results[runs.results["task"] == "classification"].iterrows():
        config_path = Path(run["run_dir"]) / ".hydra" / "config.yaml"
        if not config_path.is_file():
            continue
        node = (yaml.safe_load(config_path.read_text()) or {}).get("loss")
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        identity = yaml.safe_dump(node, sort_keys=True)
        if identity in seen:
            continue
        seen.add(identity)
        choices = json.loads((Path(run["run_dir"]) / "summary.json").read_text()).get("choices") or {}
        name = choices.get("loss") or node["_target_"].rsplit(".", 1)[-1]
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


def _reliability_figure(runs: Runs, table: pd.DataFrame, keys: list[str]) -> Figure | None:
    """Accuracy against confidence per bin, bins pooled over each group's completed seeds."""
    label_keys = _label_keys(keys, runs.block_keys)
    styles = _styles(runs, keys)
    facets = []
    for facet_values, facet in res.iter_groups(table[table["task"] == "classification"], runs.block_keys):
        groups = []
        for values, group in res.iter_groups(facet, label_keys):
            tables = [pd.read_csv(Path(run_dir) / "calibration.csv")
                      for run_dir in group.loc[group["status"] == "completed", "run_dir"]
                      if (Path(run_dir) / "calibration.csv").is_file()]
            if tables:
                groups.append((_group_label(dict(zip(label_keys, values)), label_keys),
                               _pool_bins(pd.concat(tables, ignore_index=True)), len(tables)))
        if groups:
            facets.append((facet_values, groups))
    if not facets:
        return None
    fig = Figure(figsize=(5.6 * len(facets) + 1.0, 6.4), layout="constrained")
    axes = fig.subplots(1, len(facets), squeeze=False)[0]
    used = []
    for ax, (facet_values, groups) in zip(axes, facets):
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1.2)
        for label, pooled, n_runs in groups:
            style = styles[label]
            ax.plot(pooled["confidence"], pooled["accuracy"], color=style["color"],
                    linestyle=style["linestyle"], marker=style["marker"], markersize=5, linewidth=1.6)
            used.append(label) if label not in used else None
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("mean confidence in bin (predicted probability)")
        ax.set_ylabel("observed accuracy in bin (fraction correct)")
        split = groups[0][1]["split"].iloc[0] if "split" in groups[0][1] else ""
        facet_title = _facet_title(facet_values, runs.block_keys)
        ax.set_title(", ".join(t for t in (facet_title, f"{split} split" if split else "") if t))
    labels = used
    ece = {label: _pooled_ece(pooled) for _, groups in facets for label, pooled, _ in groups}
    handles = [Line2D([], [], color=styles[l]["color"], linestyle=styles[l]["linestyle"],
                      marker=styles[l]["marker"]) for l in labels]
    fig.legend(handles, [f"{l} (ECE {ece[l]:.3f})" if len(facets) == 1 else l for l in labels],
               loc="outside lower center", ncols=min(2, len(labels)), frameon=False)
    fig.suptitle("Reliability diagram (bins pooled over seeds)")
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
                "mean ± std": f"{_fmt(row['mean'])} ± {_fmt(row['std'])}",
                "95% CI": f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]",
                "rank": _fmt(row["rank"], 0),
                "test vs best": "best" if row["best"] else (row["test"] or "–"),
                "p": _fmt_p(row["p_value"]),
                "p (Holm)": _fmt_p(row["p_holm"]),
                "epochs to target": _reached_text(reached),
                "time to target (s)": _fmt(seconds["mean"], 2) if seconds is not None else "–",
                "not completed": row["messages"] or "",
            })
        title = _facet_title(block_values, table_keys)
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        target_value = _rows_matching(view_results, table_keys, block_values)["target_value"].dropna()
        target_text = (f" Target for 'epochs to target': {_metric_label(metric, unit=False)} "
                       f"{'≥' if res.higher_is_better(metric) else '≤'} {_fmt(target_value.iloc[0])} "
                       f"({runs.target_fraction:g} of the best group's mean final value)."
                       if len(target_value) else "")
        parts.append(f"{heading}<p class='note'>Final {html.escape(_metric_label(metric))}"
                     f", {direction}, over completed seeds.{html.escape(target_text)}</p>"
                     + _table(pd.DataFrame(rows)))
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


def _all_metrics_table(runs: Runs, view_results: pd.DataFrame, keys: list[str]) -> str:
    """Mean ± std of every final loss-independent metric per group (completed runs)."""
    parts = []
    for block_values, block in res.iter_groups(view_results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        split = _eval_split(primary.iloc[0])
        task = block["task"].dropna().iloc[0]
        metrics = [f"final_{split}_{m}" for m in res.TASK_METRICS.get(task, ())
                   if f"final_{split}_{m}" in block]
        rows = {}
        for metric in metrics:
            for _, row in res.group_stats(block, metric, keys, runs.block_keys).iterrows():
                group = rows.setdefault(row["group"], {
                    **{k: res.format_value(row[k]) for k in keys if k not in runs.block_keys},
                    "completed": row["completed"]})
                group[_metric_label(metric.removeprefix("final_"))] = f"{_fmt(row['mean'])} ± {_fmt(row['std'])}"
        title = _facet_title(block_values, runs.block_keys)
        parts.append((f"<h4>{html.escape(title)}</h4>" if title else "") + _table(pd.DataFrame(rows.values())))
    return "\n".join(parts)


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


def _html(runs: Runs, shared: pd.DataFrame, tuned: TunedView | None, tuned_table: pd.DataFrame | None,
          figures: list[FigureFile]) -> str:
    counts = runs.status_counts
    n_seeds = len(runs.seeds)
    keys_table = _table(pd.DataFrame(
        [{"key": key, "values": ", ".join(res.format_value(v) for v in values), "count": len(values)}
         for key, values in runs.key_values.items()]
        + [{"key": f"{res.REPLICATE_KEY} (replicates)", "values": ", ".join(map(str, runs.seeds)),
            "count": n_seeds}]))
    status_text = ", ".join(f"{count} {status}" for status, count in counts.items())
    extra = []
    if runs.missing:
        extra.append(f"{len(runs.missing)} missing (interrupted, no summary.json): "
                     + ", ".join(str(p) for p in runs.missing))
    if runs.skipped:
        combos: dict[tuple[str, str], int] = {}  # one line per combination, however many seeds
        for job in runs.skipped:
            key = (" ".join(o for o in job["overrides"] if not o.startswith(f"{res.REPLICATE_KEY}=")),
                   job["message"])
            combos[key] = combos.get(key, 0) + 1
        extra.append(f"{len(runs.skipped)} job(s) not run because the combination cannot work "
                     "(sweep.skip_invalid=true): "
                     + "; ".join(f"{combo} ({n} job{'s' if n > 1 else ''}): {message}"
                                 for (combo, message), n in combos.items()))
    if runs.duplicates:
        extra.append(f"{len(runs.duplicates)} duplicate run(s) dropped (same config hash): "
                     + ", ".join(str(p) for p in runs.duplicates))
    not_completed = runs.results[runs.results["status"] != "completed"]
    problems = ("<p>Every run completed.</p>" if not_completed.empty else _table(pd.DataFrame(
        [{"run": row["run_id"], **{key: res.format_value(row[key]) for key in runs.group_keys},
          res.REPLICATE_KEY: row[res.REPLICATE_KEY], "status": row["status"],
          "message": row["message"] or "no message"} for _, row in not_completed.iterrows()])))

    sections = []
    if tuned is not None:
        sections.append(
            "<h2>Final metrics at a shared learning rate</h2>"
            "<p class='note'>Every group compared with the others <em>at the same learning "
            "rate</em> (one table per rate). This is unfair to losses whose good learning rates "
            "differ; see the tuned view below.</p>"
            + _stats_table(shared, runs, runs.results, runs.group_keys, runs.block_keys + [LR_KEY]))
        best_lr = pd.DataFrame([
            {**{key: res.format_value(row[key]) for key in tuned.group_keys},
             "best learning rate": res.format_value(row[LR_KEY]),
             "chosen on (mean over seeds)": f"final {_metric_label(row['selected_on'], unit=False)}",
             "mean": _fmt(row["mean"]), "completed seeds": row["n"]}
            for _, row in tuned.best_lr.iterrows()])
        sections.append(
            "<h2>Tuned: each group at its own best learning rate</h2>"
            "<p class='note'>For every group the learning rate with the best mean final "
            "validation metric was chosen; the comparison below is on the test metric at that "
            "rate. Chosen rates:</p>" + _table(best_lr)
            + "".join(f"<p class='warn'>{html.escape(note)}</p>" for note in tuned.notes)
            + _stats_table(tuned_table, runs, tuned.results, tuned.group_keys, runs.block_keys))
        view_results, view_keys = tuned.results, tuned.group_keys
        all_title = "All final metrics (tuned: each group at its own best learning rate)"
    else:
        sections.append(
            "<h2>Final metrics</h2><p class='note'>Each group at its configured optimizer "
            "settings (the learning rate was not swept, so there is no tuned view).</p>"
            + _stats_table(shared, runs, runs.results, runs.group_keys, runs.block_keys))
        view_results, view_keys = runs.results, runs.group_keys
        all_title = "All final metrics"
    sections.append(f"<h2>{html.escape(all_title)}</h2>"
                    "<p class='note'>Mean ± std over completed seeds.</p>"
                    + _all_metrics_table(runs, view_results, view_keys))

    figure_html = "\n".join(
        f"<figure id='{f.name}'><h3>{html.escape(f.title)}</h3>"
        f"<img alt='{html.escape(f.title)}' src='data:image/png;base64,"
        f"{base64.b64encode(f.png).decode('ascii')}'>"
        f"<figcaption>{html.escape(f.caption)} "
        f"<span class='files'>Files: {f.name}.png, {f.name}.svg</span></figcaption></figure>"
        for f in figures)

    methods = (
        "Groups are the combinations of swept keys; seeds are replicates. Only completed runs "
        "enter means, curves and tests; diverged and failed runs are counted and listed. "
        "95% CI: mean ± t(0.975, n−1)·std/√n. Each group is tested against the best group "
        "(two-sided t-test: paired by seed when both groups have exactly the same seeds, "
        "otherwise Welch's), and the p-values are Holm-corrected within each table. "
        f"Target: {runs.target_fraction:g} × the best group's mean final value (for a "
        "lower-is-better metric, best / fraction); epochs to target average the runs that "
        "reached it. Primary metric: accuracy (classification) or R² (regression) on the test "
        "split, else validation, else training."
        + (" When datasets vary, each is compared separately." if runs.block_keys else ""))

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>lossbench report</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1150px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }}
table.data {{ border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0 1.2em; }}
table.data th, table.data td {{ border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: left;
                                vertical-align: top; }}
table.data th {{ background: #f2f2f2; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.92em; color: #333; }} .files {{ color: #777; }}
.note {{ color: #444; }} .warn {{ color: #8a4b00; }} .meta {{ color: #666; font-size: 0.9em; }}
</style></head><body>
<h1>lossbench report</h1>
<p class="meta">Sweep directories: {html.escape(", ".join(str(d) for d in runs.sweep_dirs))}<br>
Generated {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}. Data: results.csv, curves.csv,
report/stats.csv.</p>
<h2>Question</h2><p>{html.escape(_question(runs))}</p>
<h2>Overview</h2>
<p>{len(runs.results)} runs: {html.escape(status_text)}.
{"<br>".join(html.escape(text) for text in extra)}</p>
<p>Keys that vary (each combination is a group):</p>{keys_table}
<h3>Runs that did not complete</h3>{problems}
{"".join(sections)}
<h2>Figures</h2>
{figure_html}
<h2>Methods</h2><p class="note">{html.escape(methods)}</p>
</body></html>
"""


if __name__ == "__main__":
    sys.exit(main())
