"""End-to-end: the real ``lossbench`` CLI in a subprocess, on small data, into ``tmp_path``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow

QUICK = ["trainer.epochs=3", "progress=none"]
# these sweeps check run folders and tables; the figures of real sweeps are drawn in test_sweeps_on_both_launchers_... and test_protocol
NO_FIGURES = "report.figures=false"


def _summaries(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/summary.json"))}


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.parametrize("overrides", [
    ["model=linear", "dataset=diabetes", "loss=l2", "optimizer=gd"],
    ["model=logistic", "dataset=breast_cancer", "loss=bce", "optimizer=sgd"],
    ["model=softmax", "dataset=iris", "loss=ce", "optimizer=momentum"],
    ["model=mlp", "dataset=digits", "loss=ce", "optimizer=adam", "model.hidden_sizes=[16]"],
], ids=["linear", "logistic", "softmax", "mlp"])
def test_a_single_run_per_model_records_everything(tmp_path, overrides):
    run_dir = tmp_path / "run"
    proc = _ok(run_cli([*overrides, "trainer.epochs=3", "progress=auto", f"hydra.run.dir={run_dir}"], cwd=tmp_path))
    assert "run directory: run\n" in proc.stdout  # shown relative to the working directory
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stop_epoch"] == 3
    assert summary["provenance"]["versions"]["numpy"] == np.__version__
    assert len(summary["config_hash"]) == 16
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1, 2, 3]
    assert {"epoch", "step", "time_s", "lr", "grad_norm", "train_loss", "test_loss"} <= set(metrics.columns)
    assert summary["final"]["train_loss"] == pytest.approx(metrics["train_loss"].iloc[-1])
    params = np.load(run_dir / "params.npz")
    assert len(params.files) >= 2
    classification = summary["task"] == "classification"
    assert ("test_accuracy" in metrics) == classification and ("test_r2" in metrics) == (not classification)
    assert (run_dir / "calibration.csv").exists() == classification
    provenance = summary["provenance"]
    assert provenance["python"] and provenance["versions"]["hydra-core"] and provenance["blas"]
    assert all(blas["num_threads"] == 1 for blas in provenance["blas"]), "one BLAS thread per run by default"
    assert not list(run_dir.glob(".*.tmp")), "atomic writes leave no temporary files"
    epoch_lines = [line for line in (run_dir / "lossbench.log").read_text().splitlines() if " - epoch " in line]
    assert len(epoch_lines) == 4, "a non-interactive run logs one line per evaluation"


def test_python_dash_m_and_the_default_run_directory(tmp_path):
    _ok(run_cli([*QUICK], cwd=tmp_path))
    runs = list((tmp_path / "runs").glob("*/summary.json"))
    assert len(runs) == 1


def _sweep(tmp_path, name, extra=()):
    sweep_dir = tmp_path / name
    args = ["-m", "dataset=iris", "model=softmax", "loss=l2,ce", "seed=0,1", *QUICK,
            f"hydra.sweep.dir={sweep_dir}", *extra]
    return sweep_dir, run_cli(args, cwd=tmp_path)


def _curves(sweep_dir):
    frames = {}
    for run in sorted(p.parent for p in sweep_dir.glob("*/metrics.csv")):
        frames[run.name] = pd.read_csv(run / "metrics.csv").drop(columns=["time_s"])
    return frames


def test_sweeps_on_both_launchers_give_identical_numbers_and_a_report(tmp_path):
    basic_dir, proc = _sweep(tmp_path, "basic")
    _ok(proc)
    joblib_dir, proc = _sweep(tmp_path, "joblib", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    _ok(proc)
    for sweep_dir in (basic_dir, joblib_dir):
        summaries = _summaries(sweep_dir)
        assert len(summaries) == 4 and all(s["status"] == "completed" for s in summaries.values())
        assert (sweep_dir / "results.csv").exists() and (sweep_dir / "report" / "index.html").exists()
    basic, joblib = _curves(basic_dir), _curves(joblib_dir)
    assert basic.keys() == joblib.keys() and len(basic) == 4
    for name in basic:
        pd.testing.assert_frame_equal(basic[name], joblib[name], check_exact=True)
    assert "report" in proc.stdout


def test_a_diverging_run_is_a_result_and_the_sweep_goes_on(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = _ok(run_cli(["-m", NO_FIGURES, "dataset=diabetes", "model=linear", "loss=l2", "optimizer=gd",
                        "optimizer.lr=0.01,100", "trainer.epochs=20", "progress=none",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path))
    statuses = {s["config"]["optimizer"]["lr"]: s["status"] for s in _summaries(sweep_dir).values()}
    assert statuses == {0.01: "completed", 100: "diverged"}
    results = pd.read_csv(sweep_dir / "results.csv")
    assert sorted(results["status"]) == ["completed", "diverged"]
    assert "diverged" in proc.stdout


def test_a_csv_data_set(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    frame = pd.DataFrame(X, columns=["height", "weight", "age"])
    frame["species"] = np.where(X[:, 0] + X[:, 1] > 0, "cat", "dog")
    frame.to_csv(tmp_path / "animals.csv", index=False)
    run_dir = tmp_path / "run"
    _ok(run_cli(["dataset=csv", "dataset.path=animals.csv", "dataset.target=species", "model=logistic",
                 "loss=bce", *QUICK, f"hydra.run.dir={run_dir}"], cwd=tmp_path))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["task"] == "classification"
    assert summary["final"]["test_accuracy"] > 0.6


BAD_CLI = [
    (["optimizer.lr=-1"], ["optimizer.lr", "-1"]),
    (["loss=bogus"], ["loss/bogus", "ce"]),  # Hydra's own message lists the options
    (["model=logistic"], ["model=logistic", "softmax"]),
    (["dataset=diabetes", "model=linear", "loss=ce"], ["loss=ce"]),
    (["trainer.epochs=0"], ["trainer.epochs=0"]),
    (["dataset=csv", "dataset.path=missing.csv", "dataset.target=y"], ["missing.csv"]),
    (["dataset=csv"], ["dataset.path", "required"]),
    (["optimizer.lr=${oops}"], ["optimizer.lr", "oops"]),
]


@pytest.mark.parametrize("overrides, fragments", BAD_CLI, ids=[" ".join(o) for o, _ in BAD_CLI])
def test_bad_input_exits_nonzero_without_traceback_or_a_finished_run(tmp_path, overrides, fragments):
    proc = run_cli([*QUICK, *overrides], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in {proc.stderr!r}"
    assert not list(tmp_path.rglob("summary.json"))
    assert not list(tmp_path.rglob("metrics.csv"))


def test_a_sweep_with_one_bad_job_starts_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(["-m", NO_FIGURES, "optimizer.lr=0.1,-1", *QUICK, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "optimizer.lr=-1" in proc.stderr and "1 of 2 jobs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("summary.json"))


def test_skip_invalid_runs_the_valid_combinations(tmp_path):
    sweep_dir = tmp_path / "sweep"
    _ok(run_cli(["-m", NO_FIGURES, "dataset=breast_cancer", "model=logistic", "loss=bce,ce", "sweep.skip_invalid=true",
                 *QUICK, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path))
    summaries = _summaries(sweep_dir)
    assert [s["choices"]["loss"] for s in summaries.values()] == ["bce"]
    job_dirs = [p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name != "report"]
    assert len(job_dirs) == 1 and "loss=bce" in job_dirs[0], "the skipped job leaves no folder behind"


def test_an_interrupted_sweep_resumes_and_skips_completed_runs(tmp_path):
    sweep_dir, proc = _sweep(tmp_path, "sweep", [NO_FIGURES])
    _ok(proc)
    before = _summaries(sweep_dir)
    lost = sorted(before)[0]
    (sweep_dir / lost / "summary.json").unlink()  # as if the job had been killed before finishing
    (sweep_dir / lost / "metrics.csv").unlink()
    # the same sweep, overrides in another order: jobs are matched by config hash, not job number
    proc = _ok(run_cli(["-m", NO_FIGURES, "seed=1,0", "loss=ce,l2", "model=softmax", "dataset=iris", *QUICK,
                        f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path))
    after = _summaries(sweep_dir)
    assert after.keys() == before.keys()
    for name, summary in after.items():
        same = summary["finished_at"] == before[name]["finished_at"] if name in before and name != lost else False
        assert same == (name != lost), name
    assert "lossbench: 4 jobs: 1 to run, 3 finished earlier, 0 skipped (cannot work)" in proc.stdout
    assert "3 reused" in proc.stdout


EXPLODING_LOSS = '''
import numpy as np


class Exploding:
    """Squared error that raises on its second call: validation passes, training fails."""

    def __init__(self):
        self.calls = 0

    def __call__(self, outputs, targets):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom in training")
        residual = outputs - targets
        return (residual ** 2).mean(axis=1), 2 * residual / outputs.shape[1]
'''


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    (tmp_path / "exploding.py").write_text(EXPLODING_LOSS)
    (tmp_path / "my_conf" / "loss").mkdir(parents=True)
    (tmp_path / "my_conf" / "loss" / "exploding.yaml").write_text("_target_: exploding.Exploding\n")
    sweep_dir = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = _ok(subprocess.run(
        [sys.executable, "-m", "lossbench", "--config-dir", "my_conf", "-m", "dataset=diabetes", "model=linear",
         "loss=exploding,l2", *QUICK, NO_FIGURES, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL))
    by_loss = {s["choices"]["loss"]: s for s in _summaries(sweep_dir).values()}
    assert by_loss["l2"]["status"] == "completed"
    assert by_loss["exploding"]["status"] == "failed"
    assert "boom in training" in by_loss["exploding"]["message"]
    results = pd.read_csv(sweep_dir / "results.csv")
    assert sorted(results["status"]) == ["completed", "failed"]
    assert "boom in training" in (sweep_dir / "report" / "index.html").read_text()
    assert "1 failed" in proc.stdout
