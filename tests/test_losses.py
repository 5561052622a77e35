"""Losses: every conf/loss/*.yaml against its contract, finite differences, PyTorch's formulas and theory."""

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import get_class, instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from omegaconf import OmegaConf
from scipy.special import entr, expit, log_expit, log_softmax, softmax, xlogy

import lossbench.conf
from lossbench.losses import BCE, L1, L2, CrossEntropy, Focal, Hinge, Huber, KLDivergence
from lossbench.testing import check_loss, finite_difference_check

CONF = Path(lossbench.conf.__file__).parent
LOSS_FILES = sorted((CONF / "loss").glob("*.yaml"))
LOSS_IDS = [path.stem for path in LOSS_FILES]
KINDS = ("labels", "probabilities", "values")
HYPOTHESIS = settings(max_examples=40, deadline=None)

# Settings whose code paths differ from the shipped defaults (smoothing, gamma < 1, gamma = 0, small delta).
VARIANTS = [CrossEntropy(label_smoothing=0.1), KLDivergence(label_smoothing=0.25), Focal(gamma=0.0),
            Focal(gamma=0.5), Huber(delta=0.3)]
CASES = [pytest.param(path, id=path.stem) for path in LOSS_FILES] + [pytest.param(v, id=repr(v)) for v in VARIANTS]


def build(case):
    """A loss from a conf/loss file (as the runner builds it), or a variant instance as is."""
    return instantiate(OmegaConf.load(case)) if isinstance(case, Path) else case


