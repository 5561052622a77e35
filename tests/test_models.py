"""Models: every file in conf/model/ for output sizes, shapes, init statistics, dtypes,
determinism and validation. Gradients are checked in test_gradients.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from conftest import CONF, conf_names
from lossbench.models import ACTIVATIONS, MLP

MODELS = conf_names("model")


def _build(name: str, **overrides):
    cfg = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    return instantiate(cfg, **overrides)


def _model_class(name: str):
    """The class a model file instantiates (to see its ValueError without Hydra's wrapper)."""
    return get_class(OmegaConf.load(CONF / "model" / f"{name}.yaml")._target_)


# (task, n_targets) -> expected k, or the words the error message must contain
EXPECTED_OUTPUT_SIZES = {
    "linear": {("regression", 1): 1, ("regression", 3): 3,
               ("classification", 2): ["linear", "regression", "logistic", "softmax", "mlp"],
               ("classification", 5): ["linear", "softmax", "mlp"]},
    "logistic": {("classification", 2): 1,
                 ("classification", 3): ["logistic", "binary", "3 classes", "softmax", "mlp"],
                 ("regression", 1): ["logistic", "regression", "linear", "mlp"]},
    "softmax": {("classification", 2): 2, ("classification", 7): 7,
                ("regression", 2): ["softmax", "regression", "linear", "mlp"]},
    "mlp": {("classification", 2): 1, ("classification", 4): 4, ("regression", 1): 1,
            ("regression", 3): 3},
}


def test_every_model_file_has_expected_output_sizes():
    assert set(MODELS) == set(EXPECTED_OUTPUT_SIZES), "add the new model to EXPECTED_OUTPUT_SIZES"


@pytest.mark.parametrize("name", MODELS)
def test_output_size_rules_and_messages(name):
    model = _build(name)
    for (task, n_targets), expected in EXPECTED_OUTPUT_SIZES[name].items():
        if isinstance(expected, int):
            assert model.output_size(task, n_targets) == expected, (task, n_targets)
        else:
            with pytest.raises(ValueError) as error:
                model.output_size(task, n_targets)
            for word in expected:
                assert word in str(error.value), (task, n_targets, str(error.value))


@pytest.mark.parametrize("name", MODELS)
def test_output_size_refuses_unknown_task_and_sizes(name):
    model = _build(name)
    with pytest.raises(ValueError, match="task.*'clustering'"):
        model.output_size("clustering", 2)
    with pytest.raises(ValueError, match="n_targets"):
        model.output_size("classification", 1)
    with pytest.raises(ValueError, match="n_targets"):
        model.output_size("regression", 0)


def _small_problem(seed=0, n=7, n_inputs=5):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(n, n_inputs))


def _k_for(name: str) -> int:
    """Some valid output size for the model."""
    model = _build(name)
    for (task, n_targets), expected in EXPECTED_OUTPUT_SIZES[name].items():
        if isinstance(expected, int):
            return model.output_size(task, n_targets)
    raise AssertionError(name)


@pytest.mark.parametrize("name", MODELS)
def test_shapes_of_outputs_params_and_grads(name):
    rng, X = _small_problem()
    model = _build(name)
    k = _k_for(name)
    model.build(X.shape[1], k, rng)
    outputs, cache = model.forward(X)
    assert outputs.shape == (X.shape[0], k) and outputs.dtype == np.float64
    dlogits = rng.normal(size=outputs.shape)
    dlogits_before = dlogits.copy()
    grads = model.backward(cache, dlogits)
    np.testing.assert_array_equal(dlogits, dlogits_before)  # backward must not consume dlogits
    assert list(grads) == list(model.params)
    for key, param in model.params.items():
        assert grads[key].shape == param.shape and grads[key].dtype == param.dtype
    assert not hasattr(model, "grads")


