"""Groups of runs compared across seeds, with the statistics of ``lossbench.report.stats``.

Nothing here computes a test or an interval itself: it pairs runs by seed, calls the pure
functions of ``stats`` and lays their results out as tables.

Per group (``group_stats``)
    Only completed runs with a finite value enter; diverged and failed runs are counted per group
    and listed with their messages. ``mean``, ``std`` (ddof=1) and a 95% interval for the mean that
    stays inside the metric's range (``stats.bounded_mean_ci``: expanded percentile bootstrap;
    accuracy in [0, 1], R² at most 1, losses at least 0), named in ``ci_method``.

Comparisons (all pairs, Holm)
    Within each block (dataset, panel value), every pair of groups is compared on the seeds both
    completed: ``stats.paired_difference`` (the mean paired difference with its interval, and the
    sign-flip test: exact for up to 14 seeds, with its smallest attainable p), and the p-values of
    all pairs of the block are Holm-adjusted together (``stats.holm``), so the chance of calling
    any two truly equal groups different stays at most 5%. The best group has the best mean; every
    other group is "worse" when its pair with the best is rejected (Holm p <= 0.05), "tied" when
    it equals the best at every seed, else "not distinguishable with n seeds" (which is not the
    same as equal). With fewer seeds than ``stats.seeds_needed(k)`` no pair of k groups can be told
    apart at all (``can_reject`` False).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.report import stats
from lossbench.report.common import (
    METRIC_RANGE, REPLICATE_KEY, group_label, higher_is_better, iter_groups)

ALPHA = 0.05  # family-wise error rate of the comparisons within one block
BAND_METHOD = "t interval on the logit or log scale"  # curves: cheap per epoch, inside the range
BAND_STATS_METHOD = "logit-t"


def metric_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` (any ``final_``/split prefix) can take: (low, high), ±inf when open."""
    base = metric.removeprefix("final_").removeprefix("best_").removeprefix("early_")
    for split in ("train_", "val_", "test_"):
        base = base.removeprefix(split)
    return METRIC_RANGE.get(base, (-math.inf, math.inf))


def mean_interval(values: np.ndarray, metric: str, confidence: float = 0.95,
                  method: str = "bootstrap") -> stats.MeanInterval:
    """``stats.bounded_mean_ci`` in ``metric``'s range (the open range if a value falls outside it)."""
    low, high = metric_range(metric)
    values = np.asarray(values, dtype=float)
    if values.size and (values.min() < low or values.max() > high):
        low, high = -math.inf, math.inf  # e.g. a user's loss that goes negative
    return stats.bounded_mean_ci(values, low, high, confidence=confidence, method=method)


def _group_rows(block: pd.DataFrame, metric: str, group_keys: list[str], label_keys: list[str],
                confidence: float, interval: bool) -> tuple[list[dict], list[dict]]:
    """One summary row per group of ``block``, and per group its ``{seed: value}`` of completed runs."""
    rows, samples = [], []
    for group_values, group in iter_groups(block, list(group_keys)):
        completed = group[group["status"] == "completed"]
        values = completed[metric].to_numpy(dtype=float) if metric in completed else np.array([])
        seeds = completed[REPLICATE_KEY].to_numpy()
        finite = np.isfinite(values)
        values, seeds = values[finite], seeds[finite]
        result = mean_interval(values, metric, confidence) if interval else None
        not_completed = group[group["status"] != "completed"]
        samples.append(dict(zip(seeds.tolist(), values.tolist())) if len(set(seeds.tolist())) == len(seeds) else {})
        rows.append({
            **dict(zip(group_keys, group_values)),
            "group": group_label(dict(zip(group_keys, group_values)), label_keys),
            "metric": metric, "n_runs": len(group), "n_completed": len(completed),
            "n_diverged": int((group["status"] == "diverged").sum()),
            "n_failed": int((group["status"] == "failed").sum()),
            "completed": f"{len(completed)} of {len(group)}",
            "messages": "; ".join(
                f"{REPLICATE_KEY} {row[REPLICATE_KEY]} {row['status']}: {row['message'] or 'no message'}"
                for _, row in not_completed.iterrows()),
            "n": int(values.size),
            "mean": float(values.mean()) if values.size else math.nan,
            "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
            "ci_low": result.low if result else math.nan,
            "ci_high": result.high if result else math.nan,
            "ci_method": result.method if result else "",
            "not_applicable": bool(len(completed) and not values.size),
        })
    return rows, samples


