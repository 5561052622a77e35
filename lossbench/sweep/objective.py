"""The value a sweep's task function returns: what a tuner (Optuna, the tune protocol) optimises.

``sweep.objective`` names a metric of the run's final record (``auto``: ``val_accuracy`` for
classification, ``val_loss`` for regression). A failed run gives NaN (a tuner treats it as a failed
trial); a diverged run gives the metric's worst value (0 for an accuracy, -inf for R², +inf for a
loss or error), so it can never look better than a run that trained.
"""

from __future__ import annotations

import math
import re

OBJECTIVE_PATTERN = re.compile(r"(train|val|test)_[a-z0-9_]+")


def higher_is_better(metric: str) -> bool:
    """True for accuracies and R² (maximised), False for losses and errors (minimised)."""
    return metric.endswith("_accuracy") or metric.endswith("_r2")


def objective_name(setting: str | None, task: str | None) -> str:
    """``sweep.objective`` resolved for a task: ``auto`` -> ``val_accuracy`` | ``val_loss``."""
    if setting in (None, "auto"):
        return "val_accuracy" if task == "classification" else "val_loss"
    return str(setting)


def check_objective(setting) -> str | None:
    """None when ``sweep.objective`` is allowed, else the one-line message."""
    if setting == "auto" or (isinstance(setting, str) and OBJECTIVE_PATTERN.fullmatch(setting)):
        return None
    return (f"sweep.objective={setting!r} is not allowed; allowed: auto, or a metric of the final record "
            "such as val_accuracy, val_loss, val_r2, test_accuracy")


def worst_value(metric: str) -> float:
    if metric.endswith("_accuracy"):
        return 0.0
    return -math.inf if higher_is_better(metric) else math.inf


def objective_value(summary: dict | None, setting: str | None) -> float:
    """The objective of a run from its summary: NaN failed/unknown, worst value diverged."""
    if not isinstance(summary, dict):
        return math.nan
    metric = objective_name(setting, summary.get("task"))
    status = summary.get("status")
    if status == "diverged":
        return worst_value(metric)
    if status != "completed":
        return math.nan
    value = (summary.get("final") or {}).get(metric)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
