"""Figures about why losses differ: each loss's gradient, reliability, gradients on mistakes.

Everything here is drawn from data the runs wrote (``gradients.csv``, ``calibration.csv``, the
``train_dz_*`` columns of ``metrics.csv``), already read by ``lossbench.report.tables``: no loss
is built and nothing in a run folder is imported or instantiated.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lossbench.report.common import format_value, iter_groups
from lossbench.report.layout import (
    LINESTYLES, PALETTE, Layout, _group_label, _legend, _line_handle, _panels, _styles)
from lossbench.report.tables import Runs

GRADIENT_COLUMNS = ("k", "target", "z", "loss", "dloss_dz")
DIAGNOSTIC_COLUMNS = ("train_dz_norm_correct", "train_dz_norm_wrong", "train_wrong_vanishing_frac")
ECE_NAME = "ECE (15 equal-width bins, top-label)"


def loss_label(config: dict, choice: str | None) -> str:
    """A readable name for a run's loss: ``"ce"``, ``"ce, label_smoothing 0.1"``.

    ``choice``: the ``loss`` group choice (else the class name from ``_target_``, as text only);
    then the loss's settings, in plain ``key value`` form.
    """
    node = config.get("loss") if isinstance(config, dict) else None
    node = node if isinstance(node, dict) else {}
    name = choice or str(node.get("_target_", "loss")).rsplit(".", 1)[-1]
    params = [f"{key} {format_value(value)}" for key, value in node.items()
              if key != "_target_" and not isinstance(value, (dict, list))]
    return ", ".join([str(name), *params])


def _gradient_curves(runs: Runs) -> tuple[list[tuple[str, str, int, pd.DataFrame]], list[str]]:
    """``(task, loss label, k, rows of gradients.csv)`` per distinct loss and k; notes on files left out."""
    curves, seen, notes = [], set(), []
    ids = runs.results.loc[runs.results["status"] != "failed", "run_id"]
    for run_id in ids:
        table = runs.gradients.get(run_id)
        if table is None:
            continue
        missing = [c for c in GRADIENT_COLUMNS if c not in table.columns]
        if missing:
            notes.append(f"{run_id}: gradients.csv has no {', '.join(missing)} column")
            continue
        row = runs.results.loc[runs.results["run_id"] == run_id].iloc[0]
        task = row["task"] if isinstance(row["task"], str) else "classification"
        label = loss_label(runs.configs.get(run_id, {}), runs.choices.get(run_id, {}).get("loss"))
        for k, rows in table.groupby("k", sort=True):
            identity = (task, label, int(k))
            if identity not in seen:
                seen.add(identity)
                curves.append((task, label, int(k), rows.sort_values("z")))
    return curves, notes


def _gradient_figure(runs: Runs) -> tuple[Figure | None, list[str]]:
    """dL/dz against the varied logit z, from each run's ``gradients.csv``; ``(figure, notes)``.

    A row per (task, k): k = 1 (one logit) and the runs' own k >= 2 (the others at 0, so the
    softmax's coupling and the 1/k of losses averaged over outputs show); a column per target
    (1: the varied logit's class is the target; 0: it is not). Regression: one row, target 0.
    A curve equal to an earlier one is drawn dashed over it and named "same as ...".
    """
    curves, notes = _gradient_curves(runs)
    if not curves:
        return None, notes
    rows = sorted({(task, k) for task, _, k, _ in curves}, key=lambda tk: (tk[0] != "classification", tk[1]))
    labels = list(dict.fromkeys(label for _, label, _, _ in curves))
    colours = {label: i for i, label in enumerate(labels)}
    fig = Figure(figsize=(11, 3.4 * len(rows) + 1.4), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False, sharex=True)
    legend_labels: dict[str, str] = {}
    for r, (task, k) in enumerate(rows):
        drawn: list[tuple[str, dict]] = []
        targets = (1, 0) if task == "classification" else (0,)
        for c, target in enumerate((1, 0)):
            ax = axes[r, c]
            if target not in targets:
                ax.set_visible(False)
                continue
            for _, label, curve_k, table in (cv for cv in curves if cv[0] == task and cv[2] == k):
                part = table[table["target"] == target]
                if part.empty:
                    continue
                i = colours[label]
                ax.plot(part["z"], part["dloss_dz"], color=PALETTE[i % len(PALETTE)],
                        linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=max(3.0 - 0.5 * i, 1.2))
                if c == 0 or task != "classification":
                    same = [other for other, values in drawn
                            if len(values["z"]) == len(part) and np.allclose(values["d"], part["dloss_dz"], atol=1e-12)]
                    drawn.append((label, {"z": part["z"].to_numpy(), "d": part["dloss_dz"].to_numpy()}))
                    if same and label not in legend_labels:
                        legend_labels[label] = f"{label} (same curve as {same[0]} at k={k})"
            ax.axhline(0, color="0.4", linewidth=0.8)
            ax.axvline(0, color="0.4", linewidth=0.8)
            if task == "classification":
                side = "z < 0" if target else "z > 0"
                ax.set_title(f"k = {k} output{'s' if k > 1 else ''}, target {target} "
                             f"(the wrong side is {side})")
                ax.set_xlabel("varied logit z (other logits 0)" if k > 1 else "logit z")
            else:
                ax.set_title(f"regression, k = {k}: target y = 0")
                ax.set_xlabel("prediction z")
            ax.set_ylabel("dL/dz (one sample)")
    handles = [Line2D([], [], color=PALETTE[colours[label] % len(PALETTE)],
                      linestyle=LINESTYLES[colours[label] % len(LINESTYLES)],
                      linewidth=max(3.0 - 0.5 * colours[label], 1.2)) for label in labels]
    fig.legend(handles, [legend_labels.get(label, label) for label in labels],
               loc="outside lower center", ncols=min(3, len(labels)), frameon=False)
    fig.suptitle("Gradient of each loss with respect to a logit, for one sample\n"
                 "(from each run's gradients.csv)")
    return fig, notes


# ---------------------------------------------------------------------------------------------
# Reliability


def _reliability_figure(runs: Runs, layout: Layout) -> Figure | None:
    """Accuracy against confidence per bin, bins pooled over each group's completed seeds.

    A panel per dataset and panel-key value, with the number of samples per bin (all seeds)
    underneath; the legend gives each group's ECE as the tables do: the mean over seeds of the
    per-run final ECE (15 equal-width bins, top-label, on the evaluation split). Groups whose loss
    has no probabilistic link (no calibration data, NaN ECE) are named "not applicable".
    """
    colour_keys = layout.colour_keys
    styles = _styles(runs, colour_keys)
    table = layout.view_results[layout.view_results["task"] == "classification"]
    panels = []
    for title, panel, _ in _panels(table, runs.block_keys, layout.panel_key):
        groups, not_applicable = [], []
        for values, group in iter_groups(panel, colour_keys):
            label = _group_label(dict(zip(colour_keys, values)), colour_keys)
            completed = group[group["status"] == "completed"]
            split = str(completed["primary_metric"].dropna().iloc[0]).split("_", 1)[0] \
                if completed["primary_metric"].notna().any() else "test"
            tables = [runs.calibration[run_id] for run_id in completed["run_id"] if run_id in runs.calibration]
            tables = [t[t["split"] == split] if "split" in t.columns else t for t in tables]
            tables = [t for t in tables if len(t) and {"bin", "count", "confidence", "accuracy"} <= set(t.columns)]
            ece_column = f"final_{split}_ece"
            ece = completed[ece_column].astype(float) if ece_column in completed else pd.Series(dtype=float)
            pooled = _pool_bins(pd.concat(tables, ignore_index=True)) if tables else None
            if pooled is None or pooled.empty or not np.isfinite(ece).any():
                not_applicable.append(label)
                continue
            groups.append((label, pooled, float(ece[np.isfinite(ece)].mean()), split))
        if groups or not_applicable:
            panels.append((title, groups, not_applicable))
    if not any(groups for _, groups, _ in panels):
        return None
    n_cols = min(len(panels), 4)
    n_rows = math.ceil(len(panels) / n_cols)
    n_groups = max(len(groups) + len(na) for _, groups, na in panels)
    fig = Figure(figsize=(max(4.2 * n_cols + 0.4, 6.0), (5.6 + 0.2 * n_groups) * n_rows + 0.8),
                 layout="constrained")
    # a subfigure per panel, so each panel's legend (its ECE values) sits under it in the layout
    subfigures = np.atleast_1d(fig.subfigures(n_rows, n_cols, squeeze=False)).ravel()
    for subfigure, (title, groups, not_applicable) in zip(subfigures, panels):
        ax, counts_ax = subfigure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1]})
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1.2)
        handles, labels = [], []
        width = 1.0 / 15 / max(len(groups), 1)
        for g, (label, pooled, ece, split) in enumerate(groups):
            style = styles[label]
            ax.plot(pooled["confidence"], pooled["accuracy"], color=style["color"],
                    linestyle=style["linestyle"], marker=style["marker"], markersize=4.5,
                    linewidth=min(style["linewidth"], 2.0))
            centres = (pooled["lower"] + pooled["upper"]) / 2 if {"lower", "upper"} <= set(pooled.columns) \
                else pooled["confidence"]
            counts_ax.bar(centres - 0.5 / 15 + (g + 0.5) * width, pooled["count"], width=width,
                          color=style["color"], alpha=0.8)
            handles.append(_line_handle(style, marker=True))
            labels.append(f"{label}: ECE {ece:.3f}")
        for label in not_applicable:
            handles.append(Line2D([], [], color="none"))
            labels.append(f"{label}: not applicable (no probabilistic link)")
        subfigure.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False,
                         ncols=1 if len(labels) > 2 else len(labels),
                         title=f"{ECE_NAME}, mean over seeds", title_fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("observed accuracy in bin\n(fraction correct)")
        counts_ax.set_xlabel("mean confidence in bin (top-label probability)")
        counts_ax.set_ylabel("samples\nper bin")
        split = groups[0][3] if groups else ""
        ax.set_title(", ".join(t for t in (title, f"{split} split" if split else "") if t))
    fig.suptitle("Reliability diagram\n(15 bins pooled over seeds; dotted diagonal: perfect calibration)")
    return fig


def _pool_bins(table: pd.DataFrame) -> pd.DataFrame:
    """Sum counts per bin; confidence and accuracy as count-weighted means. Empty bins dropped."""
    table = table[table["count"] > 0].copy()
    table["confidence_sum"] = table["confidence"] * table["count"]
    table["accuracy_sum"] = table["accuracy"] * table["count"]
    extra = {c: (c, "first") for c in ("split", "lower", "upper") if c in table.columns}
    pooled = table.groupby("bin", sort=True).agg(
        count=("count", "sum"), confidence_sum=("confidence_sum", "sum"),
        accuracy_sum=("accuracy_sum", "sum"), **extra).reset_index()
    pooled["confidence"] = pooled["confidence_sum"] / pooled["count"]
    pooled["accuracy"] = pooled["accuracy_sum"] / pooled["count"]
    return pooled[["bin", *extra, "count", "confidence", "accuracy"]]


def _pooled_ece(pooled: pd.DataFrame) -> float:
    """``Σ_b (n_b / n) |accuracy_b - confidence_b|`` over the pooled bins."""
    weights = pooled["count"] / pooled["count"].sum()
    return float((weights * (pooled["accuracy"] - pooled["confidence"]).abs()).sum())


# ---------------------------------------------------------------------------------------------
# Why they differ


def _why_figure(runs: Runs, layout: Layout, view_curves: pd.DataFrame) -> Figure | None:
    """Per arm, against epoch: mean ‖dL/dz‖ on correctly and on wrongly classified training
    samples, and the fraction of mistakes whose gradient has (nearly) vanished.

    Drawn from the ``train_dz_norm_correct``, ``train_dz_norm_wrong`` and
    ``train_wrong_vanishing_frac`` columns of ``metrics.csv`` (means over completed seeds; the
    band spans the lowest to the highest seed). A row per dataset and panel value.
    """
    present = [c for c in DIAGNOSTIC_COLUMNS if c in view_curves.columns and view_curves[c].notna().any()]
    if not present:
        return None
    colour_keys, panel_key = layout.colour_keys, layout.panel_key
    styles = _styles(runs, colour_keys)
    rows = view_curves[view_curves["status"] == "completed"]
    panels = _panels(rows, runs.block_keys, panel_key)
    fig = Figure(figsize=(3.9 * len(present) + 1.0, 3.0 * len(panels) + 1.5), layout="constrained")
    axes = fig.subplots(len(panels), len(present), squeeze=False)
    names = {"train_dz_norm_correct": "mean ‖dL/dz‖, correctly classified",
             "train_dz_norm_wrong": "mean ‖dL/dz‖, wrongly classified",
             "train_wrong_vanishing_frac": "mistakes with ‖dL/dz‖ < 1% of the largest"}
    used = []
    for p, (title, part, _) in enumerate(panels):
        for c, column in enumerate(present):
            ax = axes[p, c]
            for values, group in iter_groups(part, colour_keys):
                label = _group_label(dict(zip(colour_keys, values)), colour_keys)
                by_epoch = group.groupby("epoch")[column].agg(["mean", "min", "max"]).reset_index()
                by_epoch = by_epoch[np.isfinite(by_epoch["mean"])]
                if by_epoch.empty:
                    continue
                style = styles[label]
                ax.plot(by_epoch["epoch"], by_epoch["mean"], color=style["color"],
                        linestyle=style["linestyle"], linewidth=style["linewidth"])
                ax.fill_between(by_epoch["epoch"], by_epoch["min"], by_epoch["max"],
                                color=style["color"], alpha=0.12, linewidth=0)
                used.append(label) if label not in used else None
            if column == "train_wrong_vanishing_frac":
                ax.set_ylim(-0.02, 1.02)
            ax.set_title((f"{title}\n" if title else "") + names[column], fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel("fraction of mistakes" if column == "train_wrong_vanishing_frac"
                          else "per-sample gradient norm")
    fig.suptitle("Why they differ: how hard each loss pushes on the training samples it gets right "
                 "and wrong\n(mean over seeds; band: lowest to highest seed)")
    _legend(fig, styles, used)
    return fig
