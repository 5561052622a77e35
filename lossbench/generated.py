"""scikit-learn's generators as data sets: moons, circles, blobs, classification, regression.

Keys are named as scikit-learn's ``make_*`` arguments; ``random_state`` fixes the generated set
(null: drawn per run). ``lossbench.data.Moons`` and the others (the conf files' ``_target_``) are
these classes.
"""

from __future__ import annotations

import numpy as np

from lossbench.data import (CLASSIFICATION, MAX_SCALE, REGRESSION, DataSource, _check_int, _check_random_state,
                            _check_real, _invalid, _RawData)


def sklearn_datasets():
    """``sklearn.datasets``, imported when a generator first generates (~2 s; the bundled sets are
    read without it, :mod:`lossbench.bundled`)."""
    from sklearn import datasets

    return datasets


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
