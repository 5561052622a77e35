"""Each loss's own link (class probabilities) and what is built from it: metrics, calibration, curves."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from omegaconf import OmegaConf
from scipy.special import expit, softmax

import lossbench.conf
from lossbench.losses import BCE, L2, CrossEntropy, Hinge

CONF = Path(lossbench.conf.__file__).parent
LOSS_FILES = sorted((CONF / "loss").glob("*.yaml"))
LOSS_IDS = [path.stem for path in LOSS_FILES]
#: the shipped losses without a probabilistic link
NO_LINK = {"hinge", "l2_logits"}


def load_loss(path):
    return instantiate(OmegaConf.load(path))


@pytest.mark.parametrize("path", LOSS_FILES, ids=LOSS_IDS)
@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_every_loss_gives_class_probabilities_or_says_it_has_none(path, k):
    loss = load_loss(path)
    rng = np.random.default_rng(k)
    outputs = rng.normal(0.0, 3.0, size=(50, k))
    p = loss.probabilities(outputs)
    if path.stem in NO_LINK:
        assert p is None
        return
    assert p.shape == (50, max(k, 2)) and p.dtype == np.float64
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
    # the top label of the probabilities is the prediction accuracy is computed from
    predicted = (outputs[:, 0] > 0).astype(int) if k == 1 else outputs.argmax(axis=1)
    np.testing.assert_array_equal(p.argmax(axis=1), predicted)
    # finite and quiet for logits up to +-1e3, float32 too
    extreme = rng.choice([-1e3, 1e3, 0.0], size=(20, k))
    for dtype in (np.float64, np.float32):
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
            warnings.simplefilter("error")
            q = loss.probabilities(extreme.astype(dtype))
        assert np.isfinite(q).all() and q.dtype == np.float64
        np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("path", [p for p in LOSS_FILES if p.stem not in NO_LINK | {"bce"}],
                         ids=[p.stem for p in LOSS_FILES if p.stem not in NO_LINK | {"bce"}])
def test_the_default_link_is_the_sigmoid_for_one_output_and_the_softmax_for_more(path):
    loss = load_loss(path)
    z = np.random.default_rng(0).normal(0.0, 2.0, size=(30, 4))
    np.testing.assert_allclose(loss.probabilities(z[:, :1]), np.column_stack([expit(-z[:, 0]), expit(z[:, 0])]),
                               rtol=1e-13)
    np.testing.assert_allclose(loss.probabilities(z), softmax(z, axis=1), rtol=1e-13)


def test_bce_with_k_outputs_normalises_its_independent_sigmoids():
    z = np.random.default_rng(1).normal(0.0, 2.0, size=(30, 4))
    sigmoids = expit(z)
    np.testing.assert_allclose(BCE().probabilities(z), sigmoids / sigmoids.sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(BCE().probabilities(z[:, :1]), np.column_stack([expit(-z[:, 0]), expit(z[:, 0])]),
                               rtol=1e-13)
    # and it is not the softmax: all logits very negative -> sigmoids e^z, normalised = softmax;
    # all very positive -> sigmoids ~ 1, normalised ~ uniform while the softmax is not
    big = np.array([[30.0, 32.0, 34.0]])
    np.testing.assert_allclose(BCE().probabilities(big), [[1 / 3, 1 / 3, 1 / 3]], rtol=1e-12)
    assert softmax(big, axis=1)[0, 2] > 0.8


def test_non_finite_outputs_give_nan_rows_quietly():
    z = np.array([[np.nan, 0.0, 1.0], [1.0, 2.0, 3.0]])
    for loss in (CrossEntropy(), BCE()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = loss.probabilities(z)
        assert np.isnan(p[0]).all() and np.isfinite(p[1]).all()


def test_evaluation_scores_each_loss_through_its_own_link():
    from lossbench.train import evaluate

    class Fixed:
        """A 'model' with fixed outputs."""

        def __init__(self, outputs):
            self.outputs = outputs

        def forward(self, X):
            return self.outputs, None

    rng = np.random.default_rng(0)
    outputs = rng.normal(0.0, 2.0, size=(40, 3))
    labels = rng.integers(0, 3, size=40)
    splits = {"train": (None, labels)}
    from lossbench.metrics import classification_metrics

    for loss in (CrossEntropy(), BCE(), L2()):
        row = evaluate(Fixed(outputs), loss, splits, "classification")
        expected = classification_metrics(outputs, labels, loss.probabilities(outputs))
        for name, value in expected.items():
            assert row[f"train_{name}"] == pytest.approx(value, rel=1e-12)
    bce, ce = (evaluate(Fixed(outputs), loss, splits, "classification") for loss in (BCE(), CrossEntropy()))
    assert bce["train_ece"] != pytest.approx(ce["train_ece"])  # BCE is not scored through a softmax
    for loss in (Hinge(), L2(on_logits=True)):
        row = evaluate(Fixed(outputs), loss, splits, "classification")
        assert np.isnan(row["train_ece"]) and np.isnan(row["train_log_loss"]) and np.isnan(row["train_brier"])
        assert row["train_accuracy"] == pytest.approx(np.mean(outputs.argmax(axis=1) == labels))

    class NoLink:  # a user loss without a probabilities method: calibration not applicable
        def __call__(self, outputs, targets):
            return CrossEntropy()(outputs, targets)

    row = evaluate(Fixed(outputs), NoLink(), splits, "classification")
    assert np.isnan(row["train_ece"]) and np.isfinite(row["train_accuracy"])
    assert {"train_dz_norm_correct", "train_dz_norm_wrong", "train_wrong_vanishing_frac"} <= set(row)


def test_diagnostics_are_recorded_every_epoch_on_the_training_split_only(compose_cfg):
    from lossbench.build import build

    built = build(*compose_cfg("trainer.epochs=2", "optimizer=gd"))
    records = built.train().records
    for record in records:
        assert {"train_dz_norm_correct", "train_dz_norm_wrong", "train_wrong_vanishing_frac"} <= set(record)
        assert not any(key.startswith(("val_dz", "test_dz", "val_wrong", "test_wrong")) for key in record)
    # recompute the last epoch's values from the model and the loss
    from lossbench.metrics import gradient_diagnostics

    outputs, _ = built.model.forward(built.data.X_train)
    _, dlogits = built.loss(outputs, built.data.y_train)
    expected = gradient_diagnostics(outputs, built.data.y_train, dlogits)
    for name, value in expected.items():
        np.testing.assert_equal(records[-1][f"train_{name}"], value)


def test_calibration_csv_has_the_ece_bins_and_counts_and_is_absent_without_a_link(compose_cfg, tmp_path):
    from lossbench.build import build
    from lossbench.metrics import ECE_BINS

    built = build(*compose_cfg("trainer.epochs=2", "loss=bce"))
    result = built.train()
    assert built.write_calibration(tmp_path / "calibration.csv")
    table = pd.read_csv(tmp_path / "calibration.csv")
    assert list(table.columns) == ["split", "bin", "lower", "upper", "count", "confidence", "accuracy"]
    assert len(table) == ECE_BINS and table["count"].sum() == len(built.data.y_test)
    used = table.dropna()
    ece = np.sum(used["count"] / used["count"].sum() * np.abs(used["accuracy"] - used["confidence"]))
    assert ece == pytest.approx(result.records[-1]["test_ece"], rel=1e-12)  # the same ECE as metrics.csv
    hinge = build(*compose_cfg("trainer.epochs=1", "loss=hinge"))
    hinge.train()
    assert not hinge.write_calibration(tmp_path / "hinge.csv") and not (tmp_path / "hinge.csv").exists()


@pytest.mark.parametrize("path", [p for p in LOSS_FILES if p.stem in ("ce", "l2", "bce", "focal", "hinge")],
                         ids=["bce", "ce", "focal", "hinge", "l2"])
def test_diagnostics_equal_those_of_finite_difference_gradients(path):
    """The norms come from the loss's dlogits: the same numbers from central differences of each sample's loss."""
    from lossbench.metrics import gradient_diagnostics
    from lossbench.testing import numerical_gradient

    loss = load_loss(path)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=12)
    outputs = rng.normal(0.0, 2.0, size=(12, 3))
    outputs[:4, 0] += 8.0  # some confident predictions, right and wrong
    jacobian = numerical_gradient(lambda z: loss(z, labels)[0], outputs)  # (n, n, k)
    numerical = jacobian[np.arange(12), np.arange(12)]  # d loss_i / d outputs_i
    analytic = gradient_diagnostics(outputs, labels, loss(outputs, labels)[1])
    by_differences = gradient_diagnostics(outputs, labels, numerical)
    for name, value in analytic.items():
        assert value == pytest.approx(by_differences[name], rel=1e-6, abs=1e-9), name
    assert 0 < analytic["dz_norm_wrong"] and np.isfinite(analytic["dz_norm_correct"])


# ---------------------------------------------------------------------------------------------
# gradients.csv: the loss along one logit, as data


@pytest.mark.parametrize("path", LOSS_FILES, ids=LOSS_IDS)
def test_gradient_curves_are_the_loss_and_its_derivative_along_one_logit(path):
    from lossbench.metrics import GRADIENT_CURVE_Z, gradient_curves
    from lossbench.testing import numerical_gradient

    loss = load_loss(path)
    table = gradient_curves(loss, "classification", 10)
    assert list(table.columns) == ["k", "target", "z", "loss", "dloss_dz"]
    expected_ks = [10] if path.stem in ("ce", "kl") else [1, 10]  # softmax losses need k >= 2
    assert sorted(table["k"].unique()) == expected_ks
    for (k, target), curve in table.groupby(["k", "target"]):
        np.testing.assert_array_equal(curve["z"], GRADIENT_CURVE_Z)
        assert len(curve) == 201 and np.isfinite(curve[["loss", "dloss_dz"]]).all().all()
        label = (1 if target else 0) if k == 1 else (0 if target else 1)
        labels = np.full(1, label)

        def loss_at(z, k=k, labels=labels):
            outputs = np.zeros((1, k))
            outputs[0, 0] = z[0]
            return loss(outputs, labels)[0][0]

        # central differences, away from the kinks of hinge (z = +-1); float64 differences resolve
        # a slope to about 1e-16 |loss| / step
        for row in (27, 85, 101, 125, 166):  # z = -7.3, -1.5, 0.1, 2.5, 6.6
            value = curve["loss"].iloc[row]
            assert value == loss_at(np.array([GRADIENT_CURVE_Z[row]]))
            slope = numerical_gradient(loss_at, np.array([GRADIENT_CURVE_Z[row]]))[0]
            assert curve["dloss_dz"].iloc[row] == pytest.approx(slope, rel=1e-6, abs=1e-8 * max(1.0, value))


def test_gradient_curves_show_the_softmax_jacobian_and_the_one_over_k_of_averaged_losses():
    from lossbench.metrics import GRADIENT_CURVE_Z, gradient_curves

    z = GRADIENT_CURVE_Z
    bce = gradient_curves(BCE(), "classification", 10)
    wrong = bce[(bce["k"] == 10) & (bce["target"] == 0)]["dloss_dz"].to_numpy()
    np.testing.assert_allclose(wrong, expit(z) / 10, rtol=1e-12)  # (sigma - t) / k with t = 0
    one = bce[(bce["k"] == 1) & (bce["target"] == 0)]["dloss_dz"].to_numpy()
    np.testing.assert_allclose(one, expit(z), rtol=1e-12)
    ce = gradient_curves(CrossEntropy(), "classification", 10)
    right = ce[ce["target"] == 1]["dloss_dz"].to_numpy()
    p = np.exp(z) / (np.exp(z) + 9)  # softmax with the 9 other logits at 0
    np.testing.assert_allclose(right, p - 1, rtol=1e-12)


def test_gradient_curves_of_a_regression_loss_use_the_run_k_and_target_zero():
    from lossbench.losses import Huber
    from lossbench.metrics import GRADIENT_CURVE_Z, gradient_curves

    table = gradient_curves(Huber(delta=1.0), "regression", 2)
    assert set(table["k"]) == {2} and set(table["target"]) == {0} and len(table) == 201
    np.testing.assert_allclose(table["dloss_dz"], np.clip(GRADIENT_CURVE_Z, -1, 1) / 2, rtol=1e-12)


def test_built_writes_gradients_csv(compose_cfg, tmp_path):
    from lossbench.build import build
    from lossbench.metrics import gradient_curves

    built = build(*compose_cfg("dataset=digits", "loss=l2"))
    assert built.n_outputs == 10
    built.write_gradient_curves(tmp_path / "gradients.csv")
    table = pd.read_csv(tmp_path / "gradients.csv")
    pd.testing.assert_frame_equal(table, gradient_curves(built.loss, "classification", 10), check_exact=True)
    assert sorted(set(table["k"])) == [1, 10]


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 6), data=st.data())
def test_links_give_probability_rows_for_any_logits_up_to_1e3(k, data):
    outputs = data.draw(hnp.arrays(np.float64, (5, k), elements=st.floats(-1e3, 1e3)))
    for loss in (CrossEntropy(), BCE(), L2()):
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
            warnings.simplefilter("error")
            p = loss.probabilities(outputs)
        assert p.shape == (5, max(k, 2)) and np.all((p >= 0) & (p <= 1))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
        # the prediction's probability is the largest (equal to it at rounding ties)
        predicted = (outputs[:, 0] > 0).astype(int) if k == 1 else outputs.argmax(axis=1)
        assert np.all(p[np.arange(5), predicted] == p.max(axis=1))
