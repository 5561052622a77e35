"""Check your own components against lossbench's contracts before you run a sweep with them.

    from lossbench.testing import check_loss, check_optimizer, check_stacked
    check_loss(MyLoss())            # AssertionError with a message, or a LossCheckReport
    check_optimizer(MyOptimizer(lr=0.1))
    check_stacked(MyModel())        # only for a component declaring stackable = True (lossbench.stack)

The finite-difference helpers they use are public too, for gradients of anything else::

    numerical_gradient(f, x, step=1e-6)                    # central differences, float64
    finite_difference_check(f, x, gradient, step=1e-6, rtol=1e-6, atol=0.0)

Example, a model's gradient with respect to one parameter array::

    def mean_loss(W):
        model.params["W"] = W
        outputs, _ = model.forward(X)
        return loss(outputs, y)[0].mean()
    outputs, cache = model.forward(X)
    grads = model.backward(cache, loss(outputs, y)[1] / len(X))
    finite_difference_check(mean_loss, model.params["W"], grads["W"])
    # (restore model.params["W"] afterwards: mean_loss left the perturbed float64 copy in place)
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np

TARGET_KINDS = ("labels", "probabilities", "values")

#: Relative rounding error allowed in a computed loss value (about 45 ulps of float64). Central
#: differences cannot resolve a derivative below that error / step (1e-8 x magnitude at step 1e-6).
_VALUE_ROUNDING = 1e-14


# ---------------------------------------------------------------------------------------------
# finite differences


def numerical_gradient(f, x, step: float = 1e-6) -> np.ndarray:
    """Central finite differences of ``f`` at ``x``, in float64.

    ``d f / d x_i ~ (f(x + h e_i) - f(x - h e_i)) / ((x_i + h) - (x_i - h))`` for every entry i
    (the denominator is the step actually taken after rounding). ``f`` maps an array shaped like
    ``x`` to a scalar or an array; the result has shape ``f(x).shape + x.shape`` (the Jacobian).
    ``x`` is copied to float64 and ``f`` receives that copy, perturbed in place one entry at a time
    and restored afterwards (``f`` must not keep it). Costs ``2 * x.size + 1`` calls of ``f``.
    """
    point = np.array(x, dtype=np.float64)
    value_shape = np.shape(f(point))
    jacobian = np.empty(value_shape + point.shape)
    for index in np.ndindex(point.shape):
        original = point[index]
        point[index] = original + step
        forward = np.asarray(f(point), dtype=np.float64)
        upper = point[index]
        point[index] = original - step
        backward = np.asarray(f(point), dtype=np.float64)
        lower = point[index]
        point[index] = original
        jacobian[(Ellipsis, *index)] = (forward - backward) / (upper - lower)
    return jacobian


def finite_difference_check(f, x, gradient, *, step: float = 1e-6, rtol: float = 1e-6, atol: float = 0.0,
                            what: str = "gradient") -> float:
    """Assert that an analytic ``gradient`` of ``f`` at ``x`` matches central finite differences.

    Passes when ``max|numerical - gradient| <= rtol * max(max|numerical|, max|gradient|) + atol``
    (a relative error over the whole array, so entries far below the largest one do not need
    their own relative precision). ``f(x)`` is usually a scalar and ``gradient`` shaped like
    ``x``; for an array-valued ``f`` pass its Jacobian, shape ``f(x).shape + x.shape``.
    Returns the relative error ``max|numerical - gradient| / max(max|numerical|, max|gradient|)``
    (0.0 when both are 0); raises AssertionError naming the worst entry otherwise. ``what`` names
    the gradient in the message.
    """
    numerical = numerical_gradient(f, x, step)
    gradient = np.asarray(gradient, dtype=np.float64)
    if gradient.shape != numerical.shape:
        raise AssertionError(f"{what} has shape {gradient.shape}, expected {numerical.shape} "
                             f"(f(x).shape + x.shape)")
    error = np.abs(numerical - gradient)
    scale = max(float(np.max(np.abs(numerical), initial=0.0)), float(np.max(np.abs(gradient), initial=0.0)))
    worst = np.unravel_index(np.argmax(error), error.shape) if error.size else ()
    max_error = float(error[worst]) if error.size else 0.0
    relative = max_error / scale if scale > 0 else 0.0
    if not max_error <= rtol * scale + atol:  # also fails on nan
        index = tuple(int(i) for i in worst)
        raise AssertionError(
            f"{what} does not match central finite differences (step {step:g}): at index {index} analytic "
            f"{gradient[worst]:.10g}, numerical {numerical[worst]:.10g}; relative error {relative:.3g} "
            f"> rtol {rtol:g} (atol {atol:g})")
    return relative


# ---------------------------------------------------------------------------------------------
# losses


@dataclass
class LossCheckReport:
    """What :func:`check_loss` verified: accepted and rejected (target kind, k) settings."""

    loss: str
    accepted: list[str] = field(default_factory=list)  # "labels, k=3", ...
    rejected: dict[str, str] = field(default_factory=dict)  # "values, k=3" -> the ValueError message
    gradient_checks: int = 0  # samples whose gradient was checked by finite differences
    skipped_near_kinks: int = 0  # samples left out because a kink lay within one step
    max_relative_error: float = 0.0  # worst finite-difference relative error over all samples
    #: the link, checked on class labels: "checked, k=1, k=3", "none: calibration not applicable"
    #: (probabilities returns None) or "not provided: calibration not applicable" (no such method)
    probabilities: str = "not provided: calibration not applicable"


def check_loss(loss, n_outputs=(1, 3), *, n_samples: int = 6, saturation: float = 30.0, max_logit: float = 1e3,
               step: float = 1e-6, rtol: float = 1e-6, seed: int = 0) -> LossCheckReport:
    """Verify that ``loss(outputs, targets) -> (per_sample_loss, dlogits)`` keeps lossbench's contract.

    For every k in ``n_outputs`` and every target kind -- ``"labels"`` (int (n,), 0/1 for k == 1,
    [0, k) otherwise), ``"probabilities"`` (float (n, k), rows summing to 1; in [0, 1] for
    k == 1) and ``"values"`` (float (n, k) regression values, some outside [0, 1]) -- the loss
    either raises ValueError (the setting is skipped and reported as rejected) or must:

    - return ``per_sample_loss`` (n,) and ``dlogits`` (n, k), arrays of the outputs' dtype (float64
      and float32), finite and ``per_sample_loss >= 0``, leaving its inputs unchanged;
    - give a sample the same value alone as in a batch;
    - stay finite, non-negative and free of floating-point errors for logits up to ``max_logit``;
    - have ``dlogits[i]`` equal to the gradient of ``per_sample_loss[i]`` by central differences
      in float64 (relative error < ``rtol`` per sample, step ``step``), and no dependence of
      ``per_sample_loss[i]`` on other samples' outputs, at moderate logits and near saturation
      (|logit| ~ ``saturation``, confidently right and confidently wrong). Derivatives below
      the rounding noise of differences of a standard implementation (1e-14 x max(|loss_i|,
      |outputs_i|, 1) / step, e.g. the vanishing gradient of L2 on a saturated sigmoid) can
      only be confirmed to be that small. Samples whose one-sided slopes disagree (a kink, e.g. of L1,
      Huber or hinge, within one step) are skipped and counted; at most a third may be.

    If the loss has a ``probabilities(outputs)`` method (its link, for log loss, Brier score and
    ECE), then for every k whose class labels it accepts it must return None (no probabilistic
    link) for every k, or a float array (n, max(k, 2)) with entries in [0, 1], rows summing to 1,
    top label = the outputs' prediction (``z > 0`` for k == 1, else the argmax), finite and free
    of floating-point errors for logits up to ``max_logit``. Without the method, calibration
    metrics are "not applicable" for the loss (reported, not an error).

    At least one setting must be accepted. Raises AssertionError on the first violation.
    """
    if n_samples < 4:
        raise ValueError(f"n_samples must be an int >= 4, got {n_samples!r}")
    report = LossCheckReport(loss=repr(loss))
    max_error = 0.0
    for k in n_outputs:
        for kind_index, kind in enumerate(TARGET_KINDS):
            setting = f"{kind}, k={k}"
            rng = np.random.default_rng([seed, k, kind_index])
            targets = _example_targets(kind, rng, n_samples, k)
            outputs = rng.normal(0.0, 1.5, size=(n_samples, k))
            try:
                first = loss(outputs, targets)
            except ValueError as err:
                report.rejected[setting] = str(err)
                continue
            except Exception as err:  # noqa: BLE001 - any other exception breaks the contract
                raise AssertionError(f"{report.loss} [{setting}]: raised {type(err).__name__}: {err}; a loss "
                                     "must raise ValueError for targets it cannot serve") from err
            report.accepted.append(setting)
            where = f"{report.loss} [{setting}]"
            _check_results(where, outputs, first)
            _check_contract(loss, where, outputs, targets, rng, max_logit)
            for name, points in (("moderate logits", outputs),
                                 ("saturated logits", _saturated_outputs(kind, targets, rng, k, saturation))):
                errors, skipped = _check_gradients(loss, f"{where} at {name}", points, targets, step, rtol)
                report.gradient_checks += len(errors)
                report.skipped_near_kinks += skipped
                max_error = max([max_error, *errors])
    if not report.accepted:
        raise AssertionError(f"{report.loss} accepted no target kind: {report.rejected}")
    label_ks = [k for k in n_outputs if f"labels, k={k}" in report.accepted]
    if callable(getattr(loss, "probabilities", None)) and label_ks:
        report.probabilities = _check_probabilities(loss, report.loss, label_ks, n_samples, max_logit, seed)
    total = report.gradient_checks + report.skipped_near_kinks
    if report.skipped_near_kinks * 3 > total:
        raise AssertionError(f"{report.loss}: {report.skipped_near_kinks} of {total} samples have one-sided slopes "
                             "that disagree (kinks or jumps everywhere?)")
    report.max_relative_error = float(max_error)
    return report


def _check_probabilities(loss, name, ks, n, max_logit, seed) -> str:
    """The link of a loss: None for every k, or class probabilities (n, max(k, 2)); returns the report text."""
    results = {}
    for k in ks:
        rng = np.random.default_rng([seed, k, 99])
        outputs = rng.normal(0.0, 1.5, size=(n, k))
        extreme = rng.choice([-max_logit, 0.0, max_logit], size=(n, k))
        for where, logits in (("moderate logits", outputs), (f"logits up to +-{max_logit:g}", extreme)):
            with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
                warnings.simplefilter("error", RuntimeWarning)
                try:
                    p = loss.probabilities(logits)
                except Exception as err:  # noqa: BLE001
                    raise AssertionError(f"{name}: probabilities at k={k}, {where}, raised "
                                         f"{type(err).__name__}: {err}") from err
            results.setdefault(k, p is None)
            if (p is None) != results[k] or (p is None) != results[ks[0]]:
                raise AssertionError(f"{name}: probabilities returns None for some outputs and arrays for "
                                     "others; None means the loss has no probabilistic link at all")
            if p is None:
                continue
            where = f"{name}: probabilities at k={k}, {where}"
            if not isinstance(p, np.ndarray) or p.shape != (n, max(k, 2)):
                raise AssertionError(f"{where}: must be an array of shape {(n, max(k, 2))} (one column per "
                                     f"class, two for one sigmoid output), got {getattr(p, 'shape', type(p).__name__)}")
            if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
                raise AssertionError(f"{where}: entries must be finite probabilities in [0, 1], got {p}")
            if not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=1e-9):
                raise AssertionError(f"{where}: rows must sum to 1, got sums {p.sum(axis=1)}")
            predicted = (logits[:, 0] > 0).astype(np.int64) if k == 1 else logits.argmax(axis=1)
            if logits is outputs and not np.array_equal(p.argmax(axis=1), predicted):
                raise AssertionError(f"{where}: the most probable class must be the outputs' prediction "
                                     "(z > 0 for one output, else the largest output): accuracy and ECE "
                                     "judge the same prediction")
    if results[ks[0]]:
        return "none: calibration not applicable"
    return "checked, " + ", ".join(f"k={k}" for k in ks)


def _example_targets(kind: str, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Targets of one kind for n samples and k outputs."""
    if kind == "labels":
        if k == 1:
            return rng.permutation(np.arange(n) % 2).astype(np.int64)
        return rng.integers(0, k, size=n).astype(np.int64)
    if kind == "probabilities":
        if k == 1:
            return rng.uniform(0.05, 0.95, size=(n, 1))
        return rng.dirichlet(np.ones(k), size=n)
    values = rng.normal(0.0, 2.0, size=(n, k))
    values[0, 0] = -1.5  # regression values: some lie outside [0, 1]
    return values


