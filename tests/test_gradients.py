"""End-to-end gradients: every model in conf/model/ x every loss in conf/loss/.

For each pair and each problem the model can serve, the gradient of the MEAN loss with respect to
every parameter, ``model.backward(cache, dlogits / n)``, is compared with central finite
differences in float64 (step 1e-6, relative error < 1e-6):

- ``random``: random parameters and data, logits of order 1;
- ``saturated-agree``: output layer scaled so |logit| ~ 30, targets agreeing with the prediction
  (losses and gradients ~ e^-30: only exact formulas keep their relative precision);
- ``saturated-disagree``: the same logits, targets opposite to the prediction.

Central differences and the comparison are ``lossbench.testing.finite_difference_check``:
``max|analytic - numeric| <= 1e-6 * max(max|analytic|, max|numeric|) + atol``, with atol the
round-off bound of the difference quotients, ``16 eps mean|loss| / step`` (~4e-9 for losses of
order 1). The bound only
matters where a gradient is far below the loss: exactly zero (an L1 bias gradient with as many
positive as negative residuals), or flat saturation (L2 on a confidently wrong sigmoid: gradient
~ e^-30 next to a loss of order 1), where it confirms that both gradients vanish.

The test data keep away from kinks (relu at 0, L1 at a zero residual, hinge at margin 1): every
case asserts it, and tries the next seed if the data fall near one. The MLP is checked with each
activation and two hidden layers; relu only at random points (saturating its output layer tests
nothing new, the kinks live in the hidden layers).

A loss that cannot serve a problem must say so with ValueError on a single sample (that is how
the runner validates a configuration); which pairs are incompatible is written out below, so a
loss that starts refusing a problem it should serve fails here rather than being skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, conf_names
from lossbench.models import ACTIVATIONS
from lossbench.testing import finite_difference_check

STEP = 1e-6
RTOL = 1e-6
N_SAMPLES, N_INPUTS = 6, 4

# problem -> (task, n_targets, target kind)
PROBLEMS = {
    "binary-labels": ("classification", 2, "labels"),
    "binary-probabilities": ("classification", 2, "probabilities"),
    "3class-labels": ("classification", 3, "labels"),
    "3class-probabilities": ("classification", 3, "probabilities"),
    "regression": ("regression", 2, "values"),
}

# Expected incompatibilities, by loss file name.
NEEDS_CLASS_TARGETS = {"bce", "ce", "kl", "focal", "hinge"}  # refuse regression values
NEEDS_SOFTMAX = {"ce", "kl"}  # refuse a single output (k = 1)
NEEDS_LABELS = {"hinge"}  # refuses class probabilities


def expected_incompatibility(loss_name: str, k: int, target_kind: str) -> str | None:
    """Why ``loss_name`` must refuse this setting, or None if it must accept it."""
    if target_kind == "values" and loss_name in NEEDS_CLASS_TARGETS:
        return "classification loss on regression targets"
    if k == 1 and loss_name in NEEDS_SOFTMAX:
        return "softmax loss with one output"
    if target_kind == "probabilities" and loss_name in NEEDS_LABELS:
        return "labels-only loss on class probabilities"
    return None


# ---- the grid -------------------------------------------------------------------------------------


def _model_variants() -> dict[str, dict]:
    """Model configs by id; a model with an activation key is expanded over every activation."""
    variants = {}
    for name in conf_names("model"):
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
        if "activation" in cfg:
            for activation in ACTIVATIONS:
                variants[f"{name}[{activation}]"] = {**cfg, "activation": activation,
                                                     "hidden_sizes": [5, 4]}
        else:
            variants[name] = cfg
    return variants


MODEL_VARIANTS = _model_variants()
LOSSES = conf_names("loss")


def _build_model(variant: str):
    return instantiate(OmegaConf.create(MODEL_VARIANTS[variant]))


def _grid():
    cases = []
    for variant in MODEL_VARIANTS:
        for problem, (task, n_targets, _) in PROBLEMS.items():
            try:
                _build_model(variant).output_size(task, n_targets)
            except ValueError:
                continue  # the model does not serve this problem (rules pinned in test_models.py)
            regimes = ["random"] if "relu" in variant else ["random", "saturated-agree",
                                                            "saturated-disagree"]
            for loss_name in LOSSES:
                for regime in regimes:
                    cases.append(pytest.param(variant, problem, loss_name, regime,
                                              id=f"{variant}-{problem}-{loss_name}-{regime}"))
    return cases


# ---- helpers ----------------------------------------------------------------------------------------


def _one_hot(indices: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[indices]


def _targets(kind: str, k: int, n_classes: int, outputs: np.ndarray, regime: str, rng):
    """Targets of the given kind: random, or agreeing / disagreeing with the outputs."""
    n = outputs.shape[0]
    if kind == "values":
        noise = rng.normal(size=outputs.shape)
        return {"random": noise, "saturated-agree": outputs + noise,
                "saturated-disagree": -outputs + noise}[regime]
    if regime == "random":
        labels = rng.integers(0, n_classes, size=n)
        if kind == "labels":
            return labels
        if k == 1:
            return rng.uniform(0.05, 0.95, size=(n, 1))
        return rng.dirichlet(np.ones(k), size=n)
    # the predicted class, or the least likely one
    if k == 1:
        predicted = (outputs[:, 0] > 0).astype(np.int64)
        chosen = predicted if regime == "saturated-agree" else 1 - predicted
        return chosen if kind == "labels" else chosen[:, None].astype(np.float64)
    chosen = outputs.argmax(axis=1) if regime == "saturated-agree" else outputs.argmin(axis=1)
    return chosen if kind == "labels" else _one_hot(chosen, k)


def _randomise(model, rng, regime: str, X: np.ndarray) -> None:
    """Non-zero parameters (convex models start at 0); for saturation, |logit| ~ 30."""
    for name, param in model.params.items():
        if not param.any():
            param[...] = rng.normal(scale=0.5, size=param.shape)
        elif name.startswith("b"):
            param += rng.normal(scale=0.1, size=param.shape)
    if regime != "random":
        last = len([name for name in model.params if name.startswith("W")])
        W, b = ("W", "b") if "W" in model.params else (f"W{last}", f"b{last}")
        outputs, _ = model.forward(X)
        scale = 30.0 / np.abs(outputs).mean()
        model.params[W] *= scale
        model.params[b] *= scale


def _kink_free(model, cache, loss, outputs, targets) -> bool:
    """No relu pre-activation within 1e-3 of 0, and the loss smooth within 1e-4 of the outputs
    along every output coordinate (its second difference there is that of a smooth function)."""
    if getattr(model, "activation", None) == "relu":
        for layer in range(1, len(cache)):
            pre_activation = cache[layer - 1] @ model.params[f"W{layer}"] + model.params[f"b{layer}"]
            if np.abs(pre_activation).min() < 1e-3:
                return False
    delta = 1e-4
    centre, _ = loss(outputs, targets)
    for j in range(outputs.shape[1]):
        shift = np.zeros_like(outputs)
        shift[:, j] = delta
        plus, _ = loss(outputs + shift, targets)
        minus, _ = loss(outputs - shift, targets)
        if np.abs(plus + minus - 2 * centre).max() > 1e-6:
            return False
    return True


# ---- the tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant, problem, loss_name, regime", _grid())
def test_gradient_of_mean_loss_matches_finite_differences(variant, problem, loss_name, regime):
    task, n_targets, kind = PROBLEMS[problem]
    loss = instantiate(OmegaConf.load(CONF / "loss" / f"{loss_name}.yaml"))
    model = _build_model(variant)
    k = model.output_size(task, n_targets)

    reason = expected_incompatibility(loss_name, k, kind)
    if reason is not None:
        rng = np.random.default_rng(0)
        one_target = _targets(kind, k, n_targets, np.zeros((1, k)), "random", rng)
        with pytest.raises(ValueError):
            loss(np.zeros((1, k)), one_target)
        return

    for seed in range(50):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(N_SAMPLES, N_INPUTS))
        model.build(N_INPUTS, k, rng)
        _randomise(model, rng, regime, X)
        outputs, cache = model.forward(X)
        targets = _targets(kind, k, n_targets, outputs, regime, rng)
        if _kink_free(model, cache, loss, outputs, targets):
            break
    else:
        raise AssertionError("no seed in 0..49 gives data away from every kink")
    if regime != "random":
        assert 10 < np.abs(outputs).mean() < 100

    per_sample_loss, dlogits = loss(outputs, targets)
    analytic = model.backward(cache, dlogits / N_SAMPLES)
    # round-off of the difference quotients (each loss value good to a few ulps of itself):
    # binding only where a gradient is far below the loss, e.g. exactly 0 or flat saturation
    roundoff = 16 * np.finfo(np.float64).eps * np.abs(per_sample_loss).mean() / STEP

    for name, param in list(model.params.items()):
        def mean_loss(value, name=name):
            model.params[name] = value  # numerical_gradient passes a perturbed float64 copy
            return loss(model.forward(X)[0], targets)[0].mean()

        try:
            finite_difference_check(mean_loss, param, analytic[name], step=STEP, rtol=RTOL,
                                    atol=roundoff, what=f"d mean loss / d {name}")
        finally:
            model.params[name] = param


def test_grid_covers_every_model_and_loss_file():
    ids = [case.id for case in _grid()]
    for name in conf_names("model"):
        assert any(case_id.startswith(name) for case_id in ids), name
    for loss_name in LOSSES:
        assert any(f"-{loss_name}-" in case_id for case_id in ids), loss_name
