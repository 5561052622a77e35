"""The performance benchmark (issue 5): lossbench's training loop against scikit-learn and PyTorch.

    python -m lossbench.bench                    # the full benchmark (4 to 6 minutes on 2 cores)
    python -m lossbench.bench --quick            # a tiny smoke configuration (under a minute)
    python -m lossbench.bench --sections mlp,digits --reps 7 --out runs/bench/mine

It prints a table of targets (threshold, measured, PASS / MISS / INFO) and writes to ``--out``
(default ``runs/bench/<timestamp>``): ``measurements.csv`` (every timing: median, min, max, count),
``targets.csv``, ``table.txt``, ``environment.json`` and the figure ``bench.png``.

Method. Everything in-process runs with one BLAS/OpenMP thread (threadpoolctl; PyTorch:
``torch.set_num_threads(1)``). Contenders alternate: every repetition trains a fresh model with
each contender in turn (the order rotates), so a slow phase of a shared machine hits all of them;
the table shows the median with min and max over the repetitions' epochs. lossbench is measured
through what users run: ``lossbench.train.train`` with ``lossbench.models.MLP``,
``lossbench.losses.CrossEntropy`` and ``lossbench.optim.Adam`` / ``SGD`` on data from
``lossbench.data``; its seconds per epoch are the loop's own training clock (``time_s``: shuffling
and every step, without the evaluation that scikit-learn does not do; the evaluation is measured
separately). scikit-learn gets the same arrays, architecture (relu), optimizer (``solver="adam"``,
or ``"sgd"`` with ``momentum=0``), learning rate, batch size and dtype, with ``alpha=0`` and
``shuffle=True``; one epoch is one ``partial_fit`` call. PyTorch (only when importable; it is not
a dependency) trains the same ``Linear-ReLU-Linear`` with ``CrossEntropyLoss``.

Sections (``--sections``): mlp (the big MLP, float64 and float32), digits (batch 32 and batch 1),
softmax (against ``SGDClassifier``), flops (achieved GFLOP/s against NumPy's matmul rate at the
same shapes), scaling (samples and width); startup, eval (evaluation cost), memory, sweep (joblib
against the basic launcher, and the per-run overhead inside a sweep), the whole-run sections of
:mod:`lossbench.bench_runs`; stack (packs of runs trained
stacked against one after another, issue 13: :mod:`lossbench.stack.bench`; ``--study NAME`` adds a
whole shipped study with stacking against ``hydra.sweeper.stack_size=1``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class Settings:
    """Sizes and repetition counts of one benchmark configuration (full or --quick)."""

    reps: int  # repetitions of every alternating comparison
    big_samples: int  # make_classification samples of the big MLP problem (issue 5: 50000)
    big_features: int
    big_informative: int
    hidden: int  # hidden units of every MLP comparison (issue 5: 128)
    big_batch: int
    big_epochs: int  # epochs per repetition (each a sample of seconds per epoch)
    digits_epochs: int
    digits_batch1_epochs: int
    softmax_epochs: int
    scaling_samples: tuple[int, ...]
    scaling_widths: tuple[int, ...]
    scaling_width_samples: int
    scaling_epochs: int
    startup_runs: int
    eval_digits_epochs: int
    eval_big_epochs: int
    memory_epochs: int
    sweep_runs: int
    sweep_epochs: int  # epochs of each digits MLP run in the throughput sweep
    sweep_reps: int
    ceiling_epochs: int  # epochs of the digits run that measures the machine's parallel capacity
    studies: tuple[str, ...] = ()  # --study: shipped studies timed with stacking against stack_size=1


FULL = Settings(
    reps=5, big_samples=50_000, big_features=100, big_informative=50, hidden=128, big_batch=256,
    big_epochs=2, digits_epochs=5, digits_batch1_epochs=2, softmax_epochs=1,
    scaling_samples=(1_000, 3_000, 10_000, 30_000, 100_000), scaling_widths=(32, 64, 128, 256, 512),
    scaling_width_samples=20_000, scaling_epochs=2, startup_runs=3, eval_digits_epochs=30,
    eval_big_epochs=4, memory_epochs=6, sweep_runs=8, sweep_epochs=600, sweep_reps=2,
    ceiling_epochs=300,
)

QUICK = Settings(
    reps=1, big_samples=2_000, big_features=20, big_informative=10, hidden=16, big_batch=64,
    big_epochs=1, digits_epochs=1, digits_batch1_epochs=1, softmax_epochs=1,
    scaling_samples=(500, 1_000), scaling_widths=(8, 16), scaling_width_samples=1_000,
    scaling_epochs=1, startup_runs=1, eval_digits_epochs=2, eval_big_epochs=2, memory_epochs=3,
    sweep_runs=2, sweep_epochs=1, sweep_reps=1, ceiling_epochs=2,
)

SECTIONS = ("mlp", "digits", "softmax", "flops", "scaling", "startup", "eval", "memory", "sweep", "stack")
N_CLASSES = 10
ADAM_LR = 1e-3
SGD_LR = 1e-2

# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Measurement:
    """One measured quantity: median, min and max over ``count`` samples."""

    section: str
    case: str
    contender: str
    metric: str
    unit: str
    median: float
    min: float
    max: float
    count: int


@dataclass
class Target:
    """One target of issue 5 with its verdict; ``status`` is PASS, MISS, INFO, SKIP or ERROR."""

    name: str
    threshold: str
    measured: float | None
    unit: str
    status: str
    note: str = ""
    margin: float | None = None  # how far the target is met: >= 1 met, < 1 missed (for the figure)


@dataclass
class Results:
    """Everything a benchmark run produced, in the order it was measured."""

    settings: Settings
    measurements: list[Measurement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def add(self, section: str, case: str, contender: str, metric: str, unit: str,
            samples: list[float]) -> Measurement:
        """Record ``samples`` (seconds, bytes, ...) as median / min / max."""
        measurement = Measurement(section, case, contender, metric, unit, statistics.median(samples),
                                  min(samples), max(samples), len(samples))
        self.measurements.append(measurement)
        return measurement

    def target(self, name: str, measured: float | None, unit: str, note: str = "", *,
               at_least: float | None = None, at_most: float | None = None,
               between: tuple[float, float] | None = None) -> None:
        """Record a target met when ``measured >= at_least`` (``<= at_most``, inside ``between``).

        With none of them the row is informational (INFO); ``measured=None`` is a SKIP.
        """
        suffix = {"x": "x", "fraction": ""}.get(unit, f" {unit}" if unit else "")
        if between is not None:
            low, high = between
            half_width, middle = (high - low) / 2, (high + low) / 2
            threshold = f"{low:.1f} .. {high:.1f}"
            margin = half_width / max(abs(measured - middle), 1e-12) if measured is not None else None
        elif at_least is not None:
            threshold, margin = f">= {at_least:.1f}{suffix}", measured / at_least if measured is not None else None
        elif at_most is not None:
            shown = f"{at_most:.0%}" if unit == "fraction" else f"{at_most:.1f}{suffix}"
            threshold, margin = f"<= {shown}", at_most / measured if measured else math.inf
        else:
            threshold, margin = "(info)", None
        if measured is None:
            status = "SKIP"
        elif margin is None:
            status = "INFO"
        else:
            status = "PASS" if margin >= 1 else "MISS"
        self.targets.append(Target(name, threshold, measured, unit, status, note, margin))

    def find(self, section: str, case: str, contender: str) -> Measurement | None:
        for m in self.measurements:
            if (m.section, m.case, m.contender) == (section, case, contender):
                return m
        return None


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def alternate(contenders: dict[str, Callable[[int], list[float]]], reps: int) -> dict[str, list[float]]:
    """Run every contender ``reps`` times, interleaved, rotating who goes first; gather their samples.

    ``contenders[name](rep)`` trains a fresh model and returns its samples (seconds per epoch).
    """
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].extend(contenders[name](rep))
    return samples


# ---------------------------------------------------------------------------------------------
# the contenders: one fresh model each, seconds per epoch


def _dataset(X: np.ndarray, y: np.ndarray, name: str):
    """A lossbench Dataset whose training split is (X, y) and nothing else (as scikit-learn sees it)."""
    from lossbench.data import Dataset

    return Dataset(name=name, task="classification", n_targets=N_CLASSES, X_train=X, y_train=y,
                   X_val=None, y_val=None, X_test=None, y_test=None,
                   feature_names=[f"x{i}" for i in range(X.shape[1])], class_names=None)


def _make_optimizer(solver: str, batch_size: int):
    from lossbench.optim import SGD, Adam

    if solver == "adam":
        return Adam(lr=ADAM_LR, batch_size=batch_size)
    return SGD(lr=SGD_LR, batch_size=batch_size)


def lossbench_epochs(data, model, solver: str, batch_size: int, epochs: int, seed: int) -> list[float]:
    """Train ``model`` (lossbench) with ``lossbench.train.train``; the loop's seconds per epoch."""
    from lossbench.losses import CrossEntropy
    from lossbench.schedules import Constant
    from lossbench.train import train

    model.build(data.X_train.shape[1], model.output_size("classification", data.n_targets),
                np.random.default_rng(seed))
    result = train(model, CrossEntropy(), _make_optimizer(solver, batch_size), Constant(), data,
                   epochs=epochs, grad_clip=0.0, divergence_factor=0.0, rng=np.random.default_rng(seed + 1))
    if result.status != "completed":
        raise RuntimeError(f"lossbench run {result.status}: {result.message}")
    return list(np.diff([record["time_s"] for record in result.records]))


