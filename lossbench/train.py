"""The training loop: batches, per-epoch evaluation, divergence, checkpoints.

``train`` takes built components (model, loss, optimizer, schedule, data) and returns the
per-evaluation records; it writes no files except an optional checkpoint (see
:mod:`lossbench.checkpoint`) and knows nothing of Hydra, so it can be called from a notebook or a
benchmark exactly as the runner calls it.

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
from pathlib import Path
from typing import Callable

import numpy as np

from lossbench.checkpoint import TrainingState, load_checkpoint, save_checkpoint, supports_checkpoints
from lossbench.metrics import classification_metrics, gradient_diagnostics, regression_metrics

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: at most one checkpoint per this many seconds of wall time (the first one after as long), so a
#: run shorter than that never writes one
CHECKPOINT_INTERVAL_S = 2.0


@dataclass
class TrainResult:
    """What a training run produced: its records and how it ended.

    ``records`` holds one dict per evaluation (epoch 0 is the initial model); ``status`` is
    ``completed`` or ``diverged``; ``message`` says why a run diverged; ``stop_epoch`` is the last
    evaluated epoch; ``train_time_s`` the cumulative training time without evaluation (of every
    attempt, when resumed); ``resumed_from_epoch`` the checkpoint's epoch the run continued from
    (0: trained from the start). ``collapsed_to_chance`` is True when a completed classification
    run's final training accuracy is at or below chance, the majority-class rate
    (:func:`collapse_message`), which a bounded loss (L2, L1 on probabilities) can reach without
    ever tripping the divergence test; ``collapse_message`` then says so in words.
    """

    records: list[dict] = field(default_factory=list)
    status: str = "completed"
    message: str | None = None
    stop_epoch: int = 0
    train_time_s: float = 0.0
    resumed_from_epoch: int = 0
    collapsed_to_chance: bool = False
    collapse_message: str | None = None
    #: runs trained together in one stacked pass (lossbench.stack); 1 when trained alone
    stack_size: int = 1


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


def evaluation_epochs(eval_epochs, epochs: int) -> set[int] | None:
    """The epochs to evaluate: None (every epoch) or the given epochs plus 0 and ``epochs``; ValueError if out of range."""
    if eval_epochs is None:
        return None
    chosen = set()
    for epoch in eval_epochs:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or not 0 <= epoch <= epochs:
            raise ValueError(f"eval_epochs must hold integers in [0, {epochs}], got {epoch!r}")
        chosen.add(int(epoch))
    return chosen | {0, epochs}


def collapse_message(records: list[dict], chance: float) -> str | None:
    """Say so when a classification run ends with a training accuracy at or below chance.

    ``chance`` is the majority-class rate of the training labels, what a constant prediction
    achieves: a run that ends there learned nothing usable, whether it fell there (bounded losses,
    L2 or L1 on probabilities, saturate without the training loss ever exceeding the divergence
    factor) or never rose above it (e.g. a loss whose weights vanish). None otherwise. (Regression
    is not judged: on outlier-corrupted training targets a robust fit has R² near 0 by design.)
    """
    values = [record.get("train_accuracy", math.nan) for record in records]
    final = values[-1] if values else math.nan
    tolerance = 1e-12  # accuracies are counts / n: equal rates may differ by rounding
    if not math.isfinite(final) or final > chance + tolerance:
        return None
    head = (f"train_accuracy ended at chance: {final:.4g} at epoch {records[-1]['epoch']}, the majority-class "
            f"rate is {chance:.4g}")
    earlier = [(value, record["epoch"]) for value, record in zip(values[:-1], records[:-1])
               if math.isfinite(value) and value > chance + tolerance]
    if not earlier:
        return head + "; it never rose above chance"
    best, best_epoch = max(earlier)
    return head + f"; it fell from {best:.4g} at epoch {best_epoch}"


def initial_record(model, loss, splits: dict, task: str, base_lr: float) -> dict:
    """The record of epoch 0: the initial model's metrics and its full-batch gradient norm."""
    X_train, y_train = splits["train"]
    outputs, cache = model.forward(X_train)
    _, dlogits = loss(outputs, y_train)
    initial_grad_norm = global_norm(model.backward(cache, dlogits / X_train.shape[0]))
    del outputs, cache, dlogits
    first = {"epoch": 0, "step": 0, "time_s": 0.0, "lr": base_lr, "grad_norm": initial_grad_norm}
    first.update(evaluate(model, loss, splits, task))
    return first


def record_divergence(record: dict, initial_loss: float, divergence_factor: float) -> str | None:
    """Why the run diverged at this evaluation (non-finite, or above the factor x its initial loss), or None."""
    train_loss, epoch = record["train_loss"], record["epoch"]
    if not math.isfinite(train_loss):
        return f"the training loss became {train_loss} in epoch {epoch}"
    if divergence_factor > 0 and train_loss > divergence_factor * max(initial_loss, 1e-12):
        return (f"the training loss {train_loss:.4g} exceeded {divergence_factor:g} x its "
                f"initial value {initial_loss:.4g} in epoch {epoch}")
    return None


