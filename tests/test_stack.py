"""Stacked runs (issue 13): a pack trained in one pass equals each run trained alone, bit for bit.

Every built-in loss, optimizer, schedule and model is trained in packs of runs that differ in the
seed (so in the data split, the initial weights and the shuffling) and in scalar hyperparameters,
once stacked (``lossbench.stack.train_stack``) and once run by run (``Built.train``), from fresh
builds of the same configs; every record column but ``time_s``, every TrainResult field but the
times and ``stack_size``, the final parameters and the optimizer state must be equal
(``np.array_equal``, NaN equal to NaN). One BLAS thread throughout (threadpoolctl), as runs train.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from threadpoolctl import threadpool_limits

from conftest import conf_names
from lossbench.build import build
from lossbench.losses import CrossEntropy
from lossbench.stack import stack_key, train_stack

RESULT_FIELDS = ("status", "message", "stop_epoch", "resumed_from_epoch", "collapsed_to_chance", "collapse_message")


@pytest.fixture(scope="module")
def base_cfg():
    """base_cfg(*overrides) -> a composed config (plain DictConfig), cached per override list."""
    GlobalHydra.instance().clear()
    cache = {}
    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        def _compose(*overrides):
            if overrides not in cache:
                cfg = compose(config_name="config", overrides=["progress=none", *overrides], return_hydra_config=True)
                choices = dict(cfg.hydra.runtime.choices)
                plain = OmegaConf.to_container(cfg, resolve=False)
                plain.pop("hydra")
                cache[overrides] = (OmegaConf.create(plain), choices)
            return cache[overrides]

        yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1):
        yield


def _builds(base_cfg, overrides, variations):
    """One Built per variation (a dict of dotted key -> value) of the composed config."""
    cfg, choices = base_cfg(*overrides)
    builts = []
    for variation in variations:
        run_cfg = cfg.copy()
        for key, value in variation.items():
            OmegaConf.update(run_cfg, key, value, merge=False)
        builts.append(build(run_cfg, choices))
    return builts


def _equal(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_identical(alone, stacked, alone_builts, stacked_builts):
    for run, (a, s, built_a, built_s) in enumerate(zip(alone, stacked, alone_builts, stacked_builts)):
        for name in RESULT_FIELDS:
            assert getattr(a, name) == getattr(s, name), (run, name, getattr(a, name), getattr(s, name))
        assert len(a.records) == len(s.records), (run, len(a.records), len(s.records))
        for ra, rs in zip(a.records, s.records):
            assert list(ra) == list(rs), run
            for key in ra:
                if key != "time_s":
                    assert _equal(ra[key], rs[key]), (run, ra["epoch"], key, ra[key], rs[key])
        assert list(built_a.model.params) == list(built_s.model.params)
        for name, value in built_a.model.params.items():
            assert value.dtype == built_s.model.params[name].dtype
            assert np.array_equal(value, built_s.model.params[name], equal_nan=True), (run, name)
            if np.isfinite(value).all():  # bit for bit: a -0.0 where alone has 0.0 would differ here
                bits = f"u{value.itemsize}"
                assert np.array_equal(value.view(bits), built_s.model.params[name].view(bits)), (run, name)
        state_a, state_s = built_a.optimizer.state_dict(), built_s.optimizer.state_dict()
        assert list(state_a) == list(state_s)
        for key, value in state_a.items():
            assert np.array_equal(value, state_s[key], equal_nan=value.dtype.kind == "f"), (run, key)


def check_pack(base_cfg, overrides, variations, expect_stacked=True, **kwargs):
    """Train the variations alone and stacked from fresh builds; assert identical; return both results."""
    alone_builts = _builds(base_cfg, overrides, variations)
    alone = [built.train(**kwargs) for built in alone_builts]
    stacked_builts = _builds(base_cfg, overrides, variations)
    keys = {stack_key(built) for built in stacked_builts}
    if expect_stacked:
        assert len(keys) == 1 and None not in keys
    stacked = train_stack(stacked_builts, **({"eval_epochs": kwargs["eval_epochs"]} if "eval_epochs" in kwargs else {}))
    if expect_stacked:
        assert {result.stack_size for result in stacked} == {len(variations)}
    assert_identical(alone, stacked, alone_builts, stacked_builts)
    return alone, stacked


SEEDS_AND_LRS = [{"seed": 0}, {"seed": 1}, {"seed": 0, "optimizer.lr": 0.03}]
EPOCHS = "trainer.epochs=4"


def test_runs_of_other_seeds_are_evaluated_in_one_gathered_call(base_cfg):
    """The identity tests' packs (seeds 0 and 1) take the gathered evaluation: runs of one seed share
    their broadcast array, runs of other seeds of one split shape are gathered into one call."""
    from lossbench.stack.engine import _Pack
    from lossbench.stack.evaluate import _eval_calls

    builts = _builds(base_cfg, ("dataset=iris", "model=mlp", "loss=ce", EPOCHS), SEEDS_AND_LRS)
    pack = _Pack(builts, [None] * 3, [None] * 3, [None] * 3, [None] * 3, 1e9)
    for name in pack.data.names:
        calls = _eval_calls(pack, name, [0, 1, 2])
        assert [(slots, gathered) for slots, _, _, gathered in calls] == [([0, 2, 1], True)]
        X, y = calls[0][1], calls[0][2]
        for row, run in enumerate([0, 2, 1]):
            X_run, y_run = pack.data.splits[run][name]
            assert np.array_equal(X[row], X_run) and np.array_equal(y[row], y_run)
    alone = _builds(base_cfg, ("dataset=iris", "model=mlp", "loss=ce", EPOCHS), SEEDS_AND_LRS[:1] * 2)
    shared = _Pack(alone, [None] * 2, [None] * 2, [None] * 2, [None] * 2, 1e9)
    assert [(slots, gathered) for slots, _, _, gathered in _eval_calls(shared, "test", [0, 1])] == [([0, 1], False)]


@pytest.mark.parametrize("loss", conf_names("loss"))
def test_every_loss_stacks_identically_on_three_classes(base_cfg, loss):
    check_pack(base_cfg, ("dataset=iris", "model=softmax", f"loss={loss}", "optimizer=minibatch", EPOCHS),
               SEEDS_AND_LRS)


@pytest.mark.parametrize("loss", ["bce", "focal", "hinge", "l2"])
def test_one_output_losses_stack_identically(base_cfg, loss):
    check_pack(base_cfg, ("dataset=breast_cancer", "model=logistic", f"loss={loss}", "optimizer=minibatch",
                          "trainer.epochs=3"), SEEDS_AND_LRS)


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_regression_losses_stack_identically(base_cfg, loss):
    check_pack(base_cfg, ("dataset=diabetes", "model=linear", f"loss={loss}", "optimizer=minibatch", EPOCHS),
               SEEDS_AND_LRS)


@pytest.mark.parametrize("optimizer", conf_names("optimizer"))
def test_every_optimizer_stacks_identically(base_cfg, optimizer):
    epochs = "trainer.epochs=2" if optimizer == "sgd" else EPOCHS  # sgd: batch size 1
    check_pack(base_cfg, ("dataset=iris", "model=mlp", "model.hidden_sizes=[8]", "loss=ce", f"optimizer={optimizer}",
                          epochs), SEEDS_AND_LRS)


@pytest.mark.parametrize("schedule", conf_names("schedule"))
def test_every_schedule_stacks_identically(base_cfg, schedule):
    check_pack(base_cfg, ("dataset=iris", "model=softmax", "loss=ce", "optimizer=adam", f"schedule={schedule}",
                          "schedule.step_size=2" if schedule == "step" else "schedule=" + schedule, "trainer.epochs=5"),
               SEEDS_AND_LRS)


@pytest.mark.parametrize("model, dataset", [("linear", "diabetes"), ("logistic", "breast_cancer"),
                                            ("softmax", "wine"), ("mlp", "wine")])
def test_every_model_stacks_identically(base_cfg, model, dataset):
    loss = {"linear": "l2", "logistic": "bce"}.get(model, "ce")
    check_pack(base_cfg, (f"dataset={dataset}", f"model={model}", f"loss={loss}", "optimizer=adam", EPOCHS),
               SEEDS_AND_LRS)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_mlp_activations_and_two_hidden_layers_stack_identically(base_cfg, activation):
    check_pack(base_cfg, ("dataset=digits", "model=mlp", "model.hidden_sizes=[16,8]", f"model.activation={activation}",
                          "loss=ce", "optimizer=rmsprop", "trainer.epochs=2"), SEEDS_AND_LRS)


@pytest.mark.parametrize("model, dataset, dtype", [("softmax", "iris", "float64"),
                                                   ("logistic", "breast_cancer", "float64"),
                                                   ("softmax", "iris", "float32")])
def test_batch_size_one_stacks_identically(base_cfg, model, dataset, dtype):
    # batch 1: matmul's gemv and the outer product of the weight gradient (einsum) per run
    check_pack(base_cfg, (f"dataset={dataset}", f"model={model}", f"model.dtype={dtype}",
                          "loss=bce" if model == "logistic" else "loss=ce", "optimizer=sgd", "trainer.epochs=1"),
               SEEDS_AND_LRS)


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop", "momentum", "adagrad"])
def test_float32_stacks_identically(base_cfg, optimizer):
    # float32: a Python-float hyperparameter is rounded to float32 where it meets an array, so must the stack's
    check_pack(base_cfg, ("dataset=digits", "model=mlp", "model.hidden_sizes=[16]", "model.dtype=float32", "loss=ce",
                          f"optimizer={optimizer}", "trainer.epochs=2"),
               [{"seed": 0, "trainer.grad_clip": 0.5, "optimizer.weight_decay": 0.01},
                {"seed": 1, "optimizer.weight_decay": 0.02},
                {"seed": 0, "optimizer.lr": 0.03, "optimizer.weight_decay": 0.1}])


@pytest.mark.parametrize("loss, key, values", [
    ("focal", "loss.gamma", [0.0, 2.0, 5.0]),
    ("huber", "loss.delta", [0.1, 1.0, 3.0]),
    ("ce", "loss.label_smoothing", [0.0, 0.1, 0.0]),  # two code paths (labels / smoothed targets) in one pack
])
def test_loss_hyperparameters_vary_inside_a_pack(base_cfg, loss, key, values):
    check_pack(base_cfg, ("dataset=iris", "model=softmax", f"loss={loss}", "optimizer=minibatch", EPOCHS),
               [{"seed": i % 2, key: value} for i, value in enumerate(values)])


@pytest.mark.parametrize("optimizer, key, values", [
    ("adam", "optimizer.beta1", [0.9, 0.5, 0.0]),
    ("adam", "optimizer.beta2", [0.999, 0.9, 0.99]),
    ("rmsprop", "optimizer.alpha", [0.99, 0.5, 0.9]),
    ("adagrad", "optimizer.lr_decay", [0.0, 0.1, 1.0]),
    ("momentum", "optimizer.momentum", [0.9, 0.5, 0.99]),
    ("adamw", "optimizer.weight_decay", [0.01, 0.1, 1.0]),
    ("minibatch", "optimizer.weight_decay", [0.01, 0.1, 1.0]),
    ("minibatch", "trainer.grad_clip", [0.0, 0.05, 1.0]),
])
def test_optimizer_and_trainer_scalars_vary_inside_a_pack(base_cfg, optimizer, key, values):
    check_pack(base_cfg, ("dataset=iris", "model=mlp", "model.hidden_sizes=[8]", "loss=ce", f"optimizer={optimizer}",
                          EPOCHS), [{"seed": i % 2, key: value} for i, value in enumerate(values)])


def test_a_diverging_run_leaves_the_pack_and_the_others_go_on(base_cfg):
    # lr 1000 on hinge: the training loss passes 3 x its initial value; lr 1000 on an MLP with l2_logits
    # overflows to a non-finite batch loss; the other runs complete
    variations = [{"seed": 0}, {"seed": 1, "optimizer.lr": 1000.0}, {"seed": 2}, {"seed": 3, "optimizer.lr": 300.0}]
    alone, stacked = check_pack(base_cfg, ("dataset=iris", "model=mlp", "model.hidden_sizes=[8]", "loss=l2_logits",
                                           "optimizer=minibatch", "trainer.divergence_factor=3", "trainer.epochs=6"),
                                variations)
    assert [result.status for result in stacked] == ["completed", "diverged", "completed", "diverged"]
    assert len(stacked[1].records) < len(stacked[0].records)


def test_a_non_finite_batch_loss_ends_only_that_run(base_cfg):
    variations = [{"seed": 0}, {"seed": 1, "optimizer.lr": 1000.0}, {"seed": 2, "optimizer.lr": 0.05}]
    alone, stacked = check_pack(base_cfg, ("dataset=digits", "model=mlp", "model.hidden_sizes=[16]",
                                           "loss=l2_logits", "optimizer=minibatch", "trainer.divergence_factor=0",
                                           "trainer.epochs=3"), variations)
    assert "batch loss" in (stacked[1].message or "") or "non-finite" in (stacked[1].message or "")
    assert stacked[0].status == stacked[2].status == "completed"


def test_sparse_evaluation_stacks_identically(base_cfg):
    check_pack(base_cfg, ("dataset=iris", "model=softmax", "loss=ce", "optimizer=minibatch", "trainer.epochs=9"),
               SEEDS_AND_LRS, eval_epochs=[1, 3, 7])


def test_full_batch_stacks_identically(base_cfg):
    check_pack(base_cfg, ("dataset=breast_cancer", "model=logistic", "loss=bce", "optimizer=gd", "trainer.epochs=5"),
               SEEDS_AND_LRS)


class Interrupt(Exception):
    """Stands in for a kill of the pack's job."""


