"""Compare groups of runs across seeds: per-group statistics, curves, the tuned view.

Statistics across seeds (``group_stats``)
    Only completed runs with a finite value enter; diverged and failed runs are counted per group
    and listed with their messages. mean, std (ddof=1), 95% CI ``mean ± t_{0.975, n-1} std/√n``,
    rank (1 = best, ties share the lower rank), and a two-sided t-test of each group against the
    block's best group: paired (``scipy.stats.ttest_rel``) when both groups hold exactly the same
    seeds, else Welch's (``scipy.stats.ttest_ind(equal_var=False)``). Identical values give
    p = 1, a constant non-zero difference p = 0. The p-values of a block are Holm-corrected
    (step-down, family = the groups tested against that best).

Tuned view (``tuned_view``), when ``optimizer.lr`` varies
    For every group of the other keys, the learning rate with the best mean final *validation*
    value of the primary metric (train if the runs have no val split; the view says so); then the
    comparison of the groups each at its own best learning rate.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from lossbench.report.common import (
    LR_KEY, REPLICATE_KEY, _same, format_value, group_label, higher_is_better, iter_groups,
    mask_equal, ordered_values)

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
# Statistics


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, std, ci_low, ci_high)`` of ``values`` (n,): std with ddof=1, CI ``mean ± t std/√n``.

    ``t`` is the ``(1 + confidence) / 2`` quantile of Student's t with ``n - 1`` degrees of
    freedom. std and CI are NaN for n < 2, everything is NaN for n = 0.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half_width = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half_width, mean + half_width


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, same order as given; NaN entries stay NaN and do not count.

    With the m finite p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))``.
    """
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for i, index in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - i) * p[index]))
        adjusted[index] = running
    return adjusted


def compare_to_best(values: np.ndarray, seeds: np.ndarray, best_values: np.ndarray,
                    best_seeds: np.ndarray) -> tuple[str, float]:
    """``(test name, two-sided p)`` of one group's values against the best group's.

    Paired t-test (``scipy.stats.ttest_rel``) when both groups hold the same, distinct seeds;
    else Welch's t-test. Needs n >= 2 per group (else ``("", nan)``). Zero variance: identical
    values give p = 1, a constant non-zero difference p = 0.
    """
    values, best_values = np.asarray(values, float), np.asarray(best_values, float)
    if values.size < 2 or best_values.size < 2:
        return "", math.nan
    paired = (len(set(seeds)) == len(seeds) and len(set(best_seeds)) == len(best_seeds)
              and set(seeds) == set(best_seeds))
    if paired:
        order, best_order = np.argsort(seeds), np.argsort(best_seeds)
        differences = values[order] - best_values[best_order]
        if np.ptp(differences) == 0:
            return "paired t", 1.0 if differences[0] == 0 else 0.0
        return "paired t", float(stats.ttest_rel(values[order], best_values[best_order]).pvalue)
    if np.ptp(values) == 0 and np.ptp(best_values) == 0:
        return "Welch t", 1.0 if values[0] == best_values[0] else 0.0
    return "Welch t", float(stats.ttest_ind(values, best_values, equal_var=False).pvalue)


