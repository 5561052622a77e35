"""The sweep engine end to end: the real CLI in subprocesses, tiny data, under each launcher.

Kills and Ctrl-C are real signals (SIGKILL to a worker, SIGINT to the sweep); "nothing trained
twice" is read from each run's lossbench.log, which gets one separator line per attempt.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from lossbench.sweep.claim import held_elsewhere

pytestmark = pytest.mark.slow

# these sweeps check run folders and tables; the figures of real sweeps are drawn in test_cli and test_protocol
NO_FIGURES = "report.figures=false"
QUICK = ["trainer.epochs=2", "dataset=iris", NO_FIGURES]
ATTEMPT = "attempt started by pid"


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def _attempts(sweep_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.read_text().count(ATTEMPT) for p in sorted(sweep_dir.glob("*/lossbench.log"))}


def _job_files(sweep_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file below the job folders with its (mtime_ns, size): a no-op re-run changes none."""
    return {str(p.relative_to(sweep_dir)): (p.stat().st_mtime_ns, p.stat().st_size)
            for job in sweep_dir.iterdir() if job.is_dir() and job.name != "report" and not job.name.startswith(".")
            for p in job.rglob("*") if p.is_file()}


def test_plan_line_progress_and_a_no_op_resume_that_touches_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "dataset=breast_cancer", "model=logistic", "loss=bce,ce", "seed=0,1", "trainer.epochs=2", NO_FIGURES,
            "sweep.skip_invalid=true", f"hydra.sweep.dir={sweep_dir}"]
    proc = _ok(run_cli(args, cwd=tmp_path))
    assert "lossbench: 4 jobs: 2 to run, 0 finished earlier, 2 skipped (cannot work)\n" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in lines] == ["[1/2]", "[2/2]"]
    assert lines[0].startswith("[1/2] completed loss=bce,seed=0 test_accuracy=") and " s) ETA " in lines[0]
    assert "#0 :" not in proc.stdout + proc.stderr and "[HYDRA]" not in proc.stdout + proc.stderr, "no job dump"
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    for summary in summaries:
        assert summary["lossbench_version"] and summary["stage"] is None and summary["resumed_from_epoch"] == 0
        run_dir = sweep_dir / next(p.parent.name for p in sweep_dir.glob("*/summary.json")
                                   if json.loads(p.read_text())["config_hash"] == summary["config_hash"])
        assert set(summary["files"]) >= {"metrics.csv", "params.npz", "calibration.csv"}
        for name, digest in summary["files"].items():
            assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == digest
    before = _job_files(sweep_dir)

    again = _ok(run_cli([*args, "progress=none"], cwd=tmp_path))
    assert "lossbench: 4 jobs: 0 to run, 2 finished earlier, 2 skipped (cannot work)" in again.stdout
    assert not [line for line in again.stdout.splitlines() if line.startswith("[")], "progress=none: no run lines"
    assert "skipped:" not in again.stdout
    assert _job_files(sweep_dir) == before, "a no-op re-run touches no job folder"
    assert (sweep_dir / "report" / "index.html").exists() and "2 reused" in again.stdout


def _launcher_args(launcher: str) -> list[str]:
    if launcher == "submitit_local":
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    return {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            "submitit_local": ["hydra/launcher=submitit_local"]}[launcher]


def _as_at_a_terminal() -> None:
    """In the child before exec: Ctrl-C (SIGINT) acts, as at a terminal, even when this test process
    was started with SIGINT ignored (a shell's background job), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, cwd, env=None):
    env = dict(env or os.environ, PYTHONHASHSEED="0", HYDRA_FULL_ERROR="0")
    return subprocess.Popen([sys.executable, "-m", "lossbench", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=_as_at_a_terminal)


def _training_run(sweep_dir: Path, fragment: str, timeout: float = 90) -> int:
    """The pid training a run whose folder name contains ``fragment``, once it is training."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for owner in sweep_dir.glob(f"*{fragment}*/.lossbench.owner"):
            if not (owner.parent / "summary.json").exists():
                try:
                    return json.loads(owner.read_text())["pid"]
                except (OSError, ValueError):
                    pass
        time.sleep(0.02)
    raise AssertionError(f"no run matching {fragment} started")