def _saturated_outputs(kind, targets, rng, k, saturation):
    """Logits with one entry at +-saturation per row: confidently right on even rows, wrong on odd ones."""
    n = len(targets)
    wrong = np.arange(n) % 2 == 1
    outputs = rng.normal(0.0, 1.0, size=(n, k))
    if k == 1:
        sign = 2.0 * targets - 1.0 if kind == "labels" else np.ones(n)
        outputs[:, 0] = np.where(wrong, -sign, sign) * (saturation + outputs[:, 0])
        return outputs
    hot = targets if kind == "labels" else rng.integers(0, k, size=n)
    hot = np.where(wrong, (hot + 1) % k, hot)
    outputs[np.arange(n), hot] += saturation
    return outputs


def _check_results(where: str, outputs: np.ndarray, result, *, finite: bool = True) -> None:
    """Shapes (n,), (n, k), the outputs' dtype, finite, per_sample_loss >= 0."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise AssertionError(f"{where}: must return a pair (per_sample_loss, dlogits), got {type(result).__name__}")
    per_sample_loss, dlogits = result
    n, k = outputs.shape
    for name, value, shape in (("per_sample_loss", per_sample_loss, (n,)), ("dlogits", dlogits, (n, k))):
        if not isinstance(value, np.ndarray):
            raise AssertionError(f"{where}: {name} must be a numpy array, got {type(value).__name__}")
        if value.shape != shape:
            raise AssertionError(f"{where}: {name} has shape {value.shape}, expected {shape}")
        if value.dtype != outputs.dtype:
            raise AssertionError(f"{where}: {name} has dtype {value.dtype} for {outputs.dtype} outputs; "
                                 "results must keep the outputs' dtype")
        if finite and not np.isfinite(value).all():
            raise AssertionError(f"{where}: {name} is not finite: {value}")
    if not (per_sample_loss >= 0).all():
        raise AssertionError(f"{where}: per_sample_loss must be >= 0, got {per_sample_loss}")


def _check_contract(loss, where, outputs, targets, rng, max_logit) -> None:
    """float32, unchanged inputs, one sample alone, extreme logits."""
    outputs_before, targets_before = outputs.copy(), np.copy(targets)
    per_sample_loss, _ = loss(outputs, targets)
    if not (np.array_equal(outputs, outputs_before) and np.array_equal(targets, targets_before)):
        raise AssertionError(f"{where}: the loss modified its outputs or targets argument")
    single_loss, _ = _call(loss, f"{where}, one sample", outputs[:1], targets[:1])
    if not np.allclose(single_loss, per_sample_loss[:1], rtol=1e-12, atol=0.0):
        raise AssertionError(f"{where}: sample 0 alone gives {single_loss[0]:.10g}, in the batch "
                             f"{per_sample_loss[0]:.10g}; a sample's loss must not depend on the others")
    outputs32 = outputs.astype(np.float32)
    # as in a float32 run, where the runner casts float targets to the model's dtype
    targets32 = targets.astype(np.float32) if targets.dtype.kind == "f" else targets
    result32 = _call(loss, f"{where}, float32", outputs32, targets32)
    _check_results(f"{where}, float32 outputs", outputs32, result32)
    if not np.allclose(result32[0], per_sample_loss, rtol=1e-3, atol=1e-4):
        raise AssertionError(f"{where}: float32 outputs give {result32[0]}, float64 {per_sample_loss}")
    n, k = outputs.shape
    extreme = rng.uniform(-max_logit, max_logit, size=(n, k))
    extreme[0] = 0.0  # the runner checks a configuration with zero outputs
    extreme[1] = max_logit
    extreme[2] = -max_logit
    extreme[3, ::2] = max_logit
    extreme[3, 1::2] = -max_logit
    for dtype in (np.float64, np.float32):
        logits = extreme.astype(dtype)
        typed_targets = targets.astype(dtype) if targets.dtype.kind == "f" else targets
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
            warnings.simplefilter("error", RuntimeWarning)
            try:
                result = loss(logits, typed_targets)
            except (FloatingPointError, RuntimeWarning) as err:
                raise AssertionError(f"{where}: floating-point error at logits up to +-{max_logit:g} "
                                     f"({np.dtype(dtype).name}): {err}") from err
        _check_results(f"{where}, {np.dtype(dtype).name} logits up to +-{max_logit:g}", logits, result)


def _call(loss, where, outputs, targets):
    """loss(outputs, targets), turning any exception into an AssertionError naming the setting."""
    try:
        return loss(outputs, targets)
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"{where}: raised {type(err).__name__}: {err}") from err


def _check_gradients(loss, where, outputs, targets, step, rtol) -> tuple[list[float], int]:
    """Per-sample finite-difference check of dlogits; returns (relative errors, samples skipped at kinks)."""
    per_sample_loss, dlogits = loss(outputs, targets)

    def per_sample(logits):
        return loss(logits, targets)[0]

    jacobian = numerical_gradient(per_sample, outputs, step)  # (n, n, k): d loss_i / d z_jc
    n = len(outputs)
    errors, skipped = [], 0
    for i in range(n):
        expected = np.zeros_like(jacobian[i])
        expected[i] = dlogits[i]
        error = np.abs(jacobian[i] - expected)
        # a derivative below the rounding noise of the loss (of its value, or of the logits it cancels,
        # as in logsumexp(z) - z_y) is not resolvable by differences: measure against that noise
        noise = _VALUE_ROUNDING * max(abs(per_sample_loss[i]), np.abs(outputs[i]).max(), 1.0) / step
        scale = max(np.abs(jacobian[i]).max(), np.abs(expected).max(), noise / rtol)
        tolerance = rtol * scale
        if error.max() <= tolerance:
            errors.append(error.max() / scale if scale > 0 else 0.0)
            continue
        worst = np.unravel_index(np.argmax(error), error.shape)
        if worst[0] == i and _near_kink(per_sample, outputs, i, worst[1], step, tolerance):
            skipped += 1
            continue
        raise AssertionError(
            f"{where}: sample {i}: d loss_{i} / d outputs{list(worst)} is {expected[worst]:.10g} by dlogits but "
            f"{jacobian[i][worst]:.10g} by central differences (relative error {error.max() / scale:.3g} > {rtol:g}); "
            f"outputs[{i}] = {outputs[i]}")
    return errors, skipped


def _near_kink(per_sample, outputs, i, j, step, tolerance) -> bool:
    """True when the one-sided slopes of loss_i in outputs[i, j] disagree: a kink within one step."""
    point = np.array(outputs, dtype=np.float64)
    centre = per_sample(point)[i]
    point[i, j] += step
    right = (per_sample(point)[i] - centre) / step
    point[i, j] -= 2 * step
    left = (centre - per_sample(point)[i]) / step
    return abs(right - left) > 1e3 * tolerance + 1e-4 * max(abs(right), abs(left))


# ---------------------------------------------------------------------------------------------
# optimizers


@dataclass
class OptimizerCheckReport:
    """What :func:`check_optimizer` verified."""

    optimizer: str
    steps: int  # steps taken on the quadratic
    quadratic_start: float  # 1/2 sum a theta^2 before
    quadratic_end: float  # and after those steps
    zero_gradient_checked: bool  # False when weight_decay != 0 (decay moves parameters by itself)


def check_optimizer(optimizer, *, steps: int = 200, seed: int = 0) -> OptimizerCheckReport:
    """Verify that ``optimizer.step(params, grads)`` keeps lossbench's contract.

    Works on deep copies (fresh state; pass an optimizer that has not stepped yet), float64 and
    float32 parameters ``{"W": (4, 3), "b": (3,)}``:

    - ``step`` updates every parameter array in place (same objects, shapes and dtypes, same dict
      keys), leaves them finite and changes each one whose gradient is nonzero, also on a second step;
    - ``optimizer.lr`` is read at every step: halving it halves the first update (the trainer's
      learning-rate schedules set it between steps);
    - ``steps`` steps on the quadratic ``1/2 sum a theta^2`` (curvature a in [0.5, 1] / max(1, lr))
      lower it;
    - with ``weight_decay == 0`` (or no such attribute), zero gradients from a fresh state change
      nothing (many rules legitimately do nothing then; none may drift).

    Returns an :class:`OptimizerCheckReport`; raises AssertionError with a message on failure.
    """
    name = repr(optimizer)
    if not isinstance(getattr(optimizer, "lr", None), (int, float, np.floating)) or not optimizer.lr > 0:
        raise AssertionError(f"{name}: needs a public learning rate optimizer.lr > 0, got "
                             f"{getattr(optimizer, 'lr', 'no attribute')!r}")
    rng = np.random.default_rng(seed)
    for dtype in (np.float64, np.float32):
        _check_step_in_place(copy.deepcopy(optimizer), name, dtype, rng)
    _check_lr_is_read(optimizer, name, rng)
    start, end = _descend_quadratic(copy.deepcopy(optimizer), name, steps, rng)
    weight_decay = getattr(optimizer, "weight_decay", 0.0)
    zero_gradient_checked = weight_decay == 0
    if zero_gradient_checked:
        _check_zero_gradient(copy.deepcopy(optimizer), name, rng)
    return OptimizerCheckReport(optimizer=name, steps=steps, quadratic_start=start, quadratic_end=end,
                                zero_gradient_checked=zero_gradient_checked)


def _example_params(rng, dtype) -> dict[str, np.ndarray]:
    return {"W": rng.normal(size=(4, 3)).astype(dtype), "b": rng.normal(size=3).astype(dtype)}


def _step(optimizer, name, params, grads) -> None:
    """optimizer.step(params, grads), checking the dict and the arrays afterwards."""
    arrays = dict(params)
    shapes = {key: (value.shape, value.dtype) for key, value in params.items()}
    optimizer.step(params, grads)
    if list(params) != list(arrays):
        raise AssertionError(f"{name}: step changed the keys of params from {list(arrays)} to {list(params)}")
    for key, array in arrays.items():
        if params[key] is not array:
            raise AssertionError(f"{name}: step replaced params[{key!r}] with a new array; it must update the "
                                 "array in place (e.g. param -= lr * grad), the model keeps references to it")
        if (array.shape, array.dtype) != shapes[key]:
            raise AssertionError(f"{name}: params[{key!r}] changed from {shapes[key]} to {(array.shape, array.dtype)}")
        if not np.isfinite(array).all():
            raise AssertionError(f"{name}: params[{key!r}] is not finite after a step: {array}")


def _check_step_in_place(optimizer, name, dtype, rng) -> None:
    params = _example_params(rng, dtype)
    for step in (1, 2):
        grads = {key: rng.normal(size=value.shape).astype(dtype) for key, value in params.items()}
        before = {key: value.copy() for key, value in params.items()}
        _step(optimizer, name, params, grads)
        for key, value in params.items():
            if np.array_equal(value, before[key]):
                raise AssertionError(f"{name}: step {step} did not change params[{key!r}] ({np.dtype(dtype).name}) "
                                     "although its gradient is nonzero")


def _check_lr_is_read(optimizer, name, rng) -> None:
    full, half = copy.deepcopy(optimizer), copy.deepcopy(optimizer)
    half.lr = optimizer.lr / 2
    params = _example_params(rng, np.float64)
    grads = {key: rng.normal(size=value.shape) for key, value in params.items()}
    updates = []
    for opt in (full, half):
        moved = {key: value.copy() for key, value in params.items()}
        _step(opt, name, moved, grads)
        updates.append(np.concatenate([(moved[key] - params[key]).ravel() for key in params]))
    if not np.allclose(updates[1], updates[0] / 2, rtol=1e-6, atol=1e-12 * optimizer.lr):
        raise AssertionError(f"{name}: halving optimizer.lr did not halve the first update (max |update| "
                             f"{np.abs(updates[0]).max():.3g} vs {np.abs(updates[1]).max():.3g}); step must read "
                             "self.lr at every call, the trainer's schedules change it between steps")


def _descend_quadratic(optimizer, name, steps, rng) -> tuple[float, float]:
    params = _example_params(rng, np.float64)
    curvature = {key: rng.uniform(0.5, 1.0, size=value.shape) / max(1.0, optimizer.lr)
                 for key, value in params.items()}

    def quadratic():
        return float(sum(0.5 * (curvature[key] * value ** 2).sum() for key, value in params.items()))

    start = quadratic()
    for _ in range(steps):
        _step(optimizer, name, params, {key: curvature[key] * value for key, value in params.items()})
    end = quadratic()
    if not end < start:
        raise AssertionError(f"{name}: {steps} steps on the quadratic 1/2 sum a theta^2 did not lower it "
                             f"({start:.4g} -> {end:.4g}); is the update a descent step (param -= lr * ...)?")
    return start, end


def _check_zero_gradient(optimizer, name, rng) -> None:
    params = _example_params(rng, np.float64)
    before = {key: value.copy() for key, value in params.items()}
    for _ in range(3):
        _step(optimizer, name, params, {key: np.zeros_like(value) for key, value in params.items()})
    for key, value in params.items():
        if not np.array_equal(value, before[key]):
            raise AssertionError(f"{name}: with zero gradients and weight_decay == 0, params[{key!r}] moved by up "
                                 f"to {np.abs(value - before[key]).max():.3g}; it must stay where it is")


# ---------------------------------------------------------------------------------------------
# stacked runs: the contract of a component that declares ``stackable = True`` (lossbench.stack)

from lossbench.stack.check import StackCheckReport, check_stacked  # noqa: E402  (re-exported here)