def group_stats(results: pd.DataFrame, metric: str, group_keys: list[str],
                block_keys: list[str] = (), confidence: float = 0.95,
                replicate_key: str = REPLICATE_KEY) -> pd.DataFrame:
    """One row per group: run counts, mean/std/CI of ``metric`` across seeds, rank, test vs best.

    ``results``: a ``Runs.results``-like table; ``metric`` one of its columns (e.g.
    ``final_test_accuracy``); groups are the distinct combinations of ``group_keys``; ranks and
    tests are within each combination of ``block_keys`` (a subset of ``group_keys``).
    Returned columns: the group keys, ``group`` (label), ``metric``, ``n_runs``, ``n_completed``,
    ``n_diverged``, ``n_failed``, ``completed`` ("k of n"), ``messages`` (non-completed runs),
    ``n`` (values used), ``mean``, ``std``, ``ci_low``, ``ci_high``, ``rank``, ``best``,
    ``test``, ``p_value``, ``p_holm``, ``same_as_best`` (the same seeds as the best group with
    exactly the same value in each: e.g. CE and KL, whose gradients are equal). See the module
    docstring for the choices.
    """
    higher = higher_is_better(metric)
    label_keys = [key for key in group_keys if key not in block_keys]
    rows = []
    for _, block in iter_groups(results, list(block_keys)):
        block_rows, samples = [], []
        for group_values, group in iter_groups(block, list(group_keys)):
            completed = group[group["status"] == "completed"]
            values = completed[metric].to_numpy(dtype=float)
            finite = np.isfinite(values)
            mean, std, ci_low, ci_high = mean_ci(values[finite], confidence)
            samples.append((values[finite], completed[replicate_key].to_numpy()[finite]))
            not_completed = group[group["status"] != "completed"]
            block_rows.append({
                **dict(zip(group_keys, group_values)),
                "group": group_label(dict(zip(group_keys, group_values)), label_keys),
                "metric": metric,
                "n_runs": len(group),
                "n_completed": len(completed),
                "n_diverged": int((group["status"] == "diverged").sum()),
                "n_failed": int((group["status"] == "failed").sum()),
                "completed": f"{len(completed)} of {len(group)}",
                "messages": "; ".join(
                    f"{replicate_key} {row[replicate_key]} {row['status']}: {row['message'] or 'no message'}"
                    for _, row in not_completed.iterrows()),
                "n": int(finite.sum()), "mean": mean, "std": std,
                "ci_low": ci_low, "ci_high": ci_high,
            })
        means = np.array([row["mean"] for row in block_rows], dtype=float)
        ranked = np.isfinite(means)
        ranks = np.full(means.shape, np.nan)
        if ranked.any():
            ranks[ranked] = stats.rankdata(-means[ranked] if higher else means[ranked], method="min")
        best_index = int(np.nanargmin(ranks)) if ranked.any() else None
        p_values = np.full(means.shape, np.nan)
        for i, row in enumerate(block_rows):
            row["rank"], row["best"], row["test"] = ranks[i], i == best_index, ""
            row["same_as_best"] = best_index is not None and _same_per_seed(samples[i], samples[best_index])
            if best_index is not None and i != best_index:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore", RuntimeWarning)
                    row["test"], p_values[i] = compare_to_best(*samples[i], *samples[best_index])
        for row, p_value, p_holm in zip(block_rows, p_values, holm(p_values)):
            row["p_value"], row["p_holm"] = p_value, p_holm
        rows.extend(block_rows)
    return pd.DataFrame(rows)


def _same_per_seed(sample: tuple[np.ndarray, np.ndarray], best: tuple[np.ndarray, np.ndarray]) -> bool:
    """True when two (values, seeds) samples hold the same distinct seeds and equal values per seed."""
    (values, seeds), (best_values, best_seeds) = sample, best
    if values.size == 0 or len(set(seeds)) != len(seeds) or set(seeds) != set(best_seeds):
        return False
    return bool(np.array_equal(values[np.argsort(seeds)], best_values[np.argsort(best_seeds)]))


