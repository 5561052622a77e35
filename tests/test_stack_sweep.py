"""Stacked packs through the real sweeper: the same files and numbers as runs trained one by one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

SWEEP = ["-m", "dataset=breast_cancer", "model=logistic", "loss=l2,bce", "optimizer.lr=0.01,0.1", "seed=0,1,2",
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