@pytest.mark.parametrize("lose_one", [False, True])
def test_a_killed_pack_resumes_each_run_from_its_own_last_epoch(base_cfg, tmp_path, lose_one):
    """Killed after epoch 3 (checkpoint interval 0: every epoch saved), resumed: equal to uninterrupted runs.

    ``lose_one``: one run's checkpoint is deleted, so it starts from epoch 0 while the others resume
    from epoch 2 and join the stack when it gets there.
    """
    overrides = ("dataset=iris", "model=mlp", "model.hidden_sizes=[8]", "loss=ce", "optimizer=adam", "trainer.epochs=6")
    variations = [{"seed": 0}, {"seed": 1}, {"seed": 0, "optimizer.lr": 0.03}]
    alone_builts = _builds(base_cfg, overrides, variations)
    alone = [built.train() for built in alone_builts]
    folders = [tmp_path / f"run{i}" for i in range(len(variations))]
    for folder in folders:
        folder.mkdir()

    def killer(epoch):
        def on_epoch(record):
            if record["epoch"] == epoch:
                raise Interrupt
        return on_epoch

    first = _builds(base_cfg, overrides, variations)
    with pytest.raises(Interrupt):
        train_stack(first, on_epochs=[None, killer(3), None], checkpoints=folders,
                    config_hashes=["h"] * 3, checkpoint_interval_s=0.0)
    assert all((folder / "checkpoint.json").exists() for folder in folders)
    if lose_one:
        (folders[2] / "checkpoint.json").unlink()
    seen = [[] for _ in variations]
    resumed_builts = _builds(base_cfg, overrides, variations)
    resumed = train_stack(resumed_builts, on_epochs=[lst.append for lst in seen], checkpoints=folders,
                          config_hashes=["h"] * 3, checkpoint_interval_s=0.0)
    expected_start = [2, 2, 0 if lose_one else 2]
    assert [result.resumed_from_epoch for result in resumed] == expected_start
    assert [[record["epoch"] for record in lst][0] for lst in seen] == [start + 1 if start else 0
                                                                        for start in expected_start]
    for result in alone:
        result.resumed_from_epoch = 0
    for result, start in zip(resumed, expected_start):
        result.resumed_from_epoch = 0  # the only field that says it was resumed
    assert_identical(alone, resumed, alone_builts, resumed_builts)


