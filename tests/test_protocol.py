"""protocol=tune: grids, the choice of a setting, edge extension, and both stages end to end."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from conftest import run_cli
from lossbench.sweep.protocol import Arm, _edge_extension, choose, fmt, log_grid, step_beyond


def test_the_default_grid_spans_four_decades_around_the_preset():
    grid = log_grid(0.1, 4, 1)
    assert grid == [0.001, 0.01, 0.1, 1.0, 10.0]
    assert max(grid) / min(grid) >= 1e4
    assert log_grid(0.003, 4, 2)[4] == 0.003 and len(log_grid(0.003, 4, 2)) == 9
    assert [fmt(v) for v in grid] == ["0.001", "0.01", "0.1", "1.0", "10.0"]


def test_one_step_beyond_an_edge():
    assert step_beyond([0.01, 0.1, 1.0], upper=True, ratio=10.0) == 10.0
    assert step_beyond([0.01, 0.1, 1.0], upper=False, ratio=10.0) == 0.001
    assert step_beyond([0.5, 0.9, 0.99], upper=True, ratio=None) == pytest.approx(0.99 * 0.99 / 0.9)
    assert step_beyond([-1.0, 0.0, 1.0], upper=False, ratio=None) == -2.0


class _Job:
    def __init__(self, summary):
        self.summary, self.task = summary, "classification"


class _Engine:
    def summary_of(self, job):
        return job.summary


def _run(status, accuracy):
    return _Job({"status": status, "task": "classification", "final": {"val_accuracy": accuracy}})


def _arm(results: dict) -> Arm:
    arm = Arm(("loss=ce",))
    arm.grid = {"optimizer.lr": [float(s.split("=")[1]) for s in results]}
    for setting, runs in results.items():
        arm.settings.append((setting,))
        arm.jobs[(setting,)] = runs
    return arm


def test_a_setting_where_a_tuning_seed_diverged_never_wins():
    arm = _arm({"optimizer.lr=0.1": [_run("completed", 0.90), _run("completed", 0.91)],
                "optimizer.lr=1.0": [_run("completed", 0.99), _run("diverged", 0.98)],
                "optimizer.lr=10.0": [_run("completed", 0.99), _run("failed", math.nan)]})
    choose(_Engine(), arm, "auto", "classification")
    assert arm.choice == ("optimizer.lr=0.1",) and arm.choice_safe
    assert arm.choice_value == pytest.approx(0.905)


def test_the_objective_direction_and_ties():
    arm = _arm({"optimizer.lr=0.1": [_run("completed", 0.5)], "optimizer.lr=1.0": [_run("completed", 0.5)]})
    choose(_Engine(), arm, "auto", "classification")
    assert arm.choice == ("optimizer.lr=0.1",), "a tie keeps the first setting of the grid"
    loss_arm = _arm({"optimizer.lr=0.1": [_Job({"status": "completed", "task": "regression", "final": {"val_loss": 2.0}})],
                     "optimizer.lr=1.0": [_Job({"status": "completed", "task": "regression", "final": {"val_loss": 1.0}})]})
    choose(_Engine(), loss_arm, "auto", "regression")
    assert loss_arm.choice == ("optimizer.lr=1.0",), "a loss is minimised"


def test_a_winner_on_the_edge_extends_the_grid_one_step():
    arm = _arm({"optimizer.lr=0.1": [_run("completed", 0.5)], "optimizer.lr=1.0": [_run("completed", 0.9)]})
    arm.ratio = {"optimizer.lr": 10.0}
    choose(_Engine(), arm, "auto", "classification")
    assert _edge_extension(arm, ["optimizer.lr"]) and arm.grid["optimizer.lr"] == [0.1, 1.0, 10.0]
    inside = _arm({"optimizer.lr=0.1": [_run("completed", 0.5)], "optimizer.lr=1.0": [_run("completed", 0.9)],
                   "optimizer.lr=10.0": [_run("completed", 0.6)]})
    inside.ratio = {"optimizer.lr": 10.0}
    choose(_Engine(), inside, "auto", "classification")
    assert not _edge_extension(inside, ["optimizer.lr"])


def _attempts(sweep_dir):
    return {p.parent.name: p.read_text().count("attempt started by pid") for p in sweep_dir.glob("*/lossbench.log")}


STUDY = """# @package _global_
defaults:
  - override /dataset: iris
  - override /protocol: tune
  - override /hydra/launcher: joblib
trainer:
  epochs: 5
sweep:
  protocol:
    decades: 2
    confirm_seeds: [0, 1, 2]
hydra:
  sweeper:
    params:
      loss: l2,ce
