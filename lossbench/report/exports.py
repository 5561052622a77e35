"""The tables a report writes beside its page, typed and versioned, and their readers.

``results.csv`` (one row per run, tuning runs included with ``stage``), ``curves.csv`` (every
evaluation), ``report/stats.csv`` (the per-group statistics of the tables) and, for papers,
``report/stats.md`` and ``report/stats.tex`` (the main table). With ``pyarrow`` importable,
``results.parquet`` and ``curves.parquet`` too, with their dtypes. Every file is written
atomically; CSV text cells are formula-safe (``lossbench.report.output``).

Schema (``SCHEMA_VERSION`` = 2): ``results.csv`` has a ``schema_version`` column and, after the
compared keys, a column for every resolved setting that differs from lossbench's package defaults
in some run (``optimizer.lr``, ``model.hidden_sizes``, ``trainer.epochs``, ...). Version 1 (lossbench
< 0.2) had neither; ``read_results`` refuses it with what to do.
"""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench.report.common import REPLICATE_KEY, format_value
from lossbench.report.output import read_csv_cells, write_bytes, write_csv, write_text
from lossbench.report.settings import flatten, non_default_settings

SCHEMA_VERSION = 2
TEXT_COLUMNS = ("run_id", "run_dir", "sweep_dir", "group", "stage", "status", "message", "task",
                "config_hash", "primary_metric")
INTEGER_COLUMNS = ("schema_version", "stop_epoch", REPLICATE_KEY)


class SchemaError(ValueError):
    """A results table written by another lossbench version than this reader understands."""


