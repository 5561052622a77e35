"""How a report lays out its groups: the view compared, colour and panel keys, styles,
metric labels and number formats (shared by figures, answers and the page).

Colours are the Okabe-Ito palette (colour-blind safe), each group also with its own line style,
so overlapping curves stay visible and the figures read in grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from lossbench.report.common import group_label, iter_groups, mask_equal, ordered_values
from lossbench.report.tables import Runs
from lossbench.report.views import TunedView

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
    "ece": ("ECE (15 bins, top-label)", ""),
    "mse": ("mean squared error", "standardised target units²"),
    "mae": ("mean absolute error", "standardised target units"),
    "r2": ("R²", "fraction of variance explained"),
}
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
LOG_METRICS = ("loss", "log_loss", "mse", "mae")  # unbounded: drawn on a log axis when they span decades
Z_RANGE = (-10.0, 10.0)
MAX_PANEL_VALUES = 6   # a compared key with more values than this is not used as the panel key
MAX_BOX_ROWS = 24      # the per-seed box figure is left out beyond this many groups in a panel
NBSP = "\u00a0"          # keeps "0.97 ± 0.01" on one line in a table cell
SIGNIFICANCE = 0.05    # "significantly worse than the best" in the answer sentences (Holm-corrected p)
FIGURE_PREFIXES = ("curves_", "final_metrics", "heatmap", "learning_rate", "gradients", "reliability",
                   "why_they_differ", "sensitivity")
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
      "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
      "svg.hashsalt": "lossbench", "figure.dpi": 100,
      # labels are plain text: a "$" in a swept value must not start mathtext (issue 11)
      "text.usetex": False, "text.parse_math": False}


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
    if len(label_keys) >= 2 and len(ordered_values(runs.results[label_keys[-1]])) <= MAX_PANEL_VALUES:
        return label_keys[:-1], label_keys[-1]
    return label_keys, None


def _label_keys(keys: list[str], block_keys: list[str]) -> list[str]:
    return [key for key in keys if key not in block_keys]


def _group_label(values: dict, label_keys: list[str]) -> str:
    return group_label(values, label_keys) if label_keys else "all runs"


def _facet_title(values: tuple, block_keys: list[str]) -> str:
    return group_label(dict(zip(block_keys, values)), block_keys) if block_keys else ""


def _panels(table: pd.DataFrame, block_keys: list[str], panel_key: str | None,
            panel_values: list | None = None) -> list[tuple[str, pd.DataFrame, int]]:
    """``(title, rows, block index)`` per dataset block and panel-key value, in sweep order."""
    panels = []
    for b, (block_values, block) in enumerate(iter_groups(table, block_keys)):
        block_title = _facet_title(block_values, block_keys)
        if panel_key is None:
            panels.append((block_title, block, b))
            continue
        for value in panel_values if panel_values is not None else ordered_values(block[panel_key]):
            rows = block[mask_equal(block[panel_key], value)]
            title = ", ".join(t for t in (block_title, group_label({panel_key: value}, [panel_key])) if t)
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
    for values, _ in iter_groups(runs.results, colour_keys):
        label = _group_label(dict(zip(colour_keys, values)), colour_keys)
        if label not in labels:
            labels.append(label)
    return {label: {"color": PALETTE[i % len(PALETTE)],
                    "linestyle": LINESTYLES[i % len(LINESTYLES)],
                    "marker": MARKERS[i % len(MARKERS)],
                    "linewidth": max(2.6 - 0.35 * i, 1.3)}
            for i, label in enumerate(labels)}


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


def _rows_matching(table: pd.DataFrame, keys: list[str], values: tuple) -> pd.DataFrame:
    """The rows of ``table`` whose ``keys`` equal ``values``."""
    mask = np.ones(len(table), dtype=bool)
    for key, value in zip(keys, values):
        mask &= mask_equal(table[key], value)
    return table[mask]


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


def plain_log_ticks(axis) -> None:
    """Plain-number tick labels (0.01, 0.1, 1) on a log axis: with ``text.parse_math`` off (labels
    are plain text), matplotlib's default ``$10^{-2}$`` labels would print as that source."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())