def curve_stats(curves: pd.DataFrame, metric: str, group_keys: list[str],
                confidence: float = 0.95) -> pd.DataFrame:
    """Mean curve of ``metric`` per group and epoch across the completed runs, with a t-based CI.

    Returns columns: the group keys, ``epoch``, ``n`` (runs with a finite value at that epoch),
    ``mean``, ``std``, ``ci_low``, ``ci_high`` (NaN for n < 2) and ``time_s``, the mean training
    time at that epoch across the same runs (the x axis of "against training time").
    Diverged and failed runs never enter.
    """
    columns = [*group_keys, "epoch", "n", "mean", "std", "ci_low", "ci_high", "time_s"]
    if metric not in curves.columns:
        return pd.DataFrame(columns=columns)
    rows = curves[(curves["status"] == "completed") & np.isfinite(curves[metric].astype(float))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    by = [*group_keys, "epoch"]
    summary = (rows.groupby(by, dropna=False, sort=False)
               .agg(n=(metric, "size"), mean=(metric, "mean"), std=(metric, "std"),
                    time_s=("time_s", "mean"))
               .reset_index())
    n = summary["n"].to_numpy()
    with np.errstate(invalid="ignore"):
        t = np.where(n >= 2, stats.t.ppf((1.0 + confidence) / 2.0, np.maximum(n - 1, 1)), np.nan)
    half_width = t * summary["std"].to_numpy() / np.sqrt(n)
    summary["ci_low"] = summary["mean"] - half_width
    summary["ci_high"] = summary["mean"] + half_width
    summary.loc[n < 2, "std"] = np.nan
    return summary.sort_values("epoch", kind="stable")[columns].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Views


def shared_stats(runs: Runs, confidence: float = 0.95, compare_within: Iterable[str] = ()) -> pd.DataFrame:
    """``group_stats`` of every group on its block's primary metric (final value).

    When the learning rate varies, groups are compared within each learning rate ("at a shared
    learning rate"); see ``tuned_stats`` for the fairer view. ``compare_within``: further group
    keys within whose values groups are ranked and tested (e.g. ``["dataset.label_noise"]``: the
    losses compared at each noise level), on top of the dataset blocks.
    """
    block_keys = runs.block_keys + ([LR_KEY] if runs.lr_varies else [])
    block_keys += [key for key in compare_within if key not in block_keys]
    return _stats_per_primary(runs.results, runs.group_keys, block_keys, runs.block_keys,
                              confidence)


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
        by_lr = group_stats(block, selected_on, runs.group_keys, runs.block_keys, confidence)
        by_lr = by_lr[np.isfinite(by_lr["mean"].astype(float))]
        for group_values, candidates in iter_groups(by_lr, other_keys):
            best = candidates.sort_values(LR_KEY, kind="stable")
            best = best.loc[best["mean"].idxmax() if higher_is_better(selected_on) else best["mean"].idxmin()]
            chosen.append({**dict(zip(other_keys, group_values)), LR_KEY: best[LR_KEY],
                           "selected_on": selected_on, "mean": best["mean"], "n": best["n"]})
            grid = ordered_values(block[LR_KEY])
            if len(grid) > 2 and (_same(best[LR_KEY], grid[0]) or _same(best[LR_KEY], grid[-1])):
                edge = "smallest" if _same(best[LR_KEY], grid[0]) else "largest"
                label = group_label(dict(zip(other_keys, group_values)), other_keys) or "all runs"
                notes.append(f"{label}: the chosen learning rate {format_value(best[LR_KEY])} is the "
                             f"{edge} in the grid; a {edge[:-3]}er one might be better still.")
        for group_values, _ in iter_groups(block, other_keys):
            if not any(all(_same(row[k], v) for k, v in zip(other_keys, group_values)) for row in chosen):
                notes.append(f"{group_label(dict(zip(other_keys, group_values)), other_keys)}: no "
                             "learning rate completed, so it is left out of the tuned view.")
    best_lr = pd.DataFrame(chosen, columns=[*other_keys, LR_KEY, "selected_on", "mean", "n"])
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
    block_keys = runs.block_keys + [key for key in compare_within if key not in runs.block_keys]
    return _stats_per_primary(tuned.results, tuned.group_keys, block_keys, runs.block_keys,
                              confidence)


def _stats_per_primary(results, group_keys, block_keys, primary_keys, confidence) -> pd.DataFrame:
    """group_stats over each set of runs sharing a primary metric, concatenated."""
    tables = []
    for _, part in iter_groups(results, primary_keys):
        primary = part["primary_metric"].dropna()
        if primary.empty:
            continue  # every run failed before its first evaluation: listed in the overview only
        metric = "final_" + primary.iloc[0]
        tables.append(group_stats(part, metric, group_keys, block_keys, confidence))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


# 