def make_targets(kind: str, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Labels int (n,); class probabilities (n, k) (k == 1: P(class 1)); regression values (n, k)."""
    if kind == "labels":
        return rng.integers(0, max(k, 2), size=n)
    if kind == "probabilities":
        return rng.uniform(0.05, 0.95, size=(n, 1)) if k == 1 else rng.dirichlet(np.ones(k), size=n)
    values = rng.normal(0.0, 2.0, size=(n, k))
    values[0, 0] = 3.0  # regression data: outside [0, 1]
    return values


def accepted_settings(loss) -> list[tuple[str, int]]:
    """The (target kind, k) pairs the loss serves (the others raise ValueError)."""
    settings_ = []
    for kind in KINDS:
        for k in (1, 3):
            try:
                loss(np.zeros((4, k)), make_targets(kind, np.random.default_rng(0), 4, k))
            except ValueError:
                continue
            settings_.append((kind, k))
    return settings_


def target_probabilities(targets: np.ndarray, k: int) -> np.ndarray:
    """The target as probabilities (n, k): the label (k == 1), one-hot labels, or the float targets."""
    if targets.dtype.kind == "i":
        return targets[:, None].astype(float) if k == 1 else np.eye(k)[targets]
    return targets.reshape(len(targets), k)


# ---------------------------------------------------------------------------------------------
# PyTorch's formulas, written naively (exact at moderate logits), one per loss class


def reference_residual(z, targets, on_logits=False):
    k = z.shape[1]
    t = target_probabilities(targets, k)
    if targets.dtype.kind == "i" and not on_logits:
        z = expit(z) if k == 1 else softmax(z, axis=1)  # the link, for class labels only
    if targets.dtype.kind == "i" and on_logits and k == 1:
        t = 2 * t - 1  # one raw output aims at -1 / +1 around its decision threshold z = 0
    return z - t


def reference_l2(loss, z, targets):  # MSELoss
    return (reference_residual(z, targets, loss.on_logits) ** 2).mean(axis=1)


def reference_l1(loss, z, targets):  # L1Loss
    return np.abs(reference_residual(z, targets)).mean(axis=1)


def reference_huber(loss, z, targets):  # HuberLoss(delta)
    r, delta = reference_residual(z, targets), loss.delta
    return np.where(np.abs(r) < delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta)).mean(axis=1)


def reference_bce(loss, z, targets):  # BCEWithLogitsLoss
    t = target_probabilities(targets, z.shape[1])
    return -(t * log_expit(z) + (1 - t) * log_expit(-z)).mean(axis=1)


def smoothed(loss, targets, k):
    return (1 - loss.label_smoothing) * target_probabilities(targets, k) + loss.label_smoothing / k


def reference_ce(loss, z, targets):  # CrossEntropyLoss(label_smoothing)
    return -(smoothed(loss, targets, z.shape[1]) * log_softmax(z, axis=1)).sum(axis=1)


def reference_kl(loss, z, targets):  # KLDivLoss(reduction="batchmean")(log_softmax(z), smoothed target)
    t = smoothed(loss, targets, z.shape[1])
    return (xlogy(t, t) - t * log_softmax(z, axis=1)).sum(axis=1)


def reference_focal(loss, z, targets):  # torchvision sigmoid_focal_loss (k == 1); softmax form (k >= 2)
    t, gamma = target_probabilities(targets, z.shape[1]), loss.gamma
    if z.shape[1] == 1:
        p = expit(z)
        bce = -(t * log_expit(z) + (1 - t) * log_expit(-z))
        p_t = p * t + (1 - p) * (1 - t)
        return (bce * (1 - p_t) ** gamma)[:, 0]
    return -(t * (1 - softmax(z, axis=1)) ** gamma * log_softmax(z, axis=1)).sum(axis=1)


def reference_hinge(loss, z, labels):  # k == 1: clamp(1 - s z, min=0); k >= 2: MultiMarginLoss
    n, k = z.shape
    if k == 1:
        return np.maximum(0.0, 1 - (2 * labels - 1) * z[:, 0])
    return np.array([sum(max(0.0, 1 - z[i, labels[i]] + z[i, j]) for j in range(k) if j != labels[i]) / k
                     for i in range(n)])


REFERENCES = {L2: reference_l2, L1: reference_l1, Huber: reference_huber, BCE: reference_bce,
              CrossEntropy: reference_ce, KLDivergence: reference_kl, Focal: reference_focal, Hinge: reference_hinge}


# ---------------------------------------------------------------------------------------------
# conf/loss files


@pytest.mark.parametrize("path", LOSS_FILES, ids=LOSS_IDS)
def test_yaml_says_what_the_loss_is_and_comments_every_key(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and len(lines[0]) > 10, "first line: a comment saying what the loss is"
    cfg = OmegaConf.load(path)
    assert cfg._target_.startswith("lossbench.losses.")
    parameters = inspect.signature(get_class(cfg._target_)).parameters
    keys = [key for key in cfg if key != "_target_"]
    assert set(keys) == set(parameters), "YAML keys are exactly the constructor's arguments"
    for key in keys:
        line = next(line for line in lines if line.startswith(f"{key}:"))
        assert re.search(r"\S\s+#\s*\S", line), f"{key!r} needs a trailing comment (meaning/range): {line!r}"


@pytest.mark.parametrize("path", LOSS_FILES, ids=LOSS_IDS)
def test_repr_shows_the_class_and_its_keys(path):
    cfg = OmegaConf.load(path)
    loss = instantiate(cfg)
    fields = ", ".join(f"{key}={value!r}" for key, value in cfg.items() if key != "_target_")
    assert repr(loss) == f"{type(loss).__name__}({fields})"


@pytest.mark.parametrize("path", LOSS_FILES, ids=LOSS_IDS)
def test_shipped_loss_keeps_the_contract(path):
    report = check_loss(build(path))
    assert report.accepted and report.max_relative_error < 1e-6


# ---------------------------------------------------------------------------------------------
# gradients


def saturated_outputs(kind, targets, rng, k, level=30.0):
    """Logits with one entry at about +-level: confidently right on even rows, confidently wrong on odd rows."""
    n = len(targets)
    wrong = np.arange(n) % 2 == 1
    z = rng.normal(0.0, 1.0, size=(n, k))
    if k == 1:
        sign = 2.0 * targets - 1.0 if kind == "labels" else np.where(np.arange(n) % 4 < 2, 1.0, -1.0)
        z[:, 0] = np.where(wrong, -sign, sign) * (level + z[:, 0])
        return z
    hot = targets if kind == "labels" else rng.integers(0, k, size=n)
    z[np.arange(n), np.where(wrong, (hot + 1) % k, hot)] += level
    return z


@pytest.mark.parametrize("where", ["moderate", "saturated"])
@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_central_differences_per_sample(case, where):
    """Every accepted target kind, k = 1 and 3, float64; at |logit| ~ 30 too, to full relative precision.

    The only slack is the rounding noise of the sample's own value (1e-8 |loss_i|, i.e. a few ulps
    over the 1e-6 step): it matters only where the gradient vanishes while the value does not
    (L2 on a confidently wrong saturated output). A confidently right sample (loss ~ 1e-13) gets
    no slack at all.
    """
    loss = build(case)
    for kind, k in accepted_settings(loss):
        rng = np.random.default_rng([k, KINDS.index(kind)])
        targets = make_targets(kind, rng, 8, k)
        outputs = rng.normal(0.0, 1.5, size=(8, k)) if where == "moderate" else saturated_outputs(kind, targets, rng, k)
        per_sample_loss, dlogits = loss(outputs, targets)
        for i in range(len(outputs)):
            def sample_loss(row, i=i):
                return loss(row[None, :], targets[i:i + 1])[0][0]

            finite_difference_check(sample_loss, outputs[i], dlogits[i], rtol=1e-6,
                                    atol=1e-8 * abs(per_sample_loss[i]),
                                    what=f"{kind}, k={k}, sample {i} (outputs {outputs[i]})")


def test_l2_on_a_sigmoid_has_gradient_2_residual_sigma_prime_and_vanishes_when_confidently_wrong():
    z = np.linspace(-8.0, 8.0, 33)[:, None]
    for label in (0, 1):
        labels = np.full(len(z), label)
        sigma = expit(z)
        _, dlogits = L2()(z, labels)
        np.testing.assert_allclose(dlogits, 2 * (sigma - label) * sigma * (1 - sigma), rtol=1e-12, atol=0)
    confidently_wrong, label = np.array([[-30.0]]), np.array([1])
    _, d_l2 = L2()(confidently_wrong, label)
    _, d_bce = BCE()(confidently_wrong, label)
    assert abs(d_l2[0, 0]) < 1e-12  # 2 (sigma - 1) sigma (1 - sigma) ~ -2 e^-30
    assert d_l2[0, 0] == pytest.approx(2 * (expit(-30.0) - 1) * expit(-30.0) * expit(30.0), rel=1e-12)
    assert d_bce[0, 0] == pytest.approx(expit(-30.0) - 1, rel=1e-12)  # about -1: no saturation factor


def test_textbook_gradients_p_minus_t():
    rng = np.random.default_rng(1)
    z, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    target = 0.8 * np.eye(4)[labels] + 0.2 / 4
    for loss in (CrossEntropy(label_smoothing=0.2), KLDivergence(label_smoothing=0.2)):
        np.testing.assert_allclose(loss(z, labels)[1], softmax(z, axis=1) - target, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(BCE()(z, labels)[1], (expit(z) - np.eye(4)[labels]) / 4, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# values: PyTorch's definitions and the worked example


@pytest.mark.parametrize("case", CASES)
def test_values_equal_pytorch_formulas(case):
    loss = build(case)
    reference = REFERENCES.get(type(loss))
    assert reference is not None, f"add a naive reference formula for {type(loss).__name__} to REFERENCES"
    for kind, k in accepted_settings(loss):
        rng = np.random.default_rng([k, KINDS.index(kind), 7])
        targets = make_targets(kind, rng, 10, k)
        outputs = rng.normal(0.0, 3.0, size=(10, k))
        per_sample_loss, _ = loss(outputs, targets)
        np.testing.assert_allclose(per_sample_loss, reference(loss, outputs, targets), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{kind}, k={k}")


def test_cross_entropy_reproduces_the_worked_example_in_bits():
    quarter = np.full(4, 0.25)
    q1, q2 = np.array([1 / 4, 1 / 2, 1 / 8, 1 / 8]), np.array([1 / 4, 1 / 4, 1 / 8, 3 / 8])
    logits = np.log(np.stack([quarter, q1, q2]))
    p_rows = np.stack([quarter] * 3)
    bits = CrossEntropy()(logits, p_rows)[0] / math.log(2)
    np.testing.assert_allclose(bits, [2.0, 9 / 4, (10 - math.log2(3)) / 4], rtol=1e-14)
    assert bits[2] < bits[1]  # Q2 is the closer prediction
    kl_bits = KLDivergence()(logits, p_rows)[0] / math.log(2)
    np.testing.assert_allclose(kl_bits, [0.0, 1 / 4, (2 - math.log2(3)) / 4], rtol=1e-13, atol=1e-15)


def test_identities_between_losses():
    rng = np.random.default_rng(2)
    z, labels, soft = rng.normal(size=(7, 3)), rng.integers(0, 3, 7), rng.dirichlet(np.ones(3), 7)
    for targets in (labels, soft):  # focal with gamma 0 is cross-entropy
        for a, b in zip(Focal(gamma=0.0)(z, targets), CrossEntropy()(z, targets)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    z1, y1 = rng.normal(0, 4, size=(7, 1)), rng.integers(0, 2, 7)
    for a, b in zip(Focal(gamma=0.0)(z1, y1), BCE()(z1, y1)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # BCE on one logit z is cross-entropy on the two logits (0, z)
    two = np.hstack([np.zeros_like(z1), z1])
    np.testing.assert_allclose(BCE()(z1, y1)[0], CrossEntropy()(two, y1)[0], rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# properties (hypothesis)


logit_arrays = st.integers(1, 5).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda k: hnp.arrays(np.float64, (n, k), elements=st.floats(-1e3, 1e3))))


def draw_targets(data, kind, n, k):
    if kind == "labels":
        return np.array(data.draw(st.lists(st.integers(0, max(k, 2) - 1), min_size=n, max_size=n)), dtype=np.int64)
    if kind == "values":
        return data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-1e3, 1e3)))
    weights = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0.0, 1.0)))
    if k == 1:
        return weights
    weights[:, 0] += 1e-3  # no all-zero row
    return weights / weights.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("case", CASES)
@HYPOTHESIS
@given(data=st.data())
def test_finite_and_non_negative_for_logits_up_to_1e3(case, data):
    loss = build(case)
    kind, k = data.draw(st.sampled_from(accepted_settings(loss)))
    n = data.draw(st.integers(1, 5))
    outputs = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-1e3, 1e3)))
    targets = draw_targets(data, kind, n, k)
    for dtype in (np.float64, np.float32):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            per_sample_loss, dlogits = loss(outputs.astype(dtype), targets)
        assert np.isfinite(per_sample_loss).all() and np.isfinite(dlogits).all()
        assert (per_sample_loss >= 0).all()


smoothing = st.floats(0.0, 0.5)


def soft_or_label_targets(data, n, k):
    if data.draw(st.booleans()):
        return draw_targets(data, "labels", n, k)
    return draw_targets(data, "probabilities", n, k)


two_or_more = st.integers(1, 5).flatmap(
    lambda n: st.integers(2, 5).flatmap(lambda k: hnp.arrays(np.float64, (n, k), elements=st.floats(-1e3, 1e3))))


@HYPOTHESIS
@given(outputs=two_or_more, shift=st.floats(-1e3, 1e3), eps=smoothing, data=st.data())
def test_ce_and_kl_are_invariant_to_adding_a_constant_to_all_logits(outputs, shift, eps, data):
    targets = soft_or_label_targets(data, *outputs.shape)
    for loss in (CrossEntropy(label_smoothing=eps), KLDivergence(label_smoothing=eps)):
        base, moved = loss(outputs, targets), loss(outputs + shift, targets)
        # the only difference: rounding of outputs + shift (|.| <= 2e3, ulp 2.3e-13)
        np.testing.assert_allclose(moved[0], base[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(moved[1], base[1], rtol=1e-9, atol=1e-9)


@HYPOTHESIS
@given(outputs=two_or_more, eps=smoothing, data=st.data())
def test_kl_is_ce_minus_the_entropy_of_the_smoothed_target_with_the_same_gradient(outputs, eps, data):
    n, k = outputs.shape
    targets = soft_or_label_targets(data, n, k)
    ce, d_ce = CrossEntropy(label_smoothing=eps)(outputs, targets)
    kl, d_kl = KLDivergence(label_smoothing=eps)(outputs, targets)
    entropy = entr((1 - eps) * target_probabilities(targets, k) + eps / k).sum(axis=1)
    np.testing.assert_allclose(kl, np.maximum(ce - entropy, 0.0), rtol=1e-12, atol=1e-12 * (1 + ce.max()))
    np.testing.assert_array_equal(d_kl, d_ce)  # label smoothing changes the value, never the gradient
    assert (ce >= entropy - 1e-12 * (1 + ce)).all()  # CE's minimum is H(target)
    assert (kl >= 0).all()


@HYPOTHESIS
@given(eps=st.floats(0.01, 0.9), k=st.integers(2, 6), label=st.integers(0, 5), shift=st.floats(-100, 100))
def test_at_the_smoothed_target_kl_is_zero_and_ce_is_its_entropy(eps, k, label, shift):
    labels = np.array([label % k])
    target = (1 - eps) * np.eye(k)[labels] + eps / k
    logits = np.log(target) + shift  # softmax(logits) == target
    entropy = entr(target).sum()
    ce, d_ce = CrossEntropy(label_smoothing=eps)(logits, labels)
    kl, d_kl = KLDivergence(label_smoothing=eps)(logits, labels)
    assert kl[0] == pytest.approx(0.0, abs=1e-12)
    assert ce[0] == pytest.approx(entropy, rel=1e-12, abs=1e-13)
    np.testing.assert_allclose(d_ce, 0.0, atol=1e-12)
    np.testing.assert_allclose(d_kl, 0.0, atol=1e-12)


def test_kl_is_never_negative_even_at_its_minimum_where_rounding_lands_on_either_side():
    rng = np.random.default_rng(4)
    for k in (2, 3, 10):
        soft = rng.dirichlet(np.ones(k), size=500)
        logits = np.log(soft) + rng.normal(0.0, 50.0, size=(500, 1))
        kl, _ = KLDivergence()(logits, soft)
        assert (kl >= 0).all() and kl.max() < 1e-12
        labels = rng.integers(0, k, size=500)
        smoothed_target = 0.9 * np.eye(k)[labels] + 0.1 / k
        kl, _ = KLDivergence(label_smoothing=0.1)(np.log(smoothed_target), labels)
        assert (kl >= 0).all() and kl.max() < 1e-12


# ---------------------------------------------------------------------------------------------
# dtype, batches, non-finite outputs


@pytest.mark.parametrize("case", CASES)
def test_float32_outputs_give_float32_results_close_to_float64(case):
    loss = build(case)
    for kind, k in accepted_settings(loss):
        rng = np.random.default_rng(k)
        targets, outputs = make_targets(kind, rng, 6, k), rng.normal(size=(6, k))
        per_sample_loss32, dlogits32 = loss(outputs.astype(np.float32), targets)
        per_sample_loss, dlogits = loss(outputs, targets)
        assert per_sample_loss32.dtype == np.float32 and dlogits32.dtype == np.float32, (kind, k)
        np.testing.assert_allclose(per_sample_loss32, per_sample_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dlogits32, dlogits, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_an_empty_batch_gives_empty_results(case):
    loss = build(case)
    for kind, k in accepted_settings(loss):
        targets = make_targets(kind, np.random.default_rng(0), 4, k)[:0]
        per_sample_loss, dlogits = loss(np.zeros((0, k)), targets)
        assert per_sample_loss.shape == (0,) and dlogits.shape == (0, k)


@pytest.mark.parametrize("case", CASES)
def test_non_finite_outputs_pass_through_quietly_for_the_divergence_check(case):
    """A diverged model's nan/inf rows give nan/inf results, no exception, no RuntimeWarning (an error here)."""
    loss = build(case)
    for kind, k in accepted_settings(loss):
        rng = np.random.default_rng(3)
        targets, outputs = make_targets(kind, rng, 4, k), rng.normal(size=(4, k))
        outputs[1, 0], outputs[2, -1] = np.nan, np.inf
        per_sample_loss, dlogits = loss(outputs, targets)
        assert not np.isfinite(per_sample_loss[1])
        good = [0, 3]
        alone, _ = loss(outputs[good], targets[good])
        np.testing.assert_array_equal(per_sample_loss[good], alone)  # other samples unaffected


