"""Figures about why losses differ: the gradient of each loss, reliability diagrams."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lossbench.report.common import format_value, iter_groups
from lossbench.report.layout import LINESTYLES, PALETTE, Z_RANGE, Layout, _group_label, _line_handle, _panels, _styles
from lossbench.report.tables import Runs

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
        params = ", ".join(f"{k}={format_value(v)}" for k, v in node.items() if k != "_target_")
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
        for values, group in iter_groups(panel, colour_keys):
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


# 
