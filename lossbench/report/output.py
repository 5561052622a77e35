"""Writing the report's files: atomically, and CSV text cells that no spreadsheet runs as formulas.

Every file goes to a temporary name in its folder and is renamed over the target
(``lossbench.records.atomic_write_text``), so a full disk or a kill never leaves a shorter
``results.csv`` that reads as complete.

CSV text cells: a cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return would be run as a formula by Excel, LibreOffice or Google Sheets (CSV injection; a swept
value, a folder name or an error message can start that way). Such a cell is written with a single
quote in front (``'=1+2``), the OWASP recommendation; numbers are never touched (a numeric column
stays numeric, ``-0.5`` stays a number). ``read_csv_cells`` undoes the prefix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lossbench.records import atomic_write_bytes, atomic_write_text

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """``value`` with a ``'`` in front when it is text that a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def unsafe_cell(value):
    """Undo ``safe_cell``: ``"'=1+2"`` -> ``"=1+2"``; other values unchanged."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text with every text cell (and column name) passed through ``safe_cell``."""
    frame = frame.copy()
    for column in frame.columns:
        if _is_text(frame[column]):
            frame[column] = frame[column].map(safe_cell)
    frame.columns = [safe_cell(str(c)) for c in frame.columns]
    return frame.to_csv(index=False, lineterminator="\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as a formula-safe CSV file, atomically."""
    atomic_write_text(Path(path), csv_text(frame))


def read_csv_cells(path: Path) -> pd.DataFrame:
    """A CSV written by ``write_csv``, with the formula-guard quotes removed again."""
    frame = pd.read_csv(path)
    for column in frame.columns:
        if _is_text(frame[column]):
            frame[column] = frame[column].map(unsafe_cell)
    frame.columns = [unsafe_cell(c) for c in frame.columns]
    return frame


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_text(Path(path), text)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically: a temporary file in the same folder, fsync, rename."""
    atomic_write_bytes(Path(path), data)
