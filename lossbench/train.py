"""The training loop: batches, per-epoch evaluation, divergence.

``train`` takes built components (model, loss, optimizer, schedule, data) and returns the
per-evaluation records; it writes no files and knows nothing of Hydra, so it can be called from a
notebook or a benchmark exactly as the runner calls it.

One training step on a batch ``(X_b, y_b)`` of size ``n_b``::

    outputs, cache = model.forward(X_b)                    # (n_b, k)
    per_sample_loss, dlogits = loss(outputs, y_b)          # (n_b,), (n_b, k)
    grads = model.backward(cache, dlogits / n_b)           # gradient of the batch-mean loss
    optimizer.step(params, grads)                          # in place

Averaging over the batch keeps the learning rate independent of the batch size.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lossbench.metrics import classification_metrics, gradient_diagnostics, regression_metrics

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class TrainResult:
    """What a training run produced: its records and how it ended.

    ``records`` holds one dict per evaluation (epoch 0 is the initial model); ``status`` is
    ``completed`` or ``diverged``; ``message`` says why a run diverged; ``stop_epoch`` is the last
    evaluated epoch; ``train_time_s`` the cumulative training time without evaluation.
    """

    records: list[dict] = field(default_factory=list)
    status: str = "completed"
    message: str | None = None
    stop_epoch: int = 0
    train_time_s: float = 0.0


def split_arrays(data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The splits present in ``data`` as ``{name: (X, y)}``, in the order train, val, test."""
    present = {}
    for split in SPLITS:
        X = getattr(data, f"X_{split}")
        if X is not None:
            present[split] = (X, getattr(data, f"y_{split}"))
    return present


def link_probabilities(loss, outputs) -> np.ndarray | None:
    """``loss.probabilities(outputs)``: the class probabilities of the loss's own link, or None.

    None when the loss has no probabilistic link (hinge, l2_logits) or, being a user's class,
    no ``probabilities`` method at all: calibration metrics are then "not applicable" (NaN).
    """
    method = getattr(loss, "probabilities", None)
    return None if method is None else method(outputs)


