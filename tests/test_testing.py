"""lossbench.testing: the finite-difference helpers, check_loss and check_optimizer catch what they promise."""

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import lossbench.conf
from lossbench.testing import (LossCheckReport, OptimizerCheckReport, check_loss, check_optimizer,
                               finite_difference_check, numerical_gradient)

CONF = Path(lossbench.conf.__file__).parent
LOSS_FILES = sorted((CONF / "loss").glob("*.yaml"))
OPTIMIZER_FILES = sorted((CONF / "optimizer").glob("*.yaml"))


# ---------------------------------------------------------------------------------------------
# finite differences


def test_numerical_gradient_of_a_scalar_and_the_jacobian_of_a_vector_function():
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(np.sin(v) * v), x),
                               np.cos(x) * x + np.sin(x), rtol=1e-8)
    jacobian = numerical_gradient(lambda v: v.ravel() ** 3, x)  # f: (4,) from x (2, 2)
    assert jacobian.shape == (4, 2, 2)
    np.testing.assert_allclose(jacobian.reshape(4, 4), np.diag(3 * x.ravel() ** 2), rtol=1e-8, atol=1e-12)


def test_numerical_gradient_works_in_float64_on_a_copy():
    x = np.array([0.5, 1.5], dtype=np.float32)
    seen = []
    gradient = numerical_gradient(lambda v: seen.append(v.dtype) or float(np.sum(v ** 2)), x)
    assert set(seen) == {np.dtype(np.float64)} and x.tolist() == [0.5, 1.5]
    np.testing.assert_allclose(gradient, 2 * x.astype(np.float64), rtol=1e-9)


def test_finite_difference_check_passes_a_right_gradient_and_names_the_worst_entry_of_a_wrong_one():
    x = np.array([0.1, -0.4, 2.5])
    error = finite_difference_check(lambda v: np.sum(np.exp(v)), x, np.exp(x))
    assert error < 1e-8
    wrong = np.exp(x)
    wrong[2] *= 1.001
    with pytest.raises(AssertionError, match=r"at index \(2,\).*relative error"):
        finite_difference_check(lambda v: np.sum(np.exp(v)), x, wrong)
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(3,\)"):
        finite_difference_check(lambda v: np.sum(np.exp(v)), x, np.exp(x)[:2])
    # atol admits an absolute slack: a gradient below the noise can only be confirmed small
    finite_difference_check(lambda v: float(np.sum(v ** 2)), np.zeros(2), np.full(2, 1e-9), atol=1e-8)


# ---------------------------------------------------------------------------------------------
# check_loss


@pytest.mark.parametrize("path", LOSS_FILES, ids=[p.stem for p in LOSS_FILES])
def test_check_loss_passes_every_shipped_loss(path):
    report = check_loss(instantiate(OmegaConf.load(path)))
    assert isinstance(report, LossCheckReport)
    assert len(report.accepted) + len(report.rejected) == 6  # 3 target kinds x k in (1, 3)
    assert report.gradient_checks > 0 and report.max_relative_error < 1e-6
    expected = "none: calibration not applicable" if path.stem in ("hinge", "l2_logits") else "checked, k="
    assert report.probabilities.startswith(expected)


class ToyL2:
    """A correct regression-style L2 on raw outputs; the subclasses below each break one thing."""

    def __call__(self, outputs, targets):
        outputs = np.asarray(outputs)
        targets = np.asarray(targets)
        if targets.dtype.kind != "f":
            raise ValueError("ToyL2 takes float targets only")
        residual = outputs - targets.astype(outputs.dtype).reshape(outputs.shape)
        k = outputs.shape[1]
        return (residual ** 2).mean(axis=1), 2 * residual / k


