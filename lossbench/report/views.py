"""The views a report compares: every group at the shared settings, and the tuned view.

Statistics across seeds are ``lossbench.report.comparisons.group_stats`` (all pairs, Holm; see
there). This module decides which runs are compared with which.

Tuned view (``tuned_view``), when ``optimizer.lr`` is swept as a grid (``protocol=grid``)
    For every group of the other keys, the learning rate with the best mean final *validation*
    value of the primary metric (train if the runs have no val split; the view says so), among
    the rates at which every seed completed; a rate where some seed diverged or failed is chosen
    only when no rate completed at every seed (and the view says so). Then the comparison of the
    groups each at its own chosen rate. Under ``protocol=tune`` the tuning stage chose the
    settings (``tuned.csv``) and the confirmation runs are compared directly: no tuned view.

Early-stopped view (``early_stats``, shown with ``report.early_stopping: true``)
    The answer's groups, blocks and tests (the tuned view's runs when there is one), on
    ``early_<primary>``: each run read at its first epoch with the best validation value of the
    primary metric (``tables._add_early``). Blocks without a val split have no early view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from lossbench.report.comparisons import group_stats
from lossbench.report.common import (
    LR_KEY, _same, format_value, group_label, higher_is_better, iter_groups, mask_equal,
    ordered_values)

if TYPE_CHECKING:
    from lossbench.report.tables import Runs


@dataclass
class TunedView:
    """The comparison of groups, each at its own best learning rate.

    ``best_lr``: one row per group of ``group_keys`` (the swept keys except ``optimizer.lr``) with
    the chosen ``optimizer.lr``, ``selected_on`` (e.g. ``final_val_accuracy``), its ``mean`` and
    ``n`` (completed seeds). ``results``: the rows of ``Runs.results`` at each group's chosen rate.
    ``notes``: plain sentences for the report (e.g. selection fell back to the train split).
    """

    group_keys: list[str]
    best_lr: pd.DataFrame
    results: pd.DataFrame
    notes: list[str]


# ---------------------------------------------------------------------------------------------
# Views


def shared_stats(runs: Runs, confidence: float = 0.95, compare_within: Iterable[str] = ()) -> pd.DataFrame:
    """``group_stats`` of every group on its block's primary metric (final value).

    When the learning rate varies, groups are compared within each learning rate ("at a shared
    learning rate"); see ``tuned_stats`` for the fairer view. ``compare_within``: further group
    keys within whose values groups are ranked and tested (e.g. ``["dataset.label_noise"]``: the
    losses compared at each noise level), on top of the dataset blocks.
    """
    results, keys, block_keys = _compared(runs, None, compare_within)
    return _stats_per_primary(results, keys, block_keys, runs.block_keys, confidence)


def _compared(runs: Runs, tuned: TunedView | None, compare_within: Iterable[str]):
    """``(results, group keys, block keys)`` of the answer's view: the tuned runs within the blocks and
    ``compare_within``, or every run, also within each learning rate when it varies."""
    if tuned is not None:
        block_keys = runs.block_keys + [key for key in compare_within if key not in runs.block_keys]
        return tuned.results, tuned.group_keys, block_keys
    block_keys = runs.block_keys + ([LR_KEY] if runs.lr_varies else [])
    block_keys += [key for key in compare_within if key not in block_keys]
    return runs.results, runs.group_keys, block_keys


def tuned_view(runs: Runs, confidence: float = 0.95) -> TunedView | None:
    """Each group of the other keys at its own best learning rate (None if the rate is not swept).

    The rate is chosen on the mean final validation value of the block's primary metric over the
    completed seeds (train if there is no val split); ties go to the smaller rate. A choice at
    either end of a grid of three or more rates gets a note (the best may lie beyond it).
    """
    if not runs.lr_varies:
        return None
    other_keys = [key for key in runs.group_keys if key != LR_KEY]
    chosen, notes = [], []
    for block_values, block in iter_groups(runs.results, runs.block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        base = primary.iloc[0].split("_", 1)[1]
        split = "val" if f"final_val_{base}" in block and block[f"final_val_{base}"].notna().any() else "train"
        selected_on = f"final_{split}_{base}"
        if selected_on not in block:
            continue
        if split == "train":
            where = group_label(dict(zip(runs.block_keys, block_values)), runs.block_keys)
            notes.append(f"No validation split{' for ' + where if where else ''}: the learning "
                         f"rate was chosen on the training {base}, which favours overfitting.")
        by_lr = group_stats(block, selected_on, runs.group_keys, runs.block_keys, confidence,
                            compare=False, interval=False)
        by_lr = by_lr[np.isfinite(by_lr["mean"].astype(float))]
        for group_values, candidates in iter_groups(by_lr, other_keys):
            candidates = candidates.sort_values(LR_KEY, kind="stable")
            # a rate where a seed diverged or failed looks good on its survivors only: it may win
            # only when no rate completed at every seed
            clean = candidates[candidates["n_completed"] == candidates["n_runs"]]
            pool = clean if len(clean) else candidates
            best = pool.loc[pool["mean"].idxmax() if higher_is_better(selected_on) else pool["mean"].idxmin()]
            label = group_label(dict(zip(other_keys, group_values)), other_keys) or "all runs"
            if clean.empty:
                notes.append(f"{label}: at every learning rate some seed diverged or failed; the "
                             f"chosen rate {format_value(best[LR_KEY])} completed {best['completed']}.")
            chosen.append({**dict(zip(other_keys, group_values)), LR_KEY: best[LR_KEY],
                           "selected_on": selected_on, "mean": best["mean"], "n": best["n"],
                           "completed": best["completed"]})
            grid = ordered_values(block[LR_KEY])
            if len(grid) > 2 and (_same(best[LR_KEY], grid[0]) or _same(best[LR_KEY], grid[-1])):
                edge = "smallest" if _same(best[LR_KEY], grid[0]) else "largest"
                notes.append(f"{label}: the chosen learning rate {format_value(best[LR_KEY])} is the "
                             f"{edge} in the grid; a {edge[:-3]}er one might be better still.")
        for group_values, _ in iter_groups(block, other_keys):
            if not any(all(_same(row[k], v) for k, v in zip(other_keys, group_values)) for row in chosen):
                notes.append(f"{group_label(dict(zip(other_keys, group_values)), other_keys)}: no "
                             "learning rate completed, so it is left out of the tuned view.")
    best_lr = pd.DataFrame(chosen, columns=[*other_keys, LR_KEY, "selected_on", "mean", "n", "completed"])
    keep = np.zeros(len(runs.results), dtype=bool)
    for _, row in best_lr.iterrows():
        keep |= np.all([mask_equal(runs.results[key], row[key]) for key in [*other_keys, LR_KEY]], axis=0)
    tuned_results = runs.results[keep].copy()
    tuned_results["group"] = [group_label(row, other_keys) for _, row in tuned_results.iterrows()]
    return TunedView(group_keys=other_keys, best_lr=best_lr, results=tuned_results, notes=notes)


def tuned_stats(runs: Runs, tuned: TunedView, confidence: float = 0.95,
                compare_within: Iterable[str] = ()) -> pd.DataFrame:
    """``group_stats`` on the primary metric with every group at its own best learning rate.

    ``compare_within``: as in ``shared_stats`` (keys of ``tuned.group_keys``).
    """
    results, keys, block_keys = _compared(runs, tuned, compare_within)
    return _stats_per_primary(results, keys, block_keys, runs.block_keys, confidence)


def early_stats(runs: Runs, tuned: TunedView | None, confidence: float = 0.95,
                compare_within: Iterable[str] = ()) -> pd.DataFrame:
    """``group_stats`` on ``early_<primary>``: each run read at its best validation epoch.

    The same groups, blocks and tests as the answer's table (``tuned_stats`` when there is a
    tuned view, else ``shared_stats``); only the column differs. Blocks whose runs have no
    validation split (no finite ``early_epoch``) are left out: see ``no_early_view``.
    """
    results, keys, block_keys = _compared(runs, tuned, compare_within)
    if "early_epoch" not in results:
        return pd.DataFrame()
    with_val = pd.Series(np.zeros(len(results), dtype=bool), index=results.index)
    for _, part in iter_groups(results, runs.block_keys):
        with_val[part.index] = bool(np.isfinite(part["early_epoch"].astype(float)).any())
    return _stats_per_primary(results[with_val], keys, block_keys, runs.block_keys, confidence,
                              prefix="early_")


def metric_stats(runs: Runs, tuned: TunedView | None, metric: str, confidence: float = 0.95,
                 compare_within: Iterable[str] = ()) -> pd.DataFrame:
    """``group_stats`` on ``final_<metric>`` (``report.also_compare``, e.g. ``test_ece``).

    The same groups, blocks and tests as the answer's table, on another final metric.
    """
    results, keys, block_keys = _compared(runs, tuned, compare_within)
    column = f"final_{metric}"
    if column not in results or not results[column].notna().any():
        return pd.DataFrame()
    return group_stats(results, column, keys, block_keys, confidence)


def no_early_view(runs: Runs) -> list[str]:
    """The blocks (labels; "" for all runs) whose runs have no validation split to choose on."""
    labels = []
    for values, part in iter_groups(runs.results, runs.block_keys):
        epochs = part["early_epoch"].astype(float) if "early_epoch" in part else pd.Series(dtype=float)
        if part["primary_metric"].notna().any() and not np.isfinite(epochs).any():
            labels.append(group_label(dict(zip(runs.block_keys, values)), runs.block_keys))
    return labels


def _stats_per_primary(results, group_keys, block_keys, primary_keys, confidence,
                       prefix: str = "final_") -> pd.DataFrame:
    """group_stats over each set of runs sharing a primary metric, concatenated."""
    tables = []
    for _, part in iter_groups(results, primary_keys):
        primary = part["primary_metric"].dropna()
        if primary.empty:
            continue  # every run failed before its first evaluation: listed in the overview only
        metric = prefix + primary.iloc[0]
        tables.append(group_stats(part, metric, group_keys, block_keys, confidence))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


# 
