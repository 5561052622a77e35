"""Every _target_ names a class with its component's interface, checked before anything is called; every range enforced."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from lossbench.build import ConfigError, build, check_target
from lossbench.data import Blobs, Circles, Moons, SyntheticClassification, SyntheticRegression, Bundled
from lossbench.losses import Focal, Huber
from lossbench.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from lossbench.schedules import Cosine, InverseTime, Step

# (group, _target_, fragments of the message)
REFUSED_TARGETS = [
    ("loss", "builtins.open", ["loss._target_=builtins.open is not a loss class: it is a builtin function",
                               "loss(outputs, targets)"]),
    ("loss", "pandas.read_pickle", ["loss._target_=pandas.read_pickle is not a loss class: it is a function"]),
    ("loss", "numpy.load", ["loss._target_=numpy.load is not a loss class: it is a function"]),
    ("loss", "os", ["loss._target_=os is not a loss class: it is a module"]),
    ("loss", "collections.OrderedDict", ["is not a loss class: it has no __call__(outputs, targets)"]),
    ("loss", "abc.ABCMeta", ["loss._target_=abc.ABCMeta is not a loss class"]),
    ("loss", "subprocess.Popen", ["loss._target_=subprocess.Popen is not a loss class: it has no __call__"]),
    ("loss", "no_such_module.Loss", ["loss._target_=no_such_module.Loss cannot be imported", "no module"]),
    ("loss", "lossbench.losses.Nope", ["cannot be imported: lossbench.losses has no attribute 'Nope'"]),
    ("loss", "lossbench.losses.Cross-Entropy", ["cannot be imported: it is not a dotted Python path"]),
    ("model", "pandas.read_pickle", ["model._target_=pandas.read_pickle is not a model class: it is a function"]),
    ("model", "lossbench.losses.CrossEntropy", ["is not a model class: it has no output_size(task, n_targets), "
                                                "build(n_inputs, n_outputs, rng), forward(X), backward(cache, dlogits)"]),
    ("optimizer", "numpy.load", ["optimizer._target_=numpy.load is not an optimizer class: it is a function"]),
    ("optimizer", "lossbench.losses.CrossEntropy", ["is not an optimizer class: it has no step(params, grads)"]),
    ("schedule", "builtins.open", ["schedule._target_=builtins.open is not a schedule class"]),
    ("schedule", "lossbench.losses.CrossEntropy", ["it has no __call__(epoch, base_lr, epochs)"]),
    ("dataset", "numpy.load", ["dataset._target_=numpy.load is not a data set class: it is a function"]),
    ("dataset", "lossbench.models.MLP", ["is not a data set class: it has no load(rng)"]),
]


@pytest.mark.parametrize("group, target, fragments", REFUSED_TARGETS,
                         ids=[f"{group}-{target}" for group, target, _ in REFUSED_TARGETS])
def test_a_target_that_is_not_a_component_class_is_refused_before_anything_is_called(
        compose_cfg, group, target, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # builtins.open would create files here, if it were ever called
    cfg, choices = compose_cfg(f"{group}._target_={target}")
    with pytest.raises(ConfigError) as info:
        build(cfg, choices=choices)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert len(message) < 300 and not list(tmp_path.iterdir())


def test_a_nested_target_is_refused_and_never_called(compose_cfg, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    cfg, choices = compose_cfg(f"+loss.file={{_target_:builtins.open,file:{victim},mode:w}}")
    with pytest.raises(ConfigError, match=r"loss.file._target_ is not allowed: a loss takes plain values"):
        build(cfg, choices=choices)
    assert victim.read_text() == "keep me"
    cfg, choices = compose_cfg("+optimizer._partial_=true")
    with pytest.raises(ConfigError, match=r"optimizer._partial_ is not allowed"):
        build(cfg, choices=choices)


@pytest.mark.parametrize("override, fragment", [
    ("loss._target_={a:1}", "loss._target_ must be a dotted class path such as lossbench.losses.CrossEntropy, got "
                            "DictConfig"),
    ("~loss._target_", "loss has no _target_: a loss config names its class, e.g. _target_: "
                       "lossbench.losses.CrossEntropy"),
    ("loss._target_=5", "loss._target_ must be a dotted class path"),
])
def test_a_malformed_target_gets_a_clear_message(compose_cfg, override, fragment):
    cfg, choices = compose_cfg(override)
    with pytest.raises(ConfigError) as info:
        build(cfg, choices=choices)
    assert fragment in str(info.value)


def test_a_node_that_is_not_a_mapping_is_refused():
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match=r"model must be a config with a _target_ \(e.g. _target_: lossbench.models"):
        check_target("model", OmegaConf.create([1, 2]))


def test_an_optimizer_instance_without_lr_or_batch_size_is_refused(compose_cfg, tmp_path, monkeypatch):
    module = tmp_path / "my_optim.py"
    module.write_text(textwrap.dedent("""
        class NoLr:
            def __init__(self, **keys):
                pass

            def step(self, params, grads):
                pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg, choices = compose_cfg("optimizer=gd", "optimizer._target_=my_optim.NoLr")
    with pytest.raises(ConfigError, match="its instances have no lr, batch_size"):
        build(cfg, choices=choices)
    sys.modules.pop("my_optim", None)


def test_every_shipped_target_passes(compose_cfg):
    from conftest import CONF
    from omegaconf import OmegaConf

    for group in ("dataset", "model", "loss", "optimizer", "schedule"):
        for path in sorted((CONF / group).glob("*.yaml")):
            assert isinstance(check_target(group, OmegaConf.load(path)), type), path


