"""Data sets: the :class:`DataSource` pipeline every source shares -> standardised splits.

The sources: scikit-learn's bundled sets (:mod:`lossbench.bundled`), scikit-learn's generators
(:mod:`lossbench.generated`) and CSV files (:mod:`lossbench.csv_data`), all importable from here.

Every source is a class built by Hydra from ``conf/dataset/<name>.yaml`` (``_target_`` + keys); it
validates its keys in ``__init__`` and turns them into arrays with ``load(rng)``::

    source = instantiate(cfg.dataset)        # ValueError naming the key on a bad value
    data = source.load(rng)                  # numpy Generator -> Dataset

``load`` runs the same pipeline for every source:

1. read or generate the full data set (X (n, d), labels or targets). Generated sets are fixed by
   their own ``random_state`` key, so every run sees the same data set by default;
2. split into train / validation / test (``test_size``, ``val_size``), stratified by class for
   classification;
3. standardise features with training-split statistics only, ``x' = (x - mean_train) / std_train``
   (constant training columns keep scale 1); regression targets are standardised the same way, so
   that learning rates and loss values are comparable across data sets (metrics are therefore in
   units of the training targets' standard deviation);
4. corrupt the training split only: ``label_noise`` (classification) or ``outliers`` (regression).

The split, the label noise and the outliers draw from independent children of the run's ``rng``
(``rng.spawn``), so a run with ``label_noise=0.2`` has exactly the same split as one without, and the
same seed always gives identical arrays. Nothing here touches numpy's global random state.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLASSIFICATION = "classification"
REGRESSION = "regression"

#: Upper end of every scale key (noise, cluster_std, class_sep, outlier_scale): far beyond the
#: data's own scale (points in [-10, 10], radius 1, standardised targets) a set is pure noise.
MAX_SCALE = 1e6

# auto task rule for CSV targets: integer-valued numeric columns with at most this many distinct
# values are class labels.
MAX_AUTO_CLASSES = 20


@dataclass
class Dataset:
    """Standardised splits of one data set.

    X_* : float64 (n_split, n_features), standardised with training-split statistics.
    y_* : classification -> int64 (n_split,) labels in [0, n_targets);
          regression -> float64 (n_split, n_targets), standardised with training statistics.
    X_val/y_val and X_test/y_test are None when val_size / test_size is 0.
    n_targets : number of classes (classification) or of target columns (regression).
    class_names : one name per class (classification), None for regression.
    """

    name: str
    task: str
    n_targets: int
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    feature_names: list[str]
    class_names: list[str] | None

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


@dataclass
class _RawData:
    """A full data set before splitting: y int labels (n,) or float targets (n, n_targets)."""

    X: np.ndarray
    y: np.ndarray
    task: str
    feature_names: Sequence[str]
    class_names: Sequence[str] | None


# ----------------------------------------------------------------------------------------------
# key validation


def _invalid(key: str, value, allowed: str) -> ValueError:
    return ValueError(f"{key}={value!r}: expected {allowed}")


def _check_real(key: str, value, low: float, high: float, *, low_open=False, high_open=False):
    """Check low <(=) value <(=) high for a real number (bool and NaN rejected); return float."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if not is_real:
        raise _invalid(key, value, f"a number in {interval}")
    above_low = value > low if low_open else value >= low
    below_high = value < high if high_open else value <= high
    if not (above_low and below_high):
        raise _invalid(key, value, f"a number in {interval}")
    return float(value)


