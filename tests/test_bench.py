"""The benchmark (``python -m lossbench.bench``): its outputs are produced and well formed.

No timing is asserted anywhere: the numbers depend on the machine. The tests check that the
table, the CSV files and the figure exist and hold what they promise.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_cli
from lossbench import bench

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MEASUREMENT_COLUMNS = ["section", "case", "contender", "metric", "unit", "median", "min", "max", "count"]
TARGET_COLUMNS = ["name", "threshold", "measured", "unit", "status", "note", "margin"]


def _check_outputs(out, sections):
    """The files of a benchmark run in ``out`` are complete and consistent with each other."""
    measurements = pd.read_csv(out / "measurements.csv")
    targets = pd.read_csv(out / "targets.csv", keep_default_na=False)
    assert list(measurements.columns) == MEASUREMENT_COLUMNS
    assert list(targets.columns) == TARGET_COLUMNS
    assert set(measurements["section"]) == set(sections)
    assert (measurements["count"] >= 1).all()
    assert (measurements["min"] <= measurements["median"]).all()
    assert (measurements["median"] <= measurements["max"]).all()
    assert set(targets["status"]) <= {"PASS", "MISS", "INFO", "SKIP"}
    graded = targets[targets["status"].isin(["PASS", "MISS"])]
    assert len(graded) > 0 and graded["threshold"].str.match(r"^(>=|<=|\d)").all()
    table = (out / "table.txt").read_text()
    for name in targets["name"]:
        assert name in table
    assert "total duration" in table
    assert (out / "bench.png").read_bytes()[:8] == PNG_SIGNATURE
    environment = json.loads((out / "environment.json").read_text())
    assert environment["sections"] == list(sections) and environment["duration_s"] > 0
    return measurements, targets


def test_alternate_rotates_the_order_and_keeps_every_sample():
    calls = []

    def contender(name):
        def run(rep):
            calls.append((rep, name))
            return [float(rep), float(rep) + 0.5]
        return run

    samples = bench.alternate({"a": contender("a"), "b": contender("b"), "c": contender("c")}, reps=3)
    assert samples == {name: [0.0, 0.5, 1.0, 1.5, 2.0, 2.5] for name in "abc"}
    assert [name for rep, name in calls if rep == 0] == ["a", "b", "c"]
    assert [name for rep, name in calls if rep == 1] == ["b", "c", "a"]
    assert [name for rep, name in calls if rep == 2] == ["c", "a", "b"]


def test_flops_of_a_training_sample_counted_by_hand():
    # d=3 inputs, h=4 hidden, k=2 outputs: forward X@W1 (2*3*4) + a@W2 (2*4*2);
    # backward dW2 = a.T@dz (2*4*2), da = dz@W2.T (2*4*2), dW1 = X.T@dz1 (2*3*4); no gradient for X
    assert bench.mlp_flops_per_sample(3, 4, 2) == 24 + 16 + 16 + 16 + 24


@pytest.mark.parametrize("argv, message", [
    (["--sections", "mlp,nope"], "unknown ['nope']"),
    (["--reps", "0"], "--reps must be >= 1"),
], ids=["unknown-section", "zero-reps"])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_quick_in_process_sections_write_table_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--no-torch", "--sections", "mlp,flops", "--out", str(out)]) == 0
    measurements, targets = _check_outputs(out, ["mlp", "flops"])
    printed = capsys.readouterr().out
    assert "big MLP adam float64: sklearn / lossbench per epoch" in printed
    mlp = measurements[measurements["section"] == "mlp"]
    assert set(mlp["contender"]) == {"lossbench", "sklearn", "matmuls alone"}
    assert set(mlp["case"]) == {"adam float64", "adam float32", "sgd float64", "sgd float32"}
    assert (mlp["unit"] == "s").all() and (mlp["median"] > 0).all()
    speedups = targets[targets["name"].str.contains("float64: sklearn / lossbench")]
    assert len(speedups) == 2 and set(speedups["status"]) <= {"PASS", "MISS"}


@pytest.mark.slow
def test_quick_benchmark_cli_runs_every_section(tmp_path):
    out = tmp_path / "bench"
    result = run_cli(["--quick", "--no-torch", "--out", str(out)], cwd=tmp_path, timeout=600, module="lossbench.bench")
    assert result.returncode == 0, result.stderr[-3000:]
    measurements, targets = _check_outputs(out, bench.SECTIONS)
    assert "targets met" in result.stdout and str(out) in result.stdout
    for name in ["startup: process start to first training step", "memory: peak RSS of the big MLP run",
                 "sweep: cost of each further run beyond its training"]:
        assert name in set(targets["name"])
    sweep = measurements[measurements["section"] == "sweep"]
    assert {"basic", "joblib", "machine"} <= set(sweep["contender"])


def test_quick_stack_section_prints_the_stacking_targets(tmp_path, capsys):
    out = tmp_path / "bench"
    assert bench.main(["--quick", "--no-torch", "--sections", "stack", "--out", str(out)]) == 0
    measurements, targets = _check_outputs(out, ["stack"])
    printed = capsys.readouterr().out
    for name in ("stack: 14 logistic runs on breast_cancer (lr grid x 2 seeds), one after another / stacked",
                 "stack: 10 MLP runs on digits (hidden 32, batch 32), one after another / stacked",
                 "stack: 10 softmax runs at batch 1, per run: alone / stacked",
                 "stack: batch 1 per run, SGDClassifier / stacked lossbench"):
        assert name in printed and name in set(targets["name"])
    graded = targets[targets["name"].str.contains("one after another / stacked|alone / stacked")]
    assert len(graded) == 3 and set(graded["status"]) <= {"PASS", "MISS"}
    assert set(measurements["contender"]) == {"alone", "stacked", "sklearn SGDClassifier"}
