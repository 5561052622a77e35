"""The ``stack`` section of ``python -m lossbench.bench``: a pack trained stacked against one run after another.

Each case builds its runs as the runner does (``lossbench.build.build`` of a composed config) and
trains them in one process with one BLAS thread, twice from fresh builds, alternating which goes
first: one after another (``Built.train`` each) and in one stacked pass (``train_stack``).
Graded: the training clock (``time_s``: shuffling and every step, without the evaluation, as the
benchmark's other lossbench rows and the issue's figures); shown beside it: the wall time of the
training calls with every epoch's evaluation (what a job pays; building is the same for both and
not timed). Cases (issue 13):

- 14 logistic-regression runs on breast_cancer, batch 32, 100 epochs: lr grid of 7 on 2 seeds;
- 10 MLP runs on digits, hidden 32, batch 32, adam: lr grid of 5 on 2 seeds;
- 10 softmax-regression runs at batch size 1 on the 50,000 x 100 generated set (lr grid of 5 on
  2 seeds), and the stacked time per run against scikit-learn's SGDClassifier on the same data.

``--study NAME`` (``python -m lossbench.bench --sections stack --study quickstart``) adds the wall
time of a whole shipped study (``lossbench -m experiment=NAME``, joblib launcher) with stacking
against ``hydra.sweeper.stack_size=1``; it needs the sweeper's stack_size (wired by the sweep).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


LOGISTIC_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MLP_LRS = (0.0003, 0.001, 0.003, 0.01, 0.03)
BATCH1_LRS = (0.001, 0.003, 0.01, 0.03, 0.1)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _builds(overrides: list[str], grid: list[dict]) -> list:
    """One Built per grid point (dotted key -> value) of the composed config, as the runner builds it."""
    from omegaconf import OmegaConf

    from lossbench.bench_runs import _compose
    from lossbench.build import build

    cfg = _compose(["progress=none", *overrides])
    builts = []
    for point in grid:
        run_cfg = cfg.copy()
        for key, value in point.items():
            OmegaConf.update(run_cfg, key, value, merge=False)
        builts.append(build(run_cfg, choices={}))
    return builts


def _grid(lrs, seeds=(0, 1)) -> list[dict]:
    return [{"seed": seed, "optimizer.lr": lr} for seed in seeds for lr in lrs]


def _one_after_another(builts) -> tuple[float, float]:
    tic = time.perf_counter()
    results = [built.train() for built in builts]
    return time.perf_counter() - tic, sum(result.train_time_s for result in results)


def _stacked(builts) -> tuple[float, float]:
    from lossbench.stack import train_stack

    tic = time.perf_counter()
    results = train_stack(builts)
    wall = time.perf_counter() - tic
    assert {result.stack_size for result in results} == {len(builts)}, "the runs did not share one pass"
    return wall, results[0].train_time_s


def compare(overrides: list[str], grid: list[dict], reps: int) -> dict[str, list[float]]:
    """Wall and training-clock seconds of the grid, one after another and stacked, over ``reps`` alternations."""
    samples = {"alone wall": [], "alone clock": [], "stacked wall": [], "stacked clock": []}
    for rep in range(reps):
        order = ("alone", "stacked") if rep % 2 == 0 else ("stacked", "alone")
        for name in order:
            builts = _builds(overrides, grid)
            wall, clock = (_one_after_another if name == "alone" else _stacked)(builts)
            samples[f"{name} wall"].append(wall)
            samples[f"{name} clock"].append(clock)
    return samples


def _report(results, case: str, samples: dict, n_runs: int, at_least: float, what: str) -> float:
    """Measurements and targets of one case: graded on the training clock, the wall time shown beside it.

    The training clock (``time_s``: shuffling and every step, no evaluation) is what the issue's
    figures and the benchmark's other lossbench rows measure; the wall time adds each epoch's
    evaluation (stacked too), what a job pays.
    """
    for key, values in samples.items():
        results.add("stack", case, key.split()[0], f"{key.split()[1]} time of {n_runs} runs", "s", values)
    alone, stacked = (statistics.median(samples[key]) for key in ("alone clock", "stacked clock"))
    alone_wall, stacked_wall = (statistics.median(samples[key]) for key in ("alone wall", "stacked wall"))
    results.target(f"stack: {what}, one after another / stacked", alone / stacked, "x",
                   f"training clock {alone:.3g} s vs {stacked:.3g} s for {n_runs} runs", at_least=at_least)
    results.target(f"stack: {what}, with evaluation (wall)", alone_wall / stacked_wall, "x",
                   f"{alone_wall:.3g} s vs {stacked_wall:.3g} s: training and every epoch's evaluation")
    return alone / stacked


def section_stack(results, torch) -> None:
    """Stacked packs against one run after another (issue 13's targets), in this process."""
    s = results.settings
    reps = max(1, min(s.reps, 3))
    quick = s.big_samples < 50_000
    logistic_epochs, mlp_epochs = (3, 1) if quick else (100, 20)

    case = f"breast_cancer logistic bce, batch 32, {logistic_epochs} epochs"
    _log(f"stack: {case}")
    overrides = ["dataset=breast_cancer", "model=logistic", "loss=bce", "optimizer=minibatch",
                 f"trainer.epochs={logistic_epochs}"]
    _report(results, case, compare(overrides, _grid(LOGISTIC_LRS), reps), 14, 4.0,
            "14 logistic runs on breast_cancer (lr grid x 2 seeds)")

    case = f"digits mlp [32] ce adam, batch 32, {mlp_epochs} epochs"
    _log(f"stack: {case}")
    overrides = ["dataset=digits", "model=mlp", "model.hidden_sizes=[32]", "loss=ce", "optimizer=adam",
                 "optimizer.batch_size=32", f"trainer.epochs={mlp_epochs}"]
    _report(results, case, compare(overrides, _grid(MLP_LRS), reps), 10, 1.7,
            "10 MLP runs on digits (hidden 32, batch 32)")

    section_batch1(results, reps=max(1, min(s.reps, 2)))


def section_batch1(results, reps: int) -> None:
    """10 softmax runs at batch size 1 on the big generated set: per-run time stacked, alone, SGDClassifier."""
    from lossbench.bench import N_CLASSES, sklearn_sgd_classifier

    s = results.settings
    n, d = s.big_samples, s.big_features
    overrides = ["dataset=classification", f"dataset.n_samples={n}", f"dataset.n_features={d}",
                 f"dataset.n_informative={s.big_informative}", f"dataset.n_classes={N_CLASSES}", "dataset.flip_y=0.01",
                 "dataset.test_size=0.0", "dataset.val_size=0.0", "model=softmax", "loss=ce", "optimizer=sgd",
                 "trainer.epochs=1", "trainer.divergence_factor=0"]
    grid = _grid(BATCH1_LRS)
    case = f"{n}x{d} softmax ce, batch 1, 1 epoch"
    _log(f"stack: {case}")
    # one after another: 10 runs of 1 epoch cost 10x one run; a single run per repetition stands for them
    alone_wall, alone_clock, stacked_wall, stacked_clock, sklearn = [], [], [], [], []
    for rep in range(reps):
        builts = _builds(overrides, grid)
        first, *_ = builts
        wall, clock = _one_after_another([first])
        alone_wall.append(wall)
        alone_clock.append(clock)
        wall, clock = _stacked(_builds(overrides, grid))
        stacked_wall.append(wall / len(grid))
        stacked_clock.append(clock / len(grid))
        sklearn.extend(sklearn_sgd_classifier(first.data.X_train, first.data.y_train, 1, rep))
    results.add("stack", case, "alone", "wall time per run", "s", alone_wall)
    results.add("stack", case, "stacked", "wall time per run (pack / 10)", "s", stacked_wall)
    results.add("stack", case, "alone", "training clock per run", "s", alone_clock)
    results.add("stack", case, "stacked", "training clock per run (pack / 10)", "s", stacked_clock)
    results.add("stack", case, "sklearn SGDClassifier", "time per epoch", "s", sklearn)
    alone, stacked, theirs = (statistics.median(values) for values in (alone_clock, stacked_clock, sklearn))
    wall_ratio = statistics.median(alone_wall) / statistics.median(stacked_wall)
    steps = first.data.X_train.shape[0]
    results.target("stack: 10 softmax runs at batch 1, per run: alone / stacked", alone / stacked, "x",
                   f"training clock {alone:.3g} s vs {stacked:.3g} s per run and epoch ({alone / steps * 1e6:.1f} vs "
                   f"{stacked / steps * 1e6:.1f} us a step); with evaluation {wall_ratio:.2f}x", at_least=5.0)
    results.target("stack: batch 1 per run, SGDClassifier / stacked lossbench", theirs / stacked, "x",
                   f"SGDClassifier {theirs:.3g} s an epoch ({theirs / steps * 1e6:.1f} us a sample, compiled "
                   f"one-vs-rest) vs {stacked:.3g} s per stacked run")


def section_study(results, study: str, reps: int = 1) -> None:
    """Wall time of ``lossbench -m experiment=STUDY`` (joblib, 2 jobs) with stacking against stack_size=1."""
    from lossbench.bench_runs import _run_cli

    with tempfile.TemporaryDirectory(prefix="lossbench-bench-study-") as tmp:
        tmp = Path(tmp)
        times = {"stacked": [], "stack_size=1": []}
        for rep in range(reps):
            for name, extra in (("stacked", []), ("stack_size=1", ["hydra.sweeper.stack_size=1"])):
                folder = tmp / f"{name}-{rep}".replace("=", "")
                wall, _ = _run_cli(["-m", f"experiment={study}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                    "progress=none", f"hydra.sweep.dir={folder}", *extra], tmp, timeout=3600)
                times[name].append(wall)
    for name, values in times.items():
        results.add("stack", f"study {study} (joblib, 2 jobs)", name, "wall time", "s", values)
    off, on = statistics.median(times["stack_size=1"]), statistics.median(times["stacked"])
    results.target(f"stack: study {study}, stack_size=1 / stacked", off / on, "x",
                   f"{off:.0f} s vs {on:.0f} s", at_least=2.0 if study == "quickstart" else None)
