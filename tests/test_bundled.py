"""The cache of scikit-learn's bundled sets (lossbench.bundled): the arrays scikit-learn's loaders
return, bit for bit, read later without importing scikit-learn; a damaged or foreign file is ignored
and written anew; a cache that cannot be written changes nothing but the time."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from lossbench import bundled
from lossbench.bundled import BUNDLED
from lossbench.data import CLASSIFICATION


def _sklearn(name):
    from sklearn import datasets

    loader, task = BUNDLED[name]
    bunch = getattr(datasets, loader)()
    return bunch, task == CLASSIFICATION


def _same(arrays, name):
    bunch, classification = _sklearn(name)
    X, y, features, classes = arrays
    assert X.dtype == np.float64 and np.array_equal(X, bunch.data) and X.tobytes() == np.asarray(bunch.data, np.float64).tobytes()
    assert features == tuple(str(f) for f in bunch.feature_names)
    if classification:
        assert y.dtype == np.int64 and np.array_equal(y, bunch.target)
        assert classes == tuple(str(c) for c in bunch.target_names)
    else:
        assert y.dtype == np.float64 and y.shape == (len(X), 1) and np.array_equal(y[:, 0], bunch.target)
        assert classes is None


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_a_cached_set_is_scikit_learns_and_reads_without_importing_it(name, cache):
    loader, task = BUNDLED[name]
    first = bundled.read(name, loader, task == CLASSIFICATION)  # through scikit-learn, then saved
    path = bundled.cache_path(name)
    assert path.parent.parent == cache and path.is_file()
    _same(first, name)
    script = (f"import sys, hashlib; from lossbench import bundled\n"
              f"X, y, f, c = bundled.read({name!r}, {loader!r}, {task == CLASSIFICATION})\n"
              f"print('sklearn' in sys.modules, hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest(), f == {first[2]!r}, c == {first[3]!r})")
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True,
                         check=True).stdout.split()
    import hashlib

    assert out == ["False", hashlib.sha256(first[0].tobytes() + first[1].tobytes()).hexdigest(), "True", "True"]


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class _Planted:
    """Unpickling this creates a file: a cached set holding it must never be unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "X as integers", "labels out of range",
                                    "an object array (a pickle)", "a key missing"])
def test_a_damaged_or_foreign_cache_file_is_ignored_and_written_anew(damage, cache):
    name = "iris"
    loader, task = BUNDLED[name]
    good = bundled.read(name, loader, True)
    path = bundled.cache_path(name)
    saved = path.read_bytes()
    X, y = good[0], good[1]
    names = {"feature_names": np.array(good[2]), "class_names": np.array(good[3])}
    path.write_bytes({
        "truncated": saved[: len(saved) // 2],
        "not a zip": b"import os; os.system('echo nobody in')\n",
        "X as integers": _npz(X=X.astype(np.int64), y=y, **names),
        "labels out of range": _npz(X=X, y=y + 7, **names),
        "an object array (a pickle)": _npz(X=np.array([_Planted(cache / "unpickled")], dtype=object), y=y, **names),
        "a key missing": _npz(X=X, y=y),
    }[damage])
    _same(bundled.read(name, loader, True), name)
    assert path.read_bytes() == saved  # rewritten from scikit-learn's arrays
    assert not (cache / "unpickled").exists(), "a cached file was unpickled"


def test_a_cache_that_cannot_be_written_only_costs_the_import(tmp_path, monkeypatch):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(blocker))
    loader, task = BUNDLED["wine"]
    _same(bundled.read("wine", loader, True), "wine")
    assert blocker.read_text() == ""


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSBENCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bundled.cache_dir() == tmp_path / "xdg" / "lossbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bundled.cache_dir() == tmp_path / "home" / ".cache" / "lossbench"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG specification: a relative path is ignored
    assert bundled.cache_dir() == tmp_path / "home" / ".cache" / "lossbench"
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert bundled.cache_dir() == tmp_path / "mine"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", "here")  # relative: from the current folder, made absolute
    assert bundled.cache_dir() == tmp_path / "here"


def test_without_a_home_folder_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSBENCH_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(bundled.os.path, "expanduser", lambda path: path)  # no HOME, no passwd entry
    monkeypatch.chdir(tmp_path)
    assert bundled.cache_dir() is None and bundled.cache_path("iris") is None
    _same(bundled.read("iris", BUNDLED["iris"][0], True), "iris")
    assert list(tmp_path.iterdir()) == []  # no "~" folder here