class PlainCE(CrossEntropy):
    """A user's subclass that does not declare ``stackable``: it trains alone."""


def test_undeclared_components_train_alone(base_cfg):
    builts = _builds(base_cfg, ("dataset=iris", "model=softmax", "loss=ce", "optimizer=adam", EPOCHS), SEEDS_AND_LRS)
    assert stack_key(builts[0]) is not None
    builts[0].loss = PlainCE()
    assert stack_key(builts[0]) is None
    results = train_stack(builts)
    assert [result.stack_size for result in results] == [1, 2, 2]


def test_the_key_separates_what_cannot_share_a_pass(base_cfg):
    cfg_runs = _builds(base_cfg, ("dataset=iris", "model=mlp", "loss=ce", "optimizer=adam", EPOCHS),
                       [{"seed": 0}, {"model.hidden_sizes": [4]}, {"optimizer.batch_size": 16},
                        {"trainer.epochs": 5}, {"dataset.val_size": 0.3}, {"optimizer.weight_decay": 0.1},
                        {"seed": 5, "optimizer.lr": 0.5, "trainer.grad_clip": 1.0}])
    keys = [stack_key(built) for built in cfg_runs]
    assert len(set(keys[:6])) == 6
    assert keys[6] == keys[0]  # seed, lr and grad_clip may differ