def evaluate(model, loss, splits: dict, task: str) -> dict[str, float]:
    """Loss and loss-independent metrics of ``model`` on every split, each a mean over the split.

    Returns ``{f"{split}_loss": ..., f"{split}_accuracy": ..., ...}``: the run's own loss without
    regularisation, then accuracy, log loss, Brier score and ECE for classification (the last
    three from the loss's own link, :func:`link_probabilities`; NaN without one), or MSE, MAE
    and R² for regression. Classification adds, on the training split only, the gradient
    diagnostics of :func:`lossbench.metrics.gradient_diagnostics` from the dlogits the loss
    returns: ``train_dz_norm_correct``, ``train_dz_norm_wrong``, ``train_wrong_vanishing_frac``.
    """
    row = {}
    for split, (X, y) in splits.items():
        outputs, _ = model.forward(X)
        per_sample_loss, dlogits = loss(outputs, y)
        row[f"{split}_loss"] = float(np.mean(per_sample_loss))
        if task == "classification":
            metrics = classification_metrics(outputs, y, probabilities=link_probabilities(loss, outputs))
            if split == "train":
                metrics.update(gradient_diagnostics(outputs, y, dlogits))
        else:
            metrics = regression_metrics(outputs, y)
        for name, value in metrics.items():
            row[f"{split}_{name}"] = float(value)
    return row


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """``sqrt(Σ_p ‖g_p‖²)`` over all parameter gradients."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def params_finite(params: dict[str, np.ndarray]) -> bool:
    """True when every parameter entry is finite."""
    return all(np.isfinite(p).all() for p in params.values())


def train(model, loss, optimizer, schedule, data, *, epochs: int, grad_clip: float,
          divergence_factor: float, rng: np.random.Generator,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` (already built) on ``data.X_train`` and evaluate after every epoch.

    Batches come from ``optimizer.batch_size`` (``None``: the full training split, no shuffling);
    the training split is reshuffled every epoch with ``rng``. The learning rate of epoch ``e`` is
    ``schedule(e, base_lr, epochs)``. With ``grad_clip > 0`` the gradient is rescaled so its global
    norm is at most ``grad_clip``.

    A run diverges (``status="diverged"``, records kept up to that point) when a batch loss, the
    training loss or a parameter becomes non-finite, or when the training loss exceeds
    ``divergence_factor`` times its initial value (``divergence_factor=0`` disables that test).

    Each record holds ``epoch``, ``step``, ``time_s``, ``lr``, ``grad_norm`` (mean over the epoch's
    steps of the pre-clipping batch-gradient norm; at epoch 0 the full-batch gradient norm at
    initialisation) and the metrics of :func:`evaluate`.
    """
    splits = split_arrays(data)
    X_train, y_train = splits["train"]
    n_train = X_train.shape[0]
    batch_size = optimizer.batch_size or n_train
    batch_size = min(batch_size, n_train)
    base_lr = optimizer.lr
    result = TrainResult()

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        outputs, cache = model.forward(X_train)
        _, dlogits = loss(outputs, y_train)
        initial_grad_norm = global_norm(model.backward(cache, dlogits / n_train))
        del outputs, cache, dlogits
        first = {"epoch": 0, "step": 0, "time_s": 0.0, "lr": base_lr, "grad_norm": initial_grad_norm}
        first.update(evaluate(model, loss, splits, data.task))
        result.records.append(first)
        if on_epoch:
            on_epoch(first)
        initial_loss = first["train_loss"]
        if not math.isfinite(initial_loss):
            result.status, result.message = "diverged", "the initial training loss is not finite"
            return result

        # Mini-batches are gathered from the training split into two reused buffers, one batch at a
        # time: no step allocates its batch and no epoch copies the whole split (the gathered rows
        # are still in cache when the forward pass reads them).
        shuffle = batch_size < n_train
        if shuffle:
            X_buffer = np.empty((batch_size, *X_train.shape[1:]), dtype=X_train.dtype)
            y_buffer = np.empty((batch_size, *y_train.shape[1:]), dtype=y_train.dtype)
        step = 0
        train_time = 0.0
        for epoch in range(1, epochs + 1):
            lr = schedule(epoch, base_lr, epochs)
            optimizer.lr = lr
            tic = time.perf_counter()
            if shuffle:
                order = rng.permutation(n_train)
            norm_sum = 0.0
            n_steps = 0
            diverged_message = None
            for start in range(0, n_train, batch_size):
                if shuffle:
                    rows = order[start:start + batch_size]
                    n_batch = rows.shape[0]
                    # mode="clip" (the rows are valid) lets np.take write straight into `out`
                    X_batch = np.take(X_train, rows, axis=0, out=X_buffer[:n_batch], mode="clip")
                    y_batch = np.take(y_train, rows, axis=0, out=y_buffer[:n_batch], mode="clip")
                else:
                    X_batch, y_batch, n_batch = X_train, y_train, n_train
                outputs, cache = model.forward(X_batch)
                per_sample_loss, dlogits = loss(outputs, y_batch)
                batch_loss = float(np.add.reduce(per_sample_loss)) / n_batch
                if not math.isfinite(batch_loss):
                    diverged_message = f"the batch loss became {batch_loss} at step {step + 1}"
                    break
                dlogits *= 1.0 / n_batch
                grads = model.backward(cache, dlogits)
                norm = global_norm(grads)
                norm_sum += norm
                n_steps += 1
                if grad_clip > 0 and norm > grad_clip:
                    scale = grad_clip / norm
                    for g in grads.values():
                        g *= scale
                optimizer.step(model.params, grads)
                step += 1
            train_time += time.perf_counter() - tic

            if diverged_message is None and not params_finite(model.params):
                diverged_message = f"a parameter became non-finite in epoch {epoch}"
            if diverged_message is not None:
                result.status, result.message = "diverged", diverged_message
                break
            record = {"epoch": epoch, "step": step, "time_s": train_time, "lr": lr,
                      "grad_norm": norm_sum / max(n_steps, 1)}
            record.update(evaluate(model, loss, splits, data.task))
            result.records.append(record)
            result.stop_epoch = epoch
            if on_epoch:
                on_epoch(record)
            train_loss = record["train_loss"]
            if not math.isfinite(train_loss):
                result.status, result.message = "diverged", f"the training loss became {train_loss} in epoch {epoch}"
                break
            if divergence_factor > 0 and train_loss > divergence_factor * max(initial_loss, 1e-12):
                result.status = "diverged"
                result.message = (f"the training loss {train_loss:.4g} exceeded {divergence_factor:g} x its "
                                  f"initial value {initial_loss:.4g} in epoch {epoch}")
                break
        result.train_time_s = train_time
    return result
