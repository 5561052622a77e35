"""Losses: one value per sample and its gradient with respect to the raw model outputs.

Every loss is called the same way::

    per_sample_loss, dlogits = loss(outputs, targets)    # (n,), (n, k); the caller averages once

``outputs`` are the raw model outputs (logits), a float array (n, k); both results have its dtype
(float32 in -> float32 out). ``dlogits[i]`` is the gradient of ``per_sample_loss[i]`` with respect
to ``outputs[i]``, so the gradient of the batch mean is ``dlogits / n``. The link (sigmoid,
softmax) lives here, never in the model. ``targets``, read by their dtype:

- integer (n,): class labels. k == 1: labels in {0, 1} and a sigmoid link; k >= 2: labels in
  [0, k) and a softmax link. Internally the target is the probability vector of the label: the
  label itself for k == 1, one-hot for k >= 2.
- float (n, k): regression values for L2, L1 and Huber (compared with the raw outputs);
  class probabilities for BCE, CrossEntropy, KLDivergence and Focal (values in [0, 1]; for
  k >= 2 every row sums to 1; for k == 1 the probability of class 1). A float (n,) is read as
  (n, 1) when k == 1.

Every loss also says how its outputs become class probabilities (its link), for the metrics::

    p = loss.probabilities(outputs)    # float64 (n, max(k, 2)), rows sum to 1; None: no link

sigmoid ``[1 - sigma(z), sigma(z)]`` for k == 1 and softmax for k >= 2 by default; BCE with
k >= 2 normalises its k sigmoids; hinge and l2_logits have none (calibration: not applicable).

A loss that cannot serve a setting (one output for a softmax loss, regression values for a
classification loss, a label out of range, ...) raises ``ValueError`` from the call itself,
saying what fits instead; the runner checks a configuration that way, on all training targets.

Numerics: finite and exact for logits up to +-1e3 in float64 and free of floating-point warnings.
Softmax subtracts the row maximum and ``log p = z - logsumexp(z)``; sigmoids use ``exp(-|z|)``;
no epsilon inside a log. Near saturation the small quantities (``1 - p`` of the top class,
``sigmoid(z) - y`` of a confident prediction) are computed directly, not as a difference of
numbers close to 1, so values and gradients keep their relative precision at |z| ~ 30 too.
Non-finite outputs (a diverged model) are not an error: they give non-finite results, silently,
for the trainer's divergence check.

Stacked runs (:mod:`lossbench.stack`): every built-in loss is row-wise (sample i's loss and
gradient depend on row i of the outputs and targets only), declared by ``stackable = True`` on
each class (not inherited: a subclass declares it again once it has checked that it still holds),
so one call on the rows of several runs gives each row what its run gets alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import entr


# ---------------------------------------------------------------------------------------------
# validation of hyperparameters


def _check_number(key: str, value, allowed: str, ok) -> float:
    """Return float(value) if it is a finite real number with ok(value), else raise ValueError."""
    is_real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (is_real and math.isfinite(value) and ok(value)):
        raise ValueError(f"{key} must be {allowed}, got {value!r}")
    return float(value)  # a Python float keeps float32 arithmetic in float32


#: Upper ends of the documented ranges: beyond them a setting only trains to chance (gamma = 1e308
#: gives every sample weight 0) or is the same as at the bound (a delta above any residual is L2/2).
MAX_GAMMA = 100.0
MAX_DELTA = 1e6


# ---------------------------------------------------------------------------------------------
# numerics shared by the losses

# Outputs below half the largest float cannot overflow in z - max(z), so every log-probability is
# finite; the class-label fast paths serve only such outputs (larger ones take the general path).
_NO_OVERFLOW_BOUND = {np.dtype(dtype): float(np.finfo(dtype).max) / 2 for dtype in (np.float64, np.float32)}


def _sigmoids(z: np.ndarray, exp_neg_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigma(z) and sigma(-z) = 1 - sigma(z), each to full relative precision, from exp(-|z|)."""
    sigmoid_abs = 1.0 / (1.0 + exp_neg_abs)  # sigma(|z|)
    sigmoid_neg_abs = exp_neg_abs * sigmoid_abs  # sigma(-|z|) = e / (1 + e)
    positive = z >= 0
    return np.where(positive, sigmoid_abs, sigmoid_neg_abs), np.where(positive, sigmoid_neg_abs, sigmoid_abs)