def lossbench_mlp(data, hidden: int, solver: str, batch_size: int, epochs: int, seed: int,
                  dtype: str = "float64") -> list[float]:
    from lossbench.models import MLP

    return lossbench_epochs(data, MLP(hidden_sizes=[hidden], activation="relu", dtype=dtype), solver,
                            batch_size, epochs, seed)


def sklearn_mlp(X, y, hidden: int, solver: str, batch_size: int, epochs: int, seed: int) -> list[float]:
    """scikit-learn's MLPClassifier configured for the same work; one ``partial_fit`` per epoch.

    relu, the same optimizer (adam; or sgd with momentum 0, no Nesterov, constant rate), learning
    rate and batch size, ``alpha=0`` (no L2), ``shuffle=True``; it computes in X's dtype.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(
        hidden_layer_sizes=(hidden,), activation="relu", solver=solver, alpha=0.0, batch_size=batch_size,
        learning_rate="constant", learning_rate_init=ADAM_LR if solver == "adam" else SGD_LR,
        momentum=0.0, nesterovs_momentum=False, shuffle=True, early_stopping=False, tol=0.0,
        random_state=seed)
    classes = np.arange(N_CLASSES)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            tic = time.perf_counter()
            classifier.partial_fit(X, y, classes=classes)
            times.append(time.perf_counter() - tic)
    return times


def torch_mlp(torch, X, y, hidden: int, solver: str, batch_size: int, epochs: int, seed: int) -> list[float]:
    """PyTorch on the CPU: Linear-ReLU-Linear, CrossEntropyLoss, torch.optim.Adam / SGD, shuffled batches."""
    torch.manual_seed(seed)
    dtype = torch.float64 if X.dtype == np.float64 else torch.float32
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, N_CLASSES)).to(dtype)
    if solver == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    times = []
    for _ in range(epochs):
        tic = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss_fn(model(inputs[rows]), labels[rows])
            batch_loss.backward()
            optimizer.step()
            if not math.isfinite(batch_loss.item()):  # lossbench checks every batch loss too
                raise RuntimeError("torch run diverged")
        times.append(time.perf_counter() - tic)
    return times


def _load_big(settings: Settings, n_samples: int | None = None):
    """make_classification(n, n_features, n_informative, 10 classes) through lossbench.data, standardised."""
    from lossbench.generated import SyntheticClassification

    source = SyntheticClassification(
        n_samples=n_samples or settings.big_samples, n_features=settings.big_features,
        n_informative=settings.big_informative, n_classes=N_CLASSES, flip_y=0.01, random_state=0,
        test_size=0.0, val_size=0.0)
    return source.load(np.random.default_rng(0))


def _load_digits():
    from lossbench.bundled import Bundled

    return Bundled(name="digits", test_size=0.0, val_size=0.0).load(np.random.default_rng(0))


def _cast(data, dtype: str):
    """The same data set with X in ``dtype`` (cast once, as the runner does)."""
    return _dataset(np.ascontiguousarray(data.X_train, dtype=dtype), data.y_train, data.name)


def _ratio_note(slower: float, faster: float) -> str:
    return f"{slower:.3g} s vs {faster:.3g} s"


# ---------------------------------------------------------------------------------------------
# sections


def section_mlp(results: Results, torch) -> None:
    """The big MLP: make_classification(50000, 100, 50 informative, 10 classes), hidden 128, batch 256.

    Beside the contenders, the five matrix products of an epoch run alone ("matmuls alone"): both
    lossbench and scikit-learn do exactly these products, so the rest of each epoch is what the
    implementations themselves cost, and the note of a missed target says how much that rest may be.
    """
    s = results.settings
    base = _load_big(s)
    case_name = f"{s.big_samples}x{s.big_features}, hidden {s.hidden}, batch {s.big_batch}"
    for solver in ("adam", "sgd"):
        for dtype in ("float64", "float32"):
            data = _cast(base, dtype)
            X, y = data.X_train, data.y_train
            contenders = {
                "lossbench": lambda rep: lossbench_mlp(data, s.hidden, solver, s.big_batch, s.big_epochs, rep, dtype),
                "sklearn": lambda rep: sklearn_mlp(X, y, s.hidden, solver, s.big_batch, s.big_epochs, rep),
                "matmuls alone": lambda rep: [matmul_epoch(X, s.hidden, s.big_batch) for _ in range(s.big_epochs)],
            }
            if torch is not None:
                contenders["torch"] = lambda rep: torch_mlp(torch, X, y, s.hidden, solver, s.big_batch,
                                                            s.big_epochs, rep)
            _log(f"mlp {solver} {dtype}: {', '.join(contenders)} x {s.reps} reps")
            samples = alternate(contenders, s.reps)
            case = f"{solver} {dtype}"
            for name, values in samples.items():
                results.add("mlp", case, name, "time per epoch", "s", values)
            ours, theirs = results.find("mlp", case, "lossbench"), results.find("mlp", case, "sklearn")
            matmuls = results.find("mlp", case, "matmuls alone").median
            speedup = theirs.median / ours.median
            if dtype == "float64":
                rest_needed = theirs.median / 2 - matmuls
                results.target(
                    f"big MLP {solver} float64: sklearn / lossbench per epoch", speedup, "x",
                    f"{case_name}; {_ratio_note(theirs.median, ours.median)}; both spend {matmuls:.3g} s in the "
                    f"5 matrix products, the rest is {ours.median - matmuls:.3g} s (lossbench) vs "
                    f"{theirs.median - matmuls:.3g} s (sklearn); 2x needs lossbench's rest <= {rest_needed:.3g} s",
                    at_least=2.0)
            else:
                results.target(f"big MLP {solver} float32: sklearn / lossbench per epoch", speedup, "x",
                               _ratio_note(theirs.median, ours.median))
            if torch is not None:
                theirs = results.find("mlp", case, "torch")
                results.target(f"big MLP {solver} {dtype}: torch / lossbench per epoch", theirs.median / ours.median,
                               "x", _ratio_note(theirs.median, ours.median))
        f64, f32 = results.find("mlp", f"{solver} float64", "lossbench"), results.find("mlp", f"{solver} float32", "lossbench")
        gain = f64.median / f32.median
        results.target(f"big MLP {solver}: lossbench float64 / float32 per epoch", gain, "x",
                       _ratio_note(f64.median, f32.median), at_least=1.6)


def section_digits(results: Results, torch) -> None:
    """Digits (1797 x 64, 10 classes): batch 32 per epoch, and batch 1 per step."""
    s = results.settings
    data = _load_digits()
    X, y = data.X_train, data.y_train
    n, n_inputs = X.shape
    n_params = n_inputs * s.hidden + s.hidden + s.hidden * N_CLASSES + N_CLASSES
    for batch_size, epochs in ((32, s.digits_epochs), (1, s.digits_batch1_epochs)):
        steps = math.ceil(n / batch_size)
        unit = "us/step" if batch_size == 1 else "s/epoch"
        for solver in ("sgd", "adam"):
            contenders = {
                "lossbench": lambda rep: lossbench_mlp(data, s.hidden, solver, batch_size, epochs, rep),
                "sklearn": lambda rep: sklearn_mlp(X, y, s.hidden, solver, batch_size, epochs, rep),
            }
            if torch is not None:
                contenders["torch"] = lambda rep: torch_mlp(torch, X, y, s.hidden, solver, batch_size, epochs, rep)
            _log(f"digits batch {batch_size} {solver}: {', '.join(contenders)} x {s.reps} reps")
            samples = alternate(contenders, s.reps)
            case = f"batch {batch_size} {solver}"
            for name, values in samples.items():
                if batch_size == 1:
                    results.add("digits", case, name, "time per step", "us", [1e6 * v / steps for v in values])
                else:
                    results.add("digits", case, name, "time per epoch", "s", values)
            ours, theirs = results.find("digits", case, "lossbench"), results.find("digits", case, "sklearn")
            speedup = theirs.median / ours.median
            note = f"hidden {s.hidden}; {theirs.median:.3g} vs {ours.median:.3g} {unit}"
            if batch_size == 1:
                sgd_step = results.find("digits", "batch 1 sgd", "lossbench").median
                if solver == "adam" and ours.median > sgd_step:
                    note += (f"; lossbench's plain-SGD step is {sgd_step:.3g} us, Adam's update adds "
                             f"{ours.median - sgd_step:.3g} us (a dozen NumPy passes over all {n_params} "
                             f"parameters, sqrt and divide included); 3x needs <= {theirs.median / 3:.3g} us")
                else:
                    note += f"; 3x needs <= {theirs.median / 3:.3g} us"
                results.target(f"digits batch 1 {solver}: sklearn / lossbench per step", speedup, "x", note,
                               at_least=3.0)
            else:
                results.target(f"digits batch 32 {solver}: sklearn / lossbench per epoch", speedup, "x", note)
            if torch is not None:
                theirs = results.find("digits", case, "torch")
                results.target(f"digits batch {batch_size} {solver}: torch / lossbench", theirs.median / ours.median,
                               "x", f"{theirs.median:.3g} vs {ours.median:.3g} {unit}")


def sklearn_sgd_classifier(X, y, epochs: int, seed: int) -> list[float]:
    """SGDClassifier(loss="log_loss"): one-vs-rest logistic regressions, one sample per step, constant lr."""
    from sklearn.linear_model import SGDClassifier

    classifier = SGDClassifier(loss="log_loss", penalty=None, learning_rate="constant", eta0=SGD_LR,
                               shuffle=True, random_state=seed)
    classes = np.arange(N_CLASSES)
    times = []
    for _ in range(epochs):
        tic = time.perf_counter()
        classifier.partial_fit(X, y, classes=classes)
        times.append(time.perf_counter() - tic)
    return times


def section_softmax(results: Results, torch) -> None:
    """Softmax regression (lossbench, SGD) against SGDClassifier(loss="log_loss") on the big data set."""
    from lossbench.models import Softmax

    s = results.settings
    data = _load_big(s)
    X, y = data.X_train, data.y_train
    contenders = {
        "lossbench batch 1": lambda rep: lossbench_epochs(data, Softmax(), "sgd", 1, s.softmax_epochs, rep),
        "lossbench batch 32": lambda rep: lossbench_epochs(data, Softmax(), "sgd", 32, s.softmax_epochs, rep),
        "sklearn SGDClassifier": lambda rep: sklearn_sgd_classifier(X, y, s.softmax_epochs, rep),
    }
    _log(f"softmax: {', '.join(contenders)} x {s.reps} reps")
    samples = alternate(contenders, s.reps)
    case = f"{s.big_samples}x{s.big_features}, sgd lr {SGD_LR}"
    for name, values in samples.items():
        results.add("softmax", case, name, "time per epoch", "s", values)
    theirs = results.find("softmax", case, "sklearn SGDClassifier")
    for name in ("lossbench batch 1", "lossbench batch 32"):
        ours = results.find("softmax", case, name)
        results.target(f"softmax regression: SGDClassifier / {name} per epoch", theirs.median / ours.median, "x",
                       f"{theirs.median:.3g} vs {ours.median:.3g} s; SGDClassifier is compiled per-sample "
                       "one-vs-rest SGD")


def mlp_flops_per_sample(n_inputs: int, hidden: int, n_outputs: int) -> int:
    """Matrix-multiply FLOPs of one training sample: forward 2(dh + hk), backward dW1, dW2, da1."""
    return 2 * (2 * n_inputs * hidden + 3 * hidden * n_outputs)


def matmul_epoch(X: np.ndarray, hidden: int, batch_size: int) -> float:
    """Seconds for the five matrix products of one MLP epoch, alone, with the training step's shapes."""
    rng = np.random.default_rng(0)
    dtype = X.dtype
    W1 = rng.standard_normal((X.shape[1], hidden)).astype(dtype)
    W2 = rng.standard_normal((hidden, N_CLASSES)).astype(dtype)
    dz2 = rng.standard_normal((batch_size, N_CLASSES)).astype(dtype)
    tic = time.perf_counter()
    for start in range(0, X.shape[0], batch_size):
        X_batch = X[start:start + batch_size]
        dz = dz2[:X_batch.shape[0]]
        a1 = np.dot(X_batch, W1)  # forward
        np.dot(a1, W2)
        np.dot(a1.T, dz)  # dW2
        da1 = np.dot(dz, W2.T)  # da1
        np.dot(X_batch.T, da1)  # dW1
    return time.perf_counter() - tic


