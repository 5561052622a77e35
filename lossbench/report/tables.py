"""Read sweep directories into tidy tables (sweep folders -> frames).

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

Early-stopped view (``early_epoch``, ``early_<split>_<metric>``)
    Per run, the first evaluation whose *validation* value of the block's primary metric
    (``val_accuracy`` / ``val_r2``, higher is better) is best, and every split metric of the
    curve at that evaluation. NaN for a run without a val split or without a curve. The report
    shows this view when ``report.early_stopping`` is true in every run's config.

Statistics across seeds and the tuned view are in ``lossbench.report.views``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.build import changes_results
from lossbench.report import folders
from lossbench.report.common import (
    BLOCK_KEY, LR_KEY, REPLICATE_KEY, RUN_COLUMNS, _hashable, _is_missing, _natural_key, _same,
    _to_float, first_reached, group_label, higher_is_better, index_of, iter_groups, primary_metric,
    target_threshold)
from lossbench.report.comparisons import group_stats
from lossbench.report.exports import SchemaError, read_curves, read_results
from lossbench.report.runs import NoRunsError, ReportInputError, Runs

# Runs is built here; the typed readers of the files the report writes live in exports
__all__ = ["NoRunsError", "ReportInputError", "Runs", "SchemaError", "load_runs", "read_curves", "read_results",
           "read_skipped", "skipped_combinations"]


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


# Loading


def load_runs(sweep_dirs: list[Path], target_fraction: float = 0.95) -> Runs:
    """Read every run of ``sweep_dirs`` (merged) into a ``Runs``.

    A run is any depth-1 subdirectory holding ``summary.json`` (a directory that itself holds one
    counts as a single run). Subdirectories with ``.hydra/`` but no ``summary.json`` are reported
    as missing, like the jobs listed in a sweep's ``missing.json``. A run folder whose files are
    damaged (``lossbench.report.folders``) is listed in ``Runs.damaged`` with the reason and left
    out. Runs with the same ``config_hash`` are the same run: the completed one is kept, else the
    newest ``summary.json``. When some runs have ``stage: tune`` (``protocol=tune``), only the
    other runs (``confirm``, or no stage) are compared; the tuning runs are in ``Runs.tune_results``.
    Raises ``NoRunsError`` for a directory that does not exist or when no usable run is found.
    """
    if not 0.0 < target_fraction <= 1.0:
        raise ValueError(f"target_fraction must be in (0, 1], got {target_fraction!r}")
    sweep_dirs = [Path(d) for d in sweep_dirs]
    if not sweep_dirs:
        raise NoRunsError("no sweep directory given")
    records, missing, skipped, missing_jobs, damaged, problems, tuned, plan = [], [], [], [], [], [], [], None
    for sweep_dir in sweep_dirs:
        run_dirs, sweep_missing = _find_run_dirs(sweep_dir)
        missing.extend(sweep_missing)
        for name, key, into in (("skipped.json", "skipped", skipped), ("missing.json", "missing", missing_jobs)):
            jobs, problem = folders.read_jobs(sweep_dir, name, key)
            into.extend(jobs)
            problems.extend([f"{sweep_dir}: {problem}"] if problem else [])
        table, problem = folders.read_tuned(sweep_dir)
        tuned.extend([table] if table is not None else [])
        found, plan_problem = folders.read_sweep_plan(sweep_dir)
        plan = plan if plan is not None else found
        problems.extend(f"{sweep_dir}: {text}" for text in (problem, plan_problem) if text)
        for run_dir in run_dirs:
            try:
                records.append(_read_run(run_dir, sweep_dir))
            except folders.DamagedRun as error:
                damaged.append((run_dir, str(error)))
    if not records:
        raise NoRunsError("no runs (subdirectories with an intact summary.json) in "
                          + ", ".join(f"'{d}'" for d in sweep_dirs)
                          + (f"; {len(damaged)} damaged: " + "; ".join(f"{d.name}: {why}" for d, why in damaged[:3])
                             if damaged else ""))
    records, duplicates = _dedupe(records)
    _unique_run_ids(records)
    tuned_table = pd.concat(tuned, ignore_index=True) if tuned else None

    tune = [r for r in records if r["summary"].get("stage") == "tune"]
    compared = [r for r in records if r["summary"].get("stage") != "tune"]
    if not compared:  # only a tuning stage so far (the sweep was stopped): compare what there is
        compared, tune = tune, []
    tuned_keys = _tuned_keys(plan, tuned_table, tune)
    group_keys = [key for key in _varying_keys(compared) if key not in tuned_keys]
    block_keys = [BLOCK_KEY] if BLOCK_KEY in group_keys else []
    orders = _sweep_orders(sweep_dirs)
    compared = _in_sweep_order(compared, group_keys, orders)
    tune = _in_sweep_order(tune, group_keys + tuned_keys, orders)
    key_columns = group_keys + [k for k in tuned_keys if k not in group_keys]
    results = _results_table(compared, group_keys, key_columns)
    curves = _curves_table(compared, results, group_keys)
    _add_targets(results, curves, group_keys, block_keys, target_fraction)
    _add_early(results, curves, block_keys)
    tune_results = _results_table(tune, group_keys, key_columns) if tune else results.iloc[0:0].copy()
    # the latest launch's multirun.yaml first: question and headline are not part of the config
    # hash, so runs reused by a resumed sweep still hold the text of the launch that made them
    configs = [c for c in map(folders.read_multirun, sweep_dirs) if c is not None] or [r["config"] for r in records]
    question = _shared_setting(configs, ("question",))
    headline = _shared_setting(configs, ("report", "headline"))
    early_stopping = _shared_setting(configs, ("report", "early_stopping"))
    also_compare = _figure_names(_shared_setting(configs, ("report", "also_compare"))) or []
    common = set.intersection(*(set(record["raw_overrides"]) for record in records))
    by_id = {record["run_id"]: record for record in [*compared, *tune]}
    return Runs(results=results, curves=curves, group_keys=group_keys, block_keys=block_keys,
                sweep_dirs=sweep_dirs, target_fraction=target_fraction, missing=missing,
                duplicates=duplicates, question=question if isinstance(question, str) else None,
                skipped=skipped, common_overrides=sorted(common), headline=_figure_names(headline),
                missing_jobs=missing_jobs, damaged=damaged, problems=problems,
                early_stopping=early_stopping is True,
                also_compare=[m for m in also_compare if f"final_{m}" in results and results[f"final_{m}"].notna().any()],
                tune_results=tune_results, tuned=tuned_table, tuned_keys=tuned_keys, plan=plan,
                configs={run_id: r["config"] for run_id, r in by_id.items()},
                choices={run_id: r["choices"] for run_id, r in by_id.items()},
                provenance={run_id: r["summary"].get("provenance") or {} for run_id, r in by_id.items()},
                versions={run_id: r["summary"].get("lossbench_version") for run_id, r in by_id.items()},
                split_sizes={run_id: r["summary"].get("split_sizes") for run_id, r in by_id.items()
                             if isinstance(r["summary"].get("split_sizes"), dict)},
                gradients={run_id: r["gradients"] for run_id, r in by_id.items() if r["gradients"] is not None},
                calibration={run_id: r["calibration"] for run_id, r in by_id.items()
                             if r["calibration"] is not None})


TUNED_META = ("objective", "objective_value", "n_settings", "edge_extended")


def _tuned_keys(plan: dict | None, tuned: pd.DataFrame | None, tune: list[dict]) -> list[str]:
    """The keys a ``protocol=tune`` sweep tuned per arm (settings of an arm, never group keys).

    From ``sweep.json`` (``tuned_keys``), else the columns of ``tuned.csv`` other than the
    objective columns that vary among tuning runs sharing every other column; else, with tuning
    runs present, ``optimizer.lr``.
    """
    listed = (plan or {}).get("tuned_keys")
    if isinstance(listed, list) and all(isinstance(k, str) for k in listed):
        return list(listed)
    if tuned is not None:
        candidates = [c for c in tuned.columns if c not in TUNED_META]
        keys = []
        for key in candidates:
            others = [c for c in candidates if c != key]
            seen: dict = {}
            for record in tune:
                identity = tuple(_hashable(_key_value(record, c)) for c in others)
                seen.setdefault(identity, set()).add(_hashable(_key_value(record, key)))
            if any(len(values) > 1 for values in seen.values()):
                keys.append(key)
        return keys
    return [LR_KEY] if tune else []


def _figure_names(value) -> list[str] | None:
    """``report.headline`` as a list: one name or a list of names; None when absent or empty."""
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) and value else None


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
    """The jobs recorded in ``skipped.json`` of a sweep folder (none when the file is absent or damaged)."""
    return folders.read_jobs(Path(sweep_dir), "skipped.json", "skipped")[0]


def _sweep_orders(sweep_dirs: list[Path]) -> dict[str, list]:
    """The value order the user typed for each swept key ("loss=l2,bce,ce"), from multirun.yaml."""
    orders: dict[str, list] = {}
    for sweep_dir in sweep_dirs:
        multirun = folders.read_multirun(sweep_dir)
        hydra_node = multirun.get("hydra") if multirun else None
        if not isinstance(hydra_node, dict):
            continue
        sweeper, overrides = hydra_node.get("sweeper"), hydra_node.get("overrides")
        params = sweeper.get("params") if isinstance(sweeper, dict) else None
        params = params if isinstance(params, dict) else {}
        task = overrides.get("task") if isinstance(overrides, dict) else None
        task = task if isinstance(task, list) else []
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
    """One run folder as a record (``folders.read_run`` plus its parsed overrides); DamagedRun if damaged."""
    record = folders.read_run(run_dir)
    summary, overrides = record["summary"], record["overrides"]
    parsed = [kv for kv in map(_parse_override, overrides) if kv is not None]
    return {**record, "run_dir": run_dir, "sweep_dir": sweep_dir,
            "choices": summary.get("choices") or {}, "overrides": dict(parsed),
            "raw_overrides": list(overrides), "override_order": [key for key, _ in parsed]}


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
    clash = [key for key in varying if key in reserved or key.startswith(("final_", "best_", "early_"))]
    if clash:
        raise ReportInputError(f"swept key {clash[0]!r} clashes with a results column; rename the config key")
    return varying


def _results_table(records: list[dict], group_keys: list[str], key_columns: list[str]) -> pd.DataFrame:
    """One row per run (see the module docstring); ``key_columns``: group keys plus tuned keys."""
    rows = []
    for record in records:
        summary = record["summary"]
        keys = {key: _key_value(record, key) for key in [*key_columns, REPLICATE_KEY]}
        row = {
            "run_id": record["run_id"], **keys, "group": group_label(keys, group_keys),
            "stage": summary.get("stage"),
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
    results = pd.DataFrame(rows, columns=None if rows else ["run_id", *key_columns, REPLICATE_KEY,
                                                            "group", "stage", "status", "message"])
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
        means = group_stats(block, f"final_{metric}", group_keys, block_keys, compare=False,
                            interval=False)["mean"].astype(float)
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


#


SPLIT_METRIC = re.compile(r"^(train|val|test)_")


def _add_early(results: pd.DataFrame, curves: pd.DataFrame, block_keys: list[str]) -> None:
    """Fill ``early_epoch`` and ``early_<split>_<metric>`` (see the module docstring)."""
    metrics = [c for c in curves.columns if SPLIT_METRIC.match(str(c))]
    early: dict[str, dict] = {"early_epoch": {}, **{f"early_{name}": {} for name in metrics}}  # column -> {row: value}
    curve_of = {run_id: rows for run_id, rows in curves.groupby("run_id", sort=False)}
    for _, block in iter_groups(results, block_keys):
        primary = block["primary_metric"].dropna()
        if primary.empty:
            continue
        selected_on = "val_" + primary.iloc[0].split("_", 1)[1]
        higher = higher_is_better(selected_on)
        for index, run_id in block["run_id"].items():
            curve = curve_of.get(run_id)
            if curve is None or selected_on not in curve.columns:
                continue
            values = curve[selected_on].to_numpy(dtype=float)
            if not np.isfinite(values).any():
                continue
            # first best evaluation (argmax/argmin return the first of equal values)
            at = int(np.nanargmax(values) if higher else np.nanargmin(values))
            early["early_epoch"][index] = float(curve["epoch"].iloc[at])
            for name in metrics:
                if name in curve.columns:
                    early[f"early_{name}"][index] = _to_float(curve[name].iloc[at])
    for column, values in early.items():  # NaN where a run has no best epoch (set at once: .loc per cell is slow)
        results[column] = pd.Series(values, dtype=float).reindex(results.index)
