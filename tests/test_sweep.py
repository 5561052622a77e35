"""The sweep engine's parts without the CLI: job expansion, folder names, objectives, claims."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time

import pytest

from lossbench.records import remove_stale_temporaries, write_json
from lossbench.run import _job_dirname
from lossbench.sweep.claim import Claim, held_elsewhere
from lossbench.sweep.objective import check_objective, objective_value
from lossbench.sweep.plan import PlanError, chunks, expand, override_dirname, parse, sweep_arguments


def test_expansion_follows_the_basic_sweepers_grammar_and_order():
    jobs = expand(parse(sweep_arguments({"loss": "l2,ce"}, ["seed=range(0,3)", "model=choice(softmax,mlp)"])))
    assert len(jobs) == 12
    assert jobs[0] == ("loss=l2", "seed=0", "model=softmax")
    assert jobs[1] == ("loss=l2", "seed=0", "model=mlp"), "the last key varies fastest"
    assert jobs[-1] == ("loss=ce", "seed=2", "model=mlp")


def test_the_command_line_replaces_a_key_of_hydra_sweeper_params():
    jobs = expand(parse(sweep_arguments({"seed": "0,1,2", "loss": "ce"}, ["seed=7"])))
    assert jobs == [("seed=7", "loss=ce")]


def test_an_interval_sweep_is_refused_with_its_key():
    with pytest.raises(PlanError, match="optimizer.lr"):
        expand(parse(["optimizer.lr=interval(0.1,1)"]))


def test_folder_names_mirror_hydras_override_dirname():
    overrides = parse(["seed=1", "loss=ce", "progress=none"])
    assert override_dirname(overrides, ["progress"], ",", "=") == "loss=ce,seed=1"


def test_sanitised_folder_names_never_collide():
    assert _job_dirname("loss=ce,seed=1") == "loss=ce,seed=1", "names that need no change keep their form"
    assert _job_dirname("dataset.path=a/d.csv") != _job_dirname("dataset.path=a_d.csv")
    assert "/" not in _job_dirname("dataset.path=a/d.csv")
    assert _job_dirname("dataset.path=a_d.csv") == "dataset.path=a_d.csv"


def test_batches_and_packs():
    assert chunks(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert chunks(list(range(3)), None) == [[0, 1, 2]]
    assert chunks([], 3) == []


@pytest.mark.parametrize("summary, setting, expected", [
    ({"status": "completed", "task": "classification", "final": {"val_accuracy": 0.9}}, "auto", 0.9),
    ({"status": "completed", "task": "regression", "final": {"val_loss": 0.3}}, "auto", 0.3),
    ({"status": "completed", "task": "regression", "final": {"val_r2": 0.5}}, "val_r2", 0.5),
    ({"status": "diverged", "task": "classification", "final": {"val_accuracy": 0.95}}, "auto", 0.0),
    ({"status": "diverged", "task": "regression", "final": {}}, "auto", math.inf),
    ({"status": "diverged", "task": "regression", "final": {}}, "val_r2", -math.inf),
    ({"status": "failed", "task": "classification", "final": {}}, "auto", math.nan),
    (None, "auto", math.nan),
])
def test_the_objective_of_a_run(summary, setting, expected):
    value = objective_value(summary, setting)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_the_objective_key_is_checked():
    assert check_objective("auto") is None and check_objective("val_accuracy") is None
    assert "sweep.objective" in check_objective("accuracy; rm -rf")


def _hold_claim(run_dir, ready):
    claim = Claim(run_dir)
    assert claim.acquire()
    ready.set()
    time.sleep(60)


def test_a_claim_excludes_other_processes_and_ends_with_its_process(tmp_path):
    run_dir = tmp_path / "run"
    assert not held_elsewhere(run_dir) and not run_dir.exists(), "probing creates nothing"
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold_claim, args=(run_dir, ready))
    holder.start()
    try:
        assert ready.wait(10)
        assert held_elsewhere(run_dir)
        assert not Claim(run_dir, wait=0.1).acquire(), "a second trainer cannot claim the run"
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up code runs: the kernel drops the lock
        holder.join(10)
        assert not held_elsewhere(run_dir)
        with Claim(run_dir) as claim:
            assert claim.held
    finally:
        if holder.is_alive():
            holder.kill()


def test_stale_temporary_files_are_removed(tmp_path):
    (tmp_path / ".params.npz.abc123.tmp").write_bytes(b"x" * 100)
    write_json(tmp_path / "summary.json", {"status": "completed"})
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_the_sweeper_is_found_by_compose_and_by_hydras_plugin_scan(tmp_path):
    """Composing lossbench's config needs no lossbench import; Hydra finds the sweeper class (any install)."""
    import subprocess
    import sys

    code = (
        "from hydra import compose, initialize_config_module\n"
        "with initialize_config_module(config_module='lossbench.conf', version_base='1.3'):\n"
        "    cfg = compose(config_name='config', return_hydra_config=True)\n"
        "print(cfg.hydra.sweeper._target_)\n"
        "import lossbench.run\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "print(sorted(c.__name__ for c in Plugins.instance().discover(Sweeper)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    target, classes = out.stdout.splitlines()
    assert target == "hydra_plugins.lossbench_sweeper.lossbench_sweeper.LossbenchSweeper"
    assert "LossbenchSweeper" in classes


class _CountingLoader:
    """Hydra's config loader, counting its compositions (picklable: a module-level class)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def load_sweep_config(self, master_config, sweep_overrides):
        self.calls += 1
        return self.inner.load_sweep_config(master_config, sweep_overrides)

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_the_launcher_composes_no_pack_leader_the_sweep_has_composed(tmp_path, monkeypatch):
    """The launcher's loader (PlannedLoader) gives the first job of a pack the sweep's composition,
    after the pickle trip a worker's copy makes, with the text and flags Hydra's composition has; any
    other job, and every job in another working folder, Hydra composes."""
    import pickle

    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf

    from lossbench.sweep.launch import PlannedLoader, SweepTask
    from lossbench.sweep.validate import Composer

    lead = ("experiment=l2_vs_ce", "dataset=digits", "loss=l2", "optimizer.lr=10", "seed=3")
    other = ("experiment=l2_vs_ce", "dataset=digits", "loss=l2", "optimizer.lr=10", "seed=4")
    alone = ("experiment=l2_vs_ce", "dataset=digits", "loss=ce", "optimizer.lr=1", "seed=3")
    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        hydras = GlobalHydra.instance().config_loader()
        master = hydras.load_configuration(config_name="config", overrides=["hydra.sweep.dir=/tmp/x"],
                                           run_mode=RunMode.MULTIRUN)
        planner = Composer(hydras, master)
        planner.compose(lead)
        counting = _CountingLoader(hydras)
        task = SweepTask(print, HydraContext(config_loader=counting, callbacks=None), master)
        task.packs = {lead: [(1, other)]}
        task.bases = planner.bases([lead])
        loader = pickle.loads(pickle.dumps(PlannedLoader(counting, task)))  # as a worker gets it
        derived = loader.load_sweep_config(master, list(lead))
        assert loader.inner.calls == 0
        assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(hydras.load_sweep_config(master, list(lead)))
        for node in ("", "hydra", "hydra.job", "optimizer"):
            a, b = (OmegaConf.select(c, node) if node else c
                    for c in (derived, hydras.load_sweep_config(master, list(lead))))
            assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b) and OmegaConf.is_readonly(a) == OmegaConf.is_readonly(b)
        loader.load_sweep_config(master, list(alone))  # not a pack's first job: Hydra composes it
        assert loader.inner.calls == 1
        monkeypatch.chdir(tmp_path)  # hydra.runtime.cwd differs: the sweep's composition does not apply
        elsewhere = pickle.loads(pickle.dumps(PlannedLoader(counting, task)))
        elsewhere.task.sweep_token = "test-elsewhere"
        elsewhere.load_sweep_config(master, list(lead))
        assert elsewhere.inner.calls == 1  # a fresh copy of the counting loader: this one call


def test_a_composition_that_copies_the_environment_is_not_shipped(monkeypatch):
    """``hydra.job.env_copy`` puts the composing process's variables into the config: the sweep's
    composition would carry the sweeper's values to a worker, so the worker composes its own."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from lossbench.sweep.validate import Composer

    monkeypatch.setenv("LB_TEST_VARIABLE", "the sweeper's")
    lead = ("dataset=iris", "loss=ce", "seed=3")
    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for env_copy, shipped in (("[]", 1), ("[LB_TEST_VARIABLE]", 0)):
            master = loader.load_configuration(config_name="config", run_mode=RunMode.MULTIRUN,
                                               overrides=["hydra.sweep.dir=/tmp/x", f"hydra.job.env_copy={env_copy}"])
            planner = Composer(loader, master)
            planner.compose(lead)
            assert len(planner.bases([lead])["bases"]) == shipped, env_copy


@pytest.mark.parametrize("lines", [
    ("dataset=digits", "loss=bce", "optimizer.lr=0.316228", "seed=1000"),
    ("experiment=l2_vs_ce", "dataset=breast_cancer", "loss=l2", "optimizer.lr=10", "seed=3"),
    ("seed=7", "optimizer=adam", "hydra/launcher=joblib", "optimizer.beta1=0.8", "trainer.epochs=3"),
    ("schedule=cosine", "schedule.min_lr=0.001", "loss=ce", "loss.label_smoothing=0.1", "seed=0"),
])
def test_a_packed_runs_config_is_the_one_hydra_composes(lines):
    """Runs packed into one launcher job get their configs from one composition per pack: each must
    equal Hydra's own ``load_sweep_config`` (values, the hydra node, its flags), so the run's folder
    and numbers do not depend on the packing."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from lossbench.sweep.validate import Composer

    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(config_name="config", overrides=["hydra.sweep.dir=/tmp/x"],
                                           run_mode=RunMode.MULTIRUN)
        composer = Composer(loader, master)
        composer.job_config(("seed=99", *lines[:-1]))  # another job of the same pack: the base is shared
        derived = composer.job_config(lines)
        hydras = loader.load_sweep_config(master_config=master, sweep_overrides=list(lines))
        assert derived is not None and composer.n_compositions == 1
        planned = [composer.compose(lines)[0] for _ in range(2)]  # the plan's copy of the job's config
    for cfg in planned:  # as Hydra's, without the hydra node, struct at the root (from a pickled copy)
        assert OmegaConf.to_container(cfg, resolve=False) == {
            key: value for key, value in OmegaConf.to_container(hydras, resolve=False).items() if key != "hydra"}
        assert OmegaConf.is_struct(cfg)
    assert OmegaConf.to_container(derived, resolve=False) == OmegaConf.to_container(hydras, resolve=False)
    assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(hydras)
    for node in ("", "hydra", "hydra.overrides", "hydra.job", "optimizer"):
        a, b = (OmegaConf.select(c, node) if node else c for c in (derived, hydras))
        assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b) and OmegaConf.is_readonly(a) == OmegaConf.is_readonly(b)


@pytest.mark.parametrize("lines", [
    ("dataset=digits", "loss=bce", "optimizer.lr=0.316228", "seed=1000", "trainer.evaluate=log"),
    ("experiment=l2_vs_ce", "dataset=breast_cancer", "loss=l2", "optimizer.lr=10", "seed=3"),
])
def test_a_worker_uses_the_compositions_of_the_sweeps_plan(lines, tmp_path, monkeypatch):
    """The sweep composes each structural override set once while planning and sends those configs
    to its workers (pickled, as the launcher sends the task): a worker's packed run gets the config
    Hydra composes, with no composition of its own; in another working folder (``hydra.runtime.cwd``
    differs) it composes its own."""
    import pickle

    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from lossbench.sweep.validate import Composer

    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(config_name="config", overrides=["hydra.sweep.dir=/tmp/x"],
                                           run_mode=RunMode.MULTIRUN)
        planner = Composer(loader, master)
        planner.compose(("seed=99", *lines[:-1]))  # the plan composes the jobs (one of the same pack)
        shared = pickle.loads(pickle.dumps(planner.bases([lines])))
        worker = Composer(pickle.loads(pickle.dumps(loader)), pickle.loads(pickle.dumps(master)))
        worker.adopt(shared)
        derived = worker.job_config(lines)
        hydras = loader.load_sweep_config(master_config=master, sweep_overrides=list(lines))
        assert worker.n_compositions == 0 and planner.n_compositions == 1
        assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(hydras)
        assert OmegaConf.to_container(worker.task_config(lines)) == {
            key: value for key, value in OmegaConf.to_container(hydras).items() if key != "hydra"}
        for node in ("", "hydra", "hydra.overrides", "hydra.job", "optimizer"):
            a, b = (OmegaConf.select(c, node) if node else c for c in (derived, hydras))
            assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b) and OmegaConf.is_readonly(a) == OmegaConf.is_readonly(b)
        monkeypatch.chdir(tmp_path)
        elsewhere = Composer(loader, master)
        elsewhere.adopt(shared)
        elsewhere.job_config(lines)
        assert elsewhere.n_compositions == 1


@pytest.mark.parametrize("lines", [
    ("dataset=digits", "loss=bce", "optimizer.lr=0.316228", "seed=1000"),
    ("experiment=l2_vs_ce", "dataset=breast_cancer", "loss=l2", "optimizer.lr=10", "seed=3"),
])
def test_a_packed_runs_job_leaves_what_hydras_run_job_leaves(lines, tmp_path):
    """A packed run's Hydra job is lossbench's lean copy of ``run_job`` (one HydraConfig copy, the
    composer's task config): the task must see the same config, HydraConfig, working folder and
    log, and the folder must hold the same ``.hydra`` files and log as after Hydra's own."""
    import logging
    from pathlib import Path

    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf, open_dict

    from lossbench.sweep.job import run_packed_job
    from lossbench.sweep.validate import Composer

    class Callbacks:  # records what the job hands its callbacks
        def __init__(self):
            self.seen = []

        def on_job_start(self, config, task_function):
            self.seen.append(("start", OmegaConf.to_yaml(config)))

        def on_job_end(self, config, job_return):
            self.seen.append(("end", OmegaConf.to_yaml(config), job_return.status))

    def task(cfg):
        handlers = sorted(h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler))
        flags = [(OmegaConf.is_struct(node), OmegaConf.is_readonly(node))
                 for node in (cfg, cfg.optimizer, cfg.trainer, HydraConfig.get(), HydraConfig.get().runtime)]
        logging.getLogger("lossbench").info("a line in the job log")
        return (OmegaConf.to_yaml(cfg), OmegaConf.to_yaml(HydraConfig.get()), os.getcwd(), handlers, flags,
                OmegaConf.to_container(cfg, resolve=True))

    root = logging.getLogger()
    kept = root.handlers[:], root.level
    seen = {}
    try:
        with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            master = loader.load_configuration(config_name="config", overrides=[f"hydra.sweep.dir={tmp_path}"],
                                               run_mode=RunMode.MULTIRUN)
            composer = Composer(loader, master)
            for way in ("hydra", "packed"):
                config = composer.job_config(lines)
                with open_dict(config):
                    config.hydra.job.id, config.hydra.job.num = "packed_3", 3
                callbacks = Callbacks()
                context = HydraContext(config_loader=loader, callbacks=callbacks)
                before = HydraConfig.instance().cfg
                if way == "hydra":
                    ret = run_job(hydra_context=context, task_function=task, config=config,
                                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
                else:
                    ret = run_packed_job(context, task, config, composer.task_config(lines))
                assert HydraConfig.instance().cfg is before  # restored after the job
                for handler in root.handlers:
                    handler.flush()
                run_dir = Path(OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir"))
                files = {p.relative_to(run_dir).as_posix(): p.read_text() for p in sorted(run_dir.rglob("*"))
                         if p.is_file()}
                log_lines = files["lossbench.log"].splitlines()
                files["lossbench.log"] = "\n".join(line.split(" - ", 1)[-1] for line in log_lines)  # no time
                seen[way] = (ret.status, ret.return_value, ret.overrides, ret.task_name, ret.working_dir,
                             OmegaConf.to_yaml(ret.cfg), OmegaConf.to_yaml(ret.hydra_cfg), callbacks.seen, files)
                for handler in root.handlers[:]:
                    if isinstance(handler, logging.FileHandler):
                        root.removeHandler(handler)
                        handler.close()
                import shutil

                shutil.rmtree(run_dir)
    finally:
        root.handlers[:], _ = kept[0], root.setLevel(kept[1])
    assert seen["hydra"][1][3] and sorted(seen["hydra"][8]) == [".hydra/config.yaml", ".hydra/hydra.yaml",
                                                                  ".hydra/overrides.yaml", "lossbench.log"]
    assert seen["packed"] == seen["hydra"]


def test_a_packed_run_that_adds_or_misspells_a_key_composes_with_hydra():
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from lossbench.sweep.validate import Composer

    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(config_name="config", overrides=[], run_mode=RunMode.MULTIRUN)
        composer = Composer(loader, master)
        assert composer.job_config(("+extra=1", "seed=0")) is None
        assert composer.job_config(("optimizer.lrr=0.1", "seed=0")) is None
        assert composer.job_config(("loss=nope", "seed=0")) is None


def test_the_warmed_joblib_workers_are_the_ones_the_launcher_uses():
    """warm_joblib_workers starts loky's reusable executor with the launcher's own arguments, so the
    launcher's Parallel (arguments converted as hydra_joblib_launcher converts them) reuses it."""
    from joblib import Parallel, delayed
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from omegaconf import OmegaConf

    from lossbench.sweep.launch import warm_joblib_workers

    settings = OmegaConf.to_container(OmegaConf.structured(JobLibLauncherConf(n_jobs=2)))
    settings.pop("_target_")
    launcher = JoblibLauncher(**settings)
    thread = warm_joblib_workers(launcher)
    thread.join(timeout=120)
    assert len(thread.pids) == 2 and os.getpid() not in thread.pids
    arguments = launcher.joblib  # what the launcher's launch() passes to Parallel
    arguments["backend"] = "loky"
    process_joblib_cfg(arguments)
    used = set(Parallel(**arguments)(delayed(os.getpid)() for _ in range(8)))
    assert used <= thread.pids
    assert warm_joblib_workers(object()) is None  # another launcher: nothing started


def test_a_worker_gets_the_bundled_sets_from_the_sweep_and_never_imports_scikit_learn(tmp_path):
    """The sweep hands its workers the bundled sets its checks read (SweepTask.bundled): a worker that
    adopts them loads the same splits, bit for bit, without importing scikit-learn (~1.2 s a process)."""
    import hashlib
    import pickle
    import subprocess
    import sys

    import numpy as np

    from lossbench import data

    def digest(dataset) -> str:
        parts = [dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, dataset.X_test, dataset.y_test]
        return hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in parts)).hexdigest()

    here = {name: digest(data.Bundled(name).load(np.random.default_rng(3))) for name in ("digits", "breast_cancer")}
    (tmp_path / "sets.pkl").write_bytes(pickle.dumps(data.bundled_read()))
    child = f"""
import hashlib, pickle, sys
import numpy as np
from lossbench.sweep.launch import _warm_worker
_warm_worker()
from lossbench import data
data.adopt_bundled(pickle.loads(open({str(tmp_path / 'sets.pkl')!r}, "rb").read()))
def digest(dataset):
    parts = [dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, dataset.X_test, dataset.y_test]
    return hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in parts)).hexdigest()
for name in ("digits", "breast_cancer"):
    print(name, digest(data.Bundled(name).load(np.random.default_rng(3))))
print("sklearn imported:", "sklearn" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "sklearn imported: False"
    assert dict(line.split() for line in lines[:-1]) == here


def test_a_packed_runs_yaml_files_are_the_text_omegaconf_writes():
    """run_packed_job writes the .hydra files from cached dumps of their items: the text must be
    OmegaConf.to_yaml's, for long, multi-line, quoted, empty and nested values alike."""
    from omegaconf import OmegaConf

    from lossbench.sweep.job import to_yaml

    tricky = {"a": "x" * 200, "b": "word " * 40, "c": "line one\nline two\n", "d": "yes", "e": "1e3", "f": "",
              "g": None, "h": [1, [2, 3], {"k": "v: w"}], "i": {}, "j": [], "k": "${other}", "l": 1.0e-5,
              "m": float("inf"), "n": "'q'", "o": " lead", "p": "#x", "q": 3, "r": True, "other": "ü"}
    configs = [tricky, {"hydra": tricky}, {"hydra": {"job": tricky, "run": {"dir": "runs/${now:%H}"}}},
               {"hydra": {}}, {"1": "numeric key"}, {"hydra": {"a b": 1}}]
    for plain in configs:
        node = OmegaConf.create(plain)
        for _ in range(2):  # the second time from the cache
            assert to_yaml(node) == OmegaConf.to_yaml(node), plain
    lines = OmegaConf.create(["seed=1", "optimizer.lr=0.1"])
    assert to_yaml(lines) == OmegaConf.to_yaml(lines)
