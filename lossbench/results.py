"""Read sweep directories into tidy tables, and compare groups of runs across seeds.

A sweep directory holds one run directory per Hydra job (``metrics.csv``, ``summary.json``,
``calibration.csv``, ``.hydra/``; see the README, "What lands in a run directory").
``load_runs`` reads one or more of them into a ``Runs`` object with two tables:

- ``results``: one row per run. Each swept key is a column named by its override key (``loss``,
  ``optimizer``, ``optimizer.lr``, ...), then ``seed``, ``status``, ``message``, ``stop_epoch``,
  ``final_<metric>`` and ``best_<metric>`` for every metric in ``summary.json``, and the epoch at
  which the run first reached the target (``target_epoch``, see below).
- ``curves``: the rows of every run's ``metrics.csv`` (long format: one row per run and
  evaluation) with the run id and its key columns.

Groups and replicates
    The keys whose values differ across the runs define the groups; ``seed`` is the replicate key
    and never a group key. A key that one run overrides and another does not takes the other run's
    value from its resolved config (or its config-group choice), so merged sweeps line up. Keys
    under ``hydra.`` never define a group (they do not change what is computed).

Blocks
    When ``dataset`` varies, comparisons (best group, ranks, tests, the target) are made within
    each dataset: accuracies of different data sets are not comparable.

Primary metric
    Classification: ``accuracy``; regression: ``r2`` (scale-free, so comparable across losses),
    on the test split, else val, else train. Both are "higher is better"; every other metric
    (loss, log_loss, brier, ece, mse, mae) is "lower is better", as in ``summary.json``'s "best".

Target epoch
    ``best`` = the best group's mean final primary metric (completed runs; within the block).
    Higher is better: the target is reached when ``value >= best - (1 - f) |best|`` (``= f best``
    for ``best > 0``). Lower is better: when ``value <= best + (1/f - 1) |best|`` (``= best / f``
    for ``best > 0``, e.g. a log loss within 1/0.95 of the best). ``f`` = ``target_fraction``,
    default 0.95. ``target_epoch`` / ``target_time_s`` are the first evaluation meeting it
    (NaN if never).

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

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from lossbench.build import changes_results

REPLICATE_KEY = "seed"
LR_KEY = "optimizer.lr"
BLOCK_KEY = "dataset"
SPLITS = ("test", "val", "train")  # order of preference for the primary metric
PRIMARY_METRIC = {"classification": "accuracy", "regression": "r2"}
TASK_METRICS = {  # loss-independent metrics per task, as lossbench.metrics computes them
    "classification": ("accuracy", "log_loss", "brier", "ece"),
    "regression": ("mse", "mae", "r2"),
}
HIGHER_IS_BETTER = ("accuracy", "r2")  # metric names ending so are maximised; all others minimised
STATUSES = ("completed", "diverged", "failed")
RUN_COLUMNS = ("run_id", "run_dir", "sweep_dir", "group", "status", "message", "task",
               "stop_epoch", "wall_time_s", "train_time_s", "config_hash", "primary_metric",
               "target_value", "target_epoch", "target_time_s")


class NoRunsError(ValueError):
    """A sweep directory does not exist or holds no run directory with a ``summary.json``."""


@dataclass
class Runs:
    """Every run of one or more sweep directories, as tables.

    ``results`` (one row per run) and ``curves`` (one row per run and evaluation) are described in
    the module docstring. ``group_keys`` are the swept keys (override names) in the order they
    first appear; ``block_keys`` the subset within which groups are compared (``["dataset"]`` when
    it varies, else ``[]``). ``missing`` lists run directories Hydra created but that have no
    ``summary.json`` (interrupted); ``duplicates`` those dropped because another run had the same
    config hash (the completed, then newest, one is kept). ``question``: the top-level
    ``question`` string of the runs' config when they all share one (an experiment file may set
    it), else None; read from the sweep's ``multirun.yaml`` (the latest launch) when there is one.
    ``skipped``: the jobs a sweep skipped as impossible combinations
    (``sweep.skip_invalid=true``), each ``{"overrides": [...], "message": ...}``, from the sweep
    folder's ``skipped.json`` (see ``skipped_combinations``). ``common_overrides``: the overrides
    every run shares (e.g. ``experiment=l2_vs_ce``), which name no group. ``headline``: the
    figure names listed under ``report.headline`` (a name or a list), found like ``question``.
    ``loss_nodes``: run_id -> (the ``loss`` group choice, the run's ``loss`` config node), as read
    with the run, for the report's gradient figure.
    """

    results: pd.DataFrame
    curves: pd.DataFrame
    group_keys: list[str]
    block_keys: list[str]
    sweep_dirs: list[Path]
    target_fraction: float
    missing: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    question: str | None = None
    skipped: list[dict] = field(default_factory=list)
    common_overrides: list[str] = field(default_factory=list)
    headline: list[str] | None = None
    loss_nodes: dict[str, tuple[str | None, dict]] = field(default_factory=dict)

    @property
    def key_values(self) -> dict[str, list]:
        """Each group key with its distinct values, in sweep order (numbers ascending)."""
        return {key: ordered_values(self.results[key]) for key in self.group_keys}

    @property
    def seeds(self) -> list:
        """The distinct seeds of all runs, ascending."""
        return sorted(self.results[REPLICATE_KEY].dropna().unique().tolist())

    @property
    def status_counts(self) -> dict[str, int]:
        """How many runs completed, diverged and failed (plus any other status seen)."""
        counts = self.results["status"].value_counts().to_dict()
        return {status: int(counts.pop(status, 0)) for status in STATUSES} | counts

    @property
    def lr_varies(self) -> bool:
        """True when the learning rate is one of the swept keys (the tuned view applies)."""
        return LR_KEY in self.group_keys


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
# Metrics and targets


def higher_is_better(metric: str) -> bool:
    """True for accuracy and R² (any ``final_``/split prefix), False for losses and errors."""
    return metric.endswith(HIGHER_IS_BETTER)


def primary_metric(task: str, available: Iterable[str]) -> str:
    """The metric runs are compared on: ``{split}_accuracy`` / ``{split}_r2``, split test > val > train.

    ``available``: metric names present (e.g. the keys of a summary's "final").
    """
    if task not in PRIMARY_METRIC:
        raise ValueError(f"task {task!r} is not known; expected one of {sorted(PRIMARY_METRIC)}")
    available = set(available)
    for split in SPLITS:
        if f"{split}_{PRIMARY_METRIC[task]}" in available:
            return f"{split}_{PRIMARY_METRIC[task]}"
    raise ValueError(f"no {PRIMARY_METRIC[task]} metric for task {task!r} among {sorted(available)}")


def target_threshold(best: float, target_fraction: float, higher: bool) -> float:
    """The value a run must reach: ``best - (1-f)|best|`` if higher is better, else ``best + (1/f-1)|best|``."""
    if higher:
        return best - (1.0 - target_fraction) * abs(best)
    return best + (1.0 / target_fraction - 1.0) * abs(best)


def first_reached(values: np.ndarray, threshold: float, higher: bool) -> int | None:
    """Index of the first entry of ``values`` at or beyond ``threshold`` (None if none is)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        reached = values >= threshold if higher else values <= threshold
    hits = np.flatnonzero(reached & np.isfinite(values))
    return int(hits[0]) if hits.size else None


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


def skipped_combinations(runs: Runs) -> pd.DataFrame:
    """One row per impossible combination a sweep skipped (``sweep.skip_invalid=true``).

    Jobs that differ only in their seed are one combination. Columns: ``combination`` (its
    overrides without the seed and without the overrides every run shares, such as
    ``experiment=...``), ``jobs`` (how many were skipped), ``seeds`` (their seeds, e.g.
    ``"0, 1, 2"``) and ``message`` (why it cannot run).
    """
    shared = set(runs.common_overrides)
    combos: dict[tuple[str, str], dict] = {}
    for job in runs.skipped:
        overrides = [str(o) for o in job.get("overrides", [])]
        kept = [o for o in overrides if not o.startswith(f"{REPLICATE_KEY}=") and o not in shared]
        combo = combos.setdefault((" ".join(kept) or "(defaults)", str(job.get("message", ""))),
                                  {"jobs": 0, "seeds": []})
        combo["jobs"] += 1
        combo["seeds"] += [o.split("=", 1)[1] for o in overrides if o.startswith(f"{REPLICATE_KEY}=")]
    rows = [{"combination": combination, "jobs": combo["jobs"],
             "seeds": ", ".join(sorted(set(combo["seeds"]), key=_natural_text_key)), "message": message}
            for (combination, message), combo in combos.items()]
    return pd.DataFrame(rows, columns=["combination", "jobs", "seeds", "message"])


def _natural_text_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


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


# ---------------------------------------------------------------------------------------------
# Loading


def load_runs(sweep_dirs: list[Path], target_fraction: float = 0.95) -> Runs:
    """Read every run of ``sweep_dirs`` (merged) into a ``Runs``.

    A run is any depth-1 subdirectory holding ``summary.json`` (a directory that itself holds one
    counts as a single run). Subdirectories with ``.hydra/`` but no ``summary.json`` are reported
    as missing. Runs with the same ``config_hash`` are the same run: the completed one is kept,
    else the newest ``summary.json``. Raises ``NoRunsError`` for a directory that does not exist
    or when no run is found.
    """
    if not 0.0 < target_fraction <= 1.0:
        raise ValueError(f"target_fraction must be in (0, 1], got {target_fraction!r}")
    sweep_dirs = [Path(d) for d in sweep_dirs]
    if not sweep_dirs:
        raise NoRunsError("no sweep directory given")
    records, missing, skipped = [], [], []
    for sweep_dir in sweep_dirs:
        run_dirs, sweep_missing = _find_run_dirs(sweep_dir)
        missing.extend(sweep_missing)
        skipped.extend(read_skipped(sweep_dir))
        records.extend(_read_run(run_dir, sweep_dir) for run_dir in run_dirs)
    if not records:
        raise NoRunsError("no runs (subdirectories with summary.json) in "
                          + ", ".join(f"'{d}'" for d in sweep_dirs))
    records, duplicates = _dedupe(records)
    _unique_run_ids(records)

    group_keys = _varying_keys(records)
    block_keys = [BLOCK_KEY] if BLOCK_KEY in group_keys else []
    records = _in_sweep_order(records, group_keys, _sweep_orders(sweep_dirs))
    results = _results_table(records, group_keys)
    curves = _curves_table(records, results, group_keys)
    _add_targets(results, curves, group_keys, block_keys, target_fraction)
    # the latest launch's multirun.yaml first: question and headline are not part of the config
    # hash, so runs reused by a resumed sweep still hold the text of the launch that made them
    configs = [c for c in map(_multirun_config, sweep_dirs) if c is not None] or [r["config"] for r in records]
    question = _shared_setting(configs, ("question",))
    headline = _shared_setting(configs, ("report", "headline"))
    common = set.intersection(*(set(record["raw_overrides"]) for record in records))
    return Runs(results=results, curves=curves, group_keys=group_keys, block_keys=block_keys,
                sweep_dirs=sweep_dirs, target_fraction=target_fraction, missing=missing,
                duplicates=duplicates, question=question if isinstance(question, str) else None,
                skipped=skipped, common_overrides=sorted(common), headline=_figure_names(headline),
                loss_nodes={record["run_id"]: (record["choices"].get("loss"), record["config"].get("loss"))
                            for record in records})


def _figure_names(value) -> list[str] | None:
    """``report.headline`` as a list: one name or a list of names; None when absent or empty."""
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) and value else None


def _multirun_config(sweep_dir: Path) -> dict | None:
    """The config Hydra saved in ``multirun.yaml`` when the sweep was (last) launched, if any."""
    try:
        config = yaml.safe_load((Path(sweep_dir) / "multirun.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def _shared_setting(configs: list[dict], path: tuple[str, ...]):
    """The value at ``path`` (e.g. ``("report", "headline")``) when every config holds the same one."""
    found = []
    for config in configs:
        node = config
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not any(_hashable(node) == _hashable(seen) for seen in found):
            found.append(node)
    return found[0] if len(found) == 1 else None


def read_skipped(sweep_dir: Path) -> list[dict]:
    """The jobs recorded in ``skipped.json`` of a sweep folder (none when the file is absent)."""
    try:
        return list(json.loads((Path(sweep_dir) / "skipped.json").read_text())["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _sweep_orders(sweep_dirs: list[Path]) -> dict[str, list]:
    """The value order the user typed for each swept key ("loss=l2,bce,ce"), from multirun.yaml."""
    orders: dict[str, list] = {}
    for sweep_dir in sweep_dirs:
        path = sweep_dir / "multirun.yaml"
        if not path.is_file():
            continue
        try:
            hydra_node = (yaml.safe_load(path.read_text()) or {}).get("hydra") or {}
        except yaml.YAMLError:
            continue
        params = (hydra_node.get("sweeper") or {}).get("params") or {}
        task = (hydra_node.get("overrides") or {}).get("task") or []
        for text in [f"{k}={v}" for k, v in params.items()] + list(task):
            key, sep, values = str(text).lstrip("+").partition("=")
            if not sep or "(" in values or "[" in values:
                continue  # range(), choice(), lists: fall back to the order of appearance
            for value in (_parse_value(v) for v in values.split(",")):
                if not any(_same(value, seen) for seen in orders.setdefault(key, [])):
                    orders[key].append(value)
    return orders


def _in_sweep_order(records: list[dict], group_keys: list[str], orders: dict[str, list]) -> list[dict]:
    """Runs sorted by group (each key's values in the typed order, else as they appear), then seed."""
    values = {key: list(orders.get(key, [])) for key in [*group_keys, REPLICATE_KEY]}
    for record in records:
        for key, known in values.items():
            value = _key_value(record, key)
            if not any(_same(value, seen) for seen in known):
                known.append(value)
    numeric = {key: all(isinstance(v, (int, float)) and not isinstance(v, bool) and not _is_missing(v)
                        for v in known) for key, known in values.items()}

    def position(record: dict) -> list:
        key_positions = []
        for key, known in values.items():
            value = _key_value(record, key)
            key_positions.append(value if numeric[key] else index_of(known, value))
        return key_positions

    return sorted(records, key=position)


def _find_run_dirs(sweep_dir: Path) -> tuple[list[Path], list[Path]]:
    """Run directories of a sweep (natural order) and the interrupted ones without summary.json."""
    if not sweep_dir.is_dir():
        raise NoRunsError(f"sweep directory '{sweep_dir}' does not exist")
    if (sweep_dir / "summary.json").is_file():
        return [sweep_dir], []
    runs, missing = [], []
    for sub in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=_natural_key):
        if (sub / "summary.json").is_file():
            runs.append(sub)
        elif (sub / ".hydra").is_dir():
            missing.append(sub)
    return runs, missing


def _read_run(run_dir: Path, sweep_dir: Path) -> dict:
    """Everything results.py needs from one run directory."""
    summary = json.loads((run_dir / "summary.json").read_text())
    config = summary.get("config")
    if config is None and (run_dir / ".hydra" / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    overrides = summary.get("overrides")
    if overrides is None and (run_dir / ".hydra" / "overrides.yaml").is_file():
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    metrics_path = run_dir / "metrics.csv"
    curve = pd.read_csv(metrics_path) if metrics_path.is_file() and metrics_path.stat().st_size else None
    parsed = [kv for kv in map(_parse_override, overrides or []) if kv is not None]
    return {
        "run_dir": run_dir, "sweep_dir": sweep_dir, "summary": summary, "config": config or {},
        "choices": summary.get("choices") or {}, "overrides": dict(parsed),
        "raw_overrides": [str(o) for o in overrides or []],
        "override_order": [key for key, _ in parsed], "curve": curve,
        "mtime": (run_dir / "summary.json").stat().st_mtime,
    }


def _parse_override(text: str) -> tuple[str, object] | None:
    """``"optimizer.lr=0.1"`` -> ``("optimizer.lr", 0.1)``; deletions and ``hydra`` keys -> None."""
    if text.startswith("~"):
        return None
    key, sep, value = text.lstrip("+").partition("=")
    if not sep or re.match(r"hydra[./]", key) or key == "hydra":
        return None
    return key, _parse_value(value)


def _parse_value(text: str):
    """An override value as int, float or (unquoted) string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip("'\"")


def _dedupe(records: list[dict]) -> tuple[list[dict], list[Path]]:
    """Keep one run per config hash: completed first, then the newest summary.json."""
    by_hash: dict[str, list[dict]] = {}
    for record in records:
        identity = record["summary"].get("config_hash") or str(record["run_dir"].resolve())
        by_hash.setdefault(identity, []).append(record)
    kept, dropped = [], []
    for same in by_hash.values():
        ordered = sorted(same, key=lambda r: (r["summary"].get("status") != "completed", -r["mtime"]))
        kept.append(ordered[0])
        dropped.extend(r["run_dir"] for r in ordered[1:])
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(kept, key=lambda r: order[id(r)]), dropped


def _unique_run_ids(records: list[dict]) -> None:
    """run_id = "<sweep dir name>/<run dir name>", numbered on collision."""
    seen: dict[str, int] = {}
    for record in records:
        run_dir, sweep_dir = record["run_dir"], record["sweep_dir"]
        run_id = sweep_dir.name if run_dir == sweep_dir else f"{sweep_dir.name}/{run_dir.name}"
        seen[run_id] = seen.get(run_id, 0) + 1
        record["run_id"] = run_id if seen[run_id] == 1 else f"{run_id}#{seen[run_id]}"


def _key_value(record: dict, key: str):
    """A key's value in one run: its override, else its resolved config or group choice."""
    if key in record["overrides"]:
        return record["overrides"][key]
    if key == REPLICATE_KEY and record["summary"].get(REPLICATE_KEY) is not None:
        return record["summary"][REPLICATE_KEY]
    node = record["config"]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return record["choices"].get(key)
        node = node[part]
    if isinstance(node, dict):  # a config group: its choice names it
        return record["choices"].get(key, node.get("_target_"))
    return node


def _varying_keys(records: list[dict]) -> list[str]:
    """Override keys (except seed, and those that change no number) whose values differ across runs."""
    keys: list[str] = []
    for record in records:
        keys.extend(key for key in record["override_order"]
                    if key not in keys and key != REPLICATE_KEY and changes_results(key))
    varying = []
    for key in keys:
        values = {_hashable(_key_value(record, key)) for record in records}
        if len(values) > 1:
            varying.append(key)
    reserved = set(RUN_COLUMNS) | {REPLICATE_KEY}
    clash = [key for key in varying if key in reserved or key.startswith(("final_", "best_"))]
    if clash:
        raise ValueError(f"swept key {clash[0]!r} clashes with a results column; rename the config key")
    return varying


def _results_table(records: list[dict], group_keys: list[str]) -> pd.DataFrame:
    """One row per run (see the module docstring)."""
    rows = []
    for record in records:
        summary = record["summary"]
        keys = {key: _key_value(record, key) for key in [*group_keys, REPLICATE_KEY]}
        row = {
            "run_id": record["run_id"], **keys, "group": group_label(keys, group_keys),
            "status": summary.get("status"), "message": summary.get("message"),
            "task": summary.get("task"), "stop_epoch": summary.get("stop_epoch"),
            "wall_time_s": _to_float(summary.get("wall_time_s")),
            "train_time_s": _to_float(summary.get("train_time_s")),
            "config_hash": summary.get("config_hash"),
            "run_dir": str(record["run_dir"]), "sweep_dir": str(record["sweep_dir"]),
        }
        final = summary.get("final") or {}
        if not final and record["curve"] is not None and len(record["curve"]):
            final = record["curve"].iloc[-1].to_dict()
        row.update({f"final_{name}": _to_float(value) for name, value in final.items()})
        row.update({f"best_{name}": _to_float(value) for name, value in (summary.get("best") or {}).items()})
        rows.append(row)
    results = pd.DataFrame(rows)
    results["message"] = results["message"].astype(object).where(results["message"].notna(), None)
    return results


def _curves_table(records: list[dict], results: pd.DataFrame, group_keys: list[str]) -> pd.DataFrame:
    """Every run's metrics.csv rows, with run_id, its key columns, group and status in front."""
    front = ["run_id", *group_keys, REPLICATE_KEY, "group", "status"]
    parts = []
    for record, (_, row) in zip(records, results.iterrows()):
        curve = record["curve"]
        if curve is None or curve.empty:
            continue
        curve = curve.copy()
        for column in reversed(front):
            if column in curve.columns:
                curve = curve.drop(columns=column)
            curve.insert(0, column, row[column])
        parts.append(curve)
    if not parts:
        return pd.DataFrame(columns=[*front, "epoch", "time_s"])
    return pd.concat(parts, ignore_index=True)


def _add_targets(results: pd.DataFrame, curves: pd.DataFrame, group_keys: list[str],
                 block_keys: list[str], target_fraction: float) -> None:
    """Fill primary_metric, target_value, target_epoch and target_time_s (see module docstring)."""
    for column in ("primary_metric", "target_value", "target_epoch", "target_time_s"):
        results[column] = None if column == "primary_metric" else np.nan
    curve_of = {run_id: rows for run_id, rows in curves.groupby("run_id", sort=False)}
    for _, block in iter_groups(results, block_keys):
        task = block["task"].dropna().iloc[0] if block["task"].notna().any() else "classification"
        available = [c[len("final_"):] for c in block.columns
                     if c.startswith("final_") and block[c].notna().any()]
        try:
            metric = primary_metric(task, available)
        except ValueError:
            continue  # e.g. every run of the block failed before its first evaluation
        results.loc[block.index, "primary_metric"] = metric
        higher = higher_is_better(metric)
        means = group_stats(block, f"final_{metric}", group_keys, block_keys)["mean"].astype(float)
        if not np.isfinite(means).any():
            continue
        threshold = target_threshold(means.max() if higher else means.min(), target_fraction, higher)
        results.loc[block.index, "target_value"] = threshold
        for index, run_id in block["run_id"].items():
            curve = curve_of.get(run_id)
            if curve is None or metric not in curve.columns:
                continue
            hit = first_reached(curve[metric].to_numpy(dtype=float), threshold, higher)
            if hit is not None:
                results.loc[index, "target_epoch"] = curve["epoch"].iloc[hit]
                if "time_s" in curve.columns:
                    results.loc[index, "target_time_s"] = curve["time_s"].iloc[hit]


# ---------------------------------------------------------------------------------------------
# Small helpers


def group_label(values, keys: list[str]) -> str:
    """A readable group name: ``"loss=ce, lr=0.01"``.

    ``values``: a mapping (dict or table row) holding ``keys``. Dotted keys are shortened to
    their last part unless two would then clash.
    """
    short = [key.rsplit(".", 1)[-1] for key in keys]
    names = [s if short.count(s) == 1 else key for s, key in zip(short, keys)]
    return ", ".join(f"{name}={format_value(values[key])}" for name, key in zip(names, keys))


def format_value(value) -> str:
    """Numbers in short ``g`` form (0.001 -> "0.001", 1e-05 -> "1e-05"), other values as str."""
    if isinstance(value, (float, np.floating)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def iter_groups(table: pd.DataFrame, keys: list[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """Yield ``(values, rows)`` per distinct combination of ``keys`` in sweep order (one group if none)."""
    if not keys:
        if len(table):
            yield (), table
        return
    combos = []
    for _, row in table[keys].iterrows():
        combo = tuple(row[key] for key in keys)
        if not any(all(_same(a, b) for a, b in zip(combo, seen)) for seen in combos):
            combos.append(combo)
    order = {key: ordered_values(table[key]) for key in keys}
    combos.sort(key=lambda combo: [index_of(order[k], v) for k, v in zip(keys, combo)])
    for combo in combos:
        mask = np.all([mask_equal(table[key], value) for key, value in zip(keys, combo)], axis=0)
        yield combo, table[mask]


def ordered_values(column: pd.Series) -> list:
    """Distinct values of ``column``: numbers ascending, others in order of first appearance.

    ``load_runs`` sorts runs into the order typed in the sweep, so first appearance is that order.
    """
    values = []
    for value in column.tolist():
        if not any(_same(value, seen) for seen in values):
            values.append(value)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        values.sort(key=lambda v: (math.isnan(v), v) if isinstance(v, float) else (False, v))
    return values


def index_of(values: list, value) -> int:
    """Position of ``value`` in ``values`` (missing matches missing)."""
    return next(i for i, v in enumerate(values) if _same(v, value))


def _same(a, b) -> bool:
    """Equality that treats None/NaN as equal to each other."""
    if _is_missing(a) or _is_missing(b):
        return _is_missing(a) and _is_missing(b)
    return a == b


def mask_equal(column: pd.Series, value) -> np.ndarray:
    """Boolean mask of ``column == value`` (missing matches missing)."""
    return np.array([_same(v, value) for v in column.tolist()], dtype=bool)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _hashable(value):
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, dict)) else value


def _to_float(value) -> float:
    """summary.json numbers: floats, null, or the strings "nan"/"inf"/"-inf" (strict JSON)."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _natural_key(path: Path) -> list:
    """Sort "2" before "10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