def section_flops(results: Results, torch) -> None:
    """Achieved GFLOP/s of lossbench's training step against NumPy's matmul rate at the same shapes."""
    s = results.settings
    base = _load_big(s)
    flops = base.X_train.shape[0] * mlp_flops_per_sample(s.big_features, s.hidden, N_CLASSES)
    for dtype in ("float64", "float32"):
        data = _cast(base, dtype)
        contenders = {
            "lossbench training step": lambda rep: lossbench_mlp(data, s.hidden, "adam", s.big_batch, s.big_epochs,
                                                                 rep, dtype),
            "numpy matmuls alone": lambda rep: [matmul_epoch(data.X_train, s.hidden, s.big_batch)
                                                for _ in range(s.big_epochs)],
        }
        _log(f"flops {dtype}: x {s.reps} reps")
        samples = alternate(contenders, s.reps)
        rates = {}
        for name, values in samples.items():
            m = results.add("flops", f"adam {dtype}", name, "GFLOP/s", "GFLOP/s", [flops / v / 1e9 for v in values])
            rates[name] = m.median
        big = np.random.default_rng(0).standard_normal((1000, 1000)).astype(dtype)
        square = []
        for _ in range(3):
            tic = time.perf_counter()
            np.dot(big, big)
            square.append(2e9 / (time.perf_counter() - tic) / 1e9)
        results.add("flops", f"1000x1000 {dtype}", "numpy matmul", "GFLOP/s", "GFLOP/s", square)
        share = rates["lossbench training step"] / rates["numpy matmuls alone"]
        results.target(f"training step {dtype}: share of NumPy's matmul rate at the same shapes", share, "fraction",
                       f"{rates['lossbench training step']:.1f} of {rates['numpy matmuls alone']:.1f} "
                       f"GFLOP/s (1000x1000 matmul: {statistics.median(square):.1f})")