def _all_builtin_components():
    components = []
    for group in ("loss", "optimizer", "model"):
        for name in conf_names(group):
            components.append(pytest.param(group, name, id=f"{group}={name}"))
    return components


@pytest.mark.parametrize("group, name", _all_builtin_components())
def test_check_stacked_passes_for_every_builtin_component(group, name):
    from hydra.utils import instantiate

    from conftest import CONF
    from lossbench.testing import check_stacked

    component = instantiate(OmegaConf.load(CONF / group / f"{name}.yaml"))
    report = check_stacked(component)
    assert report.checks and report.kind == group


class BatchNormalisedCE(CrossEntropy):
    """Declares stackable but is not row-wise: it centres the logits over the batch."""

    stackable = True

    def __call__(self, outputs, targets):
        return super().__call__(outputs - outputs.mean(axis=0), targets)


def test_check_stacked_catches_a_loss_that_is_not_row_wise():
    from lossbench.testing import check_stacked

    with pytest.raises(AssertionError, match="not bit-identical"):
        check_stacked(BatchNormalisedCE())
    with pytest.raises(AssertionError, match="does not declare"):
        check_stacked(PlainCE())


def test_packs_group_jobs_that_differ_only_in_stackable_overrides():
    from lossbench.stack import pack_key, packs

    jobs = [["loss=ce", f"seed={seed}", f"optimizer.lr={lr}"] for seed in range(3) for lr in (0.1, 1.0)]
    jobs += [["loss=l2", "seed=0"], ["loss=ce", "optimizer.batch_size=8", "seed=0"]]
    assert pack_key(jobs[0]) == pack_key(jobs[5]) == ("loss=ce",)
    assert len({pack_key(job) for job in jobs}) == 3
    assert sorted(map(len, packs(jobs, stack_size=16))) == [1, 1, 6]
    assert sorted(map(len, packs(jobs, stack_size=4))) == [1, 1, 3, 3]
    assert packs(jobs, stack_size=1) == [[i] for i in range(len(jobs))]
    assert sorted(map(len, packs(jobs[:6], stack_size=16, n_workers=2))) == [3, 3]
    assert sorted(i for pack in packs(jobs, 4, 2) for i in pack) == list(range(len(jobs)))
