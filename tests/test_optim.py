"""Optimizers: every preset in conf/optimizer/ against hand-computed first steps, a plain
transcription of torch.optim's documented algorithms, and convergence on quadratics."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, conf_names
from lossbench.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from lossbench.testing import check_optimizer

OPTIMIZERS = conf_names("optimizer")


def _config(name: str, **overrides) -> dict:
    """The preset's keys (without _target_) with overrides, as a plain dict."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "optimizer" / f"{name}.yaml"))
    cfg.update(overrides)
    return cfg


def _build(name: str, **overrides):
    return instantiate(OmegaConf.create(_config(name, **overrides)))


def _class_name(name: str) -> str:
    return _config(name)["_target_"].rsplit(".", 1)[1]


def _random_problem(seed=0, dtype=np.float64):
    """Two parameters (a matrix and a vector) and a gradient function with varied magnitudes."""
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(3, 4)).astype(dtype), "b": rng.normal(size=4).astype(dtype)}
    return rng, params


# ---- reference: torch.optim's documented algorithms, transcribed one parameter at a time ----
# (https://pytorch.org/docs/stable/optim.html, the "Algorithm" box of each class; defaults as torch)

TORCH_DEFAULTS = {
    "SGD": dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    "RMSprop": dict(alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0),
    "Adam": dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    "AdamW": dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
    "Adagrad": dict(lr_decay=0.0, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0),
}