@pytest.mark.parametrize("name", MODELS)
def test_forward_casts_only_when_needed(name):
    """X already in the model dtype is used as is (no copy); other dtypes are cast."""
    rng, X = _small_problem()
    model = _build(name)
    model.build(X.shape[1], _k_for(name), rng)
    _, cache = model.forward(X)
    first_input = cache[0] if isinstance(cache, list) else cache
    assert first_input is X
    outputs_from_ints, _ = model.forward(np.round(X * 10).astype(np.int64))
    assert outputs_from_ints.dtype == np.float64


@pytest.mark.parametrize("name", MODELS)
def test_float32_path_stays_float32(name):
    rng, X = _small_problem()
    model32 = _build(name, dtype="float32")
    model64 = _build(name, dtype="float64")
    k = _k_for(name)
    model32.build(X.shape[1], k, np.random.default_rng(3))
    model64.build(X.shape[1], k, np.random.default_rng(3))
    for key in model64.params:  # non-zero parameters so the convex models compute something
        model64.params[key][...] = rng.normal(size=model64.params[key].shape)
        model32.params[key][...] = model64.params[key]
    assert all(param.dtype == np.float32 for param in model32.params.values())
    outputs32, cache32 = model32.forward(X)  # float64 X in
    outputs64, cache64 = model64.forward(X)
    assert outputs32.dtype == np.float32
    np.testing.assert_allclose(outputs32, outputs64, rtol=1e-4, atol=1e-5)
    dlogits = rng.normal(size=outputs32.shape)  # float64 dlogits in
    grads32 = model32.backward(cache32, dlogits)
    grads64 = model64.backward(cache64, dlogits)
    for key in grads32:
        assert grads32[key].dtype == np.float32
        np.testing.assert_allclose(grads32[key], grads64[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_build_is_deterministic_given_the_rng(name):
    model_a, model_b, model_c = _build(name), _build(name), _build(name)
    model_a.build(6, 3, np.random.default_rng(42))
    model_b.build(6, 3, np.random.default_rng(42))
    model_c.build(6, 3, np.random.default_rng(43))
    for key in model_a.params:
        np.testing.assert_array_equal(model_a.params[key], model_b.params[key])
    differs = any(not np.array_equal(model_a.params[key], model_c.params[key]) for key in model_a.params)
    has_random_init = isinstance(model_a, MLP)
    assert differs == has_random_init


@pytest.mark.parametrize("name", MODELS)
def test_dtype_is_validated(name):
    for bad in ("float16", "int64", "double", None):
        with pytest.raises(ValueError) as error:
            _model_class(name)(dtype=bad)
        assert "dtype" in str(error.value) and repr(bad) in str(error.value)


# ---- forward against a plain composition written here ----------------------------------------


def test_convex_models_start_at_zero_and_compute_an_affine_map():
    rng, X = _small_problem()
    for name in ("linear", "logistic", "softmax"):
        model = _build(name)
        model.build(X.shape[1], 3, rng)
        for param in model.params.values():
            assert not param.any()
        model.params["W"][...] = rng.normal(size=(X.shape[1], 3))
        model.params["b"][...] = rng.normal(size=3)
        outputs, _ = model.forward(X)
        np.testing.assert_allclose(outputs, X @ model.params["W"] + model.params["b"], rtol=1e-14)


ACTIVATION_FORMULAS = {
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "tanh": lambda z: (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z)),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_forward_equals_the_layer_formula(activation):
    rng, X = _small_problem()
    model = MLP(hidden_sizes=[6, 4], activation=activation)
    model.build(X.shape[1], 3, rng)
    for key in model.params:
        if key.startswith("b"):
            model.params[key][...] = rng.normal(size=model.params[key].shape)
    f, p = ACTIVATION_FORMULAS[activation], model.params
    expected = f(f(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]) @ p["W3"] + p["b3"]
    outputs, cache = model.forward(X)
    np.testing.assert_allclose(outputs, expected, rtol=1e-12, atol=1e-14)
    assert [a.shape for a in cache] == [(7, 5), (7, 6), (7, 4)]
    assert sorted(model.params) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert p["W1"].shape == (5, 6) and p["W2"].shape == (6, 4) and p["W3"].shape == (4, 3)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_is_finite_and_silent_for_huge_preactivations(activation):
    model = MLP(hidden_sizes=[3], activation=activation)
    model.build(2, 2, np.random.default_rng(0))
    X = np.array([[1e3, -1e3], [-1e3, 1e3], [0.0, 0.0]])
    model.params["W1"][...] = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs, cache = model.forward(X)
        grads = model.backward(cache, np.ones_like(outputs))
    assert np.isfinite(outputs).all() and all(np.isfinite(g).all() for g in grads.values())
    if activation == "sigmoid":
        hidden = cache[1]
        assert hidden.min() >= 0.0 and hidden.max() <= 1.0 and hidden[0, 0] == 1.0 and hidden[0, 1] == 0.0


# ---- initialisation statistics ------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_init_statistics(activation):
    """He normal for relu: var 2 / fan_in. Glorot uniform for tanh and sigmoid: |W| <= sqrt(6 /
    (fan_in + fan_out)), var 2 / (fan_in + fan_out). Biases 0. Checked on 120 000 weights."""
    fan_in, fan_out = 400, 300
    model = MLP(hidden_sizes=[fan_out], activation=activation)
    model.build(fan_in, 1, np.random.default_rng(0))
    W = model.params["W1"]
    if activation == "relu":
        expected_variance = 2.0 / fan_in
        fourth_moment_ratio = 3.0  # normal: E[w^4] / var^2 = 3
    else:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(W).max() <= limit and np.abs(W).max() > 0.99 * limit
        expected_variance = 2.0 / (fan_in + fan_out)
        fourth_moment_ratio = 1.8  # uniform: 9/5
    assert abs(W.mean()) < 3 * np.sqrt(expected_variance / W.size)
    assert W.var() == pytest.approx(expected_variance, rel=0.02)
    assert np.mean(W**4) / W.var() ** 2 == pytest.approx(fourth_moment_ratio, rel=0.05)
    for key in ("b1", "b2"):
        assert not model.params[key].any()
    # the output layer follows the same rule with its own fans (300 -> 1)
    out_variance = model.params["W2"].var()
    assert 0.5 * min(2 / 300, 2 / 301) < out_variance < 1.5 * max(2 / 300, 2 / 301)


def test_mlp_float32_init_is_the_float64_init_rounded():
    model64 = MLP(hidden_sizes=[8], dtype="float64")
    model32 = MLP(hidden_sizes=[8], dtype="float32")
    model64.build(5, 2, np.random.default_rng(7))
    model32.build(5, 2, np.random.default_rng(7))
    for key in model64.params:
        np.testing.assert_array_equal(model32.params[key], model64.params[key].astype(np.float32))


# ---- validation --------------------------------------------------------------------------------

BAD_MLP_ARGUMENTS = [
    ("hidden_sizes", []), ("hidden_sizes", [0]), ("hidden_sizes", [16, -2]), ("hidden_sizes", [3.5]),
    ("hidden_sizes", [True]), ("hidden_sizes", "64"), ("hidden_sizes", 64), ("hidden_sizes", None),
    ("activation", "gelu"), ("activation", "ReLU"), ("activation", None),
]


@pytest.mark.parametrize("key, value", BAD_MLP_ARGUMENTS,
                         ids=[f"{key}={value!r}" for key, value in BAD_MLP_ARGUMENTS])
def test_mlp_bad_arguments_name_key_and_value(key, value):
    with pytest.raises(ValueError) as error:
        MLP(**{key: value})
    message = str(error.value)
    assert key in message and repr(value) in message


def test_mlp_accepts_hydra_lists():
    model = _build("mlp", hidden_sizes=[32, 16], activation="tanh")
    assert model.hidden_sizes == [32, 16] and model.activation == "tanh"
    assert type(model.hidden_sizes) is list


@pytest.mark.parametrize("name", MODELS)
def test_model_file_is_documented(name):
    lines = (CONF / "model" / f"{name}.yaml").read_text().splitlines()
    assert lines[0].startswith("# ")
    for line in lines[1:]:
        if line.strip() and not line.startswith("#") and not line.startswith("_target_"):
            assert "#" in line, f"{name}.yaml: {line!r} has no comment"