# ---------------------------------------------------------------------------------------------
# messages


@pytest.mark.parametrize("loss", [CrossEntropy(), KLDivergence()], ids=repr)
def test_softmax_losses_with_one_output_say_use_bce(loss):
    with pytest.raises(ValueError, match=r"needs k >= 2 outputs \(softmax\); for one output use loss=bce"):
        loss(np.zeros((3, 1)), np.array([0, 1, 1]))


@pytest.mark.parametrize("loss", [BCE(), CrossEntropy(), KLDivergence(), Focal()], ids=repr)
@pytest.mark.parametrize("k", [1, 3])
def test_classification_losses_refuse_regression_targets_and_name_the_fitting_losses(loss, k):
    targets = np.full((2, k), 150.0)  # e.g. the diabetes target
    with pytest.raises(ValueError, match=r"got regression targets .*use l2, l1 or huber"):
        loss(np.zeros((2, k)), targets)


def test_hinge_refuses_float_targets():
    with pytest.raises(ValueError, match=r"'hinge' needs integer class labels, got float targets"):
        Hinge()(np.zeros((2, 3)), np.full((2, 3), 1 / 3))


@pytest.mark.parametrize("k, labels, fragment", [
    (3, [0, 3], r"labels must be in \[0, 3\) for 3 outputs, got 3"),
    (3, [-1, 2], r"labels must be in \[0, 3\) for 3 outputs, got -1"),
    (1, [0, 2], r"for one output \(sigmoid\) must be 0 or 1, got 2; .*one output per class"),
])
@pytest.mark.parametrize("path", LOSS_FILES, ids=LOSS_IDS)
def test_labels_out_of_range_are_refused(path, k, labels, fragment):
    loss = build(path)
    if ("labels", k) not in accepted_settings(loss):
        return  # this loss refuses k outputs already (tested above)
    with pytest.raises(ValueError, match=fragment):
        loss(np.zeros((2, k)), np.array(labels))


