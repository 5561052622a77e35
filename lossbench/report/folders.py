"""Read the files of run and sweep folders as data, checking each one; never run anything.

A results folder may come from another machine or another person, so everything here treats it
as untrusted data: JSON with ``json``, YAML with ``yaml.safe_load``, CSV with a strict parser.
Nothing read is imported, instantiated or unpickled (no ``hydra.utils.instantiate``, no
``numpy.load(allow_pickle=True)``, no ``pandas.read_pickle``); a ``_target_`` in a run's config is
just a string to the report.

``read_run`` returns what the report needs from one run folder, or raises ``DamagedRun`` naming
what is wrong: the report lists that folder with the reason and leaves it out. A run is damaged
when ``summary.json`` is not a UTF-8 JSON object of the expected shape, when a CSV file is binary,
cut short, has a row with more or fewer fields than its header or text in a numeric column, when a
completed run's ``metrics.csv`` does not reach the ``stop_epoch`` its summary records, or when a
file's SHA-256 does not match the one listed under ``summary["files"]``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import yaml

STATUSES = ("completed", "diverged", "failed")
STAGES = ("tune", "confirm", None)
RUN_FILES = ("metrics.csv", "gradients.csv", "calibration.csv", "params.npz")  # checksummed by run.py
MAX_REASON = 160  # characters of a parser's message kept in a damage reason


class DamagedRun(ValueError):
    """A run folder whose files cannot be trusted; ``str(error)`` says what is wrong, in one line."""


def _short(text: object) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


def read_text(path: Path) -> str:
    """The file as UTF-8 text; ``DamagedRun`` for binary content (NUL bytes) or invalid UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DamagedRun(f"{path.name} cannot be read ({_short(error.strerror or error)})") from None
    if b"\x00" in data:
        raise DamagedRun(f"{path.name} is binary, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DamagedRun(f"{path.name} is not UTF-8 text (byte {error.start})") from None


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object; ``DamagedRun`` otherwise (cut short, a list, ...)."""
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DamagedRun(f"{path.name} is not valid JSON ({error.msg} at line {error.lineno}; "
                         "cut short?)") from None
    if not isinstance(value, dict):
        raise DamagedRun(f"{path.name} holds a JSON {type(value).__name__}, not an object")
    return value


def read_csv(path: Path, numeric: bool = True) -> pd.DataFrame:
    """A CSV file whose every row has exactly the header's fields (and, if ``numeric``, numbers only).

    ``DamagedRun`` for binary or non-UTF-8 content, a missing final newline (a file cut short),
    duplicate header names, a row with more or fewer fields than the header, or text in a column
    that must be numeric ("nan", "inf" are numbers).
    """
    text = read_text(path)
    if not text.strip():
        raise DamagedRun(f"{path.name} is empty")
    if not text.endswith("\n"):
        raise DamagedRun(f"{path.name} is cut short (its last line is incomplete)")
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
        if len(set(header)) != len(header):
            raise DamagedRun(f"{path.name} repeats a column name in its header")
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise DamagedRun(f"{path.name} line {line} has {len(row)} fields, its header "
                                 f"{len(header)}")
    except csv.Error as error:
        raise DamagedRun(f"{path.name} is not valid CSV ({_short(error)})") from None
    try:
        table = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as error:
        raise DamagedRun(f"{path.name} is not valid CSV ({_short(error)})") from None
    if numeric:
        for column in table.columns:
            if not pd.api.types.is_numeric_dtype(table[column]) and table[column].notna().any():
                converted = pd.to_numeric(table[column], errors="coerce")
                if converted.isna().sum() > table[column].isna().sum():
                    raise DamagedRun(f"{path.name} column {_short(column)!r} holds text, not numbers")
                table[column] = converted
    return table


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(run_dir: Path, files) -> None:
    """Every file listed in ``summary["files"]`` ({name: sha256}) exists and has that checksum."""
    if files is None:
        return
    if not isinstance(files, dict):
        raise DamagedRun("summary.json 'files' is not an object of file name -> sha256")
    for name, digest in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise DamagedRun(f"summary.json lists {_short(name)!r}, not a file of the run folder")
        path = run_dir / name
        if not path.is_file():
            raise DamagedRun(f"{name} is listed in summary.json but missing")
        if not isinstance(digest, str) or sha256(path) != digest.lower():
            raise DamagedRun(f"{name} does not match its checksum in summary.json "
                             "(changed or cut short)")


def _check_summary(summary: dict) -> None:
    """The keys the report uses have the types run.py writes."""
    status = summary.get("status")
    if status not in STATUSES:
        raise DamagedRun(f"summary.json status {_short(status)!r} is not one of {', '.join(STATUSES)}")
    if summary.get("stage") not in STAGES:
        raise DamagedRun(f"summary.json stage {_short(summary.get('stage'))!r} is not tune, "
                         "confirm or null")
    expected = {"final": dict, "best": dict, "config": dict, "choices": dict, "overrides": list,
                "provenance": dict, "message": str, "task": str, "config_hash": str}
    for key, kind in expected.items():
        value = summary.get(key)
        if value is not None and not isinstance(value, kind):
            raise DamagedRun(f"summary.json {key!r} is a {type(value).__name__}, not a "
                             f"{'JSON ' + ('object' if kind is dict else 'list' if kind is list else 'string')}")
    if any(not isinstance(o, str) for o in summary.get("overrides") or []):
        raise DamagedRun("summary.json 'overrides' holds something other than strings")
    seed = summary.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise DamagedRun(f"summary.json seed {_short(seed)!r} is not an integer")
    stop = summary.get("stop_epoch")
    if stop is not None and (isinstance(stop, bool) or not isinstance(stop, int) or stop < 0):
        raise DamagedRun(f"summary.json stop_epoch {_short(stop)!r} is not an epoch number")


def _read_yaml(path: Path, kind: type):
    """A YAML file of the Hydra folder (``safe_load`` only) that must hold ``kind``; None if absent."""
    if not path.is_file():
        return None
    try:
        value = yaml.safe_load(read_text(path))
    except yaml.YAMLError as error:
        raise DamagedRun(f".hydra/{path.name} is not valid YAML ({_short(error)})") from None
    if value is not None and not isinstance(value, kind):
        raise DamagedRun(f".hydra/{path.name} holds a {type(value).__name__}, not a {kind.__name__}")
    return value


def read_run(run_dir: Path) -> dict:
    """What the report needs from one run folder; ``DamagedRun`` if any file is damaged.

    Returns ``summary`` (dict), ``config`` (resolved config: the summary's, else
    ``.hydra/config.yaml``), ``overrides`` (list of str), ``curve`` (metrics.csv or None),
    ``gradients`` and ``calibration`` (their CSV tables or None) and ``mtime`` of summary.json.
    """
    summary = read_json_object(run_dir / "summary.json")
    _check_summary(summary)
    check_files(run_dir, summary.get("files"))
    config = summary.get("config")
    if config is None:
        config = _read_yaml(run_dir / ".hydra" / "config.yaml", dict)
    overrides = summary.get("overrides")
    if overrides is None:
        overrides = _read_yaml(run_dir / ".hydra" / "overrides.yaml", list) or []
        if any(not isinstance(o, str) for o in overrides):
            raise DamagedRun(".hydra/overrides.yaml holds something other than strings")
    tables = {}
    for name in ("metrics.csv", "gradients.csv", "calibration.csv"):
        path = run_dir / name
        present = path.is_file() and (name != "metrics.csv" or path.stat().st_size > 0)
        tables[name] = read_csv(path, numeric=name != "calibration.csv") if present else None
    curve = tables["metrics.csv"]
    if curve is not None:
        _check_curve(curve, summary)
    elif summary["status"] == "completed":
        raise DamagedRun("the run completed but metrics.csv is missing")
    return {"summary": summary, "config": config or {}, "overrides": overrides, "curve": curve,
            "gradients": tables["gradients.csv"], "calibration": tables["calibration.csv"],
            "mtime": (run_dir / "summary.json").stat().st_mtime}


def _check_curve(curve: pd.DataFrame, summary: dict) -> None:
    """metrics.csv has increasing epochs and, for a completed run, ends at summary's stop_epoch."""
    if "epoch" not in curve.columns:
        raise DamagedRun("metrics.csv has no epoch column")
    epochs = curve["epoch"].to_numpy(dtype=float)
    if len(epochs) and (not pd.notna(epochs).all() or (len(epochs) > 1 and (epochs[1:] <= epochs[:-1]).any())):
        raise DamagedRun("metrics.csv epochs are missing or not increasing")
    seed = summary.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise DamagedRun(f"summary.json seed {_short(seed)!r} is not an integer")
    stop = summary.get("stop_epoch")
    if summary["status"] == "completed" and isinstance(stop, int):
        last = int(epochs[-1]) if len(epochs) else -1
        if last != stop:
            raise DamagedRun(f"metrics.csv has {len(epochs)} rows ending at epoch {last}; "
                             f"summary.json says the run stopped at epoch {stop} (cut short?)")


# ---------------------------------------------------------------------------------------------
# Sweep-folder files


def read_jobs(sweep_dir: Path, name: str, key: str) -> tuple[list[dict], str | None]:
    """``skipped.json`` / ``missing.json``: ``({key: [{"overrides": [...], ...}]})`` -> the list.

    Returns ``(jobs, problem)``: an absent file gives ``([], None)``; a damaged one ``([], reason)``.
    Entries that are not objects with a list of string overrides are dropped (and counted in the
    reason).
    """
    path = Path(sweep_dir) / name
    if not path.is_file():
        return [], None
    try:
        jobs = read_json_object(path).get(key)
    except DamagedRun as error:
        return [], str(error)
    if not isinstance(jobs, list):
        return [], f"{name} has no list under {key!r}"
    good = [job for job in jobs if isinstance(job, dict) and isinstance(job.get("overrides", []), list)
            and all(isinstance(o, str) for o in job.get("overrides", []))]
    problem = f"{name}: {len(jobs) - len(good)} entries are not jobs" if len(good) < len(jobs) else None
    return good, problem


def read_sweep_plan(sweep_dir: Path) -> tuple[dict | None, str | None]:
    """``sweep.json`` (the protocol's plan) as a dict, or ``(None, reason)`` when damaged."""
    path = Path(sweep_dir) / "sweep.json"
    if not path.is_file():
        return None, None
    try:
        return read_json_object(path), None
    except DamagedRun as error:
        return None, str(error)


def read_tuned(sweep_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """``tuned.csv`` (one row per arm: arm keys, tuned keys, objective, ...) or ``(None, reason)``."""
    path = Path(sweep_dir) / "tuned.csv"
    if not path.is_file():
        return None, None
    try:
        return read_csv(path, numeric=False), None
    except DamagedRun as error:
        return None, str(error)


def read_multirun(sweep_dir: Path) -> dict | None:
    """Hydra's ``multirun.yaml`` (safe_load) as a dict, None when absent or not a mapping."""
    try:
        config = yaml.safe_load(read_text(Path(sweep_dir) / "multirun.yaml"))
    except (DamagedRun, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None
