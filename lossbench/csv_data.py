"""CSV files as a data source: ``conf/dataset/csv.yaml`` (``_target_: lossbench.data.CSV``).

The header row is read first, with the csv module, and checked before pandas reads the file:
duplicate column names (pandas would rename them silently, ``y`` -> ``y.1``), more than
``MAX_CSV_COLUMNS`` columns, an absent target. Every error names the file and the column, in one
short line (long lists end with "… and N more"). The split, standardisation and corruption are
:class:`lossbench.data.DataSource`'s, as for every source.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import to_absolute_path

from lossbench.data import CLASSIFICATION, MAX_AUTO_CLASSES, REGRESSION, DataSource, _invalid, _RawData

TASKS = ("auto", CLASSIFICATION, REGRESSION)
#: CSV files with more columns are refused from their header alone (pandas reads about 40,000
#: columns a second, so this bounds a load to a few seconds)
MAX_CSV_COLUMNS = 100_000
#: messages list at most this many names, then "... and N more"
_LISTED = 10


def _shortened(items: list[str]) -> str:
    """``"a, b, c"``, or the first ``_LISTED`` items and "… and 999,990 more": messages stay short."""
    if len(items) <= _LISTED:
        return ", ".join(items)
    return ", ".join(items[:_LISTED]) + f" … and {len(items) - _LISTED:,} more"


class CSV(DataSource):
    """A CSV file with a header row: one target column, every other column a numeric feature.

    path : the file; a relative path is taken relative to the directory lossbench was started
        from (Hydra's original working directory, even if Hydra changed it).
    target : name of the target column.
    task : auto | classification | regression. ``auto`` is classification when the target column
        is non-numeric (strings, any number of distinct values) or boolean, or integer-valued
        (e.g. 0, 1, 2 or 1.0, 2.0) with at most 20 distinct values; otherwise regression.
    Classification labels are encoded 0..C-1 in sorted order of their values; class_names keeps
    the original values as strings. Features must be numeric (booleans count as 0/1) with no
    missing values: the file is not imputed or one-hot encoded for you.
    Other keys: see DataSource. Every error about the file names the file and the column.
    """

    def __init__(self, path: str, target: str, task: str = "auto", **common):
        if not isinstance(path, str) or not path:
            raise _invalid("path", path, "the path of a CSV file")
        if not isinstance(target, str) or not target:
            raise _invalid("target", target, "the name of the target column")
        if task not in TASKS:
            raise _invalid("task", task, "one of " + ", ".join(TASKS))
        self.path = Path(to_absolute_path(path)).expanduser()
        self.target = target
        self.task = task
        self.name = self.path.stem
        super().__init__(**common)
        if task != "auto":
            self._check_task_keys(task)
        try:
            is_file, is_dir = self.path.is_file(), self.path.is_dir()
        except OSError as err:  # e.g. a name longer than the file system allows
            raise self._error(f"cannot use this path: {err.strerror}") from None
        if not is_file:
            raise self._error(f"file not found{' (a directory)' if is_dir else ''}")

    def _error(self, problem: str, column: str | None = None) -> ValueError:
        column = self.target if column is None else column
        return ValueError(f"CSV file '{self._shown_path()}', column {str(column)[:60]!r}: {problem}")

    def _shown_path(self) -> str:
        """The path for messages: in full up to 160 characters, else its head and tail."""
        path = str(self.path)
        return path if len(path) <= 160 else f"{path[:100]}…{path[-50:]}"

    def _header(self) -> list[str]:
        """The column names of the header row, read with the csv module (pandas renames duplicates silently)."""
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as file:  # utf-8-sig: as pandas, drop a BOM
                header = next(csv.reader(file), None)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise self._error(f"cannot read the header row: {str(err)[:200]}") from None
        if not header:
            raise self._error("cannot read the file: it is empty (no header row)")
        if len(header) > MAX_CSV_COLUMNS:
            raise self._error(f"the header has {len(header):,} columns; at most {MAX_CSV_COLUMNS:,} are supported")
        counts = Counter(header)
        duplicates = [f"{name[:40]!r} ({count} times)" for name, count in counts.items() if count > 1]
        if duplicates:
            raise ValueError(f"CSV file '{self._shown_path()}': duplicate column names {_shortened(duplicates)}; "
                             "every column needs its own name")
        return header

    def _read(self, rng):
        header = self._header()
        if self.target not in header:
            raise self._error("no such column; the file has columns " + _shortened([repr(c[:40]) for c in header]))
        try:
            frame = pd.read_csv(self.path)
        except FileNotFoundError:
            raise self._error("file not found") from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise self._error(f"cannot read the file: {str(e)[:200]}") from None
        if self.target not in frame.columns:  # pandas parsed the header differently from the csv module
            raise self._error("no such column in the data pandas reads from the file")
        if len(frame) == 0:
            raise self._error("the file has a header but no data rows")
        feature_columns = [c for c in frame.columns if c != self.target]
        if not feature_columns:
            raise self._error("the target is the only column; no features left")

        numeric = np.array([pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
                            for dtype in frame.dtypes])
        missing = np.zeros(frame.shape[1], dtype=np.int64)  # per column, vectorised over wide files
        if numeric.any():
            missing[numeric] = np.isnan(frame.iloc[:, numeric].to_numpy(dtype=np.float64)).sum(axis=0)
        for j in np.flatnonzero(~numeric):
            missing[j] = frame.iloc[:, j].isna().sum()
        if missing.any():
            columns = np.flatnonzero(missing)
            column = frame.columns[columns[0]]
            first_line = int(np.flatnonzero(frame.iloc[:, columns[0]].isna().to_numpy())[0]) + 2
            others = [f"column {frame.columns[j]!r}: {missing[j]}" for j in columns[1:]]
            raise self._error(
                f"{missing[columns[0]]} missing value(s) (first on line {first_line})"
                f"{', ' + _shortened(others) if others else ''}; fill or drop them first",
                column,
            )

        X = self._features(frame, feature_columns, numeric)
        task = self.task if self.task != "auto" else _auto_task(frame[self.target])
        self._check_task_keys(task)
        if task == CLASSIFICATION:
            y, class_names = self._labels(frame[self.target])
            return _RawData(X, y, task, [str(c) for c in feature_columns], class_names)
        y = self._numeric_target(frame[self.target])
        return _RawData(X, y.reshape(-1, 1), task, [str(c) for c in feature_columns], None)

    def _features(self, frame: pd.DataFrame, feature_columns: list, numeric: np.ndarray) -> np.ndarray:
        """The feature columns as float64 (n, d): numeric ones in one block, the others one by one."""
        target_index = frame.columns.get_loc(self.target)
        keep = np.arange(frame.shape[1]) != target_index
        X = np.empty((len(frame), len(feature_columns)), dtype=np.float64)
        feature_numeric = numeric[keep]
        if feature_numeric.any():
            block = frame.iloc[:, np.flatnonzero(keep & numeric)].to_numpy(dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                bad = ~np.isfinite(block).all(axis=0) | ~np.isfinite(np.std(block, axis=0))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                self._finite(block[:, j], frame.columns[np.flatnonzero(keep & numeric)[j]])
            X[:, feature_numeric] = block
        for position, j in zip(np.flatnonzero(~feature_numeric), np.flatnonzero(keep & ~numeric)):
            X[:, position] = self._numeric_feature(frame.iloc[:, j])
        return X

    def _numeric_feature(self, column: pd.Series) -> np.ndarray:
        """The column as float64, or an error showing the first non-numeric or infinite value."""
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            return self._finite(column.to_numpy(dtype=np.float64), column.name)
        converted = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(converted.isna().to_numpy())
        if bad.size:
            raise self._error(
                f"feature column is not numeric: value {column.iloc[bad[0]]!r} on line "
                f"{bad[0] + 2}; encode it as numbers (e.g. one-hot) or drop the column",
                column.name,
            )
        return self._finite(converted.to_numpy(dtype=np.float64), column.name)

    def _finite(self, values: np.ndarray, column) -> np.ndarray:
        """``values``, or an error naming the first infinite entry (NaN is caught earlier)."""
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise self._error(f"value {values[bad[0]]!r} on line {bad[0] + 2} is not finite "
                              f"({bad.size} such value{'s' if bad.size > 1 else ''})", column)
        with np.errstate(over="ignore", invalid="ignore"):
            spread = float(np.std(values)) if values.size else 0.0
        if not math.isfinite(spread):
            raise self._error("values are too large to standardise (their standard deviation "
                              "overflows float64); rescale the column", column)
        return values

    def _numeric_target(self, column: pd.Series) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            return self._finite(column.to_numpy(dtype=np.float64), column.name)
        converted = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(converted.isna().to_numpy())
        if bad.size or pd.api.types.is_bool_dtype(column):
            example = column.iloc[bad[0] if bad.size else 0]
            line = (bad[0] if bad.size else 0) + 2
            raise self._error(
                f"task=regression needs a numeric target, found {example!r} on line {line}; "
                "use task=classification or auto for class labels"
            )
        return converted.to_numpy(dtype=np.float64)

    def _labels(self, column: pd.Series) -> tuple[np.ndarray, list[str]]:
        """Labels 0..C-1 (sorted order of the values) and the values as class names."""
        values = column.to_numpy()
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            values = values.astype(str)
        classes, labels = np.unique(values, return_inverse=True)
        if len(classes) < 2:
            raise self._error(
                f"a single class ({str(classes[0])!r}) in {len(values)} rows; classification needs "
                "at least 2 classes"
            )
        if pd.api.types.is_float_dtype(column) and np.all(classes == np.round(classes)):
            classes = classes.astype(np.int64)  # 1.0, 2.0 -> "1", "2"
        return labels.astype(np.int64), [str(c) for c in classes]


def _auto_task(column: pd.Series) -> str:
    """classification for strings/booleans or <= 20 distinct integer values, else regression."""
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return CLASSIFICATION
    values = column.to_numpy(dtype=np.float64)
    integer_valued = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    if integer_valued and len(np.unique(values)) <= MAX_AUTO_CLASSES:
        return CLASSIFICATION
    return REGRESSION