def _compare_block(rows: list[dict], samples: list[dict], higher: bool, confidence: float) -> list[dict]:
    """All pairs of one block: paired differences on common seeds, Holm over the block's pairs."""
    pairs = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            common = sorted(set(samples[i]) & set(samples[j]), key=str)
            if not common:
                continue
            a = np.array([samples[i][s] for s in common])
            b = np.array([samples[j][s] for s in common])
            pairs.append({"i": i, "j": j, "result": stats.paired_difference(a, b, confidence=confidence),
                          "same_seeds": set(samples[i]) == set(samples[j])})
    adjusted = stats.holm([pair["result"].pvalue for pair in pairs]) if pairs else []
    for pair, p_holm in zip(pairs, adjusted):
        pair["p_holm"] = float(p_holm)
        pair["reject"] = bool(p_holm <= ALPHA)
    return pairs


def group_stats(results: pd.DataFrame, metric: str, group_keys: list[str],
                block_keys: list[str] = (), confidence: float = 0.95, compare: bool = True,
                interval: bool = True) -> pd.DataFrame:
    """One row per group: run counts, mean/std/interval of ``metric`` over seeds, comparison with the best.

    ``results``: a ``Runs.results``-like table; groups are the distinct combinations of
    ``group_keys``, compared within each combination of ``block_keys`` (see the module docstring).
    Columns: the group keys, ``group``, ``metric``, ``n_runs``, ``n_completed``, ``n_diverged``,
    ``n_failed``, ``completed`` ("k of n"), ``messages``, ``n``, ``mean``, ``std``, ``ci_low``,
    ``ci_high``, ``ci_method``, ``not_applicable`` (completed runs, but no finite value: e.g. ECE
    of a loss without a probabilistic link), ``rank`` (1 = best mean), ``best``, and against the
    best group: ``verdict`` (best | tied | worse | not distinguishable | not tested),
    ``difference`` (this group minus the best, paired by seed), ``diff_low``/``diff_high`` (its
    interval), ``p_value`` (sign-flip test), ``p_holm`` (Holm over all pairs of the block),
    ``min_p`` (smallest attainable p), ``n_paired``, ``test`` (method), ``same_as_best``
    (identical at every seed), ``can_reject`` (False: with this few seeds all-pairs Holm cannot
    reject any pair of the block) and ``seeds_needed`` (the fewest seeds with which it could). ``compare=False`` / ``interval=False`` leave those columns empty (faster).
    """
    higher = higher_is_better(metric)
    label_keys = [key for key in group_keys if key not in block_keys]
    out = []
    for _, block in iter_groups(results, list(block_keys)):
        rows, samples = _group_rows(block, metric, group_keys, label_keys, confidence, interval)
        means = np.array([row["mean"] for row in rows], dtype=float)
        ranked = np.flatnonzero(np.isfinite(means))
        order = ranked[np.argsort(-means[ranked] if higher else means[ranked], kind="stable")]
        best = int(order[0]) if order.size else None
        ranks = np.full(means.shape, np.nan)
        for position, index in enumerate(order):  # equal means share the better rank
            previous = order[position - 1] if position else None
            same = previous is not None and means[index] == means[previous]
            ranks[index] = ranks[previous] if same else position + 1
        pairs = _compare_block(rows, samples, higher, confidence) if compare else []
        with_best = {(p["j"] if p["i"] == best else p["i"]): p for p in pairs if best in (p["i"], p["j"])}
        # with n seeds per group, all-pairs Holm over k groups can reject only if n >= seeds_needed(k)
        n_values = [row["n"] for row in rows if row["n"]]
        needed = stats.seeds_needed(len(n_values), ALPHA) if len(n_values) > 1 else 0
        can_reject = len(n_values) < 2 or min(n_values) >= needed
        for i, row in enumerate(rows):
            row.update(rank=ranks[i], best=i == best, verdict="", difference=math.nan, diff_low=math.nan,
                       diff_high=math.nan, p_value=math.nan, p_holm=math.nan, min_p=math.nan,
                       n_paired=0, test="", same_as_best=False, can_reject=can_reject,
                       seeds_needed=needed)
            if i == best:
                row["verdict"] = "best"
                continue
            pair = with_best.get(i)
            if pair is None or not compare:
                row["verdict"] = "not tested" if compare else ""
                continue
            result = pair["result"]
            sign = 1.0 if pair["i"] == i else -1.0  # paired_difference(a, b) is a - b
            low, high = sorted((sign * result.ci_low, sign * result.ci_high))
            row.update(difference=sign * result.mean_difference, diff_low=low, diff_high=high,
                       p_value=result.pvalue, p_holm=pair["p_holm"], min_p=result.min_attainable_pvalue,
                       n_paired=result.n, test=result.method,
                       same_as_best=bool(result.tie and pair["same_seeds"]))
            row["verdict"] = ("tied" if row["same_as_best"] else "worse" if pair["reject"]
                              else "not distinguishable")
        out.extend(rows)
    return pd.DataFrame(out)


