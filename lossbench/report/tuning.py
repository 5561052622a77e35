"""Tuning figures: learning-rate sensitivity of a grid sweep, and the sensitivity of a tuned
protocol (``protocol=tune``: the tuning runs' objective against each tuned key, chosen point marked).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lossbench.report.common import (
    LR_KEY, METRIC_RANGE, format_value, iter_groups, mask_equal, ordered_values)
from lossbench.report.layout import (
    _group_label, _label_keys, _legend, _metric_label, _panels, _rows_matching, _split_keys, _styles, plain_log_ticks)
from lossbench.report.tables import Runs
from lossbench.report.comparisons import group_stats
from lossbench.report.views import TunedView


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
        by_lr = group_stats(panel, selected_on, runs.group_keys, runs.block_keys, compare=False)
        groups = list(iter_groups(by_lr, colour_keys))
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
        plain_log_ticks(ax.xaxis)
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
        values = ordered_values(panel[key])
        if len(values) == 1:
            chosen = chosen[mask_equal(chosen[key], values[0])]
    return chosen


def objective_column(runs: Runs) -> str | None:
    """The results column the tuning stage selected on: ``tuned.csv``'s ``objective`` (e.g.
    ``val_accuracy``), else the validation version of the primary metric."""
    table = runs.tune_results
    if runs.tuned is not None and "objective" in runs.tuned.columns and runs.tuned["objective"].notna().any():
        name = "final_" + str(runs.tuned["objective"].dropna().iloc[0]).removeprefix("final_")
        if name in table.columns:
            return name
    primary = runs.results["primary_metric"].dropna()
    if primary.empty:
        return None
    base = primary.iloc[0].split("_", 1)[1]
    for split in ("val", "train"):
        if f"final_{split}_{base}" in table.columns:
            return f"final_{split}_{base}"
    return None


def _sensitivity_figure(runs: Runs) -> Figure | None:
    """The tuning runs' final objective against each tuned key, a line per arm (mean over the
    tuning seeds; ✕ where some seed diverged or failed), the setting ``tuned.csv`` chose starred.

    A row per dataset, a column per tuned key (other tuned keys at any value: with several
    keys searched by Optuna the points are single settings, drawn as markers without lines).
    """
    table = runs.tune_results
    metric = objective_column(runs)
    keys = [key for key in runs.tuned_keys if key in table.columns]
    if table is None or table.empty or metric is None or not keys:
        return None
    arm_keys = _label_keys(runs.group_keys, runs.block_keys)
    styles = _styles(runs, arm_keys)
    blocks = list(iter_groups(table, runs.block_keys))
    fig = Figure(figsize=(min(max(5.4 * len(keys) + 1.0, 8.0), 16), 3.9 * len(blocks) + 1.5), layout="constrained")
    axes = fig.subplots(len(blocks), len(keys), squeeze=False, sharey="row")
    used = []
    for b, (block_values, block) in enumerate(blocks):
        for c, key in enumerate(keys):
            ax = axes[b, c]
            for values, arm in iter_groups(block, arm_keys):
                label = _group_label(dict(zip(arm_keys, values)), arm_keys)
                style = styles.get(label) or next(iter(styles.values()))
                points = []
                for setting, rows in iter_groups(arm, [key]):
                    finite = rows.loc[rows["status"] == "completed", metric].astype(float)
                    finite = finite[np.isfinite(finite)]
                    points.append((setting[0], finite.mean() if len(finite) else np.nan,
                                   bool((rows["status"] != "completed").any())))
                points = [p for p in points if isinstance(p[0], (int, float)) and not isinstance(p[0], bool)]
                if not points:
                    continue
                x = np.array([p[0] for p in points], float)
                y = np.array([p[1] for p in points], float)
                bad = np.array([p[2] for p in points])
                order = np.argsort(x)
                ax.plot(x[order], y[order], color=style["color"], linestyle=style["linestyle"],
                        marker=style["marker"], markersize=5, linewidth=min(style["linewidth"], 1.8))
                if bad.any():
                    ax.scatter(x[bad], np.where(np.isfinite(y[bad]), y[bad], np.nanmin(y) if np.isfinite(y).any() else 0),
                               marker="x", s=70, color="black", zorder=6)
                chosen = _chosen_setting(runs, dict(zip(runs.block_keys, block_values)) | dict(zip(arm_keys, values)), key)
                if chosen is not None:
                    at = np.isclose(x, chosen)
                    if at.any():
                        ax.scatter(x[at], y[at], marker="*", s=240, color=style["color"],
                                   edgecolors="black", linewidths=0.8, zorder=7)
                used.append(label) if label not in used else None
            positive = table[key].astype(float)
            if (positive > 0).all() and positive.max() / positive.min() > 20:
                ax.set_xscale("log")
                plain_log_ticks(ax.xaxis)
            ax.set_xlabel(key + (" (log scale)" if ax.get_xscale() == "log" else ""))
            title = ", ".join(f"{k}={format_value(v)}" for k, v in zip(runs.block_keys, block_values))
            ax.set_title(title or f"objective against {key}")
        axes[b, 0].set_ylabel(("final " + _metric_label(metric.removeprefix("final_"))).replace(" (", "\n("))
    fig.suptitle("Tuning stage: objective against each tuned key (mean over tuning seeds)\n"
                 "★ chosen for the confirmation runs;  ✕ a tuning seed diverged or failed", fontsize=10.5)
    _legend(fig, styles, used, marker=True)
    return fig


def _chosen_setting(runs: Runs, arm: dict, key: str) -> float | None:
    """The value of ``key`` that ``tuned.csv`` chose for ``arm`` (None when not listed)."""
    tuned = runs.tuned
    if tuned is None or key not in tuned.columns:
        return None
    rows = tuned
    for name, value in arm.items():
        if name in rows.columns:
            rows = rows[[_loose_equal(v, value) for v in rows[name]]]
    if rows.empty:
        return None
    try:
        return float(rows[key].iloc[0])
    except (TypeError, ValueError):
        return None


def _loose_equal(a, b) -> bool:
    """tuned.csv values read back from CSV (``"0.1"``, ``1``) against results values (0.1, "1")."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)
