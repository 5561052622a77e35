"""Stacked packs through the real sweeper: the same files and numbers as runs trained one by one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

SWEEP = ["-m", "report.figures=false", "dataset=breast_cancer", "model=logistic", "loss=l2,bce", "optimizer.lr=0.01,0.1", "seed=0,1,2",
         "trainer.epochs=8", "progress=none"]


def _run_files(sweep_dir):
    return {path.parent.name: path.parent for path in sweep_dir.glob("*/summary.json")}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_stacked_sweep_writes_what_one_run_at_a_time_writes(tmp_path, launcher):
    stacked, alone = tmp_path / "stacked", tmp_path / "alone"
    for folder, extra in ((stacked, []), (alone, ["hydra.sweeper.stack_size=1"])):
        proc = run_cli([*SWEEP, f"hydra/launcher={launcher}", f"hydra.sweep.dir={folder}", *extra], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    runs_stacked, runs_alone = _run_files(stacked), _run_files(alone)
    assert sorted(runs_stacked) == sorted(runs_alone) and len(runs_stacked) == 12
    sizes = []
    for name, folder in runs_stacked.items():
        summary = json.loads((folder / "summary.json").read_text())
        summary_alone = json.loads((runs_alone[name] / "summary.json").read_text())
        sizes.append(summary["stack_size"])
        assert summary_alone["stack_size"] == 1
        assert summary["status"] == summary_alone["status"] == "completed"
        assert summary["config_hash"] == summary_alone["config_hash"]
        metrics = pd.read_csv(folder / "metrics.csv").drop(columns="time_s")
        metrics_alone = pd.read_csv(runs_alone[name] / "metrics.csv").drop(columns="time_s")
        pd.testing.assert_frame_equal(metrics, metrics_alone, check_exact=True)
        with np.load(folder / "params.npz", allow_pickle=False) as params, \
                np.load(runs_alone[name] / "params.npz", allow_pickle=False) as params_alone:
            assert sorted(params.files) == sorted(params_alone.files)
            for key in params.files:
                assert np.array_equal(params[key], params_alone[key])
    assert max(sizes) > 1, "no run shared a stacked pass"


@pytest.mark.slow
def test_a_stacked_sweep_resumes_and_reuses_every_run(tmp_path):
    folder = tmp_path / "sweep"
    first = run_cli([*SWEEP, f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli([*SWEEP, f"hydra.sweep.dir={folder}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 to run, 12 finished earlier" in again.stdout + again.stderr


@pytest.mark.slow
def test_each_run_of_a_pack_logs_its_own_epochs_and_keeps_its_own_troubles(tmp_path):
    """Epoch lines go to each run's own lossbench.log, and one run's damaged checkpoint (a folder
    where checkpoint.json should be) is that run's business: it is ignored, the pack completes."""
    folder = tmp_path / "sweep"
    args = ["-m", "report.figures=false", "dataset=breast_cancer", "model=logistic", "loss=bce", "seed=0,1,2,3", "trainer.epochs=4",
            "progress=log", f"hydra.sweep.dir={folder}"]
    broken = folder / "dataset=breast_cancer,loss=bce,model=logistic,seed=1,trainer.epochs=4"
    (broken / "checkpoint.json" / "x").mkdir(parents=True)
    proc = run_cli(args, cwd=tmp_path)
    statuses = {}
    for name, run_dir in _run_files(folder).items():
        summary = json.loads((run_dir / "summary.json").read_text())
        statuses[name] = summary["status"]
        epoch_lines = [line for line in (run_dir / "lossbench.log").read_text().splitlines() if " - epoch " in line]
        if summary["status"] == "completed":
            assert len(epoch_lines) == 5, (name, epoch_lines)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert set(statuses.values()) == {"completed"} and len(statuses) == 4, statuses
    assert "could not remove the checkpoint" in (broken / "lossbench.log").read_text()