def pair_stats(results: pd.DataFrame, metric: str, group_keys: list[str], block_keys: list[str] = (),
               confidence: float = 0.95) -> pd.DataFrame:
    """Every pair of groups within each block: difference a - b, its interval, p, Holm p, verdict.

    Columns: the block keys, ``a``, ``b`` (group labels), ``metric``, ``n_paired``,
    ``difference``, ``diff_low``, ``diff_high``, ``p_value``, ``p_holm``, ``min_p``, ``tie``,
    ``distinguishable``, ``better`` (label of the better group when distinguishable), ``test``.
    """
    higher = higher_is_better(metric)
    label_keys = [key for key in group_keys if key not in block_keys]
    out = []
    for block_values, block in iter_groups(results, list(block_keys)):
        rows, samples = _group_rows(block, metric, group_keys, label_keys, confidence, interval=False)
        for pair in _compare_block(rows, samples, higher, confidence):
            result, a, b = pair["result"], rows[pair["i"]], rows[pair["j"]]
            better = None
            if pair["reject"]:
                better = a["group"] if (result.mean_difference > 0) == higher else b["group"]
            out.append({**dict(zip(block_keys, block_values)), "a": a["group"], "b": b["group"],
                        "metric": metric, "n_paired": result.n, "difference": result.mean_difference,
                        "diff_low": result.ci_low, "diff_high": result.ci_high,
                        "p_value": result.pvalue, "p_holm": pair["p_holm"],
                        "min_p": result.min_attainable_pvalue, "tie": result.tie,
                        "distinguishable": pair["reject"], "better": better, "test": result.method})
    return pd.DataFrame(out, columns=[*block_keys, "a", "b", "metric", "n_paired", "difference", "diff_low",
                                      "diff_high", "p_value", "p_holm", "min_p", "tie", "distinguishable",
                                      "better", "test"])


def curve_stats(curves: pd.DataFrame, metric: str, group_keys: list[str],
                confidence: float = 0.95) -> pd.DataFrame:
    """Mean curve of ``metric`` per group and epoch over the completed runs, with a band in range.

    Returns columns: the group keys, ``epoch``, ``n`` (runs with a finite value at that epoch),
    ``mean``, ``std``, ``ci_low``, ``ci_high`` (``stats.bounded_mean_ci`` with the transformed
    t interval, ``BAND_METHOD``; NaN for n < 2) and ``time_s``, the mean training time at that
    epoch over the same runs. Diverged and failed runs never enter.
    """
    columns = [*group_keys, "epoch", "n", "mean", "std", "ci_low", "ci_high", "time_s"]
    if metric not in curves.columns:
        return pd.DataFrame(columns=columns)
    rows = curves[(curves["status"] == "completed") & np.isfinite(curves[metric].astype(float))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for keys, part in rows.groupby([*group_keys, "epoch"], dropna=False, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        values = part[metric].to_numpy(dtype=float)
        band = mean_interval(values, metric, confidence, method=BAND_STATS_METHOD)
        out.append({**dict(zip([*group_keys, "epoch"], keys)), "n": values.size, "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                    "ci_low": band.low, "ci_high": band.high, "time_s": float(part["time_s"].mean())
                    if "time_s" in part else math.nan})
    return pd.DataFrame(out, columns=columns).sort_values("epoch", kind="stable").reset_index(drop=True)