def section_scaling(results: Results, torch) -> None:
    """Seconds per epoch as the sample count grows (hidden 128) and as the width grows.

    All sizes of one curve alternate within each repetition, so a slow phase of the machine does not
    bend the curve.
    """
    s = results.settings
    base = _load_big(s, max(s.scaling_samples))

    def by_samples(n: int):
        data = _dataset(base.X_train[:n], base.y_train[:n], "scaling")
        return lambda rep: lossbench_mlp(data, s.hidden, "adam", s.big_batch, s.scaling_epochs, rep)

    def by_width(width: int):
        data = _dataset(base.X_train[:s.scaling_width_samples], base.y_train[:s.scaling_width_samples], "scaling")
        return lambda rep: lossbench_mlp(data, width, "adam", s.big_batch, s.scaling_epochs, rep)

    _log(f"scaling: samples {s.scaling_samples} x {s.reps} reps")
    per_sample = {}
    for n, values in alternate({n: by_samples(n) for n in s.scaling_samples}, s.reps).items():
        per_sample[n] = results.add("scaling", f"samples {n}", "lossbench", "time per epoch", "s", values).median / n
    _log(f"scaling: widths {s.scaling_widths} x {s.reps} reps")
    for width, values in alternate({width: by_width(width) for width in s.scaling_widths}, s.reps).items():
        results.add("scaling", f"width {width}", "lossbench", "time per epoch", "s", values)
    sizes = np.array(list(per_sample))
    slope = float(np.polyfit(np.log(sizes), np.log([per_sample[n] * n for n in sizes]), 1)[0])
    spread = max(per_sample.values()) / min(per_sample.values())
    results.target("scaling in samples: log-log slope of time per epoch", slope, "",
                   f"time per sample varies {spread:.2f}x over {sizes.min()}..{sizes.max()} samples", between=(0.9, 1.1))


