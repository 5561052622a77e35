"""Names, metric directions and small table helpers shared by the report modules.

Nothing here reads files or draws: ``tables`` (reading), ``views`` (aggregation), the
figures and the page all use these.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

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
METRIC_RANGE = {  # the values a metric can take: intervals never leave it
    "accuracy": (0.0, 1.0), "ece": (0.0, 1.0), "brier": (0.0, 2.0), "r2": (-np.inf, 1.0),
    "loss": (0.0, np.inf), "log_loss": (0.0, np.inf), "mse": (0.0, np.inf), "mae": (0.0, np.inf),
}
STATUSES = ("completed", "diverged", "failed")
RUN_COLUMNS = ("run_id", "run_dir", "sweep_dir", "group", "status", "message", "task",
               "stop_epoch", "wall_time_s", "train_time_s", "config_hash", "primary_metric",
               "target_value", "target_epoch", "target_time_s")


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
    combos: list[tuple] = []
    rows: list[list[int]] = []
    found: dict = {}  # hashable combination (missing values as one marker) -> its index in combos
    for position, combo in enumerate(zip(*(table[key].tolist() for key in keys))):
        marked = tuple(_MISSING if _is_missing(v) else v for v in combo)
        try:
            index = found.get(marked)
        except TypeError:  # a list or dict value: compare with each combination seen
            index = next((i for i, seen in enumerate(combos) if all(_same(a, b) for a, b in zip(combo, seen))), None)
            marked = None
        if index is None:
            index = len(combos)
            combos.append(combo)
            rows.append([])
            if marked is not None:
                found[marked] = index
        rows[index].append(position)
    # a value's first row starts a new combination, so the combinations keep each key's order of appearance
    order = {key: _ordered([combo[j] for combo in combos]) for j, key in enumerate(keys)}
    ranked = sorted(range(len(combos)), key=lambda i: [index_of(order[k], v) for k, v in zip(keys, combos[i])])
    for i in ranked:
        yield combos[i], table.iloc[rows[i]]


_MISSING = object()


def ordered_values(column: pd.Series) -> list:
    """Distinct values of ``column``: numbers ascending, others in order of first appearance.

    ``load_runs`` sorts runs into the order typed in the sweep, so first appearance is that order.
    """
    return _ordered(column.tolist())


def _ordered(column: list) -> list:
    values = []
    for value in column:
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