def _wait_finished(sweep_dir: Path, fragment: str, count: int, timeout: float = 90) -> None:
    """Wait until ``count`` runs whose folder names end with ``fragment`` have their summary.json.

    The short runs of KILL_SWEEP share a stacked pass (one launcher job): waiting for them makes
    "the runs that finished before the kill" the same whether or not the sweep stacks.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(sweep_dir.glob(f"*{fragment}/summary.json"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} runs matching {fragment} finished")


def _claims_released(sweep_dir: Path, timeout: float = 15) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(held_elsewhere(p.parent) for p in sweep_dir.glob("*/.lossbench.claim")):
            return True
        time.sleep(0.2)
    return False


# fast runs first (they finish), then slow ones (one is killed while it trains)
KILL_SWEEP = ["dataset=digits", "optimizer=sgd", "trainer.epochs=1,40", "seed=0,1", NO_FIGURES]  # 40: ~2 s stacked


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_killed_worker_costs_only_its_runs_and_a_resume_launches_only_those(tmp_path, launcher):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *KILL_SWEEP, *_launcher_args(launcher), f"hydra.sweep.dir={sweep_dir}"]
    proc = _start(args, tmp_path)
    _wait_finished(sweep_dir, "trainer.epochs=1", 2)
    victim = _training_run(sweep_dir, "trainer.epochs=40")
    assert victim != proc.pid
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err
    missing = json.loads((sweep_dir / "missing.json").read_text())["missing"]
    # the killed run and whatever else its launcher call lost (joblib: the runs in flight)
    assert 1 <= len(missing) <= 3 and any("trainer.epochs=40" in m["overrides"] for m in missing)
    results = pd.read_csv(sweep_dir / "results.csv")
    assert len(results) == 4 - len(missing) >= 1 and (sweep_dir / "report" / "index.html").exists()
    lost_line = [line for line in err.splitlines() if "runs lost" in line]
    assert len(lost_line) == 1 and lost_line[0].endswith("hydra.sweep.dir=sweep"), "relative to the working directory"
    command = lost_line[0].split("Resume with: ")[1]
    assert command.startswith("lossbench -m ")
    assert _claims_released(sweep_dir), "the killed sweep's workers are gone"

    before = _attempts(sweep_dir)
    resumed = _ok(run_cli(command.split()[1:], cwd=tmp_path))
    assert f"{len(missing)} to run, {4 - len(missing)} finished earlier" in resumed.stdout
    after = _attempts(sweep_dir)
    retrained = {name for name in after if after[name] != before.get(name, 0)}
    assert len(retrained) == len(missing), "only the lost runs are launched again"
    assert json.loads((sweep_dir / "missing.json").read_text()) == {"missing": []}


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_ctrl_c_writes_the_report_of_finished_runs_and_exits_130(tmp_path, launcher):
    sweep_dir = tmp_path / "sweep"
    proc = _start(["-m", *KILL_SWEEP, *_launcher_args(launcher), f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    _wait_finished(sweep_dir, "trainer.epochs=1", 2)
    _training_run(sweep_dir, "trainer.epochs=40")
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    log_file = sweep_dir / "lossbench-sweep.log"
    assert proc.returncode == 130, out + err + (log_file.read_text() if log_file.exists() else "")
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert "Ctrl-C" in err and "Resume with: lossbench -m" in err
    assert json.loads((sweep_dir / "missing.json").read_text())["missing"]
    assert len(pd.read_csv(sweep_dir / "results.csv")) >= 2
    assert _claims_released(sweep_dir, timeout=5), "no worker trains on after Ctrl-C"


CTRL_C_AFTER_TUNING = """
import os
import signal

from hydra.experimental.callback import Callback


class CtrlCAfterTuning(Callback):
    \"\"\"Presses Ctrl-C as the tuning round's launcher job ends: every run it launched has finished.\"\"\"

    def on_job_end(self, config, job_return, **kwargs):
        if config.sweep.stage == "tune" and not str(config.hydra.job.id).startswith("packed_"):
            os.kill(os.getpid(), signal.SIGINT)
"""


def test_ctrl_c_when_every_launched_run_finished_still_exits_130_and_the_rerun_confirms(tmp_path):
    """Tune protocol, basic launcher: a Ctrl-C as the tuning round ends loses no run, but the
    confirmation round never started: exit 130 with a resume line, and the re-run confirms."""
    (tmp_path / "ctrlc.py").write_text(CTRL_C_AFTER_TUNING)
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "dataset=iris", "protocol=tune", "sweep.protocol.decades=2", "sweep.protocol.confirm_seeds=[0,1]",
            "trainer.epochs=3", "loss=ce", NO_FIGURES, f"hydra.sweep.dir={sweep_dir}"]
    proc = _start([*args, "+hydra.callbacks.ctrl_c._target_=ctrlc.CtrlCAfterTuning"], tmp_path,
                  env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err and "Resume with: lossbench -m" in err and "Ctrl-C" in err
    stages = [json.loads(p.read_text())["stage"] for p in sweep_dir.glob("*/summary.json")]
    assert stages and set(stages) == {"tune"}, "no confirmation run started"
    again = _start(args, tmp_path)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err
    stages = [json.loads(p.read_text())["stage"] for p in sweep_dir.glob("*/summary.json")]
    assert stages.count("confirm") == 2


SWALLOWING_LOSS = """
import time
from lossbench.losses import CrossEntropy


