"""The training loop and the learning-rate schedules, on small data, in-process."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, conf_names
from lossbench.losses import L2, CrossEntropy
from lossbench.models import Linear, Softmax
from lossbench.optim import SGD
from lossbench.schedules import Constant, Cosine, InverseTime, Step
from lossbench.train import global_norm, train


def _classification_data(n=60, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    y = np.minimum(y, k - 1)
    return SimpleNamespace(task="classification", n_targets=k, X_train=X, y_train=y,
                           X_val=None, y_val=None, X_test=X[:10].copy(), y_test=y[:10].copy())


def _regression_data(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(n, 1))
    return SimpleNamespace(task="regression", n_targets=1, X_train=X, y_train=y,
                           X_val=X[:5].copy(), y_val=y[:5].copy(), X_test=None, y_test=None)


def _run(data, model, loss, optimizer, epochs=3, seed=0, schedule=None, grad_clip=0.0, divergence_factor=1e3):
    model.build(data.X_train.shape[1], data.n_targets, np.random.default_rng(seed))
    return train(model, loss, optimizer, schedule or Constant(), data, epochs=epochs, grad_clip=grad_clip,
                 divergence_factor=divergence_factor, rng=np.random.default_rng(seed + 1))


# ---- schedules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", conf_names("schedule"))
def test_every_schedule_starts_at_the_base_lr(name):
    schedule = instantiate(OmegaConf.load(CONF / "schedule" / f"{name}.yaml"))
    assert schedule(1, 0.3, 20) == pytest.approx(0.3)
    lrs = [schedule(e, 0.3, 20) for e in range(1, 21)]
    assert all(0 <= b <= a for a, b in zip(lrs, lrs[1:])), "a schedule never increases the learning rate"


def test_schedule_values_by_hand():
    assert Step(step_size=2, gamma=0.5)(5, 1.0, 10) == pytest.approx(0.25)  # epochs 5,6 -> 2 decays
    assert Cosine(min_lr=0.0)(6, 1.0, 10) == pytest.approx(0.5)  # halfway: (1 + cos(pi/2))/2
    assert Cosine(min_lr=0.1)(1, 1.0, 10) == pytest.approx(1.0)
    assert InverseTime(decay=0.5)(3, 1.0, 10) == pytest.approx(0.5)  # 1 / (1 + 0.5 * 2)


@pytest.mark.parametrize("factory, message", [
    (lambda: Step(step_size=0), "step_size=0"),
    (lambda: Step(gamma=1.5), "gamma=1.5"),
    (lambda: Cosine(min_lr=-1), "min_lr=-1"),
    (lambda: InverseTime(decay="fast"), "decay='fast'"),
])
def test_schedule_rejects_bad_values(factory, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        factory()


# ---- the loop -----------------------------------------------------------------------------------

def test_records_one_row_per_evaluation_with_every_metric():
    data = _classification_data()
    result = _run(data, Softmax(), CrossEntropy(), SGD(lr=0.1, batch_size=16), epochs=4)
    assert result.status == "completed" and result.stop_epoch == 4
    assert [r["epoch"] for r in result.records] == [0, 1, 2, 3, 4]
    assert [r["step"] for r in result.records] == [0, 4, 8, 12, 16]  # ceil(60 / 16) = 4 steps an epoch
    times = [r["time_s"] for r in result.records]
    assert times[0] == 0 and all(b >= a for a, b in zip(times, times[1:]))
    for split in ("train", "test"):
        for metric in ("loss", "accuracy", "log_loss", "brier", "ece"):
            assert f"{split}_{metric}" in result.records[-1]
    assert not any(key.startswith("val_") for key in result.records[-1])
    assert result.records[-1]["train_loss"] < result.records[0]["train_loss"]


def test_train_loss_record_is_the_mean_loss_over_the_split():
    data = _classification_data()
    model, loss = Softmax(), CrossEntropy()
    result = _run(data, model, loss, SGD(lr=0.1, batch_size=8), epochs=2)
    outputs, _ = model.forward(data.X_train)
    assert result.records[-1]["train_loss"] == pytest.approx(loss(outputs, data.y_train)[0].mean(), rel=1e-12)


def test_same_seed_gives_identical_records_and_another_seed_does_not():
    def records(seed):
        result = _run(_classification_data(), Softmax(), CrossEntropy(), SGD(lr=0.1, batch_size=8), seed=seed)
        return [{k: v for k, v in r.items() if k != "time_s"} for r in result.records]

    assert records(0) == records(0)
    assert records(0) != records(1)  # shuffling differs


def test_one_full_batch_epoch_is_one_gradient_step_on_the_mean_loss():
    data = _regression_data()
    model, loss = Linear(), L2()
    model.build(3, 1, np.random.default_rng(0))
    outputs, cache = model.forward(data.X_train)
    _, dlogits = loss(outputs, data.y_train)
    grads = model.backward(cache, dlogits / len(data.X_train))
    expected = {k: p - 0.05 * grads[k] for k, p in model.params.items()}
    train(model, loss, SGD(lr=0.05, batch_size=None), Constant(), data, epochs=1, grad_clip=0.0,
          divergence_factor=0.0, rng=np.random.default_rng(0))
    for key, value in expected.items():
        np.testing.assert_allclose(model.params[key], value, rtol=1e-12, atol=1e-15)


def test_gradient_clipping_bounds_the_step():
    data = _regression_data()
    model = Linear()
    model.build(3, 1, np.random.default_rng(0))
    before = {k: p.copy() for k, p in model.params.items()}
    result = train(model, L2(), SGD(lr=1.0, batch_size=None), Constant(), data, epochs=1, grad_clip=0.01,
                   divergence_factor=0.0, rng=np.random.default_rng(0))
    assert result.records[1]["grad_norm"] > 0.01  # the raw gradient was larger than the clip
    step = global_norm({k: model.params[k] - before[k] for k in before})
    assert step == pytest.approx(0.01, rel=1e-9)


def test_a_huge_learning_rate_diverges_and_keeps_the_curve():
    data = _regression_data()
    result = _run(data, Linear(), L2(), SGD(lr=50.0, batch_size=None), epochs=50)
    assert result.status == "diverged"
    assert "exceeded 1000 x its initial value" in result.message
    assert result.records[-1]["train_loss"] > 1000 * result.records[0]["train_loss"]
    assert all(r["train_loss"] <= 1000 * result.records[0]["train_loss"] for r in result.records[:-1])
    assert 1 <= result.stop_epoch < 50
    assert len(result.records) == result.stop_epoch + 1
    assert [r["epoch"] for r in result.records] == list(range(result.stop_epoch + 1))


def test_divergence_factor_zero_only_stops_on_non_finite_values():
    data = _regression_data()
    result = _run(data, Linear(), L2(), SGD(lr=50.0, batch_size=None), epochs=2000, divergence_factor=0.0)
    assert result.status == "diverged"
    # full batch: the step that overflows is followed by the evaluation that records it
    assert result.message == f"the training loss became inf in epoch {result.stop_epoch}"
    assert result.records[-1]["train_loss"] == math.inf
    assert all(math.isfinite(r["train_loss"]) for r in result.records[:-1])
    assert result.records[-2]["train_loss"] > 1e100, "without the factor test it ran until overflow"


def test_a_non_finite_batch_loss_stops_within_the_epoch():
    data = _regression_data()
    result = _run(data, Linear(), L2(), SGD(lr=1e3, batch_size=4), epochs=5, divergence_factor=0.0)
    assert result.status == "diverged"
    assert result.message.startswith("the batch loss became")
    # the epoch in which a batch overflowed is not recorded: the curve ends at the last whole epoch
    assert len(result.records) == result.stop_epoch + 1 < 6
    assert all(math.isfinite(r["train_loss"]) for r in result.records)


def test_final_and_best_take_the_max_of_accuracy_and_r2_and_the_min_of_the_rest():
    from lossbench.run import _final_and_best

    records = [{"epoch": 0, "train_loss": 2.0, "test_accuracy": 0.5, "test_r2": 0.1, "lr": 0.1},
               {"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.9, "test_r2": 0.7, "lr": 0.1},
               {"epoch": 2, "train_loss": 1.5, "test_accuracy": 0.8, "test_r2": 0.6, "lr": 0.1}]
    final, best = _final_and_best(records)
    assert final == {"train_loss": 1.5, "test_accuracy": 0.8, "test_r2": 0.6}
    assert best == {"train_loss": 1.0, "test_accuracy": 0.9, "test_r2": 0.7}


def test_schedule_sets_the_learning_rate_of_each_epoch():
    data = _classification_data()
    result = _run(data, Softmax(), CrossEntropy(), SGD(lr=0.2, batch_size=None), epochs=4,
                  schedule=Step(step_size=2, gamma=0.5))
    assert [r["lr"] for r in result.records] == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1])
