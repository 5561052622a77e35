"""Checkpoints: a run interrupted after epoch k and started again equals an uninterrupted run, bit for bit.

Also optimizer state as arrays, sparse evaluation for tuning runs, and the collapse-to-chance flag.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, conf_names
from lossbench.checkpoint import CHECKPOINT_JSON, CHECKPOINT_NPZ, remove_checkpoint
from lossbench.losses import L2, BCE, CrossEntropy
from lossbench.models import MLP, Softmax
from lossbench.optim import SGD, Adam
from lossbench.schedules import Constant
from lossbench.train import collapse_message, train

EPOCHS = 5


def _data(task="classification", k=3, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if task == "regression":
        y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(n, 1))
        n_targets = 1
    else:
        y = np.minimum((X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5), k - 1)
        n_targets = k
    return SimpleNamespace(task=task, n_targets=n_targets, X_train=X, y_train=y, X_val=X[:8].copy(),
                           y_val=y[:8].copy(), X_test=None, y_test=None)


def _from_yaml(group, name):
    return instantiate(OmegaConf.load(CONF / group / f"{name}.yaml"))


class Interrupt(Exception):
    """Stands in for a kill: raised when epoch stop + 1 starts, after the checkpoint of epoch stop."""


class InterruptingSchedule:
    """The schedule under test, raising Interrupt when asked for epoch ``stop + 1``."""

    def __init__(self, schedule, stop):
        self.schedule, self.stop = schedule, stop

    def __call__(self, epoch, base_lr, epochs):
        if self.stop is not None and epoch == self.stop + 1:
            raise Interrupt
        return self.schedule(epoch, base_lr, epochs)


def _run(setup, checkpoint=None, stop_after=None, eval_epochs=None):
    """Fresh components from ``setup`` (same seeds every time), trained, optionally interrupted."""
    model, loss, make_optimizer, schedule, data = setup()
    model.build(data.X_train.shape[1], model.output_size(data.task, data.n_targets), np.random.default_rng(0))
    result = train(model, loss, make_optimizer(), InterruptingSchedule(schedule, stop_after), data, epochs=EPOCHS,
                   grad_clip=0.0, divergence_factor=1e3, rng=np.random.default_rng(1), checkpoint=checkpoint,
                   config_hash="abc", eval_epochs=eval_epochs, checkpoint_interval_s=0.0)
    return result, model


def _without_time(records):
    return [{key: value for key, value in record.items() if key != "time_s"} for record in records]


def _assert_resumes_identically(setup, tmp_path, stops=(1, 2, 4), eval_epochs=None):
    reference, reference_model = _run(setup, eval_epochs=eval_epochs)
    assert reference.status == "completed" and reference.resumed_from_epoch == 0
    for stop in stops:
        folder = tmp_path / f"stop{stop}"
        folder.mkdir()
        with pytest.raises(Interrupt):
            _run(setup, checkpoint=folder, stop_after=stop, eval_epochs=eval_epochs)
        assert (folder / CHECKPOINT_NPZ).exists() and (folder / CHECKPOINT_JSON).exists()
        resumed, model = _run(setup, checkpoint=folder, eval_epochs=eval_epochs)
        assert resumed.resumed_from_epoch == stop
        np.testing.assert_equal(_without_time(resumed.records), _without_time(reference.records))
        assert (resumed.status, resumed.stop_epoch, resumed.message) == \
            (reference.status, reference.stop_epoch, reference.message)
        for name, value in reference_model.params.items():
            assert np.array_equal(model.params[name], value), f"{name} differs after resuming at epoch {stop}"
        assert resumed.records[-1]["time_s"] >= resumed.records[stop]["time_s"] if eval_epochs is None else True


@pytest.mark.parametrize("optimizer", conf_names("optimizer"))
def test_every_optimizer_resumes_bit_identically(optimizer, tmp_path):
    def setup():
        return (Softmax(), CrossEntropy(), lambda: _from_yaml("optimizer", optimizer), Constant(),
                _data())
    _assert_resumes_identically(setup, tmp_path)


@pytest.mark.parametrize("schedule", conf_names("schedule"))
def test_every_schedule_resumes_bit_identically(schedule, tmp_path):
    def setup():
        return (Softmax(), L2(), lambda: _from_yaml("optimizer", "momentum"), _from_yaml("schedule", schedule),
                _data())
    _assert_resumes_identically(setup, tmp_path, stops=(2, 3))


@pytest.mark.parametrize("model", conf_names("model"))
def test_every_model_resumes_bit_identically(model, tmp_path):
    task, k, loss = {"linear": ("regression", 1, L2()), "logistic": ("classification", 2, BCE())}.get(
        model, ("classification", 3, CrossEntropy()))

    def setup():
        return (_from_yaml("model", model), loss, lambda: _from_yaml("optimizer", "adam"), Constant(),
                _data(task, k))
    _assert_resumes_identically(setup, tmp_path, stops=(1, 3))


def test_sparse_evaluation_resumes_identically_and_trains_the_same_parameters(tmp_path):
    def setup():
        return MLP(hidden_sizes=[5]), CrossEntropy(), lambda: Adam(lr=0.05, batch_size=8), Constant(), _data()

    full, full_model = _run(setup)
    sparse, sparse_model = _run(setup, eval_epochs={2})
    assert [r["epoch"] for r in sparse.records] == [0, 2, EPOCHS]
    for name in full_model.params:
        assert np.array_equal(full_model.params[name], sparse_model.params[name])
    expected = [r for r in _without_time(full.records) if r["epoch"] in (0, 2, EPOCHS)]
    np.testing.assert_equal(_without_time(sparse.records), expected)
    # interrupted between evaluations: the checkpoint of epoch 3 holds the records of 0 and 2
    folder = tmp_path / "run"
    folder.mkdir()
    _assert_resumes_identically(setup, folder, stops=(1, 3), eval_epochs={2})


def test_eval_epochs_out_of_range_is_refused():
    def setup():
        return Softmax(), CrossEntropy(), lambda: SGD(lr=0.1), Constant(), _data()

    with pytest.raises(ValueError, match=r"eval_epochs must hold integers in \[0, 5\], got 9"):
        _run(setup, eval_epochs={9})


def _interrupted_folder(tmp_path, stop=2):
    def setup():
        return Softmax(), CrossEntropy(), lambda: Adam(lr=0.05, batch_size=8), Constant(), _data()

    with pytest.raises(Interrupt):
        _run(setup, checkpoint=tmp_path, stop_after=stop)
    return setup


@pytest.mark.parametrize("damage", ["other config hash", "token mismatch", "cut json", "json list",
                                    "npz missing", "other shapes", "object array"])
def test_an_unusable_checkpoint_is_ignored_and_the_run_starts_from_epoch_0(damage, tmp_path, caplog):
    setup = _interrupted_folder(tmp_path)
    meta_path, npz_path = tmp_path / CHECKPOINT_JSON, tmp_path / CHECKPOINT_NPZ
    meta = json.loads(meta_path.read_text())
    if damage == "other config hash":
        meta["config_hash"] = "other"
        meta_path.write_text(json.dumps(meta))
    elif damage == "token mismatch":
        meta["token"] = "0" * 32
        meta_path.write_text(json.dumps(meta))
    elif damage == "cut json":
        meta_path.write_text(meta_path.read_text()[:100])
    elif damage == "json list":
        meta_path.write_text("[1, 2]")
    elif damage == "npz missing":
        npz_path.unlink()
    elif damage == "other shapes":
        with np.load(npz_path) as npz:
            arrays = dict(npz)
        arrays["param/W"] = np.zeros((2, 2))
        np.savez(npz_path, **arrays)
    elif damage == "object array":  # a planted pickle is never loaded
        with np.load(npz_path) as npz:
            arrays = dict(npz)
        arrays["param/W"] = np.array([{"x": 1}], dtype=object)
        np.savez(npz_path, **arrays)
    reference, _ = _run(setup)
    result, _ = _run(setup, checkpoint=tmp_path)
    assert result.resumed_from_epoch == 0
    np.testing.assert_equal(_without_time(result.records), _without_time(reference.records))
    assert "not used, training from epoch 0" in caplog.text


def test_short_runs_write_no_checkpoint_and_remove_checkpoint_cleans_up(tmp_path):
    data = _data()
    model = Softmax()
    model.build(3, 3, np.random.default_rng(0))
    result = train(model, CrossEntropy(), SGD(lr=0.1), Constant(), data, epochs=3, grad_clip=0.0,
                   divergence_factor=1e3, rng=np.random.default_rng(1), checkpoint=tmp_path, config_hash="abc")
    assert result.status == "completed" and not list(tmp_path.iterdir())  # < 2 s: nothing written
    _interrupted_folder(tmp_path)
    remove_checkpoint(tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_checkpoint_is_arrays_and_json_only(tmp_path):
    _interrupted_folder(tmp_path, stop=3)
    with np.load(tmp_path / CHECKPOINT_NPZ, allow_pickle=False) as npz:
        assert {"param/W", "param/b", "optimizer/step_count", "optimizer/buffer/exp_avg", "token"} <= set(npz.files)
        assert all(npz[key].dtype != object for key in npz.files)
    meta = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    assert meta["epoch"] == 3 and [r["epoch"] for r in meta["records"]] == [0, 1, 2, 3]
    assert meta["rng"]["bit_generator"] == "PCG64"


@pytest.mark.parametrize("optimizer", conf_names("optimizer"))
def test_optimizer_state_dict_round_trips_and_continues_identically(optimizer):
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    grads = [{key: rng.normal(size=value.shape) for key, value in params.items()} for _ in range(4)]
    first = _from_yaml("optimizer", optimizer)
    assert set(first.state_dict()) == {"step_count"}  # before the first step
    for g in grads[:2]:
        first.step(params, g)
    state = first.state_dict()
    assert all(isinstance(value, np.ndarray) and value.dtype != object for value in state.values())
    second = _from_yaml("optimizer", optimizer)
    second.load_state_dict(state)
    copy = {key: value.copy() for key, value in params.items()}
    for g in grads[2:]:
        first.step(params, g)
        second.step(copy, g)
    for key in params:
        assert np.array_equal(params[key], copy[key])
    with pytest.raises(ValueError, match="state"):
        _from_yaml("optimizer", optimizer).load_state_dict({"step_count": np.array(3)})


# ---------------------------------------------------------------------------------------------
# collapse to chance


def test_collapse_message_flags_an_accuracy_that_ends_at_chance():
    records = [{"epoch": 0, "train_accuracy": 0.4}, {"epoch": 1, "train_accuracy": 0.9},
               {"epoch": 2, "train_accuracy": 0.5}]
    assert collapse_message(records, chance=0.5) == (
        "train_accuracy ended at chance: 0.5 at epoch 2, the majority-class rate is 0.5; it fell from 0.9 at epoch 1")
    assert collapse_message(records[:2], chance=0.5) is None  # above chance at the end
    assert collapse_message([records[0], records[2]], 0.5).endswith("; it never rose above chance")
    assert collapse_message([{"epoch": 0, "train_accuracy": 0.9}, {"epoch": 1, "train_accuracy": math.nan}], 0.5) is None
    assert collapse_message(records, chance=0.5 - 1e-15) is not None  # equal rates up to rounding


class CollapsingSGD(SGD):
    """Plain SGD that zeroes the parameters after its 6th step: the model then predicts class 0 everywhere."""

    def step(self, params, grads):
        super().step(params, grads)
        if self.step_count > 6:
            for value in params.values():
                value[...] = 0.0


def test_train_flags_a_run_that_collapsed_to_chance_and_not_one_that_learned():
    data = _data(k=2)
    data.y_train = (data.X_train[:, 0] > 0.4).astype(np.int64)  # class 0 is the majority
    for optimizer, collapsed in ((SGD(lr=0.5, batch_size=8), False), (CollapsingSGD(lr=0.5, batch_size=8), True)):
        model = Softmax()
        model.build(3, 2, np.random.default_rng(0))
        result = train(model, L2(), optimizer, Constant(), data, epochs=3, grad_clip=0.0, divergence_factor=1e3,
                       rng=np.random.default_rng(1))
        assert result.status == "completed" and result.collapsed_to_chance is collapsed
        assert (result.collapse_message is not None) is collapsed
    assert "ended at chance" in result.collapse_message and "it fell from" in result.collapse_message


def test_built_train_resumes_a_checkpoint_of_the_same_config_only(compose_cfg, tmp_path):
    from lossbench.build import build, config_hash

    cfg, choices = compose_cfg("trainer.epochs=4", "optimizer=minibatch")
    reference = build(cfg, choices=choices).train()
    # write a checkpoint at epoch 2 as train() would, for this config's hash
    built = build(cfg, choices=choices)
    with pytest.raises(Interrupt):
        train(built.model, built.loss, built.optimizer, InterruptingSchedule(built.schedule, 2), built.data,
              epochs=4, grad_clip=0.0, divergence_factor=1e3, rng=built.shuffle_rng, checkpoint=tmp_path,
              config_hash=config_hash(cfg), checkpoint_interval_s=0.0)
    resumed = build(cfg, choices=choices).train(checkpoint=tmp_path)
    assert resumed.resumed_from_epoch == 2
    np.testing.assert_equal(_without_time(resumed.records), _without_time(reference.records))
    other, _ = compose_cfg("trainer.epochs=4", "optimizer=minibatch", "seed=1")
    assert build(other, choices=choices).train(checkpoint=tmp_path).resumed_from_epoch == 0
