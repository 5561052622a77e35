"""A run's files: atomic writes, strict JSON, and which earlier runs a resumed sweep reuses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lossbench.records import (FINISHED_INDEX, atomic_write_text, find_finished_run, index_finished_runs,
                               lossbench_version, read_json, write_json, write_metrics, write_params)

VERSION = {"lossbench_version": lossbench_version()}


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json(path, {"status": "completed"})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("lossbench.records.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "half")
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_json_is_strict_even_with_non_finite_numbers(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"final": {"train_loss": float("inf"), "val_loss": float("nan")}, "seed": np.int64(3)})
    parsed = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))
    assert parsed == {"final": {"train_loss": "inf", "val_loss": "nan"}, "seed": 3}


def test_metrics_and_params_round_trip(tmp_path):
    records = [{"epoch": 0, "train_loss": 1.5}, {"epoch": 1, "train_loss": 0.25}]
    write_metrics(tmp_path / "metrics.csv", records)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), pd.DataFrame(records))
    params = {"W1": np.arange(6.0).reshape(2, 3), "b1": np.zeros(3, dtype=np.float32)}
    write_params(tmp_path / "params.npz", params)
    loaded = np.load(tmp_path / "params.npz")
    for key, value in params.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype


@pytest.mark.parametrize("status, reused", [("completed", True), ("diverged", True), ("failed", False)])
def test_a_resumed_sweep_reuses_results_but_retries_failures(tmp_path, status, reused):
    run_dir = tmp_path / "loss=ce,seed=0"
    write_json(run_dir / "summary.json", {"status": status, "config_hash": "abc", **VERSION})
    assert (find_finished_run(tmp_path, "abc") == run_dir) is reused
    assert find_finished_run(tmp_path, "other") is None


def test_an_unreadable_summary_is_not_a_finished_run(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "summary.json").write_text('{"status": "compl')  # cut off mid-write
    assert read_json(tmp_path / "job" / "summary.json") is None
    assert find_finished_run(tmp_path, "abc") is None


def test_a_sweep_looks_finished_runs_up_in_the_index_written_when_it_started(tmp_path):
    write_json(tmp_path / "loss=ce,seed=0" / "summary.json", {"status": "completed", "config_hash": "abc", **VERSION})
    write_json(tmp_path / "loss=l2,seed=0" / "summary.json", {"status": "failed", "config_hash": "def", **VERSION})
    index_finished_runs(tmp_path)
    assert json.loads((tmp_path / FINISHED_INDEX).read_text()) == {"abc": "loss=ce,seed=0"}
    assert find_finished_run(tmp_path, "abc") == tmp_path / "loss=ce,seed=0"
    assert find_finished_run(tmp_path, "def") is None
    # the index names a folder; the folder's own summary must still say so (a lost run is redone)
    (tmp_path / "loss=ce,seed=0" / "summary.json").unlink()
    assert find_finished_run(tmp_path, "abc") is None


def test_a_run_of_another_lossbench_version_is_not_reused(tmp_path):
    run_dir = tmp_path / "loss=ce,seed=0"
    write_json(run_dir / "summary.json", {"status": "completed", "config_hash": "abc", "lossbench_version": "0.0.0"})
    assert find_finished_run(tmp_path, "abc") is None