class _Softmax(NamedTuple):
    """Softmax of logits z (n, k), with what the losses need to stay exact near saturation."""

    p: np.ndarray  # (n, k) probabilities
    log_p: np.ndarray  # (n, k) z - logsumexp(z)
    rows: np.ndarray  # (n,) 0..n-1, for fancy indexing
    top: np.ndarray  # (n,) column of the largest logit
    one_minus_top: np.ndarray  # (n,) 1 - p[top] = sum of the other probabilities, without cancellation


def _softmax(z: np.ndarray) -> _Softmax:
    """Softmax after subtracting the row maximum; logsumexp = max + log1p(sum of the other terms)."""
    rows = np.arange(z.shape[0])
    top = z.argmax(axis=1)
    shifted = z - z[rows, top][:, None]  # <= 0, exactly 0 at the top
    exp_shifted = np.exp(shifted)
    exp_shifted[rows, top] = 0.0
    rest = exp_shifted.sum(axis=1)  # sum_{i != top} exp(z_i - z_top), in [0, k - 1]
    exp_shifted[rows, top] = 1.0
    total = 1.0 + rest
    exp_shifted /= total[:, None]
    shifted -= np.log1p(rest)[:, None]
    return _Softmax(exp_shifted, shifted, rows, top, rest / total)


def _softmax_residual(softmax: _Softmax, target: np.ndarray) -> np.ndarray:
    """p - target (n, k); at the top class as (1 - target) - (1 - p), exact when both are near 1."""
    rows, top = softmax.rows, softmax.top
    residual = softmax.p - target
    residual[rows, top] = (1.0 - target[rows, top]) - softmax.one_minus_top
    return residual


def _softmax_backward(softmax: _Softmax, weighted: np.ndarray) -> np.ndarray:
    """dL/dz from weighted = p * dL/dp (n, k), overwritten: dz_j = weighted_j - p_j sum_i weighted_i.

    The top entry is computed as weighted_top (1 - p_top) - p_top sum_{i != top} weighted_i, so a
    saturated softmax gives small gradients to full relative precision.
    """
    rows, top, p = softmax.rows, softmax.top, softmax.p
    weighted_top = weighted[rows, top]
    weighted[rows, top] = 0.0
    rest = weighted.sum(axis=1)
    dlogits = weighted
    dlogits -= p * (rest + weighted_top)[:, None]
    dlogits[rows, top] = weighted_top * softmax.one_minus_top - p[rows, top] * rest
    return dlogits


# ---------------------------------------------------------------------------------------------
# the shared base: validation of outputs and targets


