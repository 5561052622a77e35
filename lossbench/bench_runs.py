"""The benchmark's whole-run sections (``python -m lossbench.bench``, :mod:`lossbench.bench`): lossbench
timed as users run it, in processes of their own.

- startup: process start to the first training step of one run (the CLI);
- eval: what evaluating every epoch adds to training time (a default digits run, the big MLP);
- memory: peak RSS of the big MLP run and traced growth per epoch;
- sweep: joblib against the basic launcher, and the cost of each further run in a sweep.

The in-process training comparisons (against scikit-learn and PyTorch) stay in :mod:`lossbench.bench`,
the stacked packs in :mod:`lossbench.stack.bench`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from lossbench.bench import ADAM_LR, N_CLASSES, Results, Settings, _log


STARTUP_CODE = """
import sys, time
from lossbench import build

train = build.Built.train

def timed_train(self, on_epoch=None, **options):
    def hook(record):
        if record["epoch"] == 0:  # the initial evaluation is done; the first step comes next
            print(f"LOSSBENCH_FIRST_STEP {time.time():.6f}", file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(record)
    return train(self, on_epoch=hook, **options)

build.Built.train = timed_train
sys.argv = ["lossbench", *sys.argv[1:]]
from lossbench.run import main
main()
"""


def _run_cli(args: list[str], cwd: Path, code: str | None = None, timeout: float = 600) -> tuple[float, str]:
    """Run the lossbench CLI (or ``code`` with ``args``) in a subprocess; return (wall seconds, stderr)."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "lossbench", *args]
    tic = time.time()
    process = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    wall = time.time() - tic
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} {' '.join(args)} failed:\n{process.stderr[-2000:]}")
    return wall, process.stderr


def section_startup(results: Results, torch) -> None:
    """Seconds from process start to the first training step of a single `lossbench` run (digits MLP)."""
    s = results.settings
    with tempfile.TemporaryDirectory(prefix="lossbench-bench-") as tmp:
        tmp = Path(tmp)
        first_step, interpreter = [], []
        for i in range(s.startup_runs):
            tic = time.time()
            _, stderr = _run_cli(["dataset=digits", "model=mlp", "trainer.epochs=1", "progress=none",
                                  f"hydra.run.dir={tmp / f'run{i}'}"], tmp, code=STARTUP_CODE)
            stamp = [line for line in stderr.splitlines() if line.startswith("LOSSBENCH_FIRST_STEP")]
            first_step.append(float(stamp[0].split()[1]) - tic)
            interpreter.append(_run_cli([], tmp, code="pass")[0])
    m = results.add("startup", "digits mlp, 1 run", "lossbench", "process start to first step", "s", first_step)
    bare = results.add("startup", "python -c pass", "python", "process start to exit", "s", interpreter)
    results.target("startup: process start to first training step", m.median, "s",
                   f"python itself: {bare.median:.2f} s", at_most=3.0)


def _compose(overrides: list[str]):
    """lossbench's config with ``overrides``, composed in-process (no Hydra run directory)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def big_run_overrides(s: Settings, epochs: int) -> list[str]:
    """The big MLP as a lossbench run: the issue's data set (60/20/20 split), hidden 128, adam, batch 256."""
    return ["dataset=classification", f"dataset.n_samples={s.big_samples}", f"dataset.n_features={s.big_features}",
            f"dataset.n_informative={s.big_informative}", f"dataset.n_classes={N_CLASSES}", "dataset.flip_y=0.01",
            "model=mlp", f"model.hidden_sizes=[{s.hidden}]", "optimizer=adam", f"optimizer.lr={ADAM_LR}",
            f"optimizer.batch_size={s.big_batch}", f"trainer.epochs={epochs}", "trainer.divergence_factor=0"]