class SwallowingCE(CrossEntropy):
    \"\"\"Cross-entropy that turns a KeyboardInterrupt into its own error, as some library code does.\"\"\"

    def __call__(self, outputs, targets):
        try:
            time.sleep(0.002)
        except KeyboardInterrupt as err:
            raise RuntimeError("a library turned Ctrl-C into its own error") from err
        return super().__call__(outputs, targets)
"""


def test_ctrl_c_that_library_code_turns_into_another_error_is_still_a_ctrl_c(tmp_path):
    """Basic launcher, runs in the sweep's process: the signal, not the exception's type, says Ctrl-C."""
    (tmp_path / "swallow.py").write_text(SWALLOWING_LOSS)
    sweep_dir = tmp_path / "sweep"
    proc = _start(["-m", "dataset=digits", "optimizer=sgd", "loss=ce", "loss._target_=swallow.SwallowingCE",
                   "trainer.epochs=200", "seed=0,1,2", NO_FIGURES, f"hydra.sweep.dir={sweep_dir}"], tmp_path,
                  env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    _training_run(sweep_dir, "seed=0")
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    missing = json.loads((sweep_dir / "missing.json").read_text())["missing"]
    assert proc.returncode == 130, f"{out}{err}\nmissing.json: {missing}"
    assert "Ctrl-C" in err and "Traceback" not in out + err
    assert len(missing) == 3 and {m["reason"] for m in missing} == {"interrupted (Ctrl-C)"}
    assert not list(sweep_dir.glob("*/summary.json")), "no run is recorded as failed by the Ctrl-C"
    assert _claims_released(sweep_dir, timeout=5)


def test_a_sweep_started_with_sigint_ignored_keeps_ignoring_it(tmp_path):
    """nohup, a shell's background job: SIGINT is ignored there, and the sweeper must not undo that."""
    sweep_dir = tmp_path / "sweep"
    env = dict(os.environ, PYTHONHASHSEED="0", HYDRA_FULL_ERROR="0")
    proc = subprocess.Popen([sys.executable, "-m", "lossbench", "-m", "dataset=digits", "optimizer=sgd",
                             "trainer.epochs=12", "seed=0,1", NO_FIGURES, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    _training_run(sweep_dir, "seed=")
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "2 completed" in out and "interrupted" not in out + err


def test_workers_end_when_the_sweep_is_killed(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = _start(["-m", "dataset=digits", "optimizer=sgd", "trainer.epochs=60", "seed=0,1", NO_FIGURES,
                   *_launcher_args("submitit_local"), f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    _training_run(sweep_dir, "seed=")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _claims_released(sweep_dir, timeout=20), "orphaned workers keep training"


def test_two_concurrent_sweeps_train_each_run_once(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "dataset=digits", "optimizer=sgd", "trainer.epochs=3", "seed=0,1,2", NO_FIGURES,
            f"hydra.sweep.dir={sweep_dir}"]
    first, second = _start(args, tmp_path), _start(args, tmp_path)
    outputs = [p.communicate(timeout=180) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outputs):
        assert proc.returncode == 0, out + err
        assert "Traceback" not in err and "3 completed" in out
    assert list(_attempts(sweep_dir).values()) == [1, 1, 1]


def test_an_optuna_sweep_gets_a_float_per_trial_and_resumes_from_disk(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "optuna"
    args = ["-m", *QUICK, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.direction=maximize",
            "hydra.sweeper.sampler.seed=0", "optimizer.lr=tag(log,interval(0.001,1.0))", "progress=none",
            f"hydra.sweep.dir={sweep_dir}"]
    _ok(run_cli(args, cwd=tmp_path))
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert "best_value: 0." in best and (sweep_dir / "report" / "index.html").exists()
    assert list(_attempts(sweep_dir).values()) == [1, 1, 1]
    _ok(run_cli(args, cwd=tmp_path))
    assert list(_attempts(sweep_dir).values()) == [1, 1, 1], "the resumed study reuses every trial from disk"
    assert (sweep_dir / "optimization_results.yaml").read_text() == best


def test_runs_packed_into_launcher_jobs_keep_their_own_folders_and_numbers(tmp_path):
    packed, plain = tmp_path / "packed", tmp_path / "plain"
    common = ["-m", *QUICK, "loss=l2,ce", "seed=0,1,2", "progress=none"]
    _ok(run_cli([*common, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.runs_per_job=3",
                 f"hydra.sweep.dir={packed}"], cwd=tmp_path))
    _ok(run_cli([*common, f"hydra.sweep.dir={plain}"], cwd=tmp_path))
    folders = sorted(p.parent.name for p in packed.glob("*/summary.json"))
    assert len(folders) == 6 and folders == sorted(p.parent.name for p in plain.glob("*/summary.json"))
    hydra_ids = [(packed / f / ".hydra" / "hydra.yaml").read_text() for f in folders]
    assert sum("id: packed_" in text for text in hydra_ids) == 4, "6 runs in 2 launcher jobs of 3"
    for folder in folders:
        a = pd.read_csv(packed / folder / "metrics.csv").drop(columns="time_s")
        b = pd.read_csv(plain / folder / "metrics.csv").drop(columns="time_s")
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_distinct_configs_never_share_a_folder(tmp_path):
    frame = pd.DataFrame({"x1": [0.1 * i for i in range(40)], "x2": [(-1) ** i for i in range(40)],
                          "y": ["a", "b"] * 20})
    (tmp_path / "a").mkdir()
    frame.to_csv(tmp_path / "a" / "d.csv", index=False)
    frame.iloc[::-1].to_csv(tmp_path / "a_d.csv", index=False)
    sweep_dir = tmp_path / "sweep"
    proc = _ok(run_cli(["-m", NO_FIGURES, "dataset=csv", "dataset.path=a/d.csv,a_d.csv", "dataset.target=y", "model=logistic",
                        "loss=bce", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path))
    assert "2 completed" in proc.stdout
    assert len(list(sweep_dir.glob("*/summary.json"))) == 2


def test_a_finished_run_survives_an_invalid_rerun_and_a_rerun_cleans_up(tmp_path):
    run_dir = tmp_path / "run"
    _ok(run_cli([*QUICK, "progress=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path))
    summary = (run_dir / "summary.json").read_bytes()
    bad = run_cli([*QUICK, "optimizer.lr=-1", "progress=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert bad.returncode == 2 and "optimizer.lr" in bad.stderr
    assert (run_dir / "summary.json").read_bytes() == summary, "an invalid attempt destroys nothing"

    (run_dir / ".params.npz.k1ll3d.tmp").write_bytes(b"\0" * 1000)  # as a killed attempt leaves it
    _ok(run_cli([*QUICK, "progress=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path))
    assert not list(run_dir.glob(".*.tmp"))
    assert (run_dir / "lossbench.log").read_text().count(ATTEMPT) == 2, "one separator line per attempt"


def test_a_run_of_another_lossbench_version_is_trained_again(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *QUICK, "seed=0,1", "progress=none", f"hydra.sweep.dir={sweep_dir}"]
    _ok(run_cli(args, cwd=tmp_path))
    path = sorted(sweep_dir.glob("*/summary.json"))[0]
    summary = json.loads(path.read_text())
    summary["lossbench_version"] = "0.0.1"
    path.write_text(json.dumps(summary))
    proc = _ok(run_cli(args, cwd=tmp_path))
    assert "1 to run, 1 finished earlier" in proc.stdout
    assert "1 finished runs were trained by another lossbench version" in proc.stdout
    assert json.loads(path.read_text())["lossbench_version"] != "0.0.1"


@pytest.mark.parametrize("where", ["/proc/lossbench-test", "/dev/null/run"])
def test_an_unwritable_output_folder_is_one_line(tmp_path, where):
    for args in ([*QUICK, f"hydra.run.dir={where}"], ["-m", *QUICK, "seed=0,1", f"hydra.sweep.dir={where}"]):
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and where in proc.stderr


def test_a_full_disk_is_one_line_and_a_failed_record(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        run_dir = mount / "run"
        proc = run_cli(["dataset=digits", "model=mlp", "model.hidden_sizes=[1024]", "trainer.epochs=1",
                        "progress=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "cannot write the run's files" in proc.stderr and "No space left" in proc.stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "failed" and "No space left" in summary["message"]
        assert not list(run_dir.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
