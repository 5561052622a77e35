"""The report's sentences: the question, and the answer for each comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lossbench.report.common import LR_KEY, REPLICATE_KEY, format_value, group_label, higher_is_better, iter_groups
from lossbench.report.layout import (
    SIGNIFICANCE, Layout, _fmt, _fmt_p, _group_label, _metric_label, _rows_matching)
from lossbench.report.tables import Runs
from lossbench.report.views import TunedView, group_stats

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


def _answer_items(stats: pd.DataFrame, runs: Runs, layout: Layout,
                  tuned: TunedView | None) -> list[tuple[str, str]]:
    """``(where, sentences)`` per comparison (dataset × panel value): the best group, then the rest.

    A group is "worse" when its Holm-corrected p against the best is below ``SIGNIFICANCE``, else
    "not significantly different"; groups whose runs did not all complete say so. In the tuned
    view each group names its learning rate. Then the epochs each group took to reach the target.
    """
    if stats.empty:
        return [("", "No completed run has a final value of the primary metric.")]
    shown_keys = [key for key in layout.view_keys if key not in layout.within]
    targets = group_stats(layout.view_results, "target_epoch", layout.view_keys, runs.block_keys)
    losses = group_stats(layout.view_results, "final_train_loss", layout.view_keys, runs.block_keys)
    items = []
    for values, part in iter_groups(stats, layout.within):
        where = group_label(dict(zip(layout.within, values)), layout.within) if layout.within else ""
        metric = _metric_label(part["metric"].iloc[0], unit=False)
        name = {}
        short = {index: _group_label(row, shown_keys) for index, row in part.iterrows()}
        for index, row in part.iterrows():
            name[index] = short[index]
            if tuned is not None:
                chosen = _rows_matching(tuned.best_lr, layout.view_keys, tuple(row[k] for k in layout.view_keys))
                if len(chosen):
                    name[index] += f" (lr {format_value(chosen[LR_KEY].iloc[0])})"
        best = part[part["best"].astype(bool)]
        if best.empty:
            items.append((where, "no completed run." if where else "No completed run."))
            continue
        top = best.iloc[0]
        digits = _distinct_digits(part["mean"].to_numpy(float))
        ci = (f"95% CI {_fmt(top['ci_low'], digits)} to {_fmt(top['ci_high'], digits)}, "
              if np.isfinite(top["ci_low"]) else "")
        text = (f"{where + ': ' if where else ''}"
                + (f"best {name[best.index[0]]}, " if len(part) > 1 else "")
                + f"{metric} {_fmt(top['mean'], digits)} ({ci}{int(top['n'])} seed{'' if int(top['n']) == 1 else 's'}).")
        others = part.drop(index=best.index[0])
        others = others[np.isfinite(others["mean"].astype(float))]
        tied = others[others["p_holm"] >= SIGNIFICANCE]
        worse = others[others["p_holm"] < SIGNIFICANCE]
        untested = others[~np.isfinite(others["p_holm"].astype(float))]
        if len(tied):
            text += (" Not significantly different (Holm p ≥ 0.05): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)} ({_tie_text(r, top, losses, runs, layout)})"
                                 for i, r in tied.iterrows()) + ".")
        if len(worse):
            text += (" Worse (Holm p < 0.05): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)} (p {_fmt_p(r['p_holm'])})"
                                 for i, r in worse.iterrows()) + ".")
        if len(untested):
            text += (" Not tested (fewer than 2 seeds): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)}" for i, r in untested.iterrows()) + ".")
        incomplete = part[part["n_completed"] < part["n_runs"]]
        if len(incomplete):
            text += " Runs that did not complete: " + "; ".join(
                f"{name[i]} {r['n_runs'] - r['n_completed']} of {r['n_runs']} "
                f"({r['n_diverged']} diverged, {r['n_failed']} failed)" for i, r in incomplete.iterrows()) + "."
        text += _peak_sentence(part, short, layout)
        text += _target_sentence(part, short, targets, layout)
        items.append((where, text.removeprefix(f"{where}: ") if where else text))
    return items


def _distinct_digits(values: np.ndarray) -> int:
    """3 decimals, or 4 when that tells apart values that print the same with 3."""
    values = values[np.isfinite(values)]
    three, four = ({f"{v:.{digits}f}" for v in values} for digits in (3, 4))
    return 4 if len(four) > len(three) else 3


def _tie_text(row: pd.Series, best: pd.Series, losses: pd.DataFrame, runs: Runs, layout: Layout) -> str:
    """"p 0.62", or, for a group whose primary-metric curve equals the best group's at every
    evaluation of every seed, "identical at every epoch", with both groups' final training loss when
    those differ (CE and KL with label smoothing: same gradient, different loss values)."""
    p_text = f"p {_fmt_p(row['p_holm'])}"
    if not row["same_as_best"]:
        return p_text
    metric = row["metric"].removeprefix("final_")
    curves = []
    for group in (row, best):
        members = _rows_matching(layout.view_results, layout.view_keys, tuple(group[k] for k in layout.view_keys))
        ids = members.loc[members["status"] == "completed", "run_id"]
        rows = runs.curves[runs.curves["run_id"].isin(ids)]
        curves.append(rows.set_index([REPLICATE_KEY, "epoch"])[metric].sort_index()
                      if metric in rows else pd.Series(dtype=float))
    if curves[0].empty or not curves[0].equals(curves[1]):
        return f"the same final value in every seed, {p_text}"
    text = "identical at every epoch of every seed"
    loss_of = [_rows_matching(losses, layout.view_keys, tuple(r[k] for k in layout.view_keys))["mean"]
               for r in (row, best)]
    if all(len(v) for v in loss_of) and not np.isclose(loss_of[0].iloc[0], loss_of[1].iloc[0]):
        text += (f", yet its final training loss is {_fmt(loss_of[0].iloc[0], 4)} against "
                 f"{_fmt(loss_of[1].iloc[0], 4)}")
    return text


def _peak_sentence(part: pd.DataFrame, name: dict, layout: Layout) -> str:
    """Groups whose final value fell from their best epoch by more than the final's 95% CI half-width.

    Uses the runs' ``best_<metric>`` (best epoch on the same split, so an optimistic number):
    a drop says the model got worse while its training loss kept falling (memorised noise).
    """
    metric = part["metric"].iloc[0].removeprefix("final_")
    if f"best_{metric}" not in layout.view_results or not higher_is_better(metric):
        return ""
    fell = []
    for index, row in part.iterrows():
        members = _rows_matching(layout.view_results, layout.view_keys, tuple(row[k] for k in layout.view_keys))
        best = members.loc[members["status"] == "completed", f"best_{metric}"].astype(float)
        best = best[np.isfinite(best)]
        half_width = row["ci_high"] - row["mean"]
        if best.size and np.isfinite(half_width) and best.mean() - row["mean"] > half_width:
            fell.append(f"{name[index]} {_fmt(best.mean())} → {_fmt(row['mean'])}")
    if not fell:
        return ""
    return (f" Fell from its best epoch (mean best-epoch {_metric_label(metric, unit=False)} → final, "
            "a drop beyond the final's 95% CI): " + ", ".join(fell) + ".")


def _target_sentence(part: pd.DataFrame, name: dict, targets: pd.DataFrame, layout: Layout) -> str:
    """" Epochs to the target (test accuracy ≥ 0.93): loss=ce 3.0, loss=l2 79.8 (4 of 5 runs)."."""
    first = part.iloc[0]
    rows = _rows_matching(layout.view_results, layout.view_keys, tuple(first[k] for k in layout.view_keys))
    threshold = rows["target_value"].dropna()
    if threshold.empty:
        return ""
    metric = first["metric"].removeprefix("final_")
    entries = []
    for index, row in part.sort_values("rank", kind="stable").iterrows():
        reached = _rows_matching(targets, layout.view_keys, tuple(row[k] for k in layout.view_keys))
        if reached.empty or reached["n_completed"].iloc[0] == 0:
            continue
        reached = reached.iloc[0]
        if reached["n"] == 0:
            entries.append(f"{name[index]} never")
        else:
            entries.append(f"{name[index]} {_fmt(reached['mean'], 1)}"
                           + (f" ({reached['n']} of {reached['n_completed']} runs)"
                              if reached["n"] < reached["n_completed"] else ""))
    if not entries:
        return ""
    return (f" Epochs to the target ({_metric_label(metric, unit=False)} "
            f"{'≥' if higher_is_better(metric) else '≤'} {_fmt(threshold.iloc[0])}): "
            + ", ".join(entries) + ".")