@pytest.mark.parametrize("loss", [BCE(), CrossEntropy(), KLDivergence(), Focal()], ids=repr)
def test_class_probabilities_must_sum_to_one(loss):
    with pytest.raises(ValueError, match=r"must sum to 1 in every row .*got a row summing to 0\.9"):
        loss(np.zeros((2, 3)), np.array([[0.2, 0.3, 0.5], [0.5, 0.2, 0.2]]))
    loss(np.zeros((1, 3)), np.array([[0.2, 0.3, 0.5 + 1e-9]]))  # rounding is tolerated


@pytest.mark.parametrize("outputs, targets, fragment", [
    (np.zeros(3), np.array([0, 1, 1]), r"outputs must be a float array of shape \(n, k\)"),
    (np.zeros((3, 2), dtype=int), np.array([0, 1, 1]), "outputs must be a float array, got dtype int"),
    (np.zeros((3, 2)), np.array([[0], [1], [1]]), r"labels must have shape \(n,\) = \(3,\), got \(3, 1\)"),
    (np.zeros((3, 2)), np.zeros((2, 2)), r"float targets must have the outputs' shape \(n, k\) = \(3, 2\)"),
    (np.zeros((2, 2)), np.array([[0.5, np.nan], [0.5, 0.5]]), "targets must be finite, got 1 nan/inf"),
    (np.zeros((2, 2)), np.array(["a", "b"]), "targets must be integer class labels or float values"),
])
def test_bad_shapes_and_dtypes_are_refused(outputs, targets, fragment):
    with pytest.raises(ValueError, match=fragment):
        CrossEntropy()(outputs, targets)


