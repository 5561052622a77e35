"""Metrics against scikit-learn, a hand-computed ECE, and stability for huge logits."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from lossbench.losses import Focal
from lossbench.metrics import (
    ECE_BINS,
    calibration_table,
    classification_metrics,
    gradient_diagnostics,
    regression_metrics,
)

# the default link of the losses (sigmoid for k = 1, softmax for k >= 2); Focal serves both
probabilities = Focal().probabilities

N_OUTPUTS = {"sigmoid-k1": 1, "softmax-k2": 2, "softmax-k3": 3, "softmax-k10": 10}


def random_problem(k: int, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    outputs = rng.normal(0.0, 2.0, (n, k))
    labels = rng.integers(0, max(k, 2), n)
    return outputs, labels


@pytest.mark.parametrize("k", N_OUTPUTS.values(), ids=N_OUTPUTS)
def test_probabilities_match_scipy(k):
    outputs, _ = random_problem(k)
    if k == 1:
        expected = np.column_stack([expit(-outputs[:, 0]), expit(outputs[:, 0])])
    else:
        expected = softmax(outputs, axis=1)
    np.testing.assert_allclose(probabilities(outputs), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("k", N_OUTPUTS.values(), ids=N_OUTPUTS)
def test_classification_metrics_match_sklearn(k):
    outputs, labels = random_problem(k)
    p = probabilities(outputs)
    classes = np.arange(p.shape[1])
    metrics = classification_metrics(outputs, labels, probabilities=p)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, p.argmax(axis=1)), abs=0)
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, p, labels=classes), rel=1e-12)
    if k <= 2:
        expected_brier = brier_score_loss(labels, p[:, 1])
    else:
        expected_brier = brier_score_loss(labels, p, labels=classes)
    assert metrics["brier"] == pytest.approx(expected_brier, rel=1e-12)
    assert 0.0 <= metrics["ece"] <= 1.0


def test_binary_one_sigmoid_output_equals_two_softmax_outputs():
    outputs, labels = random_problem(1)
    # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]
    two_outputs = np.column_stack([np.zeros(len(outputs)), outputs[:, 0]])
    one = classification_metrics(outputs, labels, probabilities(outputs))
    two = classification_metrics(two_outputs, labels, probabilities(two_outputs))
    assert one.keys() == two.keys()
    for name in one:
        assert one[name] == pytest.approx(two[name], rel=1e-12, abs=1e-15), name
    pd.testing.assert_frame_equal(calibration_table(probabilities(outputs), labels),
                                  calibration_table(probabilities(two_outputs), labels), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3], ids=["sigmoid-k1", "softmax-k3"])
def test_stable_for_logits_of_1e3(k):
    labels = np.array([0, 1, 2, 1, 0]) % max(k, 2)
    if k == 1:
        sign = np.where(labels == 1, 1.0, -1.0)[:, None]
        right, wrong = 1e3 * sign, -1e3 * sign
        wrong_log_p = -744.44007192138122  # sigmoid(-1e3) underflows: log of the smallest float64
    else:
        right = np.where(np.eye(3)[labels], 1e3, -1e3)
        wrong = np.where(np.eye(3)[(labels + 1) % 3], 1e3, -1e3)  # another class dominates
        wrong_log_p = -744.44007192138122  # p = e^-2000 underflows to 0: log of the smallest float64
    confident_right = classification_metrics(right, labels, probabilities(right))
    assert confident_right == pytest.approx({"accuracy": 1.0, "log_loss": 0.0, "brier": 0.0, "ece": 0.0})
    confident_wrong = classification_metrics(wrong, labels, probabilities(wrong))
    assert confident_wrong["log_loss"] == pytest.approx(-wrong_log_p, rel=1e-12)  # finite, no log(0)
    assert confident_wrong["accuracy"] == 0.0 and confident_wrong["ece"] == pytest.approx(1.0)
    assert confident_wrong["brier"] == pytest.approx(1.0 if k == 1 else 2.0)


def test_ece_hand_computed():
    # binary, one sigmoid output; confidences of the top label and whether it is right:
    #   p1 = 0.9 (label 1, right), p1 = 0.78 (label 0, wrong), p1 = 0.3 (label 0, right: conf 0.7)
    #   p1 = 0.55 (label 1, right)
    # 15 bins of width 1/15: 0.9 -> bin (0.8667, 0.9333]; 0.78 -> (0.7333, 0.8]; 0.7 -> (0.6667, 0.7333];
    # 0.55 -> (0.5333, 0.6]. One sample per bin, so ECE = mean |correct - conf|
    #   = (0.1 + 0.78 + 0.3 + 0.45) / 4 = 0.4075
    p1 = np.array([0.9, 0.78, 0.3, 0.55])
    logits = np.log(p1 / (1 - p1))[:, None]
    labels = np.array([1, 0, 0, 1])
    assert classification_metrics(logits, labels, probabilities(logits))["ece"] == pytest.approx(0.4075, rel=1e-12)


def test_ece_pools_samples_within_a_bin():
    # both confidences 0.9 and 0.92 fall in (0.8667, 0.9333]; one right, one wrong:
    # |acc - conf| = |0.5 - 0.91| = 0.41, weight 2/2
    p1 = np.array([0.9, 0.92])
    logits = np.log(p1 / (1 - p1))[:, None]
    assert classification_metrics(logits, np.array([1, 0]), probabilities(logits))["ece"] == pytest.approx(0.41)


def test_calibration_table():
    p1 = np.array([0.9, 0.75, 0.3, 0.55, 0.95])
    logits = np.log(p1 / (1 - p1))[:, None]
    labels = np.array([1, 0, 0, 1, 0])
    table = calibration_table(probabilities(logits), labels, n_bins=5)
    assert list(table.columns) == ["bin", "lower", "upper", "count", "confidence", "accuracy"]
    np.testing.assert_allclose(table["lower"], [0.0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(table["upper"], [0.2, 0.4, 0.6, 0.8, 1.0])
    # top-label confidences 0.9, 0.75, 0.7, 0.55, 0.95 -> bins (0.8,1], (0.6,0.8], (0.6,0.8], (0.4,0.6], (0.8,1]
    # correct: yes, no, yes, yes, no
    assert table["count"].tolist() == [0, 0, 1, 2, 2]
    np.testing.assert_allclose(table["confidence"][2:], [0.55, 0.725, 0.925])
    np.testing.assert_allclose(table["accuracy"][2:], [1.0, 0.5, 0.5])
    assert table.loc[:1, ["confidence", "accuracy"]].isna().all().all()


def test_calibration_table_counts_every_sample():
    outputs, labels = random_problem(3, n=1000)
    table = calibration_table(probabilities(outputs), labels)
    assert len(table) == ECE_BINS == 15 and table["count"].sum() == 1000
    # one ECE: the default table's bins give the metric exactly
    table = table.dropna()
    ece = np.sum(table["count"] / 1000 * np.abs(table["accuracy"] - table["confidence"]))
    assert classification_metrics(outputs, labels, probabilities(outputs))["ece"] == pytest.approx(ece, rel=1e-12)


@pytest.mark.parametrize("n_targets", [1, 3])
def test_regression_metrics_match_sklearn(n_targets):
    rng = np.random.default_rng(n_targets)
    targets = rng.normal(size=(300, n_targets)) * [1.0, 5.0, 0.1][:n_targets]
    outputs = targets + rng.normal(0.0, 0.5, targets.shape)
    metrics = regression_metrics(outputs, targets)
    assert metrics["mse"] == pytest.approx(mean_squared_error(targets, outputs), rel=1e-12)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(targets, outputs), rel=1e-12)
    assert metrics["r2"] == pytest.approx(r2_score(targets, outputs), rel=1e-12)


def test_regression_accepts_flat_targets_for_one_output():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=50)
    outputs = targets[:, None] + 0.1
    assert regression_metrics(outputs, targets)["mse"] == pytest.approx(0.01)


def test_r2_of_constant_target_follows_sklearn():
    targets = np.column_stack([np.full(10, 2.0), np.arange(10.0)])
    outputs = targets.copy()
    outputs[0, 1] += 1.0
    assert regression_metrics(outputs, targets)["r2"] == pytest.approx(r2_score(targets, outputs))
    outputs[0, 0] += 1.0
    assert regression_metrics(outputs, targets)["r2"] == pytest.approx(r2_score(targets, outputs))


def test_non_finite_outputs_give_nan():
    outputs, labels = random_problem(3, n=20)
    outputs[3, 1] = np.nan
    assert all(np.isnan(v) for v in classification_metrics(outputs, labels, probabilities(outputs)).values())
    assert all(np.isnan(v) for v in regression_metrics(outputs, outputs * 0).values())
    assert calibration_table(probabilities(outputs), labels)["count"].sum() == 19


@pytest.mark.parametrize(
    "labels, message",
    [(np.array([0, 1, 3]), "labels in"), (np.array([0, 1]), "labels of shape"),
     (np.array([0.0, 1.0, 1.0]), "integer class labels")],
    ids=["out-of-range", "wrong-length", "float"],
)
def test_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.zeros((3, 3)), labels)


def test_without_a_link_only_accuracy_is_computed():
    outputs, labels = random_problem(3, n=50)
    metrics = classification_metrics(outputs, labels)  # probabilities=None: not applicable
    assert metrics["accuracy"] == pytest.approx(np.mean(outputs.argmax(axis=1) == labels), abs=0)
    assert np.isnan(metrics["log_loss"]) and np.isnan(metrics["brier"]) and np.isnan(metrics["ece"])


def test_accuracy_comes_from_the_outputs_and_the_rest_from_the_probabilities_given():
    # one sigmoid output: z > 0 predicts class 1, whatever probabilities are passed
    outputs = np.array([[2.0], [-1.0], [0.5], [-3.0]])
    labels = np.array([1, 1, 0, 0])
    p = np.array([[0.5, 0.5], [0.1, 0.9], [0.2, 0.8], [1.0, 0.0]])  # p_label: 0.5, 0.9, 0.2, 1.0
    metrics = classification_metrics(outputs, labels, probabilities=p)
    assert metrics["accuracy"] == 0.5
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.5, 0.9, 0.2, 1.0])), rel=1e-12)
    assert metrics["brier"] == pytest.approx(np.mean([0.25, 0.01, 0.64, 0.0]), rel=1e-12)
    with pytest.raises(ValueError, match="probabilities of shape"):
        classification_metrics(outputs, labels, probabilities=p[:, :1])


def test_gradient_diagnostics_by_hand():
    # k = 3; predictions argmax: 0, 1, 2, 0; labels 0, 1, 0, 2 -> rows 0, 1 right; rows 2, 3 wrong
    outputs = np.array([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [5.0, 0, 0]])
    labels = np.array([0, 1, 0, 2])
    dlogits = np.array([[3.0, 4.0, 0], [0, 0, 1.0], [0, 0.001, 0], [0, 2.0, 0]])  # norms 5, 1, 0.001, 2
    diagnostics = gradient_diagnostics(outputs, labels, dlogits)
    assert diagnostics["dz_norm_correct"] == pytest.approx(3.0)
    assert diagnostics["dz_norm_wrong"] == pytest.approx(1.0005)
    assert diagnostics["wrong_vanishing_frac"] == 0.5  # 0.001 < 1% of 5; 2 is not
    everything_right = gradient_diagnostics(outputs[:2], labels[:2], dlogits[:2])
    assert everything_right["dz_norm_correct"] == pytest.approx(3.0)
    assert np.isnan(everything_right["dz_norm_wrong"]) and np.isnan(everything_right["wrong_vanishing_frac"])
    outputs[0, 0] = np.inf
    assert all(np.isnan(v) for v in gradient_diagnostics(outputs, labels, dlogits).values())


def test_gradient_diagnostics_show_l2_vanishing_on_confident_mistakes_and_ce_not():
    from lossbench.losses import L2, CrossEntropy

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    outputs = rng.normal(size=(200, 3))
    wrong = labels[:50]  # the first 50: confidently wrong (another class at +12)
    outputs[np.arange(50), (wrong + 1) % 3] += 12.0
    ce = gradient_diagnostics(outputs, labels, CrossEntropy()(outputs, labels)[1])
    l2 = gradient_diagnostics(outputs, labels, L2()(outputs, labels)[1])
    assert ce["wrong_vanishing_frac"] < 0.05  # CE: ||p - y|| ~ sqrt(2) on a confident mistake
    assert l2["wrong_vanishing_frac"] > 0.3  # L2 on softmax: ~ e^-12 there


def test_a_rounding_tie_between_saturated_probabilities_breaks_as_accuracy_does():
    from lossbench.losses import BCE

    outputs = np.array([[40.0, 41.0, -5.0]])  # normalised sigmoids: 0.5, 0.5 (to 1e-18), ~0
    labels = np.array([1])
    p = BCE().probabilities(outputs)
    assert p[0, 0] == p[0, 1]  # argmax p would say class 0
    metrics = classification_metrics(outputs, labels, p)
    assert metrics["accuracy"] == 1.0 and metrics["ece"] == pytest.approx(1.0 - p.max(), rel=1e-12)
    table = calibration_table(p, labels, predicted=np.array([1]))
    assert table["accuracy"].dropna().tolist() == [1.0]
