"""The report's figures: convergence curves, final metrics, heat maps, learning-rate sensitivity.

Figures use matplotlib's ``Figure`` with the Agg canvas directly (no pyplot, no global backend
change); matplotlib is imported by the report's figure modules only, never by a training run.
``_all_figures`` draws and saves every figure that applies to a sweep.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from lossbench.report.common import (
    BLOCK_KEY, LR_KEY, METRIC_RANGE, format_value, index_of, iter_groups, mask_equal, ordered_values)
from lossbench.report.layout import (
    LOG_METRICS, MAX_BOX_ROWS, Layout,
    _legend, _facet_title, plain_log_ticks, _group_label, _label_keys, _metric_label, _panels,
    _sentence_case, _split_keys, _styles)
from lossbench.report.tables import Runs
from lossbench.report.comparisons import curve_stats, group_stats
from lossbench.report.views import TunedView

def _heatmap_specs(runs: Runs, tuned: TunedView | None) -> list[tuple]:
    """``(name, table, keys, [row key, column key], panel keys, title note, cells to outline)``.

    Two compared keys (besides dataset): rows × columns, a panel per dataset, each with its own
    colour scale (data sets are not comparable). With the learning rate swept, also
    ``heatmap_lr``: the first other key × learning rate (the shared-rate view), a panel per value
    of a second other key.
    """
    keys, table = (tuned.group_keys, tuned.results) if tuned is not None else (runs.group_keys, runs.results)
    name, note = ("heatmap_tuned", ", each at its best learning rate") if tuned is not None else ("heatmap", "")
    label_keys = _label_keys(keys, runs.block_keys)
    specs = []
    if len(label_keys) == 2:
        specs.append((name, table, keys, label_keys, runs.block_keys, note, None))
    if tuned is not None and 1 <= len(label_keys) <= 2:
        specs.append(("heatmap_lr", runs.results, runs.group_keys, [label_keys[0], LR_KEY],
                      runs.block_keys + label_keys[1:], " at every learning rate", tuned.best_lr))
    return specs


def _curves_figure(runs: Runs, layout: Layout, view_curves: pd.DataFrame, metric: str) -> Figure | None:
    """Mean ± 95% CI of ``metric`` per group against epoch and training time.

    Without a panel key: a row per dataset, epoch left, time right. With one: a column per panel
    value, and per dataset a row against epoch and a row against training time. Panels of a row
    share the y axis, except training losses of different losses (``loss`` is the panel key),
    whose levels are not comparable. Time is on a log axis when the groups' training times differ
    by more than 1.5 decades (single-sample SGD against full-batch GD, say).
    """
    summary = curve_stats(view_curves, metric, layout.view_keys)
    if summary.empty:
        return None
    colour_keys, panel_key = layout.colour_keys, layout.panel_key
    styles = _styles(runs, colour_keys)
    panel_values = ordered_values(layout.view_results[panel_key]) if panel_key else None
    panels = _panels(summary, runs.block_keys, panel_key, panel_values)
    n_blocks = 1 + max(b for _, _, b in panels)
    n_rows, n_cols = (2 * n_blocks, len(panel_values)) if panel_key else (n_blocks, 2)
    share = not (metric == "train_loss" and panel_key == "loss")
    fig = Figure(figsize=(min(3.2 * n_cols + 1.2, 13.5) if panel_key else 11, 2.9 * n_rows + 1.3),
                 layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey="row" if share else False)
    low, high = METRIC_RANGE.get(metric.split("_", 1)[1], (-np.inf, np.inf))
    used = []
    blocks = {b: block for b, (_, block) in enumerate(iter_groups(summary, runs.block_keys))}
    for p, (title, part, b) in enumerate(panels):
        column = sum(1 for _, _, other in panels[:p] if other == b)  # panel index within its dataset
        y_values = (blocks[b] if share else part)["mean"].to_numpy(float)
        end_times = blocks[b].groupby(colour_keys + ([panel_key] if panel_key else []) or (lambda _: 0),
                                      dropna=False)["time_s"].max().to_numpy(float)
        end_times = end_times[np.isfinite(end_times) & (end_times > 0)]
        log_time = end_times.size > 1 and end_times.max() / end_times.min() > 10 ** 1.5
        log_epoch = _early_rise(summary)
        x_axes = [("epoch", "epoch (log scale)" if log_epoch else "epoch"),
                  ("time_s", "training time (s, wall-clock, log scale)" if log_time
                   else "training time (s, wall-clock)")]
        for x_index, (x, x_label) in enumerate(x_axes):
            ax = axes[2 * b + x_index, column] if panel_key else axes[b, x_index]
            for values, group in iter_groups(part, colour_keys):
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
                plain_log_ticks(ax.xaxis)
            elif x == "epoch" and log_epoch:
                ax.set_xscale("symlog", linthresh=1.0)  # epoch 0 (before training) stays on the axis
                plain_log_ticks(ax.xaxis)
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


EARLY_FRACTION = 0.05  # "the first few percent of the epochs"
EARLY_CHANGE = 0.8     # ... hold this much of a curve's total change


def _early_rise(summary: pd.DataFrame) -> bool:
    """True when the mean curves (median over groups) make 80% of their change from the first to
    the last epoch within the first 5% of at least 20 epochs: a linear axis would hide it."""
    last = summary["epoch"].max() if len(summary) else 0
    if not last or last < 20:
        return False
    keys = [c for c in summary.columns if c not in ("epoch", "n", "mean", "std", "ci_low", "ci_high", "time_s")]
    shares = []
    for _, group in (summary.groupby(keys, dropna=False, sort=False) if keys else [(None, summary)]):
        group = group.sort_values("epoch")
        mean = group["mean"].to_numpy(float)
        total = mean[-1] - mean[0]
        if not np.isfinite(total) or total == 0:
            continue
        early = group["epoch"].to_numpy(float) <= EARLY_FRACTION * last
        shares.append(np.max(np.abs(mean[early] - mean[0])) / abs(total) if early.any() else 0.0)
    return bool(shares) and float(np.median(shares)) >= EARLY_CHANGE


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
    facets = list(iter_groups(table, runs.block_keys))
    facet_groups = [list(iter_groups(facet, label_keys)) for _, facet in facets]
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
    panels = [(values, panel) for values, panel in iter_groups(table, panel_keys)
              if panel["primary_metric"].notna().any()]
    if not panels:
        return None
    row_values, col_values = (ordered_values(table[key]) for key in two)
    grids = []
    for panel_values, panel in panels:
        metric = "final_" + panel["primary_metric"].dropna().iloc[0]
        cells = group_stats(panel, metric, keys, panel_keys, compare=False, interval=False)
        means = np.full((len(row_values), len(col_values)), np.nan)
        texts = np.full(means.shape, "not run", dtype=object)  # e.g. skipped as impossible
        for _, cell in cells.iterrows():
            i, j = index_of(row_values, cell[two[0]]), index_of(col_values, cell[two[1]])
            means[i, j] = cell["mean"]
            texts[i, j] = "no\ncompleted run"
            if np.isfinite(cell["mean"]):
                texts[i, j] = f"{cell['mean']:.3f}" + (f"\n±{cell['std']:.3f}" if np.isfinite(cell["std"]) else "")
            if cell["n_completed"] < cell["n_runs"]:
                texts[i, j] += f"\n({cell['n_completed']}/{cell['n_runs']})"
        grids.append((panel_values, metric, means, texts))
    metrics = {metric for _, metric, _, _ in grids}
    # one colour scale only for one metric and never across data sets (not comparable)
    shared_scale = len(metrics) == 1 and BLOCK_KEY not in panel_keys
    every = np.concatenate([means[np.isfinite(means)] for _, _, means, _ in grids])
    stds = group_stats(table, "final_" + table["primary_metric"].dropna().iloc[0], keys, panel_keys,
                       compare=False, interval=False)["std"]
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
        range_low, range_high = METRIC_RANGE.get(metric.removeprefix("final_").split("_", 1)[-1], (-np.inf, np.inf))
        if high > range_high:  # the widened scale stays inside the metric's range (accuracy <= 1)
            low, high = max(low - (high - range_high), range_low), range_high
        if low < range_low:
            low, high = range_low, min(high + (range_low - low), range_high)
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
                chosen = chosen[mask_equal(chosen[key], value)]
            for _, row in chosen.iterrows():
                i, j = index_of(row_values, row[two[0]]), index_of(col_values, row[two[1]])
                ax.add_patch(Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False,
                                       edgecolor="#D55E00", linewidth=3, zorder=3))
        ax.set_xticks(range(len(col_values)), [format_value(v) for v in col_values],
                      rotation=30 if len(col_values) > 5 else 0)
        ax.set_yticks(range(len(row_values)), [format_value(v) for v in row_values])
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