def _runs_section(name: str) -> Callable:
    """A whole-run section of :mod:`lossbench.bench_runs` (it imports this module's harness)."""
    def section(results: Results, torch) -> None:
        getattr(importlib.import_module("lossbench.bench_runs"), name)(results, torch)
    return section


SECTION_FUNCTIONS = {
    "mlp": section_mlp, "digits": section_digits, "softmax": section_softmax, "flops": section_flops,
    "scaling": section_scaling, "startup": _runs_section("section_startup"), "eval": _runs_section("section_eval"),
    "memory": _runs_section("section_memory"), "sweep": _runs_section("section_sweep"),
    "stack": lambda results, torch: _section_stack(results, torch),
}


def _section_stack(results: Results, torch) -> None:
    """Stacked packs against one run after another (issue 13): see :mod:`lossbench.stack.bench`."""
    from lossbench.stack.bench import section_stack, section_study

    section_stack(results, torch)
    for study in results.settings.studies:
        section_study(results, study)

# ---------------------------------------------------------------------------------------------
# output: table, CSV, figure


def _format(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "fraction":
        return f"{value:.0%}"
    if unit == "":
        return f"{value:.2f}"
    return f"{value:.3g} {unit}"


def format_table(results: Results, duration_s: float) -> str:
    """The targets (threshold, measured, status, note) and every measurement, as plain text."""
    lines = ["lossbench benchmark (issue 5)", "=" * 29, ""]
    width = max([len(t.name) for t in results.targets] + [6])
    lines.append(f"{'target':<{width}}  {'threshold':>10}  {'measured':>10}  status  note")
    for t in results.targets:
        lines.append(f"{t.name:<{width}}  {t.threshold:>10}  {_format(t.measured, t.unit):>10}  {t.status:<6}  {t.note}")
    lines += ["", "measurements: median [min .. max] over count samples", ""]
    for m in results.measurements:
        spread = f"[{_format(m.min, m.unit)} .. {_format(m.max, m.unit)}]"
        lines.append(f"{m.section:<8} {m.case:<38} {m.contender:<24} {m.metric:<36} "
                     f"{_format(m.median, m.unit):>10} {spread:<26} n={m.count}")
    missed = [t.name for t in results.targets if t.status == "MISS"]
    lines += ["", f"{sum(t.status == 'PASS' for t in results.targets)} targets met, {len(missed)} missed"
              + (": " + "; ".join(missed) if missed else ""), f"total duration: {duration_s:.0f} s"]
    return "\n".join(lines)


def draw(results: Results, path: Path) -> None:
    """bench.png: per-epoch times of the MLP comparisons, batch-1 steps, scaling, and the target ratios."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    figure = Figure(figsize=(15, 9), layout="constrained")
    axes = figure.subplots(2, 3).ravel()
    colors = {"lossbench": "tab:blue", "sklearn": "tab:orange", "torch": "tab:green", "matmuls alone": "tab:gray"}

    def grouped(ax, rows: list[Measurement], title: str, ylabel: str) -> None:
        """Bars per case (x) and contender (colour), median with min-max whiskers."""
        cases = list(dict.fromkeys(m.case for m in rows))
        names = list(dict.fromkeys(m.contender for m in rows))
        step = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            for i, case in enumerate(cases):
                for m in (m for m in rows if (m.case, m.contender) == (case, name)):
                    ax.bar(i + j * step, m.median, step, yerr=[[m.median - m.min], [m.max - m.median]],
                           color=colors.get(name, f"C{j}"), label=name if i == 0 else None, capsize=2)
        ax.set_xticks([i + step * (len(names) - 1) / 2 for i in range(len(cases))], cases, rotation=20, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if names:
            ax.legend(fontsize=8)

    grouped(axes[0], [m for m in results.measurements if m.section == "mlp"],
            "big MLP: seconds per epoch (lower is better)", "s / epoch")
    grouped(axes[1], [m for m in results.measurements if m.section == "digits" and m.unit == "us"],
            "digits, batch 1: microseconds per step", "us / step")

    for ax, prefix, xlabel in ((axes[2], "samples ", "training samples"), (axes[3], "width ", "hidden units")):
        rows = [m for m in results.measurements if m.section == "scaling" and m.case.startswith(prefix)]
        if rows:
            x = np.array([int(m.case.split()[-1]) for m in rows])
            y = np.array([m.median for m in rows])
            ax.errorbar(x, y, yerr=[y - [m.min for m in rows], [m.max for m in rows] - y], marker="o", capsize=3)
            if prefix == "samples ":
                ax.plot(x, y[-1] * x / x[-1], "k--", lw=0.8, label="linear through the largest")
                ax.legend(fontsize=8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(x, [f"{v:,}" for v in x], fontsize=8)
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"scaling: seconds per epoch vs {xlabel}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("s / epoch")

    graded = [t for t in results.targets if t.status in ("PASS", "MISS")]
    ax = axes[4]
    if graded:
        margins = [min(t.margin, 10.0) for t in graded]
        ax.barh(range(len(graded)), margins, color=["tab:green" if t.status == "PASS" else "tab:red" for t in graded])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_yticks(range(len(graded)), [t.name for t in graded], fontsize=6)
        ax.invert_yaxis()
    ax.set_title("targets: margin (>= 1 met, capped at 10)", fontsize=10)

    ax = axes[5]
    rows = [m for m in results.measurements if m.section == "sweep" and m.metric == "sweep wall time"]
    gain = next((m.median for m in results.measurements if m.metric == "parallel throughput gain"), None)
    if rows:
        ax.bar(range(len(rows)), [m.median for m in rows], yerr=[[m.median - m.min for m in rows],
                                                                [m.max - m.median for m in rows]],
               color=["tab:blue", "tab:purple"][:len(rows)], capsize=3)
        ax.set_xticks(range(len(rows)), [f"{m.contender} launcher" for m in rows])
        basic = next((m.median for m in rows if m.contender == "basic"), None)
        if basic and gain:
            ax.axhline(basic / gain, color="k", ls="--", lw=0.8, label=f"basic / machine's 2-process gain ({gain:.2f}x)")
            ax.axhline(basic / 1.7, color="tab:red", ls=":", lw=0.8, label="basic / 1.7 (target)")
            ax.legend(fontsize=8)
        ax.set_ylabel("s")
        ax.set_title(f"sweep wall time: {rows[0].case}", fontsize=10)
    else:
        ax.set_title("sweep wall time", fontsize=10)
    figure.savefig(path, dpi=110)


def write_outputs(results: Results, out: Path, table: str, environment: dict) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([asdict(m) for m in results.measurements],
                 columns=[f.name for f in Measurement.__dataclass_fields__.values()]).to_csv(
        out / "measurements.csv", index=False)
    pd.DataFrame([asdict(t) for t in results.targets],
                 columns=[f.name for f in Target.__dataclass_fields__.values()]).to_csv(out / "targets.csv", index=False)
    (out / "table.txt").write_text(table + "\n")
    (out / "environment.json").write_text(json.dumps(environment, indent=2, default=str) + "\n")
    draw(results, out / "bench.png")


# ---------------------------------------------------------------------------------------------
# entry point


def _import_torch(enabled: bool):
    """torch with one thread, when it is importable and wanted; else None (it is not a dependency)."""
    if not enabled or importlib.util.find_spec("torch") is None:
        return None
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (torch imported before)
        pass
    return torch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.bench",
        description="Benchmark lossbench's training loop against scikit-learn (and PyTorch when installed).")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke configuration (seconds, not minutes)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default runs/bench/<timestamp>)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of each comparison (default 5; quick 1)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when it is importable")
    parser.add_argument("--study", action="append", default=[], metavar="NAME",
                        help="with the stack section: time the shipped study NAME (experiment=NAME, joblib) with "
                             "stacking against hydra.sweeper.stack_size=1 (repeatable)")
    args = parser.parse_args(argv)
    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; allowed: {', '.join(SECTIONS)}")
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m lossbench.bench``: run the chosen sections, print the table, write the files."""
    from threadpoolctl import threadpool_info, threadpool_limits

    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.reps is not None:
        settings = replace(settings, reps=args.reps)
    if args.study:
        settings = replace(settings, studies=tuple(args.study))
    out = args.out or Path("runs") / "bench" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    started = time.perf_counter()
    load_before = os.getloadavg()
    torch = _import_torch(not args.no_torch and bool({"mlp", "digits"} & set(args.sections)))
    importlib.import_module("sklearn.neural_network")  # loads its OpenMP runtime before the thread limit

    results = Results(settings)
    failed = []
    with threadpool_limits(limits=1):
        for name in args.sections:
            try:
                SECTION_FUNCTIONS[name](results, torch)
            except Exception as err:  # the other sections still run; the table says what failed
                traceback.print_exc()
                failed.append(name)
                message = " ".join(f"{type(err).__name__}: {err}".split())
                results.targets.append(Target(f"section {name}", "(runs)", None, "", "ERROR", message[:300]))
    if torch is None and {"mlp", "digits"} & set(args.sections):
        results.target("PyTorch contender", None, "", "torch is not importable here; the torch columns are skipped")
    duration = time.perf_counter() - started
    table = format_table(results, duration)
    from lossbench.records import provenance

    environment = {
        "settings": asdict(settings), "sections": args.sections, "quick": args.quick,
        "duration_s": duration, "cpu_count": os.cpu_count(), "processor": platform.processor(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "torch": getattr(torch, "__version__", None), "threadpools": threadpool_info(),
        "provenance": provenance(),
    }
    write_outputs(results, out, table, environment)
    print(table)
    print(f"\nwritten to {out}/ (measurements.csv, targets.csv, table.txt, environment.json, bench.png)")
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine was busy when the benchmark started (load average {load_before[0]:.1f} on "
              f"{os.cpu_count()} CPUs); its timings are noisy")
    if failed:
        print(f"error: section(s) {', '.join(failed)} failed (see above); their rows say why", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
