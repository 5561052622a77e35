"""``check_stacked``: does a component that declares ``stackable = True`` keep the stacked contract?

    from lossbench.testing import check_stacked
    check_stacked(MyModel(...))        # AssertionError naming what differs, or a StackCheckReport
    check_stacked(MyLoss())
    check_stacked(MyOptimizer(lr=0.1))

The contract: R runs computed on a leading run axis give each run the numbers it gets alone, bit
for bit (``np.array_equal``), so a stacked pack trains exactly as its runs would one by one.

- model: ``forward_stacked(params, X)`` / ``backward_stacked(params, cache, dlogits)`` with
  params (R, ...) and X (R, n, d) or (1, n, d) equal ``forward`` / ``backward`` per run;
- loss: row-wise: one call on the rows of R runs (R * n rows) gives each run's rows what a call
  on its own n rows gives (per-sample loss and dlogits);
- optimizer: :class:`lossbench.optim.StackedOptimizer` over R copies with different
  ``stack_hyperparameters`` gives each the parameters and state it reaches alone.

Run it with one BLAS thread (``threadpoolctl.threadpool_limits(1)``), as runs train.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StackCheckReport:
    """What :func:`check_stacked` verified."""

    component: str
    kind: str  # model | loss | optimizer
    checks: list[str] = field(default_factory=list)


def _assert_equal(what: str, stacked, alone) -> None:
    stacked, alone = np.asarray(stacked), np.asarray(alone)
    if stacked.shape != alone.shape or stacked.dtype != alone.dtype:
        raise AssertionError(f"{what}: stacked gives {stacked.dtype} {stacked.shape}, "
                             f"alone {alone.dtype} {alone.shape}")
    if stacked.dtype.kind == "f" and np.isfinite(alone).all():  # bit patterns: -0.0 differs from 0.0
        same = np.array_equal(stacked.view(f"u{stacked.itemsize}"), alone.view(f"u{alone.itemsize}"))
    else:
        same = np.array_equal(stacked, alone, equal_nan=stacked.dtype.kind in "fc")
    if not same:
        worst = float(np.nanmax(np.abs(stacked.astype(np.float64) - alone.astype(np.float64))))
        raise AssertionError(f"{what}: stacked differs from alone (largest difference {worst:.3g}); the "
                             "component is not bit-identical on a run axis, so it must not declare stackable")


def _kind(component) -> str:
    if callable(getattr(component, "forward_stacked", None)):
        return "model"
    if callable(getattr(component, "step", None)):
        return "optimizer"
    if callable(component):
        return "loss"
    raise AssertionError(f"{type(component).__name__} is neither a model, a loss nor an optimizer")


def check_stacked(component, *, n_runs: int = 3, n_samples: int = 7, n_inputs: int = 5, n_outputs=(1, 3),
                  steps: int = 5, seed: int = 0) -> StackCheckReport:
    """Verify that ``component`` (declaring ``stackable = True``) gives every run of a stack its own numbers."""
    if vars(type(component)).get("stackable", False) is not True:
        raise AssertionError(f"{type(component).__name__} does not declare stackable = True in its own class: "
                             "lossbench trains it one run at a time (nothing to check)")
    kind = _kind(component)
    report = StackCheckReport(type(component).__name__, kind)
    rng = np.random.default_rng(seed)
    if kind == "model":
        _check_model(component, report, rng, n_runs, n_samples, n_inputs, n_outputs)
    elif kind == "loss":
        _check_loss(component, report, rng, n_runs, n_samples, n_outputs)
    else:
        _check_optimizer(component, report, rng, n_runs, steps)
    return report


def _check_model(model, report, rng, n_runs, n, d, ks):
    for k in ks:
        models = []
        for r in range(n_runs):
            instance = copy.deepcopy(model)
            try:
                instance.build(d, k, np.random.default_rng([r, k]))
            except ValueError:
                break
            models.append(instance)
        if len(models) < n_runs:
            continue
        dtype = next(iter(models[0].params.values())).dtype
        params = {name: np.stack([m.params[name] for m in models]) for name in models[0].params}
        for shared, n_rows in ((False, n), (True, n), (False, 1)):  # n_rows 1: batch size 1
            X = rng.normal(size=(1 if shared else n_runs, n_rows, d)).astype(dtype)
            template = models[0]  # a built model (its layer structure) computes for the whole stack
            outputs, cache = template.forward_stacked(params, X)
            dlogits = rng.normal(size=outputs.shape).astype(outputs.dtype)
            grads = template.backward_stacked(params, cache, dlogits)
            where = f"k={k}, X {'shared (1, n, d)' if shared else '(R, n, d)'}, n={n_rows}"
            for r, instance in enumerate(models):
                alone_outputs, alone_cache = instance.forward(X[0 if shared else r])
                _assert_equal(f"forward_stacked, run {r}, {where}", outputs[r], alone_outputs)
                alone_grads = instance.backward(alone_cache, dlogits[r])
                if list(grads) != list(alone_grads):
                    raise AssertionError(f"backward_stacked returns keys {list(grads)}, backward {list(alone_grads)}")
                for name, value in alone_grads.items():
                    _assert_equal(f"backward_stacked[{name!r}], run {r}, {where}", grads[name][r], value)
            report.checks.append(f"forward/backward, {where}")


def _check_loss(loss, report, rng, n_runs, n, ks):
    for k in ks:
        labels = rng.integers(0, 2 if k == 1 else k, size=(n_runs, n))
        scale = np.array([1.0, 30.0, 1e3][:n_runs] + [1.0] * max(0, n_runs - 3))[:, None, None]
        outputs = rng.normal(size=(n_runs, n, k)) * scale  # one run near saturation, one at +-1e3
        try:
            together = loss(outputs.reshape(n_runs * n, k), labels.reshape(-1))
        except ValueError:
            continue
        per_sample, dlogits = (np.asarray(part) for part in together)
        for r in range(n_runs):
            alone_loss, alone_dlogits = loss(outputs[r], labels[r])
            _assert_equal(f"per-sample loss of run {r}'s rows, k={k}", per_sample[r * n:(r + 1) * n], alone_loss)
            _assert_equal(f"dlogits of run {r}'s rows, k={k}", dlogits[r * n:(r + 1) * n], alone_dlogits)
        report.checks.append(f"row-wise on class labels, k={k}")


def _check_optimizer(optimizer, report, rng, n_runs, steps):
    from lossbench.stack.optimizer import StackedOptimizer

    if not callable(getattr(optimizer, "stack_structure", None)):
        raise AssertionError(f"{type(optimizer).__name__} has no stack_structure(): StackedOptimizer cannot step it")
    optimizers = []
    for r in range(n_runs):
        instance = copy.deepcopy(optimizer)
        for key in getattr(instance, "stack_hyperparameters", ("lr",)):
            value = getattr(instance, key)
            if value:  # vary each non-zero scalar a little per run (zero may be structural)
                setattr(instance, key, value * (1.0 - 0.1 * r) if key != "lr" else value * (1.0 + r))
        optimizers.append(instance)
    shapes = {"W": (4, 3), "b": (3,)}
    for dtype in (np.float64, np.float32):
        alone = [copy.deepcopy(o) for o in optimizers]
        params = {name: rng.normal(size=(n_runs, *shape)).astype(dtype) for name, shape in shapes.items()}
        own = [{name: value[r].copy() for name, value in params.items()} for r in range(n_runs)]
        stacked = StackedOptimizer([copy.deepcopy(o) for o in optimizers])
        for _ in range(steps):
            grads = {name: rng.normal(size=value.shape).astype(dtype) for name, value in params.items()}
            stacked.step(params, grads)
            for r, instance in enumerate(alone):
                instance.step(own[r], {name: value[r].copy() for name, value in grads.items()})
        for r in range(n_runs):
            for name in shapes:
                _assert_equal(f"parameter {name} of run {r} after {steps} steps ({np.dtype(dtype).name})",
                              params[name][r], own[r][name])
        for r, (instance, mine) in enumerate(zip(alone, stacked.unstack())):
            state, stacked_state = instance.state_dict(), mine.state_dict()
            for key, value in state.items():
                _assert_equal(f"state {key} of run {r} ({np.dtype(dtype).name})", stacked_state[key], value)
        report.checks.append(f"{steps} steps of {n_runs} runs with different hyperparameters, {np.dtype(dtype).name}")
