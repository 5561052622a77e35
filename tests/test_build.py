"""Validation before training: every value a user can type, and impossible combinations."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import conf_names
from lossbench.build import ConfigError, build, config_hash

# (overrides, fragments the message must contain): the key, the bad value, what is allowed or fits.
BAD_INPUTS = [
    (["seed=-1"], ["seed=-1", "integer >= 0"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", "[1, 1000000]"]),
    (["trainer.epochs=ten"], ["trainer.epochs='ten'"]),
    (["trainer.grad_clip=-1"], ["trainer.grad_clip=-1"]),
    (["trainer.divergence_factor=0.5"], ["trainer.divergence_factor=0.5", "> 1"]),
    (["trainer.evaluate=sometimes"], ["trainer.evaluate='sometimes'", "every | log"]),
    (["progress=fancy"], ["progress='fancy'", "auto"]),
    (["report.figures=maybe"], ["report.figures='maybe'", "true | false"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr", "-0.1"]),
    (["optimizer.lr=0"], ["optimizer.lr", "0"]),
    (["optimizer.lr=fast"], ["optimizer.lr", "fast"]),
    (["optimizer.batch_size=0"], ["optimizer.batch_size", "0"]),
    (["optimizer.weight_decay=-1"], ["optimizer.weight_decay", "-1"]),
    (["optimizer=momentum", "optimizer.momentum=1.5"], ["optimizer.momentum", "1.5"]),
    (["loss.label_smoothing=1.5"], ["loss.label_smoothing", "1.5"]),
    (["loss=huber", "model=linear", "dataset=diabetes", "loss.delta=0"], ["loss.delta", "0"]),
    (["dataset.test_size=1.2"], ["dataset.test_size", "1.2"]),
    (["dataset.val_size=-0.1"], ["dataset.val_size", "-0.1"]),
    (["model=mlp", "model.hidden_sizes=[0]"], ["model.hidden_sizes", "0"]),
    (["model=mlp", "model.hidden_sizes=[]"], ["model.hidden_sizes"]),
    (["model=mlp", "model.activation=swish"], ["model.activation", "swish", "relu"]),
    (["model.dtype=float16"], ["model.dtype", "float16"]),
    (["schedule=step", "schedule.gamma=2"], ["schedule.gamma=2"]),
    # combinations that cannot work: each names what would fit instead
    (["model=logistic"], ["model=logistic", "dataset=iris", "softmax"]),
    (["model=logistic", "dataset=breast_cancer", "loss=ce"], ["loss=ce", "bce"]),
    (["dataset=diabetes"], ["model=softmax", "dataset=diabetes", "linear"]),
    (["dataset=diabetes", "model=linear", "loss=ce"], ["loss=ce", "regression"]),
    # standardised regression targets: a few fall in [0, 1] and could pass for probabilities
    *[(["dataset=diabetes", "model=linear", "loss=bce", f"seed={seed}"], ["loss=bce", "regression"])
      for seed in range(5)],
    (["dataset=diabetes", "model=linear", "+dataset.label_noise=0.1"], ["label_noise", "regression"]),
    (["dataset=csv", "dataset.path=no/such/file.csv", "dataset.target=y"], ["no/such/file.csv"]),
    (["dataset=csv"], ["dataset.path", "dataset.target", "required"]),
    (["optimizer.lr=${oops}"], ["optimizer.lr", "oops"]),
    (["sweep.skip_invalid=maybe"], ["sweep.skip_invalid='maybe'", "true | false"]),
    (["schedule=cosine", "schedule.min_lr=1"], ["schedule.min_lr=1", "optimizer.lr=0.01"]),
    (["dataset=moons", "model=logistic", "loss=bce", "dataset.noise=1e308"], ["noise=1e+308", "[0, 1e+06]"]),
    (["dataset=blobs", "model=mlp", "dataset.n_features=100000000"], ["n_features=100000000", "too large"]),
    (["dataset=moons", "model=logistic", "loss=bce", "dataset.n_samples=1000000000"], ["n_samples", "10,000,000"]),
    (["model=mlp", "model.hidden_sizes=[100000,100000]"], ["model=mlp", "memory"]),
]


@pytest.mark.parametrize("overrides, fragments", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_with_a_message_naming_it(compose_cfg, overrides, fragments):
    cfg, choices = compose_cfg(*overrides)
    with pytest.raises(ConfigError) as info:
        build(cfg, choices=choices)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert len(message) < 400, "messages are short"


@pytest.mark.parametrize("dataset", conf_names("dataset"))
def test_every_shipped_data_set_builds_with_a_model_that_fits(compose_cfg, dataset, tmp_path):
    extra = []
    if dataset == "csv":
        path = tmp_path / "data.csv"
        rng = np.random.default_rng(0)
        rows = ["a,b,label"] + [f"{x:.3f},{y:.3f},{int(x > 0)}" for x, y in rng.normal(size=(40, 2))]
        path.write_text("\n".join(rows) + "\n")
        extra = [f"dataset.path={path}", "dataset.target=label"]
    cfg, choices = compose_cfg(f"dataset={dataset}", "model=mlp", "loss=l2", *extra)
    built = build(cfg, choices=choices)
    assert built.data.X_train.shape[1] == next(iter(built.model.params.values())).shape[0]


def test_float32_model_gets_float32_data(compose_cfg):
    cfg, choices = compose_cfg("model=mlp", "model.dtype=float32")
    built = build(cfg, choices=choices)
    assert built.data.X_train.dtype == np.float32
    assert all(p.dtype == np.float32 for p in built.model.params.values())


def test_config_hash_ignores_display_keys_but_not_results_keys(compose_cfg):
    base, _ = compose_cfg()
    assert config_hash(base) == config_hash(compose_cfg("progress=none", "blas_threads=2")[0])
    assert config_hash(base) != config_hash(compose_cfg("seed=1")[0])
    assert config_hash(base) != config_hash(compose_cfg("optimizer.lr=0.5")[0])


def test_seed_streams_are_independent_of_the_batch_size(compose_cfg):
    a = build(*compose_cfg("optimizer.batch_size=8"))
    b = build(*compose_cfg("optimizer.batch_size=32"))
    np.testing.assert_array_equal(a.data.X_train, b.data.X_train)
    for key in a.model.params:
        np.testing.assert_array_equal(a.model.params[key], b.model.params[key])


def test_config_hash_follows_the_content_of_a_csv_file(compose_cfg, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,label\n1.0,0\n2.0,1\n")
    overrides = ("dataset=csv", f"dataset.path={path}", "dataset.target=label")
    before = config_hash(compose_cfg(*overrides)[0])
    assert before == config_hash(compose_cfg(*overrides)[0])
    path.write_text("a,label\n1.0,1\n2.0,0\n")  # same name, new data: the old runs must not be reused
    assert config_hash(compose_cfg(*overrides)[0]) != before


def test_a_misspelled_option_that_hydra_lets_through_is_refused(compose_cfg):
    """``optional experiment`` composes ``experiment=l2_vs_c`` into the default run without a word."""
    from lossbench.build import ConfigError, build

    cfg, choices = compose_cfg("experiment=l2_vs_c")
    assert choices["experiment"] == "l2_vs_c"
    with pytest.raises(ConfigError, match=r"experiment=l2_vs_c does not exist; available: l2_vs_ce, "):
        build(cfg, choices=choices)


def test_log_evaluation_records_fewer_epochs_and_trains_the_same(compose_cfg):
    """trainer.evaluate=log (the tuning runs of protocol=tune) evaluates epochs 0, 1, 2, 4, ... and the
    last; the training does not depend on it: the recorded epochs and the final parameters equal the
    run that evaluates every epoch."""
    runs = {}
    for mode in ("every", "log"):
        cfg, choices = compose_cfg("trainer.epochs=11", "optimizer=minibatch", f"trainer.evaluate={mode}")
        built = build(cfg, choices=choices)
        runs[mode] = (built, built.train())
    every, log = runs["every"][1], runs["log"][1]
    assert runs["every"][0].eval_epochs is None and runs["log"][0].eval_epochs == [1, 2, 4, 8]
    assert [r["epoch"] for r in log.records] == [0, 1, 2, 4, 8, 11]
    assert [r["epoch"] for r in every.records] == list(range(12))
    by_epoch = {r["epoch"]: r for r in every.records}
    for record in log.records:
        expected = by_epoch[record["epoch"]]
        assert {k: v for k, v in record.items() if k != "time_s"} == \
            {k: v for k, v in expected.items() if k != "time_s"}
    for name, value in runs["every"][0].model.params.items():
        assert np.array_equal(value, runs["log"][0].model.params[name])


@pytest.mark.parametrize("group", ["dataset", "model", "loss", "optimizer", "schedule"])
def test_components_are_built_as_hydras_instantiate_builds_them(compose_cfg, group, tmp_path):
    """build calls a component's class with its node's values (containers as nodes, as Hydra's
    _convert_=none passes them) instead of hydra.utils.instantiate: every shipped option must
    come out with the same attributes, and a constructor's error must read the same."""
    from hydra.utils import instantiate

    from lossbench.build import _instantiate

    (tmp_path / "x.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    for option in conf_names(group):
        extra = [f"dataset.path={tmp_path / 'x.csv'}", "dataset.target=y"] if option == "csv" else []
        cfg, _ = compose_cfg(f"{group}={option}", *extra)
        ours, hydras = _instantiate(group, cfg[group], option), instantiate(cfg[group], _recursive_=False)
        assert type(ours) is type(hydras)
        assert repr(vars(ours)) == repr(vars(hydras)), option
    cfg, _ = compose_cfg("optimizer.lr=-1")
    with pytest.raises(ConfigError, match=r"optimizer=adam: optimizer\.lr"):
        _instantiate("optimizer", cfg.optimizer, "adam")
    cfg, _ = compose_cfg("+optimizer.no_such_key=1")
    with pytest.raises(ConfigError, match="no_such_key"):
        _instantiate("optimizer", cfg.optimizer, "adam")


def test_a_constructor_that_fails_otherwise_is_a_config_error(compose_cfg, tmp_path, monkeypatch):
    """A component whose constructor raises something other than ValueError/TypeError still stops
    the run with a one-line ConfigError, not a traceback (as Hydra's InstantiationException did)."""
    (tmp_path / "broken_optimizer.py").write_text(
        "class Broken:\n"
        "    lr = 0.1\n"
        "    batch_size = None\n"
        "    def __init__(self, **kwargs):\n"
        "        raise RuntimeError('no GPU here')\n"
        "    def step(self, params, grads):\n"
        "        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg, choices = compose_cfg("optimizer._target_=broken_optimizer.Broken")
    with pytest.raises(ConfigError, match="optimizer=adam: cannot build it: no GPU here"):
        build(cfg, choices=choices)
