"""Data sets: scikit-learn bundled sets, scikit-learn generators and CSV files -> standardised splits.

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
# scikit-learn bundled data sets


def sklearn_datasets():
    """``sklearn.datasets``, imported when a generator first needs it (~2 s; the bundled sets are
    read from lossbench's cache, :mod:`lossbench.bundled`, or handed over by the sweep, :func:`adopt_bundled`)."""
    from sklearn import datasets

    return datasets


# name -> (scikit-learn loader, task); all ship with scikit-learn, nothing is downloaded
BUNDLED = {
    "iris": ("load_iris", CLASSIFICATION),
    "wine": ("load_wine", CLASSIFICATION),
    "breast_cancer": ("load_breast_cancer", CLASSIFICATION),
    "digits": ("load_digits", CLASSIFICATION),
    "diabetes": ("load_diabetes", REGRESSION),
}


_BUNDLED_READ: dict[str, "_RawData"] = {}


def bundled_read() -> dict[str, "_RawData"]:
    """The bundled sets this process has read (name -> raw arrays), to hand to a sweep's workers."""
    return dict(_BUNDLED_READ)


def adopt_bundled(sets: dict[str, "_RawData"]) -> None:
    """Use bundled sets another process read (:func:`bundled_read`), as if read here: the same
    arrays scikit-learn returns there, so the same numbers; kept read-only, as ``_read`` keeps them."""
    for name, raw in sets.items():
        if name in BUNDLED and name not in _BUNDLED_READ:
            for array in (raw.X, raw.y):
                array.flags.writeable = False
            _BUNDLED_READ[name] = raw


class Bundled(DataSource):
    """A data set shipped with scikit-learn (no download).

    name : iris (150 x 4, 3 classes), wine (178 x 13, 3 classes), breast_cancer (569 x 30,
        2 classes), digits (1797 x 64, 10 classes), diabetes (442 x 10, regression, 1 target).
    Other keys: see DataSource.
    """

    def __init__(self, name: str, **common):
        if name not in BUNDLED:
            raise _invalid("name", name, "one of " + ", ".join(BUNDLED))
        self.name = name
        super().__init__(**common)
        self._check_task_keys(BUNDLED[name][1])

    def _read(self, rng):
        """The set as scikit-learn ships it, read once per process (a sweep's runs share it, read-only:
        ``load`` takes copies of its rows), from lossbench's cached copy when there is one
        (:mod:`lossbench.bundled`: no import of scikit-learn, ~2 s)."""
        if self.name not in _BUNDLED_READ:
            from lossbench import bundled

            loader, task = BUNDLED[self.name]
            X, y, feature_names, class_names = bundled.read(self.name, loader, task == CLASSIFICATION)
            X.flags.writeable = y.flags.writeable = False
            _BUNDLED_READ[self.name] = _RawData(X, y, task, feature_names, class_names)
        return _BUNDLED_READ[self.name]


# ----------------------------------------------------------------------------------------------
# scikit-learn generators (keys named as scikit-learn's make_* arguments)


#: Upper bounds that keep a generated data set within memory (10M x 100 float64 values: 8 GB).
MAX_GENERATED_SAMPLES = 10_000_000
MAX_GENERATED_VALUES = 1_000_000_000


class _Generated(DataSource):
    """A scikit-learn generator; ``random_state`` fixes the generated set (null: drawn per run)."""

    task: str = CLASSIFICATION

    def __init__(self, n_samples: int, random_state: int | None = 0, **common):
        self.n_samples = _check_int("n_samples", n_samples, 2)
        if self.n_samples > MAX_GENERATED_SAMPLES:
            raise _invalid("n_samples", n_samples, f"an integer from 2 to {MAX_GENERATED_SAMPLES:,}")
        self.random_state = _check_random_state(random_state)
        super().__init__(**common)
        self._check_task_keys(self.task)

    def _generate(self, random_state: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) from the scikit-learn generator."""
        raise NotImplementedError

    def _scale_keys(self) -> str:
        """The keys that set the size of the generated values, for messages."""
        keys = [k for k in ("noise", "cluster_std", "class_sep", "factor") if hasattr(self, k)]
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) or "the generator's keys"

    def _read(self, rng):
        seed = self.random_state
        if seed is None:
            seed = int(rng.integers(2**31))
        n_features = getattr(self, "n_features", 2)
        if self.n_samples * n_features > MAX_GENERATED_VALUES:
            raise ValueError(f"n_samples={self.n_samples} x n_features={n_features} is too large: at most "
                             f"{MAX_GENERATED_VALUES:,} values ({MAX_GENERATED_VALUES * 8 / 1e9:.0f} GB) in all")
        with np.errstate(over="ignore", invalid="ignore"):
            X, y = self._generate(seed)
            finite = np.isfinite(X).all() and np.isfinite(np.asarray(y, dtype=np.float64)).all() \
                and np.isfinite(X.std(axis=0)).all()
        if not finite:
            raise ValueError(f"the generated data are not finite: a value of {self._scale_keys()} "
                             "is too large for float64")
        feature_names = [f"x{j}" for j in range(X.shape[1])]
        if self.task == CLASSIFICATION:
            n_classes = int(y.max()) + 1
            class_names = [str(c) for c in range(n_classes)]
            return _RawData(X.astype(np.float64), y.astype(np.int64), self.task, feature_names,
                            class_names)
        y = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
        return _RawData(X.astype(np.float64), y, self.task, feature_names, None)


class Moons(_Generated):
    """Two interleaving half circles (``sklearn.datasets.make_moons``): 2 features, 2 classes.

    n_samples : int >= 2; noise : std of Gaussian noise added to the points, >= 0;
    random_state : seed of the generated set (int >= 0) or None to draw it from the run's rng.
    """

    name = "moons"

    def __init__(self, n_samples: int = 500, noise: float = 0.2, random_state=0, **common):
        self.noise = _check_real("noise", noise, 0, MAX_SCALE)
        super().__init__(n_samples, random_state, **common)

    def _generate(self, random_state):
        return sklearn_datasets().make_moons(
            n_samples=self.n_samples, noise=self.noise, random_state=random_state
        )


class Circles(_Generated):
    """A small circle inside a large one (``sklearn.datasets.make_circles``): 2 features, 2 classes.

    n_samples : int >= 2; noise : std of Gaussian noise, >= 0; factor : inner / outer radius in
    [0, 1); random_state : as in Moons.
    """

    name = "circles"

    def __init__(
        self, n_samples: int = 500, noise: float = 0.1, factor: float = 0.5, random_state=0,
        **common,
    ):
        self.noise = _check_real("noise", noise, 0, MAX_SCALE)
        self.factor = _check_real("factor", factor, 0, 1, high_open=True)
        super().__init__(n_samples, random_state, **common)

    def _generate(self, random_state):
        return sklearn_datasets().make_circles(
            n_samples=self.n_samples, noise=self.noise, factor=self.factor,
            random_state=random_state,
        )


class Blobs(_Generated):
    """Isotropic Gaussian blobs (``sklearn.datasets.make_blobs``), one class per blob.

    n_samples : int >= 2; n_features : int >= 1; centers : number of blobs = classes, int >= 2;
    cluster_std : std of each blob, > 0 (centres are drawn in [-10, 10]^n_features);
    random_state : as in Moons.
    """

    name = "blobs"

    def __init__(
        self, n_samples: int = 500, n_features: int = 2, centers: int = 3,
        cluster_std: float = 1.0, random_state=0, **common,
    ):
        self.n_features = _check_int("n_features", n_features, 1)
        self.centers = _check_int("centers", centers, 2)
        self.cluster_std = _check_real("cluster_std", cluster_std, 0, MAX_SCALE, low_open=True)
        super().__init__(n_samples, random_state, **common)
        if self.centers > self.n_samples:  # a blob without a point is a class without a sample
            raise _invalid("centers", centers, f"an integer from 2 to n_samples = {self.n_samples}")

    def _generate(self, random_state):
        return sklearn_datasets().make_blobs(
            n_samples=self.n_samples, n_features=self.n_features, centers=self.centers,
            cluster_std=self.cluster_std, random_state=random_state,
        )


class SyntheticClassification(_Generated):
    """Gaussian clusters on hypercube vertices (``sklearn.datasets.make_classification``).

    n_samples : int >= 2; n_features : int >= 1; n_informative : int >= 1; n_redundant : linear
    combinations of the informative features, int >= 0, n_informative + n_redundant <= n_features
    (the rest is noise); n_classes : int >= 2; n_clusters_per_class : int >= 1, with
    n_classes * n_clusters_per_class <= 2**n_informative; class_sep : hypercube size, > 0;
    flip_y : fraction of labels randomised in the WHOLE data set (train, val and test) in [0, 1],
    unlike label_noise which corrupts the training split only; random_state : as in Moons.
    """

    name = "classification"

    def __init__(
        self, n_samples: int = 1000, n_features: int = 20, n_informative: int = 5,
        n_redundant: int = 2, n_classes: int = 3, n_clusters_per_class: int = 2,
        class_sep: float = 1.0, flip_y: float = 0.0, random_state=0, **common,
    ):
        self.n_features = _check_int("n_features", n_features, 1)
        self.n_informative = _check_int("n_informative", n_informative, 1)
        self.n_redundant = _check_int("n_redundant", n_redundant, 0)
        if self.n_informative + self.n_redundant > self.n_features:
            raise ValueError(
                f"n_informative + n_redundant = {self.n_informative} + {self.n_redundant}: "
                f"expected <= n_features = {self.n_features}"
            )
        self.n_classes = _check_int("n_classes", n_classes, 2)
        self.n_clusters_per_class = _check_int("n_clusters_per_class", n_clusters_per_class, 1)
        n_samples_checked = _check_int("n_samples", n_samples, 2)
        if self.n_classes * self.n_clusters_per_class > n_samples_checked:  # a cluster needs a sample
            raise ValueError(
                f"n_classes * n_clusters_per_class = {self.n_classes} * {self.n_clusters_per_class}: "
                f"expected <= n_samples = {n_samples_checked} (a sample per cluster)"
            )
        # n_classes * n_clusters_per_class <= n_samples <= 10M < 2**24: a huge n_informative passes
        # without computing 2**n_informative
        if self.n_informative < 64 and self.n_classes * self.n_clusters_per_class > 2**self.n_informative:
            raise ValueError(
                f"n_classes * n_clusters_per_class = {self.n_classes} * "
                f"{self.n_clusters_per_class}: expected <= 2**n_informative = "
                f"{2**self.n_informative} (one hypercube vertex per cluster)"
            )
        self.class_sep = _check_real("class_sep", class_sep, 0, MAX_SCALE, low_open=True)
        self.flip_y = _check_real("flip_y", flip_y, 0, 1)
        super().__init__(n_samples, random_state, **common)

    def _generate(self, random_state):
        return sklearn_datasets().make_classification(
            n_samples=self.n_samples, n_features=self.n_features,
            n_informative=self.n_informative, n_redundant=self.n_redundant, n_repeated=0,
            n_classes=self.n_classes, n_clusters_per_class=self.n_clusters_per_class,
            class_sep=self.class_sep, flip_y=self.flip_y, random_state=random_state,
        )


class SyntheticRegression(_Generated):
    """A random linear model plus Gaussian noise (``sklearn.datasets.make_regression``).

    n_samples : int >= 2; n_features : int >= 1; n_informative : features with non-zero
    coefficients, 1 <= n_informative <= n_features; n_targets : target columns, int >= 1;
    noise : std of the Gaussian noise added to the targets (original units), >= 0;
    random_state : as in Moons.
    """

    name = "regression"
    task = REGRESSION

    def __init__(
        self, n_samples: int = 500, n_features: int = 10, n_informative: int = 5,
        n_targets: int = 1, noise: float = 10.0, random_state=0, **common,
    ):
        self.n_features = _check_int("n_features", n_features, 1)
        self.n_informative = _check_int("n_informative", n_informative, 1)
        if self.n_informative > self.n_features:
            raise _invalid("n_informative", n_informative, f"<= n_features = {self.n_features}")
        self.n_targets = _check_int("n_targets", n_targets, 1)
        self.noise = _check_real("noise", noise, 0, MAX_SCALE)
        super().__init__(n_samples, random_state, **common)

    def _generate(self, random_state):
        return sklearn_datasets().make_regression(
            n_samples=self.n_samples, n_features=self.n_features,
            n_informative=self.n_informative, n_targets=self.n_targets, noise=self.noise,
            random_state=random_state,
        )


# ----------------------------------------------------------------------------------------------
# CSV files: lossbench/csv_data.py, importable here as lossbench.data.CSV (the conf file's _target_)


def __getattr__(name: str):
    """``lossbench.data.CSV``, imported on first use: csv_data subclasses DataSource from this module."""
    if name == "CSV":
        from lossbench.csv_data import CSV

        return CSV
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
