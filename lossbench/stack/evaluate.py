"""The data of a pack (each run's own splits, shared where equal), the stacked loss call, evaluation."""

from __future__ import annotations

import numpy as np

from lossbench.losses import _NO_OVERFLOW_BOUND, CrossEntropy, Loss
from lossbench.metrics import _SMALLEST_PROBABILITY, ECE_BINS, VANISHING_FRACTION, regression_metrics


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
        self._gathered: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def train_offsets(self, runs: list[int]) -> np.ndarray:
        """The first flat row of each run's training split (R,)."""
        return np.array([self.index["train"][i] * self.n_train for i in runs], dtype=np.intp)

    def gathered(self, name: str, runs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Split ``name`` (``train``: full-batch steps; any: evaluation) of each run, stacked: X (R, n, d),
        y (R, n, ...), cached for the last few run sets (a run that diverges leaves the set)."""
        key = (name, tuple(runs))
        if key not in self._gathered:
            if len(self._gathered) >= 8:
                self._gathered.clear()
            arrays = [self.unique[name][self.index[name][i]] for i in runs]
            self._gathered[key] = (np.stack([X for X, _ in arrays]), np.stack([y for _, y in arrays]))
        return self._gathered[key]


#: built-in losses whose class-label path ``stacked_loss`` may call directly (their own classes, not subclasses)
_LABEL_FAST_PATH = {CrossEntropy}


def _switches_path(loss, outputs: np.ndarray, targets: np.ndarray) -> bool:
    """True when a built-in loss would choose its code path differently for the stack than for a run.

    ``Loss.__call__`` serves class labels through a fast path when every output of the call is
    below half the largest float (the same numbers, but another sequence of operations): if some
    runs are below and some are not, each must be called on its own rows.
    """
    if not (isinstance(loss, Loss) and targets.dtype.kind in "iub" and loss._labels_suffice()):
        return False
    bound = _NO_OVERFLOW_BOUND.get(outputs.dtype, 0.0)
    if np.maximum.reduce(np.abs(outputs), axis=None) < bound:  # the common case: every run is below (nan: not)
        return False
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
        if (type(loss) in _LABEL_FAST_PATH and targets.dtype.kind in "iu" and loss._labels_suffice()
                and np.maximum.reduce(np.abs(outputs), axis=None) < _NO_OVERFLOW_BOUND.get(outputs.dtype, 0.0)):
            # what Loss.__call__ does for these rows once its checks pass (the targets are training labels,
            # checked on every split by the first evaluation): the label path, every run's outputs below the bound
            per_sample_loss, dlogits = loss._loss_and_gradient_of_labels(
                outputs.reshape(R * n, k), targets.reshape(R * n).astype(np.intp, copy=False))
            return per_sample_loss.reshape(R, n), dlogits.reshape(R, n, k)
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


EVAL_CHUNK_VALUES = 2**20
#: runs with splits of one shape but other values (other seeds) are evaluated in one call on their
#: splits gathered into (R, n, d), when that array holds at most this many values: small splits,
#: where the calls cost more than the arithmetic (ten seeds of digits: ~2x faster evaluation)
GATHER_MAX_VALUES = 2**22


def _eval_calls(pack, name: str, runs: list[int]) -> list[tuple[list[int], np.ndarray, np.ndarray, bool]]:
    """The calls evaluating split ``name`` of these runs: ``(slots, X, y, gathered)``, X (1, n, d) with
    y (n, ...) for runs sharing one array (broadcast), or X (R', n, d) with y (R', n, ...) gathered."""
    data = pack.data
    by_data: dict[int, list[int]] = {}
    for slot, i in enumerate(runs):
        by_data.setdefault(data.index[name][i], []).append(slot)
    # runs per call: a sub-stack's outputs stay near a cache-sized 2**20 values (10 runs of a
    # 50,000-row split at once were slower per run than one at a time)
    n_values = data.unique[name][0][0].shape[0] * max(pack.runs[runs[0]].built.n_outputs, 1)
    chunk = max(1, EVAL_CHUNK_VALUES // max(1, n_values))
    by_shape: dict[tuple, list[int]] = {}
    for u in by_data:
        X, y = data.unique[name][u]
        by_shape.setdefault((X.shape, X.dtype.str, y.shape, y.dtype.str), []).append(u)
    calls = []
    for arrays in by_shape.values():
        members = [slot for u in arrays for slot in by_data[u]]
        if len(arrays) > 1 and data.unique[name][arrays[0]][0].size * len(members) <= GATHER_MAX_VALUES:
            for first in range(0, len(members), chunk):
                slots = members[first:first + chunk]
                X, y = data.gathered(name, [runs[slot] for slot in slots])
                calls.append((slots, X, y, True))
            continue
        for u in arrays:
            X, y = data.unique[name][u]
            calls.extend((by_data[u][first:first + chunk], X[None], y, False)
                         for first in range(0, len(by_data[u]), chunk))
    return calls


def evaluate_runs(pack, runs: list[int]) -> list[dict]:
    """The metrics of :func:`lossbench.train.evaluate` for each of these runs (indices into ``pack.runs``).

    Stacked: per split, one ``forward_stacked`` over the runs that share a data array (broadcast
    over them) or, for small splits of one shape, over all of them (gathered, :func:`_eval_calls`),
    one loss call per loss setting, and the metrics of :func:`stacked_classification_metrics`
    over the run axis; regression metrics run by run.
    """
    positions = [pack.active.index(i) for i in runs]
    rows = [dict() for _ in runs]
    model = pack.active_model
    for name in pack.data.names:
        for slots, X, y, gathered in _eval_calls(pack, name, runs):
            stack = [positions[slot] for slot in slots]
            everyone = stack == list(range(len(pack.active)))
            params = pack.P if everyone else {key: value[stack] for key, value in pack.P.items()}
            outputs, _ = model.forward_stacked(params, X)
            labels = y if gathered else np.broadcast_to(y, (len(slots), *y.shape))
            losses = [pack.runs[runs[slot]].built.loss for slot in slots]
            groups = _group_losses(losses)
            per_sample_loss, dlogits = stacked_loss(groups, outputs, labels)
            mean_loss = np.mean(per_sample_loss, axis=1)
            if pack.task == "classification":
                metrics = stacked_classification_metrics(outputs, labels if gathered else y, groups,
                                                         dlogits if name == "train" else None)
            else:
                metrics = [regression_metrics(outputs[j], labels[j]) for j in range(len(slots))]
            for j, slot in enumerate(slots):
                row = rows[slot]
                row[f"{name}_loss"] = float(mean_loss[j])
                for key, value in metrics[j].items():
                    row[f"{name}_{key}"] = float(value)
    return rows


def _group_losses(losses: list) -> list[tuple[object, np.ndarray]]:
    groups: dict = {}
    for position, loss in enumerate(losses):
        groups.setdefault((type(loss), repr(loss)), (loss, []))[1].append(position)
    return [(loss, np.array(positions)) for loss, positions in groups.values()]


def _mean_last(values: np.ndarray) -> np.ndarray:
    """``np.mean(values[r])`` for every r of (R, n): the same pairwise sum along the row, divided by n."""
    return np.add.reduce(values, axis=-1, dtype=np.float64) / values.shape[-1]


def stacked_classification_metrics(outputs: np.ndarray, labels: np.ndarray, groups, dlogits=None) -> list[dict]:
    """:func:`lossbench.metrics.classification_metrics` (+ :func:`gradient_diagnostics` when ``dlogits``
    is given) of R runs' outputs (R, n, k) on one split's labels (n,) or on each run's own (R, n), one
    dict per run, equal to
    the per-run functions bit for bit: the same operations along the same axes per run (means
    along the last, contiguous axis; ECE bin sums by one ``bincount`` whose bins are per run;
    counts, exact in float64, for the fractions). The two masked means of the diagnostics sum a
    different number of samples per run, so they are taken run by run, as alone.
    """
    R, n, k = outputs.shape
    outputs = outputs.astype(np.float64, copy=False)
    n_classes = max(k, 2)
    labels = labels.astype(np.int64, copy=False)
    per_run = labels.ndim == 2  # (R, n): each run's own split (gathered), else one split's labels (n,)
    nan = float("nan")
    finite = np.isfinite(outputs).reshape(R, -1).all(axis=1)
    predicted = outputs[:, :, 0] > 0 if k == 1 else outputs.argmax(axis=2)
    correct_prediction = predicted == labels  # (R, n)
    accuracy = _mean_last(correct_prediction) if n else np.full(R, nan)
    # the link's probabilities (R', n, C) of the runs whose loss has one, one call per loss setting
    parts, owners = [], []
    for loss, positions in groups:
        method = getattr(loss, "probabilities", None)
        p = None if method is None or not n else method(outputs[positions].reshape(len(positions) * n, k))
        if p is not None:
            parts.append(np.asarray(p, dtype=np.float64).reshape(len(positions), n, n_classes))
            owners.extend(int(position) for position in positions)
    extra = {}
    if parts:
        p = parts[0] if len(parts) == 1 else np.concatenate(parts)
        usable = finite[owners] & np.isfinite(p).reshape(len(owners), -1).all(axis=1)
        if not usable.all():
            p = p[usable]
            owners = [owner for owner, ok in zip(owners, usable) if ok]
    if parts and owners:
        m = len(owners)
        owned = labels[owners] if per_run else labels[None, :]  # (m, n) or (1, n), broadcast
        p_label = np.take_along_axis(p, owned[:, :, None], axis=2)[:, :, 0]
        if n_classes == 2:
            brier = _mean_last((p[:, :, 1] - owned) ** 2)
        else:
            squared_error = np.square(p)
            squared_error[np.arange(m)[:, None], np.arange(n)[None, :], owned] += 1.0 - 2.0 * p_label
            brier = _mean_last(squared_error.sum(axis=2))
        confidence = p.max(axis=2)
        correct = correct_prediction[owners].astype(np.float64)
        bin_index = np.clip(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
        bin_index += (np.arange(m) * ECE_BINS)[:, None]
        confidence_sum = np.bincount(bin_index.ravel(), weights=confidence.ravel(), minlength=m * ECE_BINS)
        correct_sum = np.bincount(bin_index.ravel(), weights=correct.ravel(), minlength=m * ECE_BINS)
        ece = np.abs(correct_sum - confidence_sum).reshape(m, ECE_BINS).sum(axis=1) / n
        log_loss = -_mean_last(np.log(np.maximum(p_label, _SMALLEST_PROBABILITY)))
        extra = {r: (float(log_loss[j]), float(brier[j]), float(ece[j])) for j, r in enumerate(owners)}
    diagnostics = None if dlogits is None else _stacked_diagnostics(dlogits, correct_prediction, finite)
    results = []
    for r in range(R):
        if not finite[r]:
            row = dict.fromkeys(("accuracy", "log_loss", "brier", "ece"), nan)
        else:
            row = {"accuracy": float(accuracy[r]), "log_loss": nan, "brier": nan, "ece": nan}
            if r in extra:
                row["log_loss"], row["brier"], row["ece"] = extra[r]
        if diagnostics is not None:
            row.update(diagnostics[r])
        results.append(row)
    return results


def _stacked_diagnostics(dlogits: np.ndarray, correct: np.ndarray, finite: np.ndarray) -> list[dict]:
    """:func:`lossbench.metrics.gradient_diagnostics` of R runs: dlogits (R, n, k), correctness (R, n)."""
    R, n = correct.shape
    d = dlogits.astype(np.float64, copy=False).reshape(R, n, -1)
    finite = finite & np.isfinite(d).reshape(R, -1).all(axis=1)
    norms = np.sqrt(np.einsum("rij,rij->ri", d, d))
    wrong = ~correct
    n_correct = np.count_nonzero(correct, axis=1)
    n_wrong = n - n_correct
    # fraction of the wrong samples whose gradient vanishes: a count over a count, exact as alone's mean
    vanishing = (norms < VANISHING_FRACTION * norms.max(axis=1, initial=0.0)[:, None]) | (norms == 0)
    n_vanishing = np.count_nonzero(vanishing & wrong, axis=1)
    nan = float("nan")
    rows = []
    for r in range(R):
        row = dict.fromkeys(("dz_norm_correct", "dz_norm_wrong", "wrong_vanishing_frac"), nan)
        if finite[r]:
            if n_correct[r]:
                row["dz_norm_correct"] = float(np.add.reduce(norms[r][correct[r]])) / int(n_correct[r])
            if n_wrong[r]:
                row["dz_norm_wrong"] = float(np.add.reduce(norms[r][wrong[r]])) / int(n_wrong[r])
                row["wrong_vanishing_frac"] = float(n_vanishing[r]) / int(n_wrong[r])
        rows.append(row)
    return rows