def timed_run(overrides: list[str], trace_memory: bool = False) -> dict:
    """Build and train one run as the runner does; per-epoch training and evaluation seconds (and memory)."""
    from lossbench.build import build

    if trace_memory:
        tracemalloc.start()
    built = build(_compose(overrides), choices={})
    stamps, memory = [], []

    def on_epoch(record):
        stamps.append((time.perf_counter(), record["time_s"]))
        if trace_memory:
            memory.append(tracemalloc.get_traced_memory())

    result = built.train(on_epoch=on_epoch)
    peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
    if trace_memory:
        tracemalloc.stop()
    train_s = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    eval_s = [(b[0] - a[0]) - (b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]
    splits = [getattr(built.data, f"X_{split}") for split in ("train", "val", "test")]
    return {"train_s": train_s, "eval_s": eval_s, "memory": memory, "peak": peak, "result": result,
            "n_train": built.data.X_train.shape[0], "n_eval": sum(X.shape[0] for X in splits if X is not None)}


def section_eval(results: Results, torch) -> None:
    """Per-epoch evaluation (loss and metrics on train, val, test) as a fraction of the epoch's training."""
    s = results.settings
    cases = {
        "digits mlp (default run)": ["dataset=digits", "model=mlp", f"trainer.epochs={s.eval_digits_epochs}"],
        "big mlp run": big_run_overrides(s, s.eval_big_epochs),
    }
    for case, overrides in cases.items():
        _log(f"eval: {case}")
        fractions = []
        for _ in range(s.reps):
            run = timed_run(overrides)
            fractions.append(sum(run["eval_s"]) / sum(run["train_s"]))
        m = results.add("eval", case, "lossbench", "evaluation / training time", "fraction", fractions)
        forward_share = run["n_eval"] / (3 * run["n_train"])  # a forward pass is ~1/3 of a training step's FLOPs
        note = (f"{statistics.median(run['eval_s']):.3g} s vs {statistics.median(run['train_s']):.3g} s per epoch; "
                f"the evaluation forwards {run['n_eval']} samples (train, val, test), training passes "
                f"{run['n_train']} forward and backward (3x the FLOPs each): at equal FLOP rates evaluation "
                f"alone would add {forward_share:.0%}")
        results.target(f"evaluation cost, {case}", m.median, "fraction", note, at_most=0.25)


MEMORY_CODE = """
import atexit, resource, sys

def report_peak():
    try:  # VmHWM: this process's own peak; ru_maxrss would include the parent's size at fork
        with open("/proc/self/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"LOSSBENCH_PEAK_KB {peak_kb}", file=sys.stderr, flush=True)

atexit.register(report_peak)
sys.argv = ["lossbench", *sys.argv[1:]]
from lossbench.run import main
main()
"""


def section_memory(results: Results, torch) -> None:
    """Peak memory of the big MLP run (the CLI, in a subprocess) and traced memory epoch after epoch."""
    s = results.settings
    overrides = big_run_overrides(s, s.memory_epochs)
    _log("memory: the big MLP run in a subprocess")
    with tempfile.TemporaryDirectory(prefix="lossbench-bench-") as tmp:
        _, stderr = _run_cli([*overrides, "progress=none", f"hydra.run.dir={tmp}/run"], Path(tmp), code=MEMORY_CODE)
    peak_mb = [int(line.split()[1]) / 1e3 for line in stderr.splitlines() if line.startswith("LOSSBENCH_PEAK_KB")][0]
    results.add("memory", "big mlp run (CLI)", "lossbench", "peak RSS", "MB", [peak_mb])
    results.target("memory: peak RSS of the big MLP run", peak_mb, "MB",
                   f"{s.memory_epochs} epochs; the whole process: Python, NumPy, Hydra, data generation")
    _log("memory: traced allocations per epoch")
    run = timed_run(overrides, trace_memory=True)
    current = [m[0] / 1e6 for m in run["memory"]]
    results.add("memory", "big mlp run (traced)", "lossbench", "peak traced", "MB", [run["peak"] / 1e6])
    # epoch 1 creates the optimizer state and the batch buffers; from then on nothing should accumulate
    later = current[1:]
    growth = (later[-1] - later[0]) / max(len(later) - 1, 1)
    results.add("memory", "big mlp run (traced)", "lossbench", "growth per epoch", "MB", [growth])
    traced = ", ".join(f"{c:.1f}" for c in current)
    results.target("memory: traced growth per epoch after epoch 1", growth, "MB",
                   f"traced after each epoch: {traced} MB; peak {run['peak'] / 1e6:.0f} MB", at_most=0.1)


CEILING_CODE = """
import sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from lossbench.bundled import Bundled
from lossbench.losses import CrossEntropy
from lossbench.models import MLP
from lossbench.optim import Adam
from lossbench.schedules import Constant
from lossbench.train import train

epochs = int(sys.argv[1])
data = Bundled(name="digits", test_size=0.0, val_size=0.0).load(np.random.default_rng(0))
model = MLP(hidden_sizes=[64])
model.build(64, 10, np.random.default_rng(0))
print("ready", flush=True)
sys.stdin.readline()  # every process starts training at the same moment
started = time.time()
with threadpool_limits(limits=1):
    train(model, CrossEntropy(), Adam(lr=1e-3, batch_size=32), Constant(), data, epochs=epochs, grad_clip=0.0,
          divergence_factor=0.0, rng=np.random.default_rng(1))
print(started, time.time(), flush=True)
"""


def parallel_ceiling(epochs: int, processes: int = 2) -> float:
    """The machine's throughput gain from running ``processes`` lossbench trainings at once instead of one.

    The same CPU-bound digits training runs alone, then ``processes`` copies together (released at
    the same moment, after their imports); gain = processes * alone / together: 2.0 on two free
    cores, less when the CPUs are shared (hyperthreads, a busy host, other jobs).
    """
    def launch(count: int) -> float:
        children = [subprocess.Popen([sys.executable, "-c", CEILING_CODE, str(epochs)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True) for _ in range(count)]
        for child in children:
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a parallel-capacity process failed to start")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        spans = [tuple(map(float, child.communicate()[0].split())) for child in children]
        return max(end for _, end in spans) - min(begin for begin, _ in spans)

    alone = launch(1)
    together = launch(processes)
    return processes * alone / together


def _sweep(launcher: str, runs: int, epochs: int, workdir: Path) -> tuple[float, list[dict]]:
    """Wall seconds of ``lossbench -m`` with ``runs`` digits MLP runs, and the runs' summaries.

    The report is written without figures (``report.figures=false``): drawing them is a fixed
    ~3 s a sweep that says nothing about the sweep engine or the launchers measured here.
    """
    sweep_dir = workdir / f"sweep-{launcher}-{time.time_ns()}"
    wall, _ = _run_cli(["-m", f"hydra/launcher={launcher}", "dataset=digits", "model=mlp", f"seed=range({runs})",
                        f"trainer.epochs={epochs}", "progress=none", "report.figures=false",
                        f"hydra.sweep.dir={sweep_dir}"], workdir)
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    if len(summaries) != runs or any(summary["status"] != "completed" for summary in summaries):
        raise RuntimeError(f"the {launcher} sweep in {sweep_dir} did not complete {runs} runs")
    return wall, summaries


def section_sweep(results: Results, torch) -> None:
    """8 runs with hydra/launcher=joblib against the basic launcher; the cost of each run inside a sweep.

    Per-run cost: sweeps of 1 and of N one-epoch runs (basic launcher);
    ``(wall_N - wall_1) / (N - 1)`` minus a run's mean training time is what each further run adds
    (composing its config, validating it, loading data, evaluating, writing files, its part of the
    report). Throughput: the same N runs with more epochs under each launcher, alternating, beside
    the machine's own gain from a second process (:func:`parallel_ceiling`).
    """
    s = results.settings
    with tempfile.TemporaryDirectory(prefix="lossbench-bench-") as tmp:
        workdir = Path(tmp)
        further, serial = [], []
        for rep in range(s.sweep_reps):
            _log(f"sweep: cost per run, 1 and {s.sweep_runs} one-epoch runs, basic launcher (rep {rep + 1})")
            wall_one, _ = _sweep("basic", 1, 1, workdir)
            wall_many, summaries = _sweep("basic", s.sweep_runs, 1, workdir)
            training = statistics.mean(summary["train_time_s"] for summary in summaries)
            further.append((wall_many - wall_one) / (s.sweep_runs - 1) - training)
            serial.append(wall_one - training - further[-1])  # startup, validation, report: once per sweep
        m = results.add("sweep", f"1 vs {s.sweep_runs} one-epoch digits runs, basic", "lossbench",
                        "cost per further run beyond training", "s", further)
        results.target("sweep: cost of each further run beyond its training", m.median, "s",
                       "basic launcher: config, validation, data, evaluation, files, report", at_most=0.3)
        walls: dict[str, list[float]] = {"basic": [], "joblib": []}
        ceilings = []
        for rep in range(s.sweep_reps):
            for launcher in (("basic", "joblib") if rep % 2 == 0 else ("joblib", "basic")):
                _log(f"sweep: {s.sweep_runs} runs x {s.sweep_epochs} epochs, {launcher} launcher (rep {rep + 1})")
                walls[launcher].append(_sweep(launcher, s.sweep_runs, s.sweep_epochs, workdir)[0])
            _log("sweep: the machine's parallel capacity (1 vs 2 processes)")
            ceilings.append(parallel_ceiling(s.ceiling_epochs))
    case = f"{s.sweep_runs} digits mlp runs x {s.sweep_epochs} epochs"
    for launcher, values in walls.items():
        results.add("sweep", case, launcher, "sweep wall time", "s", values)
    ceiling = results.add("sweep", "2 processes vs 1", "machine", "parallel throughput gain", "x", ceilings)
    speedup = statistics.median(walls["basic"]) / statistics.median(walls["joblib"])
    basic, fixed = statistics.median(walls["basic"]), statistics.median(serial)
    parallel_part = max(basic - fixed, 0.0)
    attainable = basic / (fixed + parallel_part / ceiling.median)  # Amdahl: the serial part does not shrink
    note = (f"{basic:.3g} s vs {statistics.median(walls['joblib']):.3g} s; this machine itself gains "
            f"{ceiling.median:.2f}x (min {ceiling.min:.2f}, max {ceiling.max:.2f}) from a second process on its "
            f"{os.cpu_count()} CPUs, and {fixed:.2g} s of the sweep is serial (startup, validation, report), so a "
            f"perfect launcher would reach {attainable:.2f}x here")
    results.target(f"sweep: joblib / basic launcher throughput ({s.sweep_runs} runs)", speedup, "x", note,
                   at_least=1.7)