class Loss:
    """Base class: checks ``(outputs, targets)`` and turns targets into a float array (n, k).

    Subclasses set ``name`` (the conf/loss file name, for messages), ``float_targets`` (how float
    targets are read: ``"probabilities"``, ``"values"`` or ``None`` for labels only),
    ``min_outputs`` and ``_hyperparameters`` (constructor keys, for ``repr``), and implement
    ``_loss_and_gradient(outputs, target, labels)`` where ``target`` (n, k) has the outputs'
    dtype (a label's probability vector, or the float targets) and ``labels`` is the int (n,)
    array or None for float targets.
    """

    name = "loss"
    float_targets: str | None = "probabilities"
    min_outputs = 1
    _hyperparameters: tuple[str, ...] = ()

    def __call__(self, outputs, targets) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(per_sample_loss (n,), dlogits (n, k))`` for outputs (n, k) and targets."""
        outputs = _check_outputs(outputs)
        targets = np.asarray(targets)
        largest = np.maximum.reduce(np.abs(outputs), axis=None, initial=0.0)  # nan if any output is nan
        if (targets.dtype.kind in "iub" and self._labels_suffice()
                and largest < _NO_OVERFLOW_BOUND.get(outputs.dtype, 0.0)):
            return self._loss_and_gradient_of_labels(outputs, self._check_labels(outputs, targets))
        target, labels = self._prepare_targets(outputs, targets)
        if math.isfinite(largest):
            return self._loss_and_gradient(outputs, target, labels)
        with np.errstate(all="ignore"):  # a diverged model: pass nan/inf on to the trainer, quietly
            return self._loss_and_gradient(outputs, target, labels)

    def _loss_and_gradient(self, outputs, target, labels):
        raise NotImplementedError

    def probabilities(self, outputs) -> np.ndarray | None:
        """Class probabilities (n, C), C = max(k, 2), that this loss's link gives raw outputs (n, k).

        The default link, of every loss that compares probabilities with the label: k == 1,
        ``[1 - sigma(z), sigma(z)]`` (the sigmoid is the probability of class 1); k >= 2,
        ``softmax(z)``. float64, rows sum to 1, exact for logits up to +-1e3 (``exp(-|z|)`` and
        the row maximum subtracted). A loss without a probabilistic link (hinge, l2_logits)
        returns None: its calibration metrics are "not applicable". Non-finite outputs give NaN
        rows, quietly. The argmax of a row is the argmax of the outputs (z > 0 for k == 1).
        """
        return _link_probabilities(outputs)

    def _labels_suffice(self) -> bool:
        """True when ``_loss_and_gradient_of_labels`` serves class labels (no (n, k) target array built)."""
        return False

    def _loss_and_gradient_of_labels(self, outputs, labels):
        """The results of ``_loss_and_gradient`` for int labels (n,) and outputs below the overflow bound."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={getattr(self, key)!r}" for key in self._hyperparameters)
        return f"{type(self).__name__}({fields})"

    def _prepare_targets(self, outputs: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate targets against outputs (n, k); return (target (n, k) in outputs' dtype, labels or None)."""
        n, k = outputs.shape
        targets = np.asarray(targets)
        if targets.dtype.kind in "iub":
            labels = self._check_labels(outputs, targets)
            if k == 1:
                return labels.astype(outputs.dtype)[:, None], labels
            one_hot = np.zeros_like(outputs)
            one_hot[np.arange(n), labels] = 1.0
            return one_hot, labels
        if targets.dtype.kind != "f":
            raise ValueError(f"targets must be integer class labels or float values, got dtype {targets.dtype}")
        if targets.shape == (n,) and k == 1:
            targets = targets[:, None]
        if targets.shape != (n, k):
            raise ValueError(f"float targets must have the outputs' shape (n, k) = ({n}, {k}), got {targets.shape}")
        if not np.isfinite(targets).all():
            raise ValueError(f"targets must be finite, got {np.count_nonzero(~np.isfinite(targets))} nan/inf value(s)")
        if self.float_targets is None:
            raise ValueError(
                f"loss '{self.name}' needs integer class labels, got float targets; for class "
                "probabilities use bce, ce, kl or focal, for regression values use l2, l1 or huber")
        if self.float_targets == "probabilities":
            _check_probabilities(self.name, targets)
            self._check_outputs_count(k)
            if k >= 2:
                _check_row_sums(self.name, targets)
        return targets.astype(outputs.dtype, copy=False), None

    def _check_labels(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Integer targets as intp labels (n,), checked against outputs (n, k)."""
        n, k = outputs.shape
        if targets.shape != (n,):
            raise ValueError(f"integer class labels must have shape (n,) = ({n},), got {targets.shape}")
        self._check_outputs_count(k)
        labels = targets.astype(np.intp, copy=False)
        _check_label_range(self.name, labels, k)
        return labels

    def _check_outputs_count(self, k: int) -> None:
        if k < self.min_outputs:
            raise ValueError(f"loss '{self.name}' needs k >= 2 outputs (softmax); for one output use loss=bce")


def _link_probabilities(outputs) -> np.ndarray:
    """[1 - sigma(z), sigma(z)] for k == 1, softmax(z) for k >= 2, as float64 (n, max(k, 2))."""
    z = _check_outputs(outputs).astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite outputs: NaN rows, quietly
        if z.shape[1] == 1:
            sigmoid, sigmoid_neg = _sigmoids(z[:, 0], np.exp(-np.abs(z[:, 0])))
            return np.column_stack([sigmoid_neg, sigmoid])
        return _softmax(z).p


def _check_outputs(outputs) -> np.ndarray:
    """outputs as a float ndarray (n, k), else ValueError."""
    outputs = np.asarray(outputs)
    if outputs.ndim != 2 or outputs.shape[1] < 1:
        raise ValueError(f"outputs must be a float array of shape (n, k) with k >= 1, got shape {outputs.shape}")
    if outputs.dtype.kind != "f":
        raise ValueError(f"outputs must be a float array, got dtype {outputs.dtype}")
    return outputs


def _check_label_range(name: str, labels: np.ndarray, k: int) -> None:
    """Labels must be 0/1 for one output (sigmoid), in [0, k) for k >= 2 outputs (softmax)."""
    if labels.size == 0:
        return
    high = 2 if k == 1 else k
    if np.maximum.reduce(labels.view(np.uintp)) < high:  # one pass: a negative label wraps to a huge value
        return
    low_label, high_label = np.minimum.reduce(labels), np.maximum.reduce(labels)
    bad = low_label if low_label < 0 else high_label
    if k == 1:
        raise ValueError(f"loss '{name}': class labels for one output (sigmoid) must be 0 or 1, got {bad}; "
                         "with more classes the model needs one output per class (softmax)")
    raise ValueError(f"loss '{name}': class labels must be in [0, {k}) for {k} outputs, got {bad}")


def _check_probabilities(name: str, targets: np.ndarray) -> None:
    """Float targets of a classification loss must lie in [0, 1]; anything else is regression data."""
    if targets.size and (targets.min() < 0 or targets.max() > 1):
        bad = targets.min() if targets.min() < 0 else targets.max()
        raise ValueError(f"loss '{name}' needs class labels or class probabilities, got regression targets "
                         f"(a value {bad:.4g} outside [0, 1]); use l2, l1 or huber")


def _check_row_sums(name: str, targets: np.ndarray) -> None:
    """Rows of class probabilities must sum to 1 within a tolerance suited to their dtype."""
    tolerance = max(1e-6, 1000 * float(np.finfo(targets.dtype).eps))
    row_sums = targets.sum(axis=1)
    worst = np.argmax(np.abs(row_sums - 1.0)) if row_sums.size else None
    if worst is not None and abs(row_sums[worst] - 1.0) > tolerance:
        raise ValueError(f"loss '{name}': class probabilities must sum to 1 in every row (within {tolerance:g}), "
                         f"got a row summing to {row_sums[worst]:.6g}; for regression values use l2, l1 or huber")


# ---------------------------------------------------------------------------------------------
# regression-style losses: a penalty on a residual


class _ResidualLoss(Loss):
    """A penalty phi on residuals, averaged over the k outputs: ``mean_j phi(r_ij)``.

    Float targets are regression values: ``r = outputs - targets``. Class labels compare the
    probabilities with the label's probability vector: ``r = sigmoid(z) - y`` (k == 1) or
    ``r = softmax(z) - onehot(y)`` (k >= 2), unless ``_on_logits`` (then ``r = z - onehot(y)``).
    Subclasses implement ``_penalty(r) -> (phi(r), phi'(r))`` elementwise.
    """

    float_targets = "values"
    _on_logits = False

    def _penalty(self, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _loss_and_gradient(self, outputs, target, labels):
        k = outputs.shape[1]
        if labels is not None and self._on_logits and k == 1:
            # one raw output is read as class 1 when z > 0, so it aims at -1 and +1 (2y - 1), not at
            # 0 and 1, whose midpoint 0.5 is not the decision threshold (least-squares classification)
            value, slope = self._penalty(outputs - (2.0 * target - 1.0))
            slope /= k
            return value.mean(axis=1), slope
        if labels is None or self._on_logits:
            value, slope = self._penalty(outputs - target)
            slope /= k
            return value.mean(axis=1), slope
        if k == 1:
            sigmoid, sigmoid_neg = _sigmoids(outputs, np.exp(-np.abs(outputs)))
            value, slope = self._penalty(sigmoid * (1.0 - target) - sigmoid_neg * target)  # sigma(z) - y
            slope *= sigmoid * sigmoid_neg / k  # d sigma / dz = sigma(z) sigma(-z)
            return value.mean(axis=1), slope
        softmax = _softmax(outputs)
        value, slope = self._penalty(_softmax_residual(softmax, target))
        slope *= softmax.p / k
        return value.mean(axis=1), _softmax_backward(softmax, slope)


class L2(_ResidualLoss):
    """Squared error, mean over the k outputs of a sample.

    ``loss_i = mean_j r_ij ** 2``, ``dloss_i/dr_ij = 2 r_ij / k``, with the residual r (n, k):
    regression values ``z - y``; class labels ``sigmoid(z) - y`` (k == 1) or ``softmax(z) -
    onehot(y)`` (k >= 2), whose gradient ``2 (sigma - y) sigma (1 - sigma)`` vanishes when the
    output saturates, also when confidently wrong; with ``on_logits=True`` class labels give
    ``z - onehot(y)`` (for k == 1: ``z - (2y - 1)``, targets -1 and +1 around the decision threshold
    z = 0), raw outputs and no link.

    Shapes: outputs (n, k), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: ``MSELoss()(link(z), target)`` equals the mean of ``per_sample_loss`` (link =
    sigmoid, softmax, or identity for regression values and ``on_logits``; target one-hot, and
    2y - 1 for ``on_logits`` with one output).
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    _hyperparameters = ("on_logits",)

    def __init__(self, on_logits: bool = False):
        if not isinstance(on_logits, (bool, np.bool_)):
            raise ValueError(f"on_logits must be true or false, got {on_logits!r}")
        self.on_logits = bool(on_logits)
        self._on_logits = self.on_logits

    @property
    def name(self) -> str:
        return "l2_logits" if self.on_logits else "l2"

    def probabilities(self, outputs) -> np.ndarray | None:
        """Sigmoid / softmax of the outputs (see :meth:`Loss.probabilities`); None with ``on_logits``.

        Squared error on raw logits has no probabilistic link: its outputs aim at 0 and 1
        themselves, so a softmax of them is not what the loss trained (calibration: not applicable).
        """
        return None if self.on_logits else _link_probabilities(outputs)

    def _penalty(self, residual):
        return residual * residual, 2.0 * residual


class L1(_ResidualLoss):
    """Absolute error, mean over the k outputs of a sample.

    ``loss_i = mean_j |r_ij|``, ``dloss_i/dr_ij = sign(r_ij) / k`` (0 at r = 0, as PyTorch), with
    the residual r of :class:`L2` (regression ``z - y``; labels: probabilities minus the label).

    Shapes: outputs (n, k), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: ``L1Loss()(link(z), target)`` equals the mean of ``per_sample_loss``.
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "l1"

    def _penalty(self, residual):
        return np.abs(residual), np.sign(residual)


class Huber(_ResidualLoss):
    """Huber loss: quadratic for residuals within delta, linear beyond; mean over the k outputs.

    ``phi(r) = r**2 / 2`` if ``|r| <= delta`` else ``delta (|r| - delta / 2)``;
    ``phi'(r) = clip(r, -delta, delta)``; ``loss_i = mean_j phi(r_ij)``, residual r as in :class:`L2`.

    Shapes: outputs (n, k), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: ``HuberLoss(delta=delta)(link(z), target)`` equals the mean of ``per_sample_loss``.
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "huber"
    _hyperparameters = ("delta",)

    def __init__(self, delta: float = 1.0):
        self.delta = _check_number("delta", delta, "a number in (0, 1e6]", lambda v: 0 < v <= MAX_DELTA)

    def _penalty(self, residual):
        delta = self.delta
        size = np.abs(residual)
        value = np.where(size <= delta, 0.5 * residual * residual, delta * (size - 0.5 * delta))
        return value, np.clip(residual, -delta, delta)


# ---------------------------------------------------------------------------------------------
# classification losses


class BCE(Loss):
    """Binary cross-entropy on logits, per output (sigmoid each), mean over the k outputs.

    ``loss_i = mean_j [max(z_ij, 0) - z_ij t_ij + log(1 + exp(-|z_ij|))]``, the stable form of
    ``-t log sigma(z) - (1 - t) log(1 - sigma(z))``; ``dloss_i/dz_ij = (sigma(z_ij) - t_ij) / k``.
    t: the label (k == 1), one-hot labels (k >= 2), or class probabilities in [0, 1].

    Shapes: outputs (n, k), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: ``BCEWithLogitsLoss()(z, t)`` equals the mean of ``per_sample_loss``.
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "bce"

    def probabilities(self, outputs) -> np.ndarray:
        """k == 1: ``[1 - sigma(z), sigma(z)]``; k >= 2: normalised sigmoids ``sigma(z_j) / sum_i sigma(z_i)``.

        With k >= 2 outputs BCE trains k independent sigmoids, each the probability that the
        sample is of class j, and those need not sum to 1. As class probabilities (for log loss,
        Brier score and ECE) they are normalised to sum to 1, computed as
        ``softmax(log sigma(z))`` with ``log sigma(z) = -log(1 + exp(-z))`` (exact for any logit).
        The top-label confidence is the largest normalised value; its class is the largest
        logit's, so accuracy and calibration judge the same prediction. float64 (n, max(k, 2)).
        """
        z = _check_outputs(outputs).astype(np.float64, copy=False)
        if z.shape[1] == 1:
            return _link_probabilities(z)
        with np.errstate(invalid="ignore", over="ignore"):
            return _softmax(-np.logaddexp(0.0, -z)).p

    def _loss_and_gradient(self, outputs, target, labels):
        k = outputs.shape[1]
        exp_neg_abs = np.exp(-np.abs(outputs))
        sigmoid, sigmoid_neg = _sigmoids(outputs, exp_neg_abs)
        value = np.maximum(outputs, 0.0)
        value -= outputs * target
        value += np.log1p(exp_neg_abs)
        dlogits = sigmoid * (1.0 - target)
        dlogits -= sigmoid_neg * target  # sigma(z) - t, exact for t in {0, 1} at any z
        dlogits /= k
        return value.mean(axis=1), dlogits


def _softmax_cross_entropy(outputs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-sum_j t_j log softmax(z)_j per row (n,) and its gradient p sum_j t_j - t (n, k)."""
    softmax = _softmax(outputs)
    per_sample_loss = -(target * softmax.log_p).sum(axis=1)
    return per_sample_loss, _softmax_backward(softmax, -target)  # p * dL/dp = -t


class CrossEntropy(Loss):
    """Softmax cross-entropy with optional label smoothing (k >= 2 outputs).

    ``loss_i = -sum_j t_ij log p_ij`` with ``log p = z - logsumexp(z)`` and the smoothed target
    ``t = (1 - eps) y + eps / k`` (y: one-hot label or class probabilities, eps =
    label_smoothing); ``dloss_i/dz_i = p_i sum_j t_ij - t_i = p_i - t_i``. The minimum over z is
    the entropy ``H(t)`` (0 only for one-hot targets without smoothing).

    Shapes: outputs (n, k >= 2), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: ``CrossEntropyLoss(label_smoothing=eps)(z, target)`` equals the mean of
    ``per_sample_loss`` (class indices or class probabilities).
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "ce"
    min_outputs = 2
    _hyperparameters = ("label_smoothing",)

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = _check_number("label_smoothing", label_smoothing, "a number in [0, 1)",
                                             lambda v: 0 <= v < 1)

    def _smoothed(self, target: np.ndarray) -> np.ndarray:
        """(1 - eps) target + eps / k."""
        if self.label_smoothing == 0.0:
            return target
        k = target.shape[1]
        return (1.0 - self.label_smoothing) * target + self.label_smoothing / k

    def _loss_and_gradient(self, outputs, target, labels):
        return _softmax_cross_entropy(outputs, self._smoothed(target))

    def _labels_suffice(self) -> bool:
        return self.label_smoothing == 0.0

    def _loss_and_gradient_of_labels(self, outputs, labels):
        """Unsmoothed labels y (n,): ``loss_i = -log p_{i,y_i}``, ``dlogits_i = p_i - onehot(y_i)``.

        The same numbers as the one-hot path, without building the (n, k) target: ``dlogits`` is
        written over ``p``; where the label is the top class, ``p_y - 1 = -(1 - p_top)`` is taken
        from the exact ``one_minus_top`` (as :func:`_softmax_backward` does).
        """
        softmax = _softmax(outputs)
        rows = softmax.rows
        per_sample_loss = -softmax.log_p[rows, labels]
        dlogits = softmax.p
        label_is_top = labels == softmax.top
        dlogits[rows, labels] = np.where(label_is_top, -softmax.one_minus_top, dlogits[rows, labels] - 1.0)
        return per_sample_loss, dlogits


class KLDivergence(CrossEntropy):
    """KL divergence from the (smoothed) target to the softmax: cross-entropy minus the target's entropy.

    ``loss_i = sum_j t_ij (log t_ij - log p_ij) = CE_i - H(t_i)`` (0 log 0 = 0), with t and
    eps = label_smoothing as in :class:`CrossEntropy`. Same gradient ``p - t`` as cross-entropy,
    but the minimum is 0 (CE's is H(t)).

    Shapes: outputs (n, k >= 2), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: ``KLDivLoss(reduction="batchmean")(log_softmax(z), t)`` equals the mean of
    ``per_sample_loss`` (t already smoothed).
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "kl"

    def _labels_suffice(self) -> bool:
        return False

    def _loss_and_gradient(self, outputs, target, labels):
        target = self._smoothed(target)
        cross_entropy, dlogits = _softmax_cross_entropy(outputs, target)
        per_sample_loss = cross_entropy - entr(target).sum(axis=1)  # entr(t) = -t log t, 0 at t = 0
        np.maximum(per_sample_loss, 0.0, out=per_sample_loss)  # >= 0; rounding can leave -1 ulp at the minimum
        return per_sample_loss, dlogits


class Focal(Loss):
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p)**gamma on easy samples.

    k >= 2 (softmax): ``loss_i = -sum_j t_ij (1 - p_ij)**gamma log p_ij``.
    k == 1 (sigmoid, binary): ``loss_i = (1 - p_t)**gamma * BCE(z_i, t_i)`` with
    ``1 - p_t = sigma(z)(1 - t) + sigma(-z) t``. gamma = 0 gives CrossEntropy / BCE.
    t: one-hot labels, the label (k == 1) or class probabilities.

    Shapes: outputs (n, k), targets int (n,) or float (n, k) -> (n,), (n, k).
    PyTorch: no built-in class. k == 1 equals ``torchvision.ops.sigmoid_focal_loss(z, t,
    alpha=-1, gamma=gamma, reduction="none")``; k >= 2 equals
    ``-(t * (1 - softmax(z))**gamma * log_softmax(z)).sum(1)``.
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "focal"
    _hyperparameters = ("gamma",)

    def __init__(self, gamma: float = 2.0):
        self.gamma = _check_number("gamma", gamma, "a number in [0, 100]", lambda v: 0 <= v <= MAX_GAMMA)

    def _loss_and_gradient(self, outputs, target, labels):
        if outputs.shape[1] == 1:
            return self._binary(outputs, target)
        gamma = self.gamma
        softmax = _softmax(outputs)
        log_p = softmax.log_p
        one_minus_p = -np.expm1(log_p)  # 1 - p, exact also for p near 1
        weight = one_minus_p ** gamma
        per_sample_loss = -(target * weight * log_p).sum(axis=1)
        # p * dL/dp = -t (1-p)^gamma [1 - gamma p log(p) / (1-p)]; log(p)/(1-p) -> -1 as p -> 1
        log_p_over = np.divide(log_p, one_minus_p, out=np.full_like(log_p, -1.0), where=one_minus_p > 0)
        weighted = -target * weight * (1.0 - gamma * softmax.p * log_p_over)
        return per_sample_loss, _softmax_backward(softmax, weighted)

    def _binary(self, outputs, target):
        """k == 1: (1 - p_t)**gamma * BCE, with d/dz = w**gamma (sigma(z) - t + gamma BCE dw/dz / w)."""
        gamma = self.gamma
        exp_neg_abs = np.exp(-np.abs(outputs))
        sigmoid, sigmoid_neg = _sigmoids(outputs, exp_neg_abs)
        bce = np.maximum(outputs, 0.0) - outputs * target + np.log1p(exp_neg_abs)
        wrong = sigmoid * (1.0 - target) + sigmoid_neg * target  # 1 - p_t
        weight = wrong ** gamma
        dwrong = sigmoid * sigmoid_neg * (1.0 - 2.0 * target)
        # dwrong / wrong stays bounded; where wrong underflows to 0 the weight is 0 (or gamma is 0)
        dwrong_over = np.divide(dwrong, wrong, out=np.zeros_like(wrong), where=wrong > 0)
        dlogits = weight * (sigmoid * (1.0 - target) - sigmoid_neg * target + gamma * bce * dwrong_over)
        return (weight * bce)[:, 0], dlogits


class Hinge(Loss):
    """Hinge (margin) loss on raw outputs; class labels only.

    k == 1: ``loss_i = max(0, 1 - s_i z_i)`` with ``s = 2y - 1``; gradient ``-s`` where the margin
    is violated, else 0.
    k >= 2: ``loss_i = sum_{j != y_i} max(0, 1 - z_iy + z_ij) / k``; gradient ``1/k`` for each
    violating j and ``-(number violating)/k`` at the label. Subgradient 0 exactly at a kink.

    Shapes: outputs (n, k), targets int (n,) -> (n,), (n, k).
    PyTorch: k >= 2 equals ``MultiMarginLoss(p=1, margin=1)`` (mean of ``per_sample_loss``);
    k == 1 equals ``torch.clamp(1 - (2 * y - 1) * z, min=0)``.
    """

    stackable = True  # row-wise: samples of several runs in one call (lossbench.stack)

    name = "hinge"
    float_targets = None

    def probabilities(self, outputs) -> None:
        """None: a margin loss has no probabilistic link (calibration metrics: not applicable)."""
        return None

    def _loss_and_gradient(self, outputs, target, labels):
        n, k = outputs.shape
        if k == 1:
            sign = 2.0 * target - 1.0
            margin = 1.0 - sign * outputs
            active = margin > 0
            return np.maximum(margin, 0.0)[:, 0], np.where(active, -sign, 0.0).astype(outputs.dtype, copy=False)
        rows = np.arange(n)
        margins = outputs - outputs[rows, labels][:, None]
        margins += 1.0
        margins[rows, labels] = 0.0
        active = margins > 0
        np.maximum(margins, 0.0, out=margins)
        dlogits = active.astype(outputs.dtype)
        dlogits[rows, labels] = -active.sum(axis=1)
        dlogits /= k
        return margins.sum(axis=1) / k, dlogits