"""


@pytest.mark.slow
def test_tune_then_confirm_end_to_end_and_resume_across_both_stages(tmp_path):
    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    (tmp_path / "my_conf" / "experiment" / "tiny_tune.yaml").write_text(STUDY)  # a study selects the protocol
    sweep_dir = tmp_path / "tuned"
    args = ["--config-dir", "my_conf", "-m", "experiment=tiny_tune", "progress=none", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lossbench: tune: 12 jobs: 12 to run" in proc.stdout and "lossbench: confirm: 6 jobs" in proc.stdout
    tuned = pd.read_csv(sweep_dir / "tuned.csv")
    assert list(tuned.columns) == ["loss", "optimizer.lr", "objective", "objective_value", "n_settings",
                                   "edge_extended"]
    assert list(tuned["loss"]) == ["l2", "ce"] and set(tuned["objective"]) == {"val_accuracy"}
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    assert plan["protocol"] == "tune" and plan["arm_keys"] == ["loss"] and plan["tuned_keys"] == ["optimizer.lr"]
    assert plan["confirm_seeds"] == [0, 1, 2] and not set(plan["tuning_seeds"]) & set(plan["confirm_seeds"])
    assert plan["fixed_settings"]["dataset.name"] == "iris" and "loss._target_" not in plan["fixed_settings"]
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    confirm = [s for s in summaries if s["stage"] == "confirm"]
    assert len(confirm) == 6 and {s["seed"] for s in confirm} == {0, 1, 2}
    assert {s["seed"] for s in summaries if s["stage"] == "tune"} == set(plan["tuning_seeds"])
    # tuning runs are evaluated at epochs 0, 1, 2, 4 and the last (their objective is the last); the
    # confirmation runs, whose curves the report draws, at every epoch
    for path in sweep_dir.glob("*/metrics.csv"):
        stage = json.loads((path.parent / "summary.json").read_text())["stage"]
        epochs = list(pd.read_csv(path)["epoch"])
        assert epochs == ([0, 1, 2, 4, 5] if stage == "tune" else [0, 1, 2, 3, 4, 5]), (path.parent.name, epochs)
        assert ("trainer.evaluate=log" in path.parent.name) == (stage == "tune")
    for row in tuned.itertuples():
        lrs = {s["config"]["optimizer"]["lr"] for s in confirm if s["choices"]["loss"] == row.loss}
        assert lrs == {getattr(row, "_2")}, "each arm is confirmed at its chosen rate"
        tried = sorted({s["config"]["optimizer"]["lr"] for s in summaries
                        if s["stage"] == "tune" and s["choices"]["loss"] == row.loss})
        assert len(tried) == row.n_settings and row.edge_extended == (len(tried) > 3)

    # resume across both stages: lose one tuning run and one confirmation run
    lost = [next(p for p in sweep_dir.glob("*/summary.json") if json.loads(p.read_text())["stage"] == stage)
            for stage in ("tune", "confirm")]
    for path in lost:
        path.unlink()
    before = _attempts(sweep_dir)
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _attempts(sweep_dir)
    assert {name for name in after if after[name] != before[name]} == {p.parent.name for p in lost}
    assert pd.read_csv(sweep_dir / "tuned.csv").equals(tuned), "the same choices from the same runs"


@pytest.mark.slow
def test_tpe_search_tunes_two_keys_per_arm_and_resumes_with_the_same_settings(tmp_path):
    """sweep.protocol.search=tpe: Optuna's TPE sampler (ask/tell) over a log range of the rate and
    the swept momentum values; seeded, so a re-run asks the same settings and launches nothing."""
    args = ["-m", "report.figures=false", "protocol=tune", "sweep.protocol.search=tpe", "sweep.protocol.n_trials=3",
            "sweep.protocol.tuned=[optimizer.lr,optimizer.momentum]", "optimizer=momentum",
            "optimizer.momentum=0.5,0.9", "dataset=iris", "loss=l2,ce", "sweep.protocol.confirm_seeds=[0,1]",
            "trainer.epochs=3", "progress=none", f"hydra.sweep.dir={tmp_path / 'tpe'}"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "TPE trial 3 of 3" in first.stdout
    tuned = pd.read_csv(tmp_path / "tpe" / "tuned.csv")
    assert list(tuned["loss"]) == ["l2", "ce"] and (tuned["n_settings"] <= 3).all()
    lr = tuned["optimizer.lr"]
    assert ((lr >= 0.01 / 100) & (lr <= 0.01 * 100) & (lr != 0.01)).all()  # drawn from 4 decades around the preset 0.01
    assert set(tuned["optimizer.momentum"]) <= {0.5, 0.9}
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    plan_lines = [line for line in again.stdout.splitlines() if "jobs:" in line]
    assert len(plan_lines) == 4 and all(": 0 to run" in line for line in plan_lines), plan_lines
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "tpe" / "tuned.csv"), tuned)