def _check_int(key: str, value, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise _invalid(key, value, f"an integer >= {minimum}")
    return int(value)


def _check_random_state(value) -> int | None:
    if value is None:
        return None
    return _check_int("random_state", value, 0)


def _count(fraction: float, n: int) -> int:
    """round(fraction * n) (halves up), at least 1 when fraction > 0."""
    count = math.floor(fraction * n + 0.5)
    return max(count, 1) if fraction > 0 else 0


# ----------------------------------------------------------------------------------------------
# the common pipeline


class DataSource:
    """Base of every data source: the keys common to all data sets and the ``load`` pipeline.

    Keys
    ----
    test_size, val_size : fractions of the whole data set in [0, 1), test_size + val_size < 1.
        A split gets round(fraction * n) samples (at least 1 if the fraction is > 0); 0 means no
        such split (None in the Dataset). Classification splits are stratified: every class gets at
        least one sample in every split and the rest is shared out in proportion to class sizes.
    label_noise : fraction in [0, 1] of TRAINING labels replaced by a different class drawn uniformly
        from the other n_classes - 1 (exactly round(label_noise * n_train) labels change, at
        least one when label_noise > 0).
        Classification only; validation and test labels stay clean.
    outliers : fraction in [0, 1] of TRAINING samples whose targets are corrupted (every target
        column of the sample): y <- y + outlier_scale * N(0, 1) in standardised units, i.e.
        y + N(0, (outlier_scale * std_train)^2) in original units. Regression only. The target
        standardisation uses the clean training targets, so metrics stay comparable across outlier
        fractions.
    outlier_scale : size of the outliers in training standard deviations, > 0.
    """

    name: str = "data"

    def __init__(
        self,
        test_size: float = 0.2,
        val_size: float = 0.2,
        label_noise: float = 0.0,
        outliers: float = 0.0,
        outlier_scale: float = 10.0,
    ):
        self.test_size = _check_real("test_size", test_size, 0, 1, high_open=True)
        self.val_size = _check_real("val_size", val_size, 0, 1, high_open=True)
        if self.test_size + self.val_size >= 1:
            raise ValueError(
                f"test_size + val_size = {self.test_size} + {self.val_size}: expected a sum < 1 "
                "so that training data remains"
            )
        self.label_noise = _check_real("label_noise", label_noise, 0, 1)
        self.outliers = _check_real("outliers", outliers, 0, 1)
        self.outlier_scale = _check_real("outlier_scale", outlier_scale, 0, MAX_SCALE, low_open=True)

    def _check_task_keys(self, task: str) -> None:
        """Reject corruption keys that do not fit the task."""
        if task == REGRESSION and self.label_noise > 0:
            raise ValueError(
                f"label_noise={self.label_noise!r}: {self.name} is a regression data set; "
                "label_noise applies to classification only (use outliers to corrupt targets)"
            )
        if task == CLASSIFICATION and self.outliers > 0:
            raise ValueError(
                f"outliers={self.outliers!r}: {self.name} is a classification data set; "
                "outliers applies to regression only (use label_noise to corrupt labels)"
            )

    def _read(self, rng: np.random.Generator) -> _RawData:
        """The full data set; rng is only for sources that draw their data from the run."""
        raise NotImplementedError

    def load(self, rng: np.random.Generator) -> Dataset:
        """Read, split, standardise and corrupt; all randomness from ``rng`` (see module doc)."""
        data_rng, split_rng, noise_rng = rng.spawn(3)
        raw = self._read(data_rng)
        self._check_task_keys(raw.task)
        classification = raw.task == CLASSIFICATION
        n_targets = len(raw.class_names) if classification else raw.y.shape[1]

        if classification:
            splits = self._stratified_split(raw.y, raw.class_names, split_rng)
        else:
            splits = self._random_split(len(raw.y), split_rng)
        train, val, test = splits

        X_mean, X_scale = _standardisation(raw.X[train])
        y = raw.y
        if not classification:
            y_mean, y_scale = _standardisation(raw.y[train])
            y = (raw.y - y_mean) / y_scale

        def subset(indices):
            if indices is None:
                return None, None
            return (raw.X[indices] - X_mean) / X_scale, y[indices]

        X_train, y_train = subset(train)
        if classification:
            y_train = self._flip_labels(y_train, n_targets, noise_rng)
        else:
            y_train = self._add_outliers(y_train, noise_rng)
        X_val, y_val = subset(val)
        X_test, y_test = subset(test)
        return Dataset(
            name=self.name,
            task=raw.task,
            n_targets=n_targets,
            X_train=X_train,
            y_train=y_train,
            X_val=X_val,
            y_val=y_val,
            X_test=X_test,
            y_test=y_test,
            feature_names=list(raw.feature_names),
            class_names=None if raw.class_names is None else list(raw.class_names),
        )

    # -- splitting ------------------------------------------------------------------------------

    def _split_sizes(self, n: int) -> tuple[int, int, int]:
        """(n_train, n_val, n_test) for n samples."""
        n_test = _count(self.test_size, n)
        n_val = _count(self.val_size, n)
        n_train = n - n_test - n_val
        if n_train < 1:
            raise ValueError(
                f"{self.name}: test_size={self.test_size} and val_size={self.val_size} take "
                f"{n_test} + {n_val} of the {n} samples and leave none for training: lower them"
            )
        return n_train, n_val, n_test

    def _random_split(self, n: int, rng: np.random.Generator):
        """Indices (train, val or None, test or None) of a uniformly random split."""
        n_train, n_val, n_test = self._split_sizes(n)
        order = rng.permutation(n)
        test, val, train = np.split(order, [n_test, n_test + n_val])
        return train, (val if n_val else None), (test if n_test else None)

    def _stratified_split(self, labels: np.ndarray, class_names, rng: np.random.Generator):
        """Indices (train, val or None, test or None), stratified by class.

        Every class gets one sample in every non-empty split; the remaining samples of class c,
        r_c of them, get keys (i + u_i) / r_c (i = 0..r_c-1, u_i ~ U[0, 1)), all keys are sorted
        and cut into the remaining split sizes. Each class is thus spread evenly over the sorted
        order, so it lands in each split in proportion to the split size (within two samples).
        """
        n_classes = len(class_names)
        sizes = np.array(self._split_sizes(len(labels)))  # train, val, test
        split_keys = ("train", "val_size", "test_size")
        present = sizes > 0
        class_counts = np.bincount(labels, minlength=n_classes)
        small_split = np.flatnonzero(present & (sizes < n_classes))
        if small_split.size:
            s = small_split[0]
            if s == 0:
                raise ValueError(
                    f"{self.name}: test_size={self.test_size} and val_size={self.val_size} leave "
                    f"{sizes[0]} training samples for {n_classes} classes; every class needs a "
                    "training sample: lower them"
                )
            key = split_keys[s]
            raise ValueError(
                f"{self.name}: {key}={getattr(self, key)} gives {sizes[s]} samples, fewer than the "
                f"{n_classes} classes; a stratified split needs one sample of each class: raise "
                f"{key} or set it to 0 (no such split)"
            )
        n_present = int(present.sum())
        rare = np.flatnonzero(class_counts < n_present)
        if rare.size:
            c = rare[0]
            raise ValueError(
                f"{self.name}: class {class_names[c]!r} has {class_counts[c]} sample(s), fewer than "
                f"the {n_present} splits; every class needs a sample in every split: set val_size "
                "or test_size to 0, or drop the class"
            )

        counts = np.tile(present.astype(np.int64), (n_classes, 1))  # (class, split): one each
        residual_per_class = class_counts - n_present
        residual_per_split = np.where(present, sizes - n_classes, 0)
        unit_class = np.repeat(np.arange(n_classes), residual_per_class)
        unit_rank = np.arange(unit_class.size) - np.repeat(
            np.cumsum(residual_per_class) - residual_per_class, residual_per_class
        )
        keys = (unit_rank + rng.random(unit_class.size)) / residual_per_class[unit_class]
        # the sorted keys go to test first, then val, then train (columns 2, 1, 0 of counts)
        split_of_position = np.repeat([2, 1, 0], residual_per_split[[2, 1, 0]])
        np.add.at(counts, (unit_class[np.argsort(keys, kind="stable")], split_of_position), 1)

        members = [[], [], []]
        for c in range(n_classes):  # a loop over classes, not samples
            shuffled = rng.permutation(np.flatnonzero(labels == c))
            for s, part in enumerate(np.split(shuffled, np.cumsum(counts[c])[:-1])):
                members[s].append(part)
        train, val, test = (rng.permutation(np.concatenate(parts)) for parts in members)
        return train, (val if present[1] else None), (test if present[2] else None)

    # -- corruption of the training split ---------------------------------------------------------

    def _flip_labels(self, y_train: np.ndarray, n_classes: int, rng: np.random.Generator):
        """Copy of y_train with round(label_noise * n) labels moved to a uniformly drawn other class."""
        n_flip = _count(self.label_noise, len(y_train))
        if n_flip == 0:
            return y_train
        noisy = y_train.copy()
        flipped = rng.choice(len(y_train), size=n_flip, replace=False)
        # adding 1..C-1 modulo C reaches every other class with equal probability, never the same
        noisy[flipped] = (noisy[flipped] + rng.integers(1, n_classes, size=n_flip)) % n_classes
        return noisy

    def _add_outliers(self, y_train: np.ndarray, rng: np.random.Generator):
        """Copy of y_train (standardised) with round(outliers * n) rows + outlier_scale * N(0, 1)."""
        n_outliers = _count(self.outliers, len(y_train))
        if n_outliers == 0:
            return y_train
        corrupted = y_train.copy()
        rows = rng.choice(len(y_train), size=n_outliers, replace=False)
        corrupted[rows] += self.outlier_scale * rng.standard_normal((n_outliers, y_train.shape[1]))
        return corrupted


def _standardisation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (population std; 1 for constant columns) of values (n, d)."""
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = np.ptp(values, axis=0) == 0  # exact test: a float std of equal values may be 1e-17
    return mean, np.where(constant, 1.0, std)


# ----------------------------------------------------------------------------------------------
# The sources live in their own modules, importable here under the names the conf files' _target_
# use (lossbench.data.Bundled, .Moons, .CSV, ...): each subclasses DataSource from this module.

_ELSEWHERE = {
    "lossbench.bundled": ("Bundled", "BUNDLED", "bundled_read", "adopt_bundled"),
    "lossbench.generated": ("Moons", "Circles", "Blobs", "SyntheticClassification", "SyntheticRegression",
                            "MAX_GENERATED_SAMPLES", "MAX_GENERATED_VALUES", "sklearn_datasets"),
    "lossbench.csv_data": ("CSV",),
}


def __getattr__(name: str):
    """A source defined in another module (``_ELSEWHERE``), imported on first use."""
    for module, names in _ELSEWHERE.items():
        if name in names:
            import importlib

            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