def results_table(runs) -> pd.DataFrame:
    """``Runs.results`` and ``Runs.tune_results`` as the rows of ``results.csv`` (schema 2)."""
    frames = [frame for frame in (runs.results, runs.tune_results) if frame is not None and len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else runs.results.copy()
    ids = list(table["run_id"])
    configs = [runs.configs.get(i, {}) for i in ids]
    choices = [runs.choices.get(i, {}) for i in ids]
    settings = [key for key in non_default_settings(configs, choices) if key not in table.columns]
    flat = [flatten(config, choice) for config, choice in zip(configs, choices)]
    position = 1 + max((list(table.columns).index(k) for k in [*runs.group_keys, *runs.tuned_keys, REPLICATE_KEY]
                        if k in table.columns), default=0)
    for offset, key in enumerate(settings):
        values = [settings_of.get(key) for settings_of in flat]
        table.insert(position + offset, key, pd.Series(values, index=table.index, dtype=object))
    table.insert(0, "schema_version", SCHEMA_VERSION)
    return _typed(table)


def _is_text(series: pd.Series) -> bool:
    """Object or string dtype (pandas >= 3 reads text as ``str``, earlier versions as ``object``)."""
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns as object (None for missing), integer columns as nullable Int64, numbers as float."""
    table = table.copy()
    for column in table.columns:
        series = table[column]
        if column in TEXT_COLUMNS:
            table[column] = series.astype(object).where(series.notna(), None).map(
                lambda v: v if v is None else str(v))
        elif column in INTEGER_COLUMNS:
            numeric = pd.to_numeric(series, errors="coerce")
            if numeric.notna().sum() == series.notna().sum() and (numeric.dropna() % 1 == 0).all():
                table[column] = numeric.astype("Int64")
        elif _is_text(series):
            numeric = pd.to_numeric(series, errors="coerce")
            if series.notna().any() and numeric.notna().sum() == series.notna().sum() and \
                    not any(isinstance(v, (bool, np.bool_)) for v in series.dropna()):
                table[column] = numeric
    return table


def write_tables(runs, out_dir: Path, report_dir: Path, stats_table: pd.DataFrame,
                 main_table: pd.DataFrame | None = None) -> list[str]:
    """Write results/curves (CSV, Parquet when possible), report/stats.csv, .md and .tex.

    ``main_table``: the answer's table (one row per group, text cells) for stats.md/.tex.
    Returns the names written into ``out_dir`` and ``report_dir`` (relative to ``out_dir``).
    """
    results = results_table(runs)
    curves = _typed(runs.curves)
    written = []
    for name, frame in (("results", results), ("curves", curves)):
        write_csv(out_dir / f"{name}.csv", frame)
        written.append(f"{name}.csv")
        if _write_parquet(out_dir / f"{name}.parquet", frame):
            written.append(f"{name}.parquet")
    write_csv(report_dir / "stats.csv", stats_table)
    written.append("report/stats.csv")
    if main_table is not None and len(main_table):
        write_text(report_dir / "stats.md", markdown_table(main_table))
        write_text(report_dir / "stats.tex", latex_table(main_table))
        written += ["report/stats.md", "report/stats.tex"]
    return written


def _write_parquet(path: Path, frame: pd.DataFrame) -> bool:
    """Write ``frame`` as Parquet when pyarrow is importable; False (and no file) otherwise."""
    if importlib.util.find_spec("pyarrow") is None:
        path.unlink(missing_ok=True)  # an old one would no longer match the CSV
        return False
    frame = frame.copy()
    for column in frame.columns:  # mixed text and numbers: Parquet needs one type per column
        if _is_text(frame[column]) and len({type(v) for v in frame[column].dropna()}) > 1:
            frame[column] = frame[column].map(lambda v: v if v is None else format_value(v))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(path, buffer.getvalue())
    return True


# ---------------------------------------------------------------------------------------------
# Readers


def read_results(path: Path | str) -> pd.DataFrame:
    """The results of a sweep folder (or a results.csv / results.parquet path), typed.

    Prefers ``results.parquet`` (dtypes as written) when pyarrow is importable, else the CSV with
    the formula-guard quotes removed, text columns as object (None when empty), ``seed``,
    ``stop_epoch`` and ``schema_version`` as nullable integers. Raises ``SchemaError`` for a table
    of another schema version, saying how to rebuild it; FileNotFoundError when there is none.
    """
    return _read_table(Path(path), "results")


def read_curves(path: Path | str) -> pd.DataFrame:
    """Every evaluation of every run (``curves.parquet`` or ``curves.csv``), typed like ``read_results``."""
    return _read_table(Path(path), "curves", check_schema=False)


def _read_table(path: Path, name: str, check_schema: bool = True) -> pd.DataFrame:
    folder = path if path.is_dir() else path.parent
    candidates = [path] if path.is_file() else [folder / f"{name}.parquet", folder / f"{name}.csv"]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        if candidate.suffix == ".parquet":
            try:
                table = pd.read_parquet(candidate)
            except ImportError:
                continue
        else:
            table = _typed(read_csv_cells(candidate))
        if check_schema:
            _check_schema(table, candidate, folder)
        return table
    raise FileNotFoundError(f"no {name}.csv in '{folder}'; build it with: lossbench-report {folder}")


def _check_schema(table: pd.DataFrame, path: Path, folder: Path) -> None:
    if "schema_version" not in table.columns:
        raise SchemaError(f"{path} was written by lossbench < 0.2 (no schema_version column); "
                          f"rebuild it with: lossbench-report {folder}")
    versions = set(pd.to_numeric(table["schema_version"], errors="coerce").dropna().astype(int))
    if versions and versions != {SCHEMA_VERSION}:
        newer = max(versions) > SCHEMA_VERSION
        raise SchemaError(f"{path} has schema version {max(versions)}, this lossbench reads "
                          f"{SCHEMA_VERSION}; " + ("upgrade lossbench to read it" if newer else
                                                   f"rebuild it with: lossbench-report {folder}"))


# ---------------------------------------------------------------------------------------------
# Markdown and LaTeX


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    def cell(value) -> str:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "\u00a0": "~", "±": r"$\pm$", "−": "-", "≥": r"$\geq$", "≤": r"$\leq$", "★": r"$\star$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex_table(table: pd.DataFrame) -> str:
    """A ``tabular`` (booktabs rules) with every cell escaped for LaTeX."""
    def cell(value) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else latex_escape(value)

    lines = [r"% written by lossbench-report; needs \usepackage{booktabs}",
             r"\begin{tabular}{" + "l" * len(table.columns) + "}", r"\toprule",
             " & ".join(cell(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