def finish(result: TrainResult, task: str, y_train: np.ndarray) -> TrainResult:
    """Flag a completed classification run that ends at chance (:func:`collapse_message`)."""
    if result.status == "completed" and task == "classification":
        result.collapse_message = collapse_message(result.records, _chance_rate(y_train))
        result.collapsed_to_chance = result.collapse_message is not None
    return result


def train(model, loss, optimizer, schedule, data, *, epochs: int, grad_clip: float,
          divergence_factor: float, rng: np.random.Generator,
          on_epoch: Callable[[dict], None] | None = None, checkpoint: Path | str | None = None,
          config_hash: str | None = None, eval_epochs=None,
          checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> TrainResult:
    """Train ``model`` (already built) on ``data.X_train`` and evaluate after every epoch.

    Batches come from ``optimizer.batch_size`` (``None``: the full training split, no shuffling);
    the training split is reshuffled every epoch with ``rng``. The learning rate of epoch ``e`` is
    ``schedule(e, base_lr, epochs)``. With ``grad_clip > 0`` the gradient is rescaled so its global
    norm is at most ``grad_clip``.

    A run diverges (``status="diverged"``, records kept up to that point) when a batch loss, the
    training loss or a parameter becomes non-finite, or when the training loss exceeds
    ``divergence_factor`` times its initial value (``divergence_factor=0`` disables that test).
    A completed classification run whose training accuracy ends at chance is flagged (``collapsed_to_chance``).

    Each record holds ``epoch``, ``step``, ``time_s``, ``lr``, ``grad_norm`` (mean over the epoch's
    steps of the pre-clipping batch-gradient norm; at epoch 0 the full-batch gradient norm at
    initialisation) and the metrics of :func:`evaluate`.

    ``eval_epochs`` (a set of epochs, e.g. log-spaced, for tuning runs): evaluate and record only
    those epochs, plus 0 and the last; None evaluates every epoch. The training itself, and so the
    final parameters, do not depend on it; the loss-factor divergence test runs at evaluations.

    ``checkpoint`` (the run folder, or None): at the end of an epoch, at most every
    ``checkpoint_interval_s`` seconds of wall time (the first time after as long, so short runs
    write nothing) and never after the last epoch, save the full state (parameters, optimizer
    state, ``rng`` state, records, step, epoch) as ``checkpoint.npz`` + ``checkpoint.json`` in that
    folder; when a checkpoint with the same ``config_hash`` (and epochs, eval_epochs) is there
    at the start, continue from it (``resumed_from_epoch``). The resumed run's records and
    parameters equal an uninterrupted run's exactly, except ``time_s``. The caller deletes the
    checkpoint when the run's files are written (:func:`lossbench.checkpoint.remove_checkpoint`).
    An optimizer without ``state_dict``/``load_state_dict`` is trained without checkpoints.
    """
    splits = split_arrays(data)
    X_train, y_train = splits["train"]
    n_train = X_train.shape[0]
    batch_size = optimizer.batch_size or n_train
    batch_size = min(batch_size, n_train)
    base_lr = optimizer.lr
    chosen_epochs = evaluation_epochs(eval_epochs, epochs)
    result = TrainResult()
    if checkpoint is not None and not supports_checkpoints(optimizer):
        log.info("%s has no state_dict/load_state_dict: training without checkpoints", type(optimizer).__name__)
        checkpoint = None
    checkpoint_keys = {"config_hash": config_hash, "epochs": epochs, "eval_epochs": chosen_epochs,
                       "model": model, "optimizer": optimizer, "rng": rng}
    resumed = None if checkpoint is None else load_checkpoint(checkpoint, **checkpoint_keys)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        if resumed is None:
            first = initial_record(model, loss, splits, data.task, base_lr)
            result.records.append(first)
            if on_epoch:
                on_epoch(first)
            start_epoch, step, train_time = 1, 0, 0.0
        else:
            result.records = resumed.records
            result.resumed_from_epoch = resumed.epoch
            start_epoch, step, train_time = resumed.epoch + 1, resumed.step, resumed.train_time_s
            result.stop_epoch = result.records[-1]["epoch"]
        initial_loss = result.records[0]["train_loss"]
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
        last_save = time.monotonic()
        for epoch in range(start_epoch, epochs + 1):
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
            if chosen_epochs is None or epoch in chosen_epochs:
                record = {"epoch": epoch, "step": step, "time_s": train_time, "lr": lr,
                          "grad_norm": norm_sum / max(n_steps, 1)}
                record.update(evaluate(model, loss, splits, data.task))
                result.records.append(record)
                result.stop_epoch = epoch
                if on_epoch:
                    on_epoch(record)
                message = record_divergence(record, initial_loss, divergence_factor)
                if message is not None:
                    result.status, result.message = "diverged", message
                    break
            if checkpoint is not None and epoch < epochs and time.monotonic() - last_save >= checkpoint_interval_s:
                save_checkpoint(checkpoint, **checkpoint_keys,
                                state=TrainingState(epoch=epoch, step=step, train_time_s=train_time,
                                                    records=result.records))
                last_save = time.monotonic()
        result.train_time_s = train_time
    return finish(result, data.task, y_train)


def _chance_rate(labels: np.ndarray) -> float:
    """The majority-class rate of int labels (n,): the accuracy of always predicting the commonest class."""
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else math.nan
