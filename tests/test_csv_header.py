"""CSV headers read before pandas: duplicate names refused, huge headers refused fast with short messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF
from lossbench.csv_data import MAX_CSV_COLUMNS


def load(path, target="y"):
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "dataset" / "csv.yaml"), {"path": str(path), "target": target})
    return instantiate(cfg).load(np.random.default_rng(0))


def refusal(path, target="y") -> str:
    with pytest.raises(ValueError) as error:
        load(path, target)
    message = str(error.value)
    assert str(path) in message and len(message) < 300 + len(str(path)), message
    return message


def write_rows(path, header, rows=6):
    rng = np.random.default_rng(0)
    lines = [",".join(header)] + [",".join(str(v) for v in rng.integers(0, 2, len(header))) for _ in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_duplicate_column_names_are_refused_naming_the_file_and_the_columns(tmp_path):
    # pandas would read the second 'y' as 'y.1', a copy of the target among the features
    path = write_rows(tmp_path / "dup.csv", ["a", "y", "b", "y", "a", "a"])
    message = refusal(path)
    assert "duplicate column names 'a' (3 times), 'y' (2 times)" in message


def test_many_duplicates_are_listed_briefly(tmp_path):
    path = write_rows(tmp_path / "dups.csv", [f"c{i % 30}" for i in range(60)] + ["y"])
    message = refusal(path)
    assert "'c0' (2 times)" in message and "… and 20 more" in message


def test_a_huge_header_is_refused_from_the_header_alone(tmp_path, monkeypatch):
    n = 10 ** 6
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(n)) + ",y\n" + ",".join(["1"] * (n + 1)) + "\n")

    def no_pandas(*args, **kwargs):
        raise AssertionError("pandas must not read a file the header already refuses")

    monkeypatch.setattr(pd, "read_csv", no_pandas)
    message = refusal(path)
    assert f"the header has {n + 1:,} columns; at most {MAX_CSV_COLUMNS:,} are supported" in message


def test_an_absent_target_lists_a_few_columns_and_counts_the_rest(tmp_path):
    path = write_rows(tmp_path / "many.csv", [f"feature{i}" for i in range(5000)])
    message = refusal(path, target="label")
    assert "'feature0', 'feature1'" in message and "… and 4,990 more" in message


def test_missing_values_in_many_columns_are_summarised(tmp_path):
    header = [f"x{i}" for i in range(40)] + ["y"]
    lines = [",".join(header)] + [",".join([""] * 40 + ["1"]), ",".join(["1"] * 40 + ["0"])] * 3
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(lines) + "\n")
    message = refusal(path)
    assert "3 missing value(s) (first on line 2)" in message and "… and 29 more" in message


def test_a_wide_numeric_file_within_the_limit_loads(tmp_path):
    path = write_rows(tmp_path / "wide.csv", [f"x{i}" for i in range(2000)] + ["y"], rows=20)
    data = load(path)
    assert data.X_train.shape[1] == 2000 and data.task == "classification"
    assert data.feature_names == [f"x{i}" for i in range(2000)]


def test_float_boolean_and_integer_features_keep_their_order(tmp_path):
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 3, "b": [True, False] * 6, "c": [1, 2, 3, 4] * 3,
                  "y": [0, 1] * 6}).to_csv(path, index=False)
    raw = instantiate(OmegaConf.merge(OmegaConf.load(CONF / "dataset" / "csv.yaml"),
                                      {"path": str(path), "target": "y", "test_size": 0, "val_size": 0}))._read(None)
    np.testing.assert_array_equal(raw.X[:4], [[1, 1, 1], [2, 0, 2], [3, 1, 3], [4, 0, 4]])
    assert raw.feature_names == ["a", "b", "c"]