@pytest.mark.parametrize("cls, key, value, allowed", [
    (Huber, "delta", 0, "(0, 1e6]"), (Huber, "delta", -1.0, "(0, 1e6]"), (Huber, "delta", float("nan"), "(0, 1e6]"),
    (Huber, "delta", "1", "(0, 1e6]"), (Huber, "delta", 1e7, "(0, 1e6]"), (CrossEntropy, "label_smoothing", 1.0, "[0, 1)"),
    (CrossEntropy, "label_smoothing", -0.1, "[0, 1)"), (KLDivergence, "label_smoothing", 1.5, "[0, 1)"),
    (Focal, "gamma", -1, "[0, 100]"), (Focal, "gamma", float("inf"), "[0, 100]"), (Focal, "gamma", True, "[0, 100]"),
    (Focal, "gamma", 1e308, "[0, 100]"),
    (L2, "on_logits", "yes", "true or false"), (L2, "on_logits", 1, "true or false"),
])
def test_bad_hyperparameters_are_refused_naming_key_value_and_range(cls, key, value, allowed):
    with pytest.raises(ValueError) as info:
        cls(**{key: value})
    message = str(info.value)
    assert message.startswith(key)  # the runner prefixes "loss." to a message starting with the key
    assert repr(value) in message and allowed in message


def test_l2_on_one_logit_aims_at_minus_one_and_plus_one_around_the_decision_threshold():
    """With one output a sample is class 1 when z > 0: squared error on the logit must put that
    threshold midway between its targets, so labels 0 and 1 aim at -1 and +1."""
    loss = L2(on_logits=True)
    z = np.array([[-1.0], [1.0], [0.0]])
    per_sample_loss, dlogits = loss(z, np.array([0, 1, 1]))
    np.testing.assert_allclose(per_sample_loss, [0.0, 0.0, 1.0], rtol=0, atol=0)
    np.testing.assert_allclose(dlogits, [[0.0], [0.0], [-2.0]], rtol=0, atol=0)