def test_a_user_loss_class_keeps_working(compose_cfg, tmp_path, monkeypatch):
    """As the README's --config-dir example (tests/test_readme.py runs that one through the CLI)."""
    (tmp_path / "my_squared.py").write_text(textwrap.dedent("""
        class Squared:
            def __call__(self, outputs, targets):
                residual = outputs - targets
                return (residual ** 2).mean(axis=1), 2 * residual / outputs.shape[1]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg, choices = compose_cfg("dataset=diabetes", "model=linear", "loss=l1", "loss._target_=my_squared.Squared",
                               "trainer.epochs=2")
    result = build(cfg, choices=choices).train()
    assert result.status == "completed" and np.isfinite(result.records[-1]["train_loss"])
    sys.modules.pop("my_squared", None)


# ---------------------------------------------------------------------------------------------
# documented ranges, enforced: (factory of key=value, key, just inside, just outside)

RANGES = [
    (Focal, "gamma", 100.0, 100.5),
    (Focal, "gamma", 0.0, -0.1),
    (Huber, "delta", 1e6, 2e6),
    (Huber, "delta", 1e-12, 0.0),
    (lambda **k: SGD(**k), "lr", 1e3, 1001.0),
    (lambda **k: SGD(**k), "lr", 1e-12, 0.0),
    (lambda **k: SGD(**k), "weight_decay", 100.0, 101.0),
    (lambda **k: SGD(**k), "momentum", 0.999, 1.0),
    (lambda **k: Adam(**k), "eps", 0.5, 1.0),
    (lambda **k: Adam(**k), "beta2", 0.9999, 1.0),
    (lambda **k: AdamW(**k), "weight_decay", 100.0, 1e308),
    (lambda **k: RMSprop(**k), "eps", 1e-12, 1.0),
    (lambda **k: RMSprop(**k), "alpha", 0.0, 1.0),
    (lambda **k: Adagrad(**k), "lr_decay", 1e3, 1e4),
    (lambda **k: Adagrad(**k), "initial_accumulator_value", 1e6, 1e7),
    (lambda **k: Adagrad(**k), "eps", 1e-300, 2.0),
    (Step, "step_size", 1_000_000, 1_000_001),
    (Step, "gamma", 1.0, 1.5),
    (Cosine, "min_lr", 1e3, 1e4),
    (InverseTime, "decay", 1e3, 1e308),
    (Moons, "noise", 1e6, 1e308),
    (Circles, "noise", 0.0, -1.0),
    (Blobs, "cluster_std", 1e6, 1e7),
    (SyntheticClassification, "class_sep", 1e6, 1e7),
    (SyntheticRegression, "noise", 1e6, 1e7),
    (lambda **k: Bundled(name="diabetes", **k), "outlier_scale", 1e6, 1e7),
]


@pytest.mark.parametrize("factory, key, inside, outside", RANGES,
                         ids=[f"{getattr(f, '__name__', 'f')}-{key}={outside}" for f, key, _, outside in RANGES])
def test_every_hyperparameter_range_is_enforced(factory, key, inside, outside):
    built = factory(**{key: inside})
    assert getattr(built, key) == inside
    with pytest.raises(ValueError) as info:
        factory(**{key: outside})
    assert key in str(info.value) and len(str(info.value)) < 200


def test_trainer_epochs_has_an_upper_bound(compose_cfg):
    cfg, choices = compose_cfg("trainer.epochs=1000001")
    with pytest.raises(ConfigError, match=r"trainer.epochs=1000001 is not allowed; allowed: an integer in \[1, "):
        build(cfg, choices=choices)


def test_every_yaml_comment_states_the_enforced_upper_bounds():
    from conftest import CONF

    text = {path.stem: path.read_text() for path in (CONF / "optimizer").glob("*.yaml")}
    assert all("in (0, 1000]" in body for body in text.values())
    assert "in [0, 100]" in (CONF / "loss" / "focal.yaml").read_text()
    assert "in (0, 1e6]" in (CONF / "loss" / "huber.yaml").read_text()
    assert np.isfinite(1e6)


@pytest.mark.parametrize("override", ["dataset.name=" + "a" * 100_000, "optimizer.lr=" + "x" * 100_000,
                                      "dataset=csv dataset.target=y dataset.path=" + "p" * 100_000,
                                      "loss._target_=" + "m" * 100_000])
def test_messages_stay_short_for_huge_values(compose_cfg, override):
    from lossbench.build import config_hash

    cfg, choices = compose_cfg(*override.split(" "))
    config_hash(cfg)  # a value too long for a path is no file to fingerprint, not an error
    with pytest.raises(ConfigError) as info:
        build(cfg, choices=choices)
    message = str(info.value)
    assert len(message) < 400 and "\n" not in message
    assert override.split(" ")[-1].split("=")[0].split(".")[-1] in message  # names the key


@pytest.mark.parametrize("factory, fragment", [
    (lambda: Blobs(n_samples=100, centers=10 ** 9), "centers=1000000000: expected an integer from 2 to n_samples = 100"),
    (lambda: SyntheticClassification(n_samples=100, n_classes=10 ** 9, n_informative=10 ** 9, n_redundant=0,
                                     n_features=10 ** 9),
     "expected <= n_samples = 100"),
])
def test_generator_counts_are_bounded_by_the_samples_before_anything_is_allocated(factory, fragment):
    with pytest.raises(ValueError, match=fragment):
        factory()
