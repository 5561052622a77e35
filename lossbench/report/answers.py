"""The report's sentences: the question, and the answer for each comparison.

Each claim carries its test and effect size: the best group with its interval, the groups tied
with it (identical at every seed), those not distinguishable from it with the seeds there are
(the paired difference with its interval and Holm p), those worse, the other pairs that differ,
and the epochs each group took to the target (a median that treats unreached runs as censored).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lossbench.report import stats
from lossbench.report.common import LR_KEY, REPLICATE_KEY, format_value, group_label, higher_is_better, iter_groups
from lossbench.report.comparisons import ALPHA, group_stats, pair_stats
from lossbench.report.layout import Layout, _fmt, _fmt_p, _group_label, _metric_label, _rows_matching
from lossbench.report.tables import Runs
from lossbench.report.views import TunedView


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


def _seeds(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def difference_text(row, digits: int = 3) -> str:
    """``"difference −0.007, 95% CI −0.015 to 0.001, Holm p 0.21"`` for a group_stats row."""
    low, high = row["diff_low"], row["diff_high"]
    if np.isfinite(low) and np.isfinite(high):
        interval = f"95% CI {_signed(low, digits)} to {_signed(high, digits)}"
    else:
        interval = f"interval not estimable with {_seeds(int(row['n_paired']))}"
    return f"difference {_signed(row['difference'], digits)}, {interval}, Holm p {_fmt_p(row['p_holm'])}"


def _signed(value: float, digits: int) -> str:
    return "–" if not np.isfinite(value) else f"{value + 0.0:+.{digits}f}".replace("-", "−")


def censored_target(rows: pd.DataFrame, column: str = "target_epoch") -> stats.CensoredSummary | None:
    """Median epochs (or seconds) to target of a group's completed runs, unreached runs censored
    at the last epoch (``stats.censored_time_to_target``); None without completed runs."""
    completed = rows[rows["status"] == "completed"]
    if completed.empty:
        return None
    reached = completed[column].to_numpy(dtype=float)
    if column == "target_epoch":
        last = completed["stop_epoch"].astype(float).max()
    else:
        last = completed["train_time_s"].astype(float).max()
    last = float(np.nanmax([last, np.nanmax(reached) if np.isfinite(reached).any() else -np.inf]))
    if not np.isfinite(last):
        return None
    return stats.censored_time_to_target(reached, last)


def _answer_items(table: pd.DataFrame, runs: Runs, layout: Layout,
                  tuned: TunedView | None) -> list[tuple[str, str]]:
    """``(where, sentences)`` per comparison (dataset × panel value); see the module docstring."""
    if table.empty:
        return [("", "No completed run has a final value of the primary metric.")]
    shown_keys = [key for key in layout.view_keys if key not in layout.within]
    losses = group_stats(layout.view_results, "final_train_loss", layout.view_keys, runs.block_keys,
                         compare=False, interval=False)
    items = []
    for values, part in iter_groups(table, layout.within):
        where = group_label(dict(zip(layout.within, values)), layout.within) if layout.within else ""
        metric = _metric_label(part["metric"].iloc[0], unit=False)
        short = {index: _group_label(row, shown_keys) for index, row in part.iterrows()}
        name = dict(short)
        if tuned is not None:
            for index, row in part.iterrows():
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
        n_top = int(top["n"])
        text = ((f"best {name[best.index[0]]}, " if len(part) > 1 else "")
                + f"{metric} {_fmt(top['mean'], digits)} ({ci}{_seeds(n_top)}).")
        others = part.drop(index=best.index[0])
        others = others[np.isfinite(others["mean"].astype(float))]
        tied = others[others["verdict"] == "tied"]
        close = others[others["verdict"] == "not distinguishable"]
        worse = others[others["verdict"] == "worse"]
        untested = others[others["verdict"] == "not tested"]
        if len(tied):
            text += (" Identical to it at every seed (a tie): "
                     + ", ".join(f"{name[i]} ({_tie_text(r, top, losses, runs, layout)})"
                                 for i, r in tied.iterrows()) + ".")
        if len(close):
            n_close = sorted({int(r["n_paired"]) for _, r in close.iterrows()})
            if len(n_close) == 1:
                text += (f" Not distinguishable from it with {n_close[0]} seeds: "
                         + "; ".join(f"{name[i]} {_fmt(r['mean'], digits)} ({difference_text(r, digits)})"
                                     for i, r in close.iterrows()) + ".")
            else:  # pairs compared on different numbers of seeds: say each one's
                text += (" Not distinguishable from it: "
                         + "; ".join(f"{name[i]} {_fmt(r['mean'], digits)} ({difference_text(r, digits)}, "
                                     f"{int(r['n_paired'])} paired seeds)" for i, r in close.iterrows()) + ".")
        if len(worse):
            text += (" Worse: " + "; ".join(f"{name[i]} {_fmt(r['mean'], digits)} ({difference_text(r, digits)})"
                                            for i, r in worse.iterrows()) + ".")
        if len(untested):
            text += (" Not compared (no seed in common with the best): "
                     + ", ".join(f"{name[i]} {_fmt(r['mean'], digits)}" for i, r in untested.iterrows()) + ".")
        text += _other_pairs(part, layout, values, digits)
        if len(close) and not bool(top["can_reject"]) and part["n"].nunique() == 1:
            text += (f" With {_seeds(int(part['n'].min()))} no pair of these {len(part)} groups can be "
                     f"told apart at the {ALPHA:g} level (the exact test over all pairs, Holm-adjusted, "
                     f"needs at least {int(top['seeds_needed'])} seeds): more seeds are needed.")
        incomplete = part[part["n_completed"] < part["n_runs"]]
        if len(incomplete):
            text += " Runs that did not complete: " + "; ".join(
                f"{name[i]} {r['n_runs'] - r['n_completed']} of {r['n_runs']} "
                f"({r['n_diverged']} diverged, {r['n_failed']} failed)" for i, r in incomplete.iterrows()) + "."
        text += _peak_sentence(part, short, layout)
        text += _target_sentence(part, short, layout)
        items.append((where, text))
    return items


def _other_pairs(part: pd.DataFrame, layout: Layout, within_values: tuple, digits: int) -> str:
    """" Other pairs that differ: A better than B (difference ...)." among the non-best groups."""
    if len(part) < 3:
        return ""
    metric = part["metric"].iloc[0]
    rows = layout.view_results
    for key, value in zip(layout.within, within_values):
        rows = rows[[_equal(v, value) for v in rows[key]]]
    shown = [key for key in layout.view_keys if key not in layout.within]
    best_label = part.loc[part["best"].astype(bool), "group"].iloc[0]
    pairs = pair_stats(rows, metric, layout.view_keys, layout.within)
    pairs = pairs[pairs["distinguishable"] & (pairs["a"] != best_label) & (pairs["b"] != best_label)]
    if pairs.empty:
        return ""
    label = {row["group"]: _group_label(row, shown) for _, row in part.iterrows()}
    texts = []
    for _, pair in pairs.iterrows():
        worse = pair["b"] if pair["better"] == pair["a"] else pair["a"]
        sign = 1.0 if pair["better"] == pair["a"] else -1.0
        low, high = sorted((sign * pair["diff_low"], sign * pair["diff_high"]))
        texts.append(f"{label.get(pair['better'], pair['better'])} better than {label.get(worse, worse)} "
                     f"(by {_fmt(sign * pair['difference'], digits)}, 95% CI {_fmt(low, digits)} to "
                     f"{_fmt(high, digits)}, Holm p {_fmt_p(pair['p_holm'])})")
    return " Other pairs that differ: " + "; ".join(texts) + "."


def _equal(a, b) -> bool:
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (a, b)]
    return all(missing) if any(missing) else a == b


def _distinct_digits(values: np.ndarray) -> int:
    """3 decimals, or 4 when that tells apart values that print the same with 3."""
    values = values[np.isfinite(values)]
    three, four = ({f"{v:.{digits}f}" for v in values} for digits in (3, 4))
    return 4 if len(four) > len(three) else 3


def _tie_text(row: pd.Series, best: pd.Series, losses: pd.DataFrame, runs: Runs, layout: Layout) -> str:
    """"the same final value at every seed", or, when the primary metric's curve equals the best
    group's at every evaluation of every seed, "identical at every epoch of every seed", with both
    groups' final training loss when those differ (CE and KL with label smoothing: same gradient,
    different loss values)."""
    metric = row["metric"].removeprefix("final_")
    curves = []
    for group in (row, best):
        members = _rows_matching(layout.view_results, layout.view_keys, tuple(group[k] for k in layout.view_keys))
        ids = members.loc[members["status"] == "completed", "run_id"]
        rows = runs.curves[runs.curves["run_id"].isin(ids)]
        curves.append(rows.set_index([REPLICATE_KEY, "epoch"])[metric].sort_index()
                      if metric in rows else pd.Series(dtype=float))
    if curves[0].empty or not curves[0].equals(curves[1]):
        return f"the same final value at every seed, {_seeds(int(row['n_paired']))}"
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


def _target_sentence(part: pd.DataFrame, name: dict, layout: Layout) -> str:
    """" Epochs to the target (test accuracy ≥ 0.93, median): loss=ce 3 (5 of 5 reached), loss=l2
    > 100 (2 of 5 reached)." Unreached runs are censored at the last epoch (Kaplan-Meier median)."""
    first = part.iloc[0]
    rows = _rows_matching(layout.view_results, layout.view_keys, tuple(first[k] for k in layout.view_keys))
    threshold = rows["target_value"].dropna()
    if threshold.empty:
        return ""
    metric = first["metric"].removeprefix("final_")
    entries = []
    for index, row in part.sort_values("rank", kind="stable").iterrows():
        members = _rows_matching(layout.view_results, layout.view_keys, tuple(row[k] for k in layout.view_keys))
        summary = censored_target(members)
        if summary is not None:
            entries.append(f"{name[index]} {summary.text}")
    if not entries:
        return ""
    return (f" Epochs to the target ({_metric_label(metric, unit=False)} "
            f"{'≥' if higher_is_better(metric) else '≤'} {_fmt(threshold.iloc[0])}; median, runs "
            "that never reached it counted as beyond the last epoch): " + ", ".join(entries) + ".")