class WrongSign(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss, -dlogits


class WrongShape(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss[:, None], dlogits


class GradientOfTheMean(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss, dlogits / len(outputs)


class Upcasts(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss.astype(np.float64), dlogits.astype(np.float64)


class Negative(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss - 1.0, dlogits


class CouplesSamples(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss + 0.01 * outputs.mean() ** 2, dlogits


class Overflows(ToyL2):
    def __call__(self, outputs, targets):
        per_sample_loss, dlogits = super().__call__(outputs, targets)
        return per_sample_loss + 0.0 * np.exp(outputs).sum(axis=1), dlogits


class RejectsEverything:
    def __call__(self, outputs, targets):
        raise ValueError("no target fits")


class RaisesTypeError(ToyL2):
    def __call__(self, outputs, targets):
        if np.asarray(targets).dtype.kind != "f":
            raise TypeError("labels? what labels")
        return super().__call__(outputs, targets)


class Sawtooth(ToyL2):
    """|z - nearest multiple of 2e-6|: slopes +-1 with a kink within every step of 1e-6."""

    def __call__(self, outputs, targets):
        if np.asarray(targets).dtype.kind != "f":
            raise ValueError("float targets only")
        outputs = np.asarray(outputs)
        offset = outputs - np.round(outputs / 2e-6) * 2e-6
        return np.abs(offset).sum(axis=1), np.sign(offset)


def test_check_loss_passes_the_correct_toy_and_reports_what_it_rejected():
    report = check_loss(ToyL2())
    assert report.accepted == ["probabilities, k=1", "values, k=1", "probabilities, k=3", "values, k=3"]
    assert report.rejected == {"labels, k=1": "ToyL2 takes float targets only",
                               "labels, k=3": "ToyL2 takes float targets only"}


class LabelCE:
    """Softmax cross-entropy on class labels (k >= 2), with a link to break in the subclasses."""

    def __call__(self, outputs, targets):
        from lossbench.losses import CrossEntropy

        if np.asarray(targets).dtype.kind != "i":
            raise ValueError("LabelCE takes class labels only")
        return CrossEntropy()(outputs, targets)

    def probabilities(self, outputs):
        from scipy.special import softmax

        return softmax(np.asarray(outputs, dtype=np.float64), axis=1)


class RowsDoNotSumToOne(LabelCE):
    def probabilities(self, outputs):
        return super().probabilities(outputs) * 0.9


class ReversedLink(LabelCE):
    def probabilities(self, outputs):
        return super().probabilities(-np.asarray(outputs))


class OneColumnForOneOutput(LabelCE):
    def __call__(self, outputs, targets):  # bce: serves one output
        from lossbench.losses import BCE

        return BCE()(outputs, targets)

    def probabilities(self, outputs):
        return super().probabilities(outputs)  # softmax of one column: [1.0], not [1 - p, p]


class NaiveSoftmaxLink(LabelCE):
    def probabilities(self, outputs):
        exp = np.exp(np.asarray(outputs, dtype=np.float64))  # overflows at 1e3
        return exp / exp.sum(axis=1, keepdims=True)


def test_check_loss_checks_a_link_and_accepts_a_loss_without_one():
    report = check_loss(LabelCE(), n_outputs=(2, 3))
    assert report.probabilities == "checked, k=2, k=3"
    assert check_loss(ToyL2()).probabilities == "not provided: calibration not applicable"


BROKEN_LINKS = [
    (RowsDoNotSumToOne(), (3,), "rows must sum to 1"),
    (ReversedLink(), (3,), "most probable class must be the outputs' prediction"),
    (OneColumnForOneOutput(), (1,), r"shape \(6, 2\)"),
    (NaiveSoftmaxLink(), (3,), "probabilities at k=3, logits up to .* raised FloatingPointError"),
]


@pytest.mark.parametrize("loss, ks, fragment", BROKEN_LINKS, ids=[type(loss).__name__ for loss, _, _ in BROKEN_LINKS])
def test_check_loss_fails_a_broken_link_with_a_message(loss, ks, fragment):
    with pytest.raises(AssertionError, match=fragment):
        check_loss(loss, n_outputs=ks)


BROKEN_LOSSES = [
    (WrongSign(), "by dlogits but .* by central differences"),
    (WrongShape(), r"per_sample_loss has shape \(6, 1\), expected \(6,\)"),
    (GradientOfTheMean(), "by central differences"),
    (Upcasts(), "dtype float64 for float32 outputs"),
    (Negative(), "per_sample_loss must be >= 0"),
    (CouplesSamples(), "sample 0 alone gives .*, in the batch"),
    (Overflows(), r"floating-point error at logits up to \+-1000"),
    (RejectsEverything(), "accepted no target kind"),
    (RaisesTypeError(), "raised TypeError: labels\\? what labels; a loss must raise ValueError"),
    (Sawtooth(), "one-sided slopes that disagree"),
]


@pytest.mark.parametrize("loss, fragment", BROKEN_LOSSES, ids=[type(loss).__name__ for loss, _ in BROKEN_LOSSES])
def test_check_loss_fails_a_broken_loss_with_a_message(loss, fragment):
    with pytest.raises(AssertionError, match=fragment):
        check_loss(loss)


# ---------------------------------------------------------------------------------------------
# check_optimizer


class ToySGD:
    """Plain SGD with coupled weight decay, updating in place."""

    def __init__(self, lr=0.1, weight_decay=0.0):
        self.lr, self.weight_decay = lr, weight_decay

    def step(self, params, grads):
        for name, param in params.items():
            param -= self.lr * (grads[name] + self.weight_decay * param)


class NotInPlace(ToySGD):
    def step(self, params, grads):
        for name in params:
            params[name] = params[name] - self.lr * grads[name]


class CachesLearningRate(ToySGD):
    def __init__(self, lr=0.1):
        super().__init__(lr)
        self._initial_lr = lr

    def step(self, params, grads):
        for name, param in params.items():
            param -= self._initial_lr * grads[name]


class Ascends(ToySGD):
    def step(self, params, grads):
        for name, param in params.items():
            param += self.lr * grads[name]


class Drifts(ToySGD):
    def step(self, params, grads):
        for name, param in params.items():
            param -= self.lr * (grads[name] + 1e-3)


class NoLearningRate:
    def step(self, params, grads):
        pass


def test_check_optimizer_passes_a_correct_sgd():
    report = check_optimizer(ToySGD(lr=0.1))
    assert isinstance(report, OptimizerCheckReport)
    assert report.zero_gradient_checked and report.quadratic_end < report.quadratic_start


def test_check_optimizer_skips_the_zero_gradient_check_with_weight_decay():
    report = check_optimizer(ToySGD(lr=0.1, weight_decay=0.01))
    assert not report.zero_gradient_checked


def test_check_optimizer_leaves_the_given_optimizer_untouched():
    optimizer = ToySGD(lr=0.1)
    check_optimizer(optimizer)
    assert vars(optimizer) == {"lr": 0.1, "weight_decay": 0.0}


BROKEN_OPTIMIZERS = [
    (NotInPlace(), r"replaced params\['W'\] with a new array; it must update the array in place"),
    (CachesLearningRate(), "halving optimizer.lr did not halve the first update"),
    (Ascends(), "did not lower it"),
    (Drifts(), r"with zero gradients and weight_decay == 0, params\['W'\] moved"),
    (NoLearningRate(), r"needs a public learning rate optimizer.lr > 0"),
]


@pytest.mark.parametrize("optimizer, fragment", BROKEN_OPTIMIZERS,
                         ids=[type(optimizer).__name__ for optimizer, _ in BROKEN_OPTIMIZERS])
def test_check_optimizer_fails_a_broken_optimizer_with_a_message(optimizer, fragment):
    with pytest.raises(AssertionError, match=fragment):
        check_optimizer(optimizer)


@pytest.mark.parametrize("path", OPTIMIZER_FILES, ids=[p.stem for p in OPTIMIZER_FILES])
def test_check_optimizer_passes_every_shipped_optimizer(path):
    pytest.importorskip("lossbench.optim")
    report = check_optimizer(instantiate(OmegaConf.load(path)))
    assert report.quadratic_end < report.quadratic_start
