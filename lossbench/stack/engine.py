"""``train_stack``: the training loop of :func:`lossbench.train.train`, for R runs on a leading axis.

Every step of the R active runs, with b the batch size::

    X_b[r], y_b[r] = run r's rows order_r[start:start + b] of its own split   # one np.take: (R, b, d)
    outputs, cache = model.forward_stacked(P, X_b)                           # (R, b, k)
    per_sample_loss, dlogits = loss(rows of all runs)                         # (R, b), (R, b, k)
    grads = model.backward_stacked(P, cache, dlogits / b)                     # P[name], grads[name]: (R, ...)
    stacked_optimizer.step(P, grads)                                          # lr: (R, 1)

Each run's own pieces stay its own: the permutation of every epoch comes from its generator, the
learning rate from its schedule, the divergence test, evaluation epochs, records, callback and
checkpoint are per run. The stack changes only when a run leaves it (it diverged) or joins it (it
resumes from a later checkpoint than others: it waits until the pack reaches its epoch); then the
stacked arrays are rebuilt from the per-run objects (:meth:`_Pack.restack`).
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
from lossbench.stack.optimizer import StackedOptimizer
from lossbench.stack.evaluate import StackedData, evaluate_runs, stacked_loss
from lossbench.stack.key import stack_key
from lossbench.train import (CHECKPOINT_INTERVAL_S, TrainResult, evaluation_epochs, finish, initial_record,
                             record_divergence, split_arrays)

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """One run of a pack: its built components, its own bookkeeping and its result so far."""

    built: object
    on_epoch: Callable[[dict], None] | None
    checkpoint: Path | None
    config_hash: str | None
    chosen_epochs: set[int] | None
    splits: dict
    base_lr: float
    grad_clip: float
    divergence_factor: float
    own_params: dict = field(default_factory=dict)
    result: TrainResult = field(default_factory=TrainResult)
    start_epoch: int = 1
    step: int = 0
    train_time: float = 0.0
    initial_loss: float = math.nan
    finished: bool = False
    #: the initial loss was not finite: the run ended before training (as train() returns at once)
    ended_at_start: bool = False

    @property
    def model(self):
        return self.built.model

    @property
    def optimizer(self):
        return self.built.optimizer

    @property
    def rng(self) -> np.random.Generator:
        return self.built.shuffle_rng

    def checkpoint_keys(self, epochs: int) -> dict:
        return {"config_hash": self.config_hash, "epochs": epochs, "eval_epochs": self.chosen_epochs,
                "model": self.model, "optimizer": self.optimizer, "rng": self.rng}


def _per_run(value, n: int, name: str) -> list:
    if value is None:
        return [None] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} must have one entry per run ({n}), got {len(value)}")
    return value


def train_stack(builts: list, *, on_epochs: list | None = None, checkpoints: list | None = None,
                config_hashes: list | None = None, eval_epochs=None,
                checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> list[TrainResult]:
    """Train every :class:`lossbench.build.Built` of ``builts``, stacked where :func:`stack_key` allows.

    Returns one :class:`TrainResult` per built, in order, each equal to ``built.train(on_epoch,
    checkpoint, eval_epochs)`` alone (every record column but ``time_s``; the final parameters in
    ``built.model.params`` too); ``TrainResult.stack_size`` says how many runs shared its pass.
    Runs are grouped by :func:`stack_key`; a run whose key is None, or alone in its group, trains
    through :func:`lossbench.train.train`. ``on_epochs``, ``checkpoints`` (run folders) and
    ``config_hashes`` hold one entry (or None) per built; ``eval_epochs`` is one setting for all,
    a list with one per built, or None: each built's own (``Built.eval_epochs``, from
    ``trainer.evaluate``). A checkpoint is matched by its config hash exactly as alone
    (``config_hashes[i]`` or, when None, :func:`lossbench.build.config_hash` of the run's config);
    its time is the pack's wall time (``time_s``: the time the run's training took in its pack).
    An exception from a callback stops the whole pack (each run's checkpoint is then its own last
    saved epoch).
    """
    n = len(builts)
    on_epochs = _per_run(on_epochs, n, "on_epochs")
    checkpoints = _per_run(checkpoints, n, "checkpoints")
    config_hashes = _per_run(config_hashes, n, "config_hashes")
    if isinstance(eval_epochs, (list, tuple)) and len(eval_epochs) == n and all(
            value is None or isinstance(value, (list, tuple, set, range)) for value in eval_epochs):
        per_run_eval = list(eval_epochs)
    elif eval_epochs is not None:
        per_run_eval = [eval_epochs] * n
    else:  # as each run's trainer.evaluate says
        per_run_eval = [getattr(built, "eval_epochs", None) for built in builts]
    results: list[TrainResult | None] = [None] * n
    groups: dict = {}
    for index, built in enumerate(builts):
        key = stack_key(built)
        groups.setdefault(("alone", index) if key is None else key, []).append(index)
    for indices in groups.values():
        if len(indices) == 1:
            i = indices[0]
            results[i] = _train_alone(builts[i], on_epochs[i], checkpoints[i], config_hashes[i], per_run_eval[i],
                                      checkpoint_interval_s)
            continue
        pack = _Pack([builts[i] for i in indices], [on_epochs[i] for i in indices],
                     [checkpoints[i] for i in indices], [config_hashes[i] for i in indices],
                     [per_run_eval[i] for i in indices], checkpoint_interval_s)
        for i, result in zip(indices, pack.train()):
            results[i] = result
    return results


def _train_alone(built, on_epoch, checkpoint, config_hash, eval_epochs, checkpoint_interval_s) -> TrainResult:
    """``lossbench.train.train`` with the built's trainer settings and the caller's config hash."""
    from lossbench.build import config_hash as hash_of
    from lossbench.train import train

    if checkpoint is not None and config_hash is None:
        config_hash = hash_of(built.cfg)
    trainer = built.cfg.trainer
    return train(built.model, built.loss, built.optimizer, built.schedule, built.data,
                 epochs=int(trainer.epochs), grad_clip=float(trainer.grad_clip),
                 divergence_factor=float(trainer.divergence_factor), rng=built.shuffle_rng, on_epoch=on_epoch,
                 checkpoint=checkpoint, config_hash=config_hash if checkpoint is not None else None,
                 eval_epochs=eval_epochs, checkpoint_interval_s=checkpoint_interval_s)


class _Pack:
    """Runs of one stack key, trained together; ``restack`` rebuilds the stacked arrays for the active runs."""

    def __init__(self, builts, on_epochs, checkpoints, config_hashes, eval_epochs, checkpoint_interval_s):
        from lossbench.build import config_hash

        first = builts[0]
        self.epochs = int(first.cfg.trainer.epochs)
        self.task = first.data.task
        self.checkpoint_interval_s = checkpoint_interval_s
        self.runs: list[_Run] = []
        for built, on_epoch, checkpoint, hash_, chosen in zip(builts, on_epochs, checkpoints, config_hashes,
                                                              eval_epochs):
            trainer = built.cfg.trainer
            if checkpoint is not None and not supports_checkpoints(built.optimizer):
                checkpoint = None
            if checkpoint is not None and hash_ is None:
                hash_ = config_hash(built.cfg)
            self.runs.append(_Run(built=built, on_epoch=on_epoch, checkpoint=checkpoint,
                                  config_hash=hash_ if checkpoint is not None else None,
                                  chosen_epochs=evaluation_epochs(chosen, self.epochs),
                                  splits=split_arrays(built.data), base_lr=built.optimizer.lr,
                                  grad_clip=float(trainer.grad_clip),
                                  divergence_factor=float(trainer.divergence_factor)))
        self.n_train = self.runs[0].splits["train"][0].shape[0]
        batch_size = first.optimizer.batch_size or self.n_train
        self.batch_size = min(batch_size, self.n_train)
        self.shuffle = self.batch_size < self.n_train
        self.data = StackedData([run.splits for run in self.runs])
        self.active: list[int] = []  # indices into self.runs, in order
        self.P: dict[str, np.ndarray] = {}
        self.optimizer: StackedOptimizer | None = None

    # -- the stack ------------------------------------------------------------------------------

    def _release(self) -> None:
        """Write the stack's state back into the per-run objects (parameters into their own arrays)."""
        if self.optimizer is None:
            return
        self.optimizer.unstack()
        for r, index in enumerate(self.active):
            run = self.runs[index]
            for name, own in run.own_params.items():
                np.copyto(own, self.P[name][r])
            run.model.params = run.own_params
        self.optimizer, self.P = None, {}

    def restack(self, active: list[int]) -> None:
        """Make ``active`` (run indices) the stack: parameters (R, ...) with views per run, optimizer, loss groups."""
        self._release()
        self.active = sorted(active)
        if not self.active:
            return
        runs = [self.runs[index] for index in self.active]
        for run in runs:
            run.own_params = run.model.params
        self.P = {name: np.stack([run.own_params[name] for run in runs]) for name in runs[0].own_params}
        for r, run in enumerate(runs):
            run.model.params = {name: value[r] for name, value in self.P.items()}
        self.optimizer = StackedOptimizer([run.optimizer for run in runs])
        self.groups = _loss_groups([run.built.loss for run in runs])
        self.offsets = self.data.train_offsets(self.active)
        self.grad_clip = np.array([run.grad_clip for run in runs])
        self.clipping = bool((self.grad_clip > 0).any())
        self.buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _step_rows(self, order: np.ndarray, start: int) -> list[np.ndarray]:
        """The flat rows of every step from ``start`` on, each contiguous (R * nb,): run r's rows of its split.

        One table per epoch (a transposing copy of the permutations plus the runs' offsets), so a
        step gathers with one ``np.take`` and no index arithmetic of its own.
        """
        b = self.batch_size
        rows = order[:, start:] + self.offsets[:, None]
        R, m = rows.shape
        full = m // b
        table = np.ascontiguousarray(rows[:, :full * b].reshape(R, full, b).transpose(1, 0, 2))
        steps = list(table.reshape(full, R * b))
        if m % b:
            steps.append(np.ascontiguousarray(rows[:, full * b:]).ravel())
        return steps

    def _batch(self, flat_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gather flat rows (R * nb,) of :meth:`_step_rows` into reused (R, nb, ...) buffers."""
        buffers = self.buffers.get(flat_rows.shape[0])
        if buffers is None:
            R = len(self.active)
            nb = flat_rows.shape[0] // R
            X_flat, y_flat = self.data.X_train, self.data.y_train
            X_buffer = np.empty((R, nb, *X_flat.shape[1:]), dtype=X_flat.dtype)
            y_buffer = np.empty((R, nb, *y_flat.shape[1:]), dtype=y_flat.dtype)
            X_rows = X_buffer.reshape(R * nb, *X_flat.shape[1:])  # views, made once
            y_rows = y_buffer.reshape(R * nb, *y_flat.shape[1:])
            buffers = self.buffers[flat_rows.shape[0]] = (X_buffer, y_buffer, X_rows, y_rows)
        X_buffer, y_buffer, X_rows, y_rows = buffers
        # mode="clip" (the rows are valid) lets np.take write straight into `out`
        self.data.X_train.take(flat_rows, axis=0, out=X_rows, mode="clip")
        self.data.y_train.take(flat_rows, axis=0, out=y_rows, mode="clip")
        return X_buffer, y_buffer

    # -- the loop -------------------------------------------------------------------------------

    def _start(self, run: _Run) -> None:
        """Epoch 0 or the run's checkpoint, as :func:`lossbench.train.train` starts."""
        resumed = None if run.checkpoint is None else load_checkpoint(run.checkpoint,
                                                                      **run.checkpoint_keys(self.epochs))
        result = run.result
        if resumed is None:
            first = initial_record(run.model, run.built.loss, run.splits, self.task, run.base_lr)
            result.records.append(first)
            if run.on_epoch:
                run.on_epoch(first)
        else:
            result.records = resumed.records
            result.resumed_from_epoch = resumed.epoch
            run.start_epoch, run.step, run.train_time = resumed.epoch + 1, resumed.step, resumed.train_time_s
            result.stop_epoch = result.records[-1]["epoch"]
        run.initial_loss = result.records[0]["train_loss"]
        if not math.isfinite(run.initial_loss):
            result.status, result.message = "diverged", "the initial training loss is not finite"
            run.finished = run.ended_at_start = True

    def _leave(self, positions: list[int], message: Callable[[int], str]) -> list[int]:
        """Runs at these stack positions diverged: record why, drop them; return the positions kept."""
        gone = set(positions)
        for position in positions:
            run = self.runs[self.active[position]]
            run.result.status, run.result.message = "diverged", message(position)
            run.finished = True
        keep = [position for position in range(len(self.active)) if position not in gone]
        self.restack([self.active[position] for position in keep])
        return keep

    def train(self) -> list[TrainResult]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for run in self.runs:
                self._start(run)
            pending = [run for run in self.runs if not run.finished]
            first_epoch = min((run.start_epoch for run in pending), default=self.epochs + 1)
            last_save = time.monotonic()
            for epoch in range(first_epoch, self.epochs + 1):
                joining = [i for i, run in enumerate(self.runs) if not run.finished and run.start_epoch == epoch]
                if joining:
                    self.restack(self.active + joining)
                if not self.active:
                    continue
                self._epoch(epoch)
                saving = [self.runs[i] for i in self.active if self.runs[i].checkpoint is not None]
                if saving and epoch < self.epochs and time.monotonic() - last_save >= self.checkpoint_interval_s:
                    self.optimizer.unstack()
                    for run in saving:
                        save_checkpoint(run.checkpoint, **run.checkpoint_keys(self.epochs),
                                        state=TrainingState(epoch=epoch, step=run.step, train_time_s=run.train_time,
                                                            records=run.result.records))
                    last_save = time.monotonic()
            self.restack([])
        for run in self.runs:
            run.result.stack_size = len(self.runs)
            if not run.ended_at_start:
                run.result.train_time_s = run.train_time
                finish(run.result, self.task, run.splits["train"][1])
        return [run.result for run in self.runs]

    def _epoch(self, epoch: int) -> None:
        """One epoch of every active run: steps, then per-run divergence, evaluation, records, callbacks."""
        runs = [self.runs[i] for i in self.active]
        lrs = [run.built.schedule(epoch, run.base_lr, self.epochs) for run in runs]
        self.optimizer.set_lr(lrs)
        lr_of = {id(run): lr for run, lr in zip(runs, lrs)}
        tic = time.perf_counter()
        if self.shuffle:
            order = np.stack([run.rng.permutation(self.n_train) for run in runs])
        norm_sum = np.zeros(len(runs))
        n_steps = 0
        step = runs[0].step
        starts = range(0, self.n_train, self.batch_size)
        steps = self._step_rows(order, 0) if self.shuffle else None
        model, P, groups = self.active_model, self.P, self.groups
        for index, start in enumerate(starts):
            if self.shuffle:
                X_batch, y_batch = self._batch(steps[index])
            else:
                X_batch, y_batch = self.data.gathered("train", self.active)
            n_batch = X_batch.shape[1]
            outputs, cache = model.forward_stacked(P, X_batch)
            per_sample_loss, dlogits = stacked_loss(groups, outputs, y_batch)
            if n_batch > 1:  # alone multiplies by 1.0 at batch size 1, which changes no bit
                dlogits *= 1.0 / n_batch
            grads = model.backward_stacked(P, cache, dlogits)
            norms = _global_norms(grads)
            # a run's batch loss is finite exactly when its sum is; one sum over all runs checks them all
            # (only when it is not finite, or overflows, are the runs' sums looked at)
            if not math.isfinite(float(np.add.reduce(per_sample_loss, axis=None))) and not np.isfinite(
                    batch_sum := np.add.reduce(per_sample_loss, axis=1)).all():
                batch_loss = batch_sum / n_batch  # as alone: float(np.add.reduce(per_sample_loss)) / n_batch
                bad = np.flatnonzero(~np.isfinite(batch_sum))
                elapsed = time.perf_counter() - tic
                for position in bad:
                    self.runs[self.active[position]].train_time += elapsed
                    self.runs[self.active[position]].step = step
                keep = self._leave(list(bad),
                                   lambda p: f"the batch loss became {float(batch_loss[p])} at step {step + 1}")
                if not keep:
                    return
                grads = {name: value[keep] for name, value in grads.items()}
                norms, norm_sum = norms[keep], norm_sum[keep]
                runs = [runs[position] for position in keep]
                model, P, groups = self.active_model, self.P, self.groups
                if self.shuffle:
                    order = order[keep]
                    steps[index + 1:] = self._step_rows(order, start + self.batch_size)
            norm_sum += norms
            n_steps += 1
            clip = self.grad_clip
            clipped = None if not self.clipping else (clip > 0) & (norms > clip)
            if clipped is not None and clipped.any():
                scale = np.where(clipped, clip / norms, 1.0)  # float64, as alone's grad_clip / norm
                for g in grads.values():  # cast as a Python float meeting g is: float32 stays float32
                    g *= scale.astype(g.dtype).reshape((-1,) + (1,) * (g.ndim - 1))
            self.optimizer.step(P, grads)
            step += 1
        elapsed = time.perf_counter() - tic
        for run in runs:
            run.train_time += elapsed
            run.step = step
        finite = np.ones(len(runs), dtype=bool)
        for value in self.P.values():
            finite &= np.isfinite(value.reshape(len(runs), -1)).all(axis=1)
        if not finite.all():
            keep = self._leave(list(np.flatnonzero(~finite)),
                               lambda p: f"a parameter became non-finite in epoch {epoch}")
            norm_sum = norm_sum[keep]
            runs = [runs[position] for position in keep]
        due = [position for position, run in enumerate(runs)
               if run.chosen_epochs is None or epoch in run.chosen_epochs]
        if not due:
            return
        metrics = evaluate_runs(self, [self.active[position] for position in due])
        diverged, messages = [], {}
        for position, row in zip(due, metrics):
            run = runs[position]
            record = {"epoch": epoch, "step": run.step, "time_s": run.train_time, "lr": lr_of[id(run)],
                      "grad_norm": float(norm_sum[position]) / max(n_steps, 1)}
            record.update(row)
            run.result.records.append(record)
            run.result.stop_epoch = epoch
            if run.on_epoch:
                run.on_epoch(record)
            message = record_divergence(record, run.initial_loss, run.divergence_factor)
            if message is not None:
                diverged.append(position)
                messages[position] = message
        if diverged:
            self._leave(diverged, messages.__getitem__)

    @property
    def active_model(self):
        return self.runs[self.active[0]].model


def _loss_groups(losses: list) -> list[tuple[object, np.ndarray]]:
    """Runs whose losses compute the same function (same class and repr): (loss, stack positions)."""
    groups: dict = {}
    for position, loss in enumerate(losses):
        groups.setdefault((type(loss), repr(loss)), (loss, []))[1].append(position)
    return [(loss, np.array(positions)) for loss, positions in groups.values()]


def _global_norms(grads: dict[str, np.ndarray]) -> np.ndarray:
    """``sqrt(sum_p g_p . g_p)`` per run (R,), each dot product the one ``np.vdot`` computes alone.

    A (R, 1, m) @ (R, m, 1) matmul calls, per run, the dot routine ``np.vdot`` calls; the sum over
    parameters is taken in their order from 0.0, as :func:`lossbench.train.global_norm`.
    """
    total = None
    for g in grads.values():
        flat = g.reshape(g.shape[0], 1, -1)
        dots = np.matmul(flat, flat.reshape(g.shape[0], -1, 1)).reshape(-1)
        if dots.dtype != np.float64:
            dots = dots.astype(np.float64)  # alone: float(np.vdot(g, g)), summed in Python floats
        total = 0.0 + dots if total is None else total + dots
    return np.sqrt(total)
