"""scikit-learn's bundled data sets (:class:`Bundled`), read without importing scikit-learn once a
parsed copy is cached.

``import sklearn.datasets`` takes about 2 s, longer than a sweep takes to plan or a small run to
train. The first read of a set goes through scikit-learn's own loader (``load_digits`` ...) and
saves the arrays it returned, unchanged, to ``<cache>/bundled/<name>-<key>.npz`` (written
atomically, NumPy's format); later reads, in any process, load that file (about a millisecond) with
``allow_pickle=False``. ``<key>`` names the scikit-learn installation (version and location), so an
upgrade or another environment reads through scikit-learn again.

The cache folder is ``$LOSSBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/lossbench``, else
``~/.cache/lossbench`` (none without a home folder: nothing is cached); deleting it is always
safe. A cached file that does not load, or whose arrays do not have the expected keys, dtypes and
shapes, is ignored and written anew; a cache that cannot be written only costs the import.

A process reads each set once (:func:`bundled_read`); a sweep hands the sets it read to its workers
(:func:`adopt_bundled`). ``lossbench.data.Bundled`` (the conf files' ``_target_``) is this class.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import zipfile
from importlib import metadata, util
from pathlib import Path

import numpy as np

from lossbench.data import CLASSIFICATION, REGRESSION, DataSource, _invalid, _RawData

log = logging.getLogger("lossbench")

FORMAT = 1  # bump when what is saved changes


# name -> (scikit-learn loader, task); all ship with scikit-learn, nothing is downloaded
BUNDLED = {
    "iris": ("load_iris", CLASSIFICATION),
    "wine": ("load_wine", CLASSIFICATION),
    "breast_cancer": ("load_breast_cancer", CLASSIFICATION),
    "digits": ("load_digits", CLASSIFICATION),
    "diabetes": ("load_diabetes", REGRESSION),
}


_BUNDLED_READ: dict[str, _RawData] = {}


def bundled_read() -> dict[str, _RawData]:
    """The bundled sets this process has read (name -> raw arrays), to hand to a sweep's workers."""
    return dict(_BUNDLED_READ)


def adopt_bundled(sets: dict[str, _RawData]) -> None:
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
        (:func:`read`: no import of scikit-learn, ~2 s)."""
        if self.name not in _BUNDLED_READ:
            loader, task = BUNDLED[self.name]
            X, y, feature_names, class_names = read(self.name, loader, task == CLASSIFICATION)
            X.flags.writeable = y.flags.writeable = False
            _BUNDLED_READ[self.name] = _RawData(X, y, task, feature_names, class_names)
        return _BUNDLED_READ[self.name]


def cache_dir() -> Path | None:
    """Where lossbench keeps files it can always make again (see the module's docstring); None when
    there is no such folder (no home folder, and neither variable set): nothing is cached then.
    A relative ``LOSSBENCH_CACHE_DIR`` is taken from the current folder; a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG specification says."""
    explicit = os.environ.get("LOSSBENCH_CACHE_DIR")
    if explicit:
        return Path(os.path.abspath(explicit))
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lossbench"
    home = os.path.expanduser("~")
    if not os.path.isabs(home):  # no HOME and no passwd entry: "~" stays "~"
        return None
    return Path(home) / ".cache" / "lossbench"


@functools.lru_cache(maxsize=1)
def _installation() -> str | None:
    """scikit-learn's version and location (found, not imported), or None when it is not installed."""
    spec = util.find_spec("sklearn")
    if spec is None or not spec.origin:
        return None
    try:
        version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None
    return f"{version}|{os.path.dirname(spec.origin)}|{FORMAT}"


def cache_path(name: str) -> Path | None:
    """The cached copy of bundled set ``name`` for this scikit-learn installation (may not exist)."""
    installation, folder = _installation(), cache_dir()
    if installation is None or folder is None:
        return None
    key = hashlib.sha256(installation.encode()).hexdigest()[:16]
    return folder / "bundled" / f"{name}-{key}.npz"


def read(name: str, loader: str, classification: bool):
    """``(X (n, d) float64, y, feature_names, class_names)`` of a bundled set, as scikit-learn's
    ``loader`` returns them: y int64 labels (n,) and class names for classification, float64
    targets (n, n_targets) and None for regression."""
    path = cache_path(name)
    if path is not None:
        cached = _load(path, classification)
        if cached is not None:
            return cached
    arrays = _from_sklearn(loader, classification)
    if path is not None:
        _save(path, *arrays)
    return arrays


def _from_sklearn(loader: str, classification: bool):
    from sklearn import datasets

    bunch = getattr(datasets, loader)()
    X = np.array(bunch.data, dtype=np.float64)
    features = tuple(str(f) for f in bunch.feature_names)
    if classification:
        return X, bunch.target.astype(np.int64), features, tuple(str(c) for c in bunch.target_names)
    return X, np.array(bunch.target, dtype=np.float64).reshape(len(X), -1), features, None


def _load(path: Path, classification: bool):
    """The cached arrays, or None when the file is missing, damaged or not what :func:`_save` writes."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            X, y, features = saved["X"], saved["y"], saved["feature_names"]
            classes = saved["class_names"] if classification else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, MemoryError, zipfile.BadZipFile) as err:
        log.debug("ignoring the cached set %s: %s", path, err)
        return None
    n = len(X)
    shapes_ok = (X.dtype == np.float64 and X.ndim == 2 and n > 0 and features.dtype.kind == "U"
                 and features.shape == (X.shape[1],))
    if classification:
        shapes_ok = (shapes_ok and y.dtype == np.int64 and y.shape == (n,) and classes.dtype.kind == "U"
                     and classes.ndim == 1 and len(classes) > 0 and 0 <= y.min() and y.max() < len(classes))
    else:
        shapes_ok = shapes_ok and y.dtype == np.float64 and y.ndim == 2 and len(y) == n
    if not shapes_ok:
        log.debug("ignoring the cached set %s: not the arrays lossbench saves", path)
        return None
    return (X, y, tuple(str(f) for f in features),
            tuple(str(c) for c in classes) if classification else None)


def _save(path: Path, X, y, features, classes) -> None:
    from lossbench.records import atomic_write_bytes

    arrays = {"X": X, "y": y, "feature_names": np.array(features, dtype=str)}
    if classes is not None:
        arrays["class_names"] = np.array(classes, dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:  # a read-only home, a full disk: the next read imports scikit-learn again
        log.debug("could not cache the bundled set at %s: %s", path, err)