def reference_step(kind: str, hp: dict, lr: float, t: int, p, g, state: dict):
    """One torch-algorithm step for one parameter; returns the new p (state updated in place)."""
    hp = {**TORCH_DEFAULTS[kind], **hp}
    wd = hp["weight_decay"]
    if kind == "SGD":
        if wd != 0:
            g = g + wd * p
        if hp["momentum"] != 0:
            if t == 1:
                state["buf"] = g.copy()
            else:
                state["buf"] = hp["momentum"] * state["buf"] + (1 - hp["dampening"]) * g
            if hp["nesterov"]:
                g = g + hp["momentum"] * state["buf"]
            else:
                g = state["buf"]
        return p - lr * g
    if kind == "RMSprop":
        if wd != 0:
            g = g + wd * p
        alpha = hp["alpha"]
        state["v"] = alpha * state.get("v", 0 * p) + (1 - alpha) * g * g
        if hp["centered"]:
            state["g_ave"] = alpha * state.get("g_ave", 0 * p) + (1 - alpha) * g
            avg = np.sqrt(state["v"] - state["g_ave"] ** 2) + hp["eps"]
        else:
            avg = np.sqrt(state["v"]) + hp["eps"]
        if hp["momentum"] > 0:
            state["buf"] = hp["momentum"] * state.get("buf", 0 * p) + g / avg
            return p - lr * state["buf"]
        return p - lr * g / avg
    if kind in ("Adam", "AdamW"):
        if kind == "AdamW":
            p = p * (1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        beta1, beta2 = hp["beta1"], hp["beta2"]
        state["m"] = beta1 * state.get("m", 0 * p) + (1 - beta1) * g
        state["v"] = beta2 * state.get("v", 0 * p) + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        denom = np.sqrt(state["v"]) / math.sqrt(bias_correction2) + hp["eps"]
        return p - step_size * state["m"] / denom
    if kind == "Adagrad":
        clr = lr / (1 + (t - 1) * hp["lr_decay"])
        if wd != 0:
            g = g + wd * p
        state["sum"] = state.get("sum", 0 * p + hp["initial_accumulator_value"]) + g * g
        return p - clr * g / (np.sqrt(state["sum"]) + hp["eps"])
    raise AssertionError(f"no reference for {kind}")


# ---- first step by hand ------------------------------------------------------------------------


def _first_step_by_hand(kind: str, hp: dict, p: float, g: float) -> float:
    """The first update worked out on paper for a scalar parameter (state starts at zero)."""
    wd = hp.get("weight_decay", 0.0)
    if kind == "SGD":
        # buf_1 = g; heavy ball steps by g, Nesterov by g + momentum * g
        g = g + wd * p
        factor = 1 + hp.get("momentum", 0.0) if hp.get("nesterov", False) else 1.0
        return p - hp["lr"] * factor * g
    if kind == "RMSprop":
        # v_1 = (1 - alpha) g^2; centered: gbar_1 = (1 - alpha) g, v - gbar^2 = alpha (1 - alpha) g^2;
        # momentum: buf_1 = g / denom, the same first step
        g = g + wd * p
        alpha = hp["alpha"]
        variance = alpha * (1 - alpha) * g * g if hp.get("centered", False) else (1 - alpha) * g * g
        return p - hp["lr"] * g / (math.sqrt(variance) + hp["eps"])
    if kind == "Adam":
        # m_1 / bc1 = g and v_1 / bc2 = g^2: the first step is lr * g / (|g| + eps)
        g = g + wd * p
        return p - hp["lr"] * g / (abs(g) + hp["eps"])
    if kind == "AdamW":
        return p * (1 - hp["lr"] * wd) - hp["lr"] * g / (abs(g) + hp["eps"])
    if kind == "Adagrad":
        g = g + wd * p
        accumulated = hp.get("initial_accumulator_value", 0.0) + g * g
        return p - hp["lr"] * g / (math.sqrt(accumulated) + hp["eps"])
    raise AssertionError(f"no hand-computed first step for {kind}")


@pytest.mark.parametrize("weight_decay", [None, 0.1], ids=["preset", "weight_decay=0.1"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_first_step_by_hand(name, weight_decay):
    overrides = {} if weight_decay is None else {"weight_decay": weight_decay}
    hp = _config(name, **overrides)
    opt = _build(name, **overrides)
    p0 = np.array([0.5, -2.0, 3.0, 0.0])
    g0 = np.array([0.2, 1.5, -4.0, 0.3])
    params, grads = {"p": p0.copy()}, {"p": g0.copy()}
    opt.step(params, grads)
    expected = [_first_step_by_hand(_class_name(name), hp, p, g) for p, g in zip(p0, g0)]
    np.testing.assert_allclose(params["p"], expected, rtol=1e-13, atol=1e-15)


# ---- several steps against the transcribed torch algorithm ----------------------------------------

EXTRA_VARIANTS = {
    "sgd-momentum-weight_decay": ("minibatch", dict(momentum=0.5, weight_decay=0.05)),
    "nesterov-weight_decay": ("nesterov", dict(weight_decay=0.05)),
    "rmsprop-centered-momentum": ("rmsprop", dict(centered=True, momentum=0.9, weight_decay=0.05)),
    "rmsprop-momentum": ("rmsprop", dict(momentum=0.5)),
    "adam-weight_decay": ("adam", dict(weight_decay=0.1, beta1=0.5, beta2=0.9)),
    "adamw-large-decay": ("adamw", dict(weight_decay=0.5)),
    "adagrad-decay-accumulator": ("adagrad", dict(lr_decay=0.1, initial_accumulator_value=0.3,
                                                  weight_decay=0.05)),
}
CASES = {**{name: (name, {}) for name in OPTIMIZERS}, **EXTRA_VARIANTS}


@pytest.mark.parametrize("case", list(CASES))
def test_steps_equal_torch_algorithm(case):
    name, overrides = CASES[case]
    hp = _config(name, **overrides)
    kind = _class_name(name)
    opt = _build(name, **overrides)
    rng, params = _random_problem()
    reference = {key: value.copy() for key, value in params.items()}
    reference_state = {key: {} for key in params}
    lr = hp["lr"]
    for t in range(1, 9):
        if t == 5:  # the trainer rewrites lr for schedules: the next steps must use the new value
            lr = opt.lr = hp["lr"] / 3
        # gradients of mixed signs and scales, one exactly zero entry
        grads = {key: rng.normal(size=value.shape) * 10.0 ** rng.integers(-3, 2) for key, value
                 in params.items()}
        grads["b"][0] = 0.0
        opt.step(params, grads)
        for key in params:
            reference[key] = reference_step(kind, hp, lr, t, reference[key], grads[key],
                                            reference_state[key])
            np.testing.assert_allclose(params[key], reference[key], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{case}: parameter {key} at step {t}")
    assert opt.step_count == 8


# ---- convergence on quadratics ----------------------------------------------------------------


@pytest.mark.parametrize("conditioning", ["well-conditioned", "ill-conditioned"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_converges_on_a_quadratic(name, conditioning):
    """f(p) = 1/2 sum a (p - c)^2, curvatures a in [0.5, 2] or [1, 100] (condition number 100).

    The preset's hyperparameters (weight decay off: it moves the minimum), lr divided by 10 after
    each third of the steps (constant-lr RMSprop/Adam hover at a distance ~ lr). Plain gradient
    descent needs lr < 2 / max(a), so SGD presets get lr <= 1 / max(a) on the ill-conditioned one.
    """
    rng = np.random.default_rng(1)
    if conditioning == "well-conditioned":
        curvature = {"W": np.linspace(0.5, 2.0, 6).reshape(3, 2), "b": np.array([1.0, 1.5])}
    else:
        curvature = {"W": np.logspace(0, 2, 6).reshape(3, 2), "b": np.array([3.0, 30.0])}
    center = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    params = {key: center[key] + 1.0 for key in center}

    def f():
        return sum(0.5 * np.sum(curvature[key] * (params[key] - center[key]) ** 2) for key in params)

    opt = _build(name, weight_decay=0.0)
    if isinstance(opt, SGD):
        opt.lr = min(opt.lr, 1.0 / max(a.max() for a in curvature.values()))
    f0, base_lr = f(), opt.lr
    for phase in range(3):
        opt.lr = base_lr / 10**phase
        for _ in range(500):
            opt.step(params, {key: curvature[key] * (params[key] - center[key]) for key in params})
    assert f() < 1e-3 * f0, f"{name}: f went from {f0:.3g} to {f():.3g}"


# ---- mechanics: in place, dtype, state ------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_updates_in_place_and_leaves_grads_alone(name):
    opt = _build(name, weight_decay=0.1)
    rng, params = _random_problem()
    objects = {key: value for key, value in params.items()}
    before = {key: value.copy() for key, value in params.items()}
    grads = {key: rng.normal(size=value.shape) for key, value in params.items()}
    grads_before = {key: value.copy() for key, value in grads.items()}
    for _ in range(3):
        opt.step(params, grads)
    for key in params:
        assert params[key] is objects[key], "step must update the arrays, not replace them"
        assert not np.array_equal(params[key], before[key])
        np.testing.assert_array_equal(grads[key], grads_before[key])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32(name):
    opt = _build(name, weight_decay=0.1)
    rng, params = _random_problem(dtype=np.float32)
    reference_rng, reference_params = _random_problem(dtype=np.float64)
    reference = _build(name, weight_decay=0.1)
    for _ in range(4):
        grads = {key: rng.normal(size=value.shape).astype(np.float32) for key, value in params.items()}
        opt.step(params, grads)
        reference.step(reference_params, {key: value.astype(np.float64) for key, value in grads.items()})
    for key in params:
        assert params[key].dtype == np.float32
        for buffer in opt.state[key].values():
            assert buffer.dtype == np.float32 and buffer.shape == params[key].shape
        # same rule, float32 rounding only
        np.testing.assert_allclose(params[key], reference_params[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_is_per_parameter_and_created_on_the_first_step(name):
    opt = _build(name)
    assert opt.state == {} and opt.step_count == 0
    _, params = _random_problem()
    opt.step(params, {key: np.ones_like(value) for key, value in params.items()})
    assert set(opt.state) == set(params)
    for key in params:
        for buffer in opt.state[key].values():
            assert buffer.shape == params[key].shape
    with pytest.raises(ValueError, match="keys"):
        opt.step({"W": params["W"]}, {"W": np.ones_like(params["W"])})


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_copies_of_a_stepped_optimizer_continue_independently(name):
    """deepcopy / pickle keep the state (views into flat buffers must be rebuilt, not copied)."""
    opt = _build(name, weight_decay=0.01)
    rng, params = _random_problem()
    grads = [{key: rng.normal(size=value.shape) for key, value in params.items()} for _ in range(4)]
    opt.step(params, grads[0])
    opt.step(params, grads[1])
    copies = [copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))]
    results = []
    for optimizer in [opt, *copies]:
        moved = {key: value.copy() for key, value in params.items()}
        for grad in grads[2:]:
            optimizer.step(moved, grad)
        results.append(moved)
        for key in params:  # state views still alias the buffers the rule updates
            for buffer_name, buffer in optimizer.state[key].items():
                assert np.shares_memory(buffer, optimizer._flat_state[buffer_name])
    for moved in results[1:]:
        for key in params:
            np.testing.assert_array_equal(moved[key], results[0][key])


def test_state_buffers_are_torch_named():
    """The buffers a torch user would look for, under torch's names."""
    _, params = _random_problem()
    expectations = [
        (SGD(lr=0.1), set()),
        (SGD(lr=0.1, momentum=0.9), {"momentum_buffer"}),
        (RMSprop(centered=True, momentum=0.5), {"square_avg", "grad_avg", "momentum_buffer"}),
        (Adam(), {"exp_avg", "exp_avg_sq"}),
        (AdamW(), {"exp_avg", "exp_avg_sq"}),
        (Adagrad(), {"sum"}),
    ]
    for opt, names in expectations:
        opt.step(params, {key: np.ones_like(value) for key, value in params.items()})
        assert set(opt.state["W"]) == names, opt
    # Adam's first moment after one step with g = 1: (1 - beta1) * 1
    np.testing.assert_allclose(expectations[3][0].state["W"]["exp_avg"], 0.1)


def test_mixed_dtypes_are_refused():
    params = {"W": np.zeros((2, 2)), "b": np.zeros(2, dtype=np.float32)}
    with pytest.raises(ValueError, match="dtype"):
        Adam().step(params, {key: np.ones_like(value) for key, value in params.items()})


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_preset_passes_the_users_contract_check(name):
    """lossbench.testing.check_optimizer: what a user's own optimizer must satisfy, ours too."""
    report = check_optimizer(_build(name))
    assert report.quadratic_end < report.quadratic_start


# ---- presets and validation ------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_preset_is_documented(name):
    """A top comment says what it is; every key has lr/weight_decay/batch_size and a comment."""
    lines = (CONF / "optimizer" / f"{name}.yaml").read_text().splitlines()
    assert lines[0].startswith("# ")
    keys = set()
    for line in lines[1:]:
        if line.strip() and not line.startswith("#"):
            key = line.split(":", 1)[0]
            keys.add(key)
            assert key == "_target_" or "#" in line, f"{name}.yaml: key {key!r} has no comment"
    assert {"lr", "weight_decay", "batch_size"} <= keys
    opt = _build(name)
    assert opt.lr > 0 and (opt.batch_size is None or opt.batch_size >= 1)


def test_preset_batch_sizes():
    assert _build("gd").batch_size is None
    assert _build("sgd").batch_size == 1
    assert _build("nesterov").nesterov and _build("momentum").momentum == 0.9


BAD_VALUES = [
    (SGD, "lr", 0.0), (SGD, "lr", -0.1), (SGD, "lr", float("nan")), (SGD, "lr", float("inf")),
    (SGD, "lr", "0.1"), (SGD, "momentum", 1.0), (SGD, "momentum", -0.5),
    (SGD, "weight_decay", -1e-4), (SGD, "batch_size", 0), (SGD, "batch_size", 2.5),
    (SGD, "batch_size", True), (SGD, "batch_size", "32"), (SGD, "nesterov", "yes"),
    (RMSprop, "alpha", 1.0), (RMSprop, "eps", 0.0), (RMSprop, "momentum", 1.5),
    (RMSprop, "centered", 1), (Adam, "beta1", 1.0), (Adam, "beta2", -0.1), (Adam, "eps", -1e-8),
    (AdamW, "weight_decay", -0.01), (Adagrad, "lr_decay", -1.0),
    (Adagrad, "initial_accumulator_value", -0.1), (Adagrad, "eps", 0.0),
]


@pytest.mark.parametrize("cls, key, value", BAD_VALUES,
                         ids=[f"{cls.__name__}-{key}={value!r}" for cls, key, value in BAD_VALUES])
def test_bad_values_raise_naming_key_and_value(cls, key, value):
    kwargs = {"lr": 0.1, key: value}
    with pytest.raises(ValueError) as error:
        cls(**kwargs)
    message = str(error.value)
    assert key in message and repr(value) in message


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov.*momentum"):
        SGD(lr=0.1, nesterov=True)


def test_centered_rmsprop_stays_finite_when_the_variance_rounds_below_zero():
    """With a constant gradient, v - gbar**2 -> 0 and rounds to tiny negatives (here for g = 3.7):
    torch's sqrt would give nan; the clipped variance gives the step lr * g / eps, finite."""
    opt = RMSprop(lr=1e-3, alpha=0.9, centered=True)
    params = {"p": np.zeros(3)}
    for _ in range(300):
        opt.step(params, {"p": np.full(3, 3.7)})
    assert np.isfinite(params["p"]).all()