def early_items(early: pd.DataFrame, final: pd.DataFrame, layout: Layout,
                missing: list[str] = ()) -> list[tuple[str, str]]:
    """``(where, sentence)`` per comparison: the early-stopped view against the final one.

    ``early``: ``views.early_stats`` (each run at its best validation epoch); ``final``: the
    answer's table. ``"Read at each run's best validation epoch: best loss=l1 0.950 (95% CI ...,
    5 seeds); loss=ce 0.940 (difference ..., Holm p ...). At the last epoch: best loss=ce 0.930."``
    ``missing``: blocks without a validation split, named once.
    """
    items = []
    if len(missing):
        where = ", ".join(m for m in missing if m)
        items.append(("", f"No validation split{' for ' + where if where else ''}: no early-stopped "
                          "view (the best epoch is chosen on validation, never on test)."))
    if early.empty:
        return items
    shown_keys = [key for key in layout.view_keys if key not in layout.within]
    for values, part in iter_groups(early, layout.within):
        where = group_label(dict(zip(layout.within, values)), layout.within) if layout.within else ""
        best = part[part["best"].astype(bool)]
        if best.empty:
            items.append((where, "Read at each run's best validation epoch: no completed run."))
            continue
        top = best.iloc[0]
        digits = _distinct_digits(part["mean"].to_numpy(float))
        metric = _metric_label(top["metric"].removeprefix("early_"), unit=False)
        ci = (f"95% CI {_fmt(top['ci_low'], digits)} to {_fmt(top['ci_high'], digits)}, "
              if np.isfinite(top["ci_low"]) else "")
        text = (f"Read at each run's best validation epoch ({metric}): "
                + (f"best {_group_label(top, shown_keys)} " if len(part) > 1 else "")
                + f"{_fmt(top['mean'], digits)} ({ci}{_seeds(int(top['n']))})")
        others = part.drop(index=best.index[0])
        others = others[np.isfinite(others["mean"].astype(float))].sort_values("rank", kind="stable")
        for _, row in others.iterrows():
            detail = (difference_text(row, digits) if row["verdict"] in ("worse", "not distinguishable")
                      else "identical at every seed" if row["verdict"] == "tied" else "not compared")
            text += f"; {_group_label(row, shown_keys)} {_fmt(row['mean'], digits)} ({detail})"
        text += "."
        final_part = final
        for key, value in zip(layout.within, values):
            final_part = final_part[[_equal(v, value) for v in final_part[key]]]
        final_best = final_part[final_part["best"].astype(bool)] if len(final_part) else final_part
        if len(final_best):
            row = final_best.iloc[0]
            same = row["group"] == top["group"]
            text += (f" At the last epoch: {'best ' if len(part) > 1 else ''}"
                     + (f"{_group_label(row, shown_keys)} " if len(part) > 1 else "")
                     + f"{_fmt(row['mean'], digits)}"
                     + ("" if len(part) < 2 else " (the same best group)." if same
                        else " (a different best group: stopping early changes the ranking).")
                     + ("." if len(part) < 2 else ""))
        items.append((where, text))
    return items
