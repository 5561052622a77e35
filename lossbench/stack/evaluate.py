"""The data of a pack (each run's own splits, shared where equal), the stacked loss call, evaluation."""

from __future__ import annotations

import numpy as np

from lossbench.losses import _NO_OVERFLOW_BOUND, Loss
from lossbench.train import evaluate


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays (shape, dtype, values): first a cheap look at a few rows, then all of it."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not (np.array_equal(a[:4], b[:4]) and np.array_equal(a[-4:], b[-4:])):
        return False
    return bool(np.array_equal(a, b))


class StackedData:
    """Every run's splits, each distinct array kept once, the training split flat for one-call gathers.

    The split depends on the seed, so runs of different seeds have different arrays; runs of one
    seed (a learning-rate grid) share theirs. ``X_train`` is (U * n, d) for the U distinct
    training splits; run i's rows start at ``train_offsets`` (its split's index times n).
    """

    def __init__(self, splits_per_run: list[dict]):
        self.splits = splits_per_run
        self.names = list(splits_per_run[0])
        # distinct (X, y) of each split, and which one each run uses
        self.unique: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.index: dict[str, list[int]] = {}
        for name in self.names:
            distinct, index = [], []
            for splits in splits_per_run:
                X, y = splits[name]
                for u, (X_u, y_u) in enumerate(distinct):
                    if _same(X, X_u) and _same(y, y_u):
                        index.append(u)
                        break
                else:
                    index.append(len(distinct))
                    distinct.append((X, y))
            self.unique[name], self.index[name] = distinct, index
        train = self.unique["train"]
        self.n_train = train[0][0].shape[0]
        self.X_train = train[0][0] if len(train) == 1 else np.concatenate([X for X, _ in train])
        self.y_train = train[0][1] if len(train) == 1 else np.concatenate([y for _, y in train])
        self._full: tuple | None = None

    def train_offsets(self, runs: list[int]) -> np.ndarray:
        """The first flat row of each run's training split (R,)."""
        return np.array([self.index["train"][i] * self.n_train for i in runs], dtype=np.intp)

    def full_train(self, runs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The whole training split of each run, stacked: X (R, n, d), y (R, n, ...) (cached per run set)."""
        key = tuple(runs)
        if self._full is None or self._full[0] != key:
            index = [self.index["train"][i] for i in runs]
            X = np.stack([self.unique["train"][u][0] for u in index])
            y = np.stack([self.unique["train"][u][1] for u in index])
            self._full = (key, X, y)
        return self._full[1], self._full[2]


def _switches_path(loss, outputs: np.ndarray, targets: np.ndarray) -> bool:
    """True when a built-in loss would choose its code path differently for the stack than for a run.

    ``Loss.__call__`` serves class labels through a fast path when every output of the call is
    below half the largest float (the same numbers, but another sequence of operations): if some
    runs are below and some are not, each must be called on its own rows.
    """
    if not (isinstance(loss, Loss) and targets.dtype.kind in "iub" and loss._labels_suffice()):
        return False
    bound = _NO_OVERFLOW_BOUND.get(outputs.dtype, 0.0)
    largest = np.maximum.reduce(np.abs(outputs).reshape(outputs.shape[0], -1), axis=1)
    below = largest < bound
    return bool(below.any() and not below.all())


def stacked_loss(groups, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses (R, n) and dlogits (R, n, k) of R runs' outputs (R, n, k) and targets (R, n, ...).

    The loss is row-wise (a sample's loss and gradient depend on its own row only), so one call
    on the R * n rows of the runs that share a loss setting gives each row what its run gets alone.
    """
    R, n, k = outputs.shape
    if len(groups) == 1:
        loss = groups[0][0]
        if not _switches_path(loss, outputs, targets):
            per_sample_loss, dlogits = loss(outputs.reshape(R * n, k), targets.reshape(R * n, *targets.shape[2:]))
            return per_sample_loss.reshape(R, n), dlogits.reshape(R, n, k)
    per_sample_loss = dlogits = None
    for loss, positions in groups:
        parts = [positions] if not _switches_path(loss, outputs[positions], targets[positions]) else \
            [positions[i:i + 1] for i in range(len(positions))]
        for part in parts:
            m = len(part)
            values, gradients = loss(outputs[part].reshape(m * n, k), targets[part].reshape(m * n, *targets.shape[2:]))
            if per_sample_loss is None:
                per_sample_loss = np.empty((R, n), dtype=values.dtype)
                dlogits = np.empty((R, n, k), dtype=gradients.dtype)
            per_sample_loss[part] = values.reshape(m, n)
            dlogits[part] = gradients.reshape(m, n, k)
    return per_sample_loss, dlogits


def evaluate_runs(pack, runs: list[int]) -> list[dict]:
    """The metrics of :func:`lossbench.train.evaluate` for each of these runs (indices into ``pack.runs``)."""
    return [evaluate(pack.runs[i].model, pack.runs[i].built.loss, pack.runs[i].splits, pack.task) for i in runs]
