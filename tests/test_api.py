"""The Python API: lossbench.sweep / run / load, Study and Run, as a notebook uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

import lossbench
from conftest import run_cli
from lossbench.api import LossbenchError, Run, Study, curve_figure, options_to_overrides, read_csv_typed, read_table

SWEEP = ["dataset=iris", "loss=l2,ce", "seed=0,1", "progress=none", "report.figures=false"]


def _is_text(column: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(column) or column.dtype == object


def _files(folder: Path) -> set[str]:
    """The files a sweep leaves, minus what differs by nature between two runs (logs, Hydra's own)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
            and ".hydra" not in p.parts and p.name not in ("lossbench.log", "multirun.yaml")}


# ------------------------------------------------------------------------------- end to end ---

@pytest.mark.slow
def test_sweep_twice_in_one_process_then_load(tmp_path, capsys):
    cwd = os.getcwd()
    first = lossbench.sweep(SWEEP, sweep_dir=tmp_path / "api", epochs=2)
    printed = capsys.readouterr().out
    assert "lossbench: sweep finished: 4 completed" in printed  # the command's output, streamed

    assert isinstance(first, Study) and first.path == (tmp_path / "api").resolve()
    results = first.results
    assert len(results) == 4 and set(results["status"]) == {"completed"}
    assert _is_text(results["message"]) and results["seed"].dtype == "Int64"  # all empty, still text
    assert results["final_test_accuracy"].dtype == "float64"
    assert len(first.curves) == 4 * 3 and pd.api.types.is_integer_dtype(first.curves["epoch"])
    assert set(first.stats["group"]) == {"loss=l2", "loss=ce"}
    assert first.report_path == first.path / "report" / "index.html" and first.report_path.is_file()
    assert first.tuned is None

    # exactly what the command line does: the same files, the same numbers
    cli = run_cli(["-m", *SWEEP, "trainer.epochs=2", f"hydra.sweep.dir={tmp_path / 'cli'}"], cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert _files(tmp_path / "api") == _files(tmp_path / "cli")
    by_id = lambda frame: frame.assign(run_id=frame["run_id"].str.rsplit("/", n=1).str[-1]).set_index("run_id")
    cli_results = by_id(read_table(tmp_path / "cli", "results"))
    pd.testing.assert_series_equal(by_id(results)["final_test_loss"], cli_results["final_test_loss"])

    # the second call resumes the same folder: every run reused, none trained again
    finished = {p: json.loads(p.read_text())["finished_at"] for p in first.path.glob("*/summary.json")}
    second = lossbench.sweep(SWEEP, sweep_dir=tmp_path / "api", epochs=2, quiet=True)
    assert capsys.readouterr().out == ""
    assert {p: json.loads(p.read_text())["finished_at"] for p in first.path.glob("*/summary.json")} == finished
    pd.testing.assert_frame_equal(second.results.drop(columns=["wall_time_s"]),
                                  results.drop(columns=["wall_time_s"]))

    loaded = lossbench.load(tmp_path / "api")
    assert isinstance(loaded, Study)
    pd.testing.assert_frame_equal(loaded.curves, second.curves)
    run = lossbench.load(loaded.runs[0].path)
    assert isinstance(run, Run) and run.status == "completed" and len(run.metrics) == 3
    assert set(run.params()) == {"W", "b"}

    assert os.getcwd() == cwd
    assert not GlobalHydra.instance().is_initialized() and not HydraConfig.initialized()


@pytest.mark.slow
def test_bad_sweep_raises_with_the_commands_error_line(tmp_path):
    with pytest.raises(LossbenchError) as info:
        lossbench.sweep(["optimizer.lr=0.1,-1"], sweep_dir=tmp_path / "bad", quiet=True)
    assert info.value.returncode == 2
    assert info.value.line == "lossbench: error: 1 of 2 jobs in this sweep cannot run; nothing was started."
    assert "optimizer.lr=-1: optimizer=adam: optimizer.lr must be a finite number" in str(info.value)
    assert not list((tmp_path / "bad").glob("*/summary.json"))


@pytest.mark.slow
def test_run_returns_the_run_and_bad_input_raises(tmp_path):
    run = lossbench.run(["dataset=breast_cancer", "model=logistic", "loss=bce"], run_dir=tmp_path / "one",
                        epochs=3, progress="none", quiet=True)
    assert run.path == (tmp_path / "one").resolve() and run.status == "completed"
    assert list(run.metrics["epoch"]) == [0, 1, 2, 3]
    assert run.summary["final"]["test_accuracy"] == run.metrics["test_accuracy"].iloc[-1]
    assert run.params()["W"].shape == (30, 1)
    with pytest.raises(LossbenchError) as info:
        lossbench.run(["trainer.epochs=0"], run_dir=tmp_path / "two", quiet=True)
    assert info.value.returncode == 2
    assert info.value.line == "lossbench: error: trainer.epochs=0 is not allowed; allowed: an integer in [1, 1000000]"
    assert not (tmp_path / "two" / "summary.json").exists()
    with pytest.raises(LossbenchError) as info:  # Hydra's own message: its first line, the options below it
        lossbench.run("loss=bogus trainer.epochs=1", quiet=True)
    assert info.value.returncode == 1 and info.value.line == "In 'config': Could not find 'loss/bogus'"
    assert "Available options in 'loss'" in str(info.value) and "HYDRA_FULL_ERROR" not in str(info.value)


# ------------------------------------------------------------------------------------- units ---

def test_import_lossbench_is_light():
    code = ("import sys, lossbench; heavy = [m for m in ('hydra', 'pandas', 'matplotlib', 'sklearn', 'mlflow') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lossbench_run_is_the_api_before_and_after_the_submodule_is_imported():
    code = ("import lossbench, lossbench.api as api; before = lossbench.run is api.run; "
            "import lossbench.run; print(before, callable(lossbench.run), lossbench.run.main.__name__, "
            "sorted(set(dir(lossbench)) & {'sweep', 'run', 'load', 'Study', 'Run'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True True main ['Run', 'Study', 'load', 'run', 'sweep']"


def test_a_submodule_named_sweep_does_not_hide_lossbench_sweep():
    # what the import system does when a subpackage lossbench/sweep/ is imported: bind it on the package
    code = ("import sys, types, lossbench, lossbench.api as api; "
            "api.sweep = lambda *a, **k: ('api.sweep', a, k); "
            "module = types.ModuleType('lossbench.sweep'); module.plan = 'kept'; sys.modules['lossbench.sweep'] = module; "
            "setattr(lossbench, 'sweep', module); "
            "print(lossbench.sweep is module, lossbench.sweep.plan, lossbench.sweep(['loss=ce'], quiet=True))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True kept ('api.sweep', (['loss=ce'],), {'quiet': True})"


def test_options_become_overrides():
    assert options_to_overrides({"launcher": "joblib", "n_jobs": 2, "progress": "log", "skip_invalid": True,
                                 "epochs": 20, "optimizer__lr": [0.01, 0.1], "model__hidden_sizes": None},
                                sweep=True) == [
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "progress=log", "sweep.skip_invalid=true",
        "trainer.epochs=20", "optimizer.lr=0.01,0.1", "model.hidden_sizes=null"]
    assert options_to_overrides({"n_jobs": 2}, sweep=True) == ["hydra.launcher.n_jobs=2", "hydra/launcher=joblib"]
    assert options_to_overrides({"model__hidden_sizes": [8, 4]}, sweep=False) == ["model.hidden_sizes=[8,4]"]


def test_csv_tables_read_back_typed_even_when_a_column_is_empty(tmp_path):
    pd.DataFrame({"run_id": ["a", "b"], "loss": ["l2", "ce"], "seed": [0, 1], "status": ["completed"] * 2,
                  "message": [None, None], "stop_epoch": [3, 3], "final_test_accuracy": [1, 0.5],
                  "target_epoch": [np.nan, 2]}).to_csv(tmp_path / "results.csv", index=False)
    results = read_csv_typed(tmp_path, "results")  # the reader used without lossbench.report.exports
    assert results["message"].dtype == "string" and results["message"].isna().all()
    assert results["seed"].dtype == "Int64" and results["stop_epoch"].dtype == "Int64"
    assert results["final_test_accuracy"].dtype == "float64" and results["loss"].dtype == "string"
    with pytest.raises(FileNotFoundError, match="lossbench-report"):
        read_csv_typed(tmp_path, "curves")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(FileNotFoundError, match="lossbench-report"):
        read_table(tmp_path / "unfinished", "results")


def test_load_says_what_a_folder_is_not(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a lossbench sweep folder"):
        lossbench.load(tmp_path)


def test_params_are_never_unpickled(tmp_path):
    (tmp_path / "summary.json").write_text('{"status": "completed", "final": {}}')
    np.savez(tmp_path / "params.npz", W=np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        Run(tmp_path).params()


def test_plot_draws_the_mean_and_a_band_inside_the_metric_range():
    rows = [{"run_id": f"{loss}{seed}", "group": f"loss={loss}", "status": status, "epoch": epoch, "seed": seed,
             "time_s": 0.1 * epoch, "test_accuracy": min(1.0, start + 0.05 * seed + 0.4 * epoch)}
            for loss, start in (("l2", 0.1), ("ce", 0.5))
            for seed, status in ((0, "completed"), (1, "completed"), (2, "diverged"))
            for epoch in range(3)]
    fig = curve_figure(pd.DataFrame(rows), "test_accuracy")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"loss=l2 (n=2)", "loss=ce (n=2)"}  # the diverged seed is not averaged in
    np.testing.assert_allclose(lines["loss=l2 (n=2)"].get_ydata(), [0.125, 0.525, 0.925])
    for band in ax.collections:
        ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
        assert ys.min() >= 0.0 and ys.max() <= 1.0  # a 95% t-interval of 2 seeds is wide: clipped to [0, 1]
    assert "95% t-interval" in ax.get_title()
    with pytest.raises(ValueError, match="metric 'test_r2' is not in the curves"):
        curve_figure(pd.DataFrame(rows), "test_r2")
