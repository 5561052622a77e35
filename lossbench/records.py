"""A run's files on disk: atomic writes, provenance, and finding completed runs in a sweep.

Every file is written to a temporary name in the same folder and then renamed over the target,
so a killed process never leaves a half-written file that reads as complete. ``summary.json`` is
written last: its presence with ``status: completed`` is what marks a run as finished.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_safe(value):
    """NaN and infinities become strings ("nan", "inf", "-inf"): strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented, strict JSON, atomically."""
    atomic_write_text(path, json.dumps(_json_safe(obj), indent=2, sort_keys=False) + "\n")


def write_metrics(path: Path, records: list[dict]) -> None:
    """Write the per-evaluation records as ``metrics.csv`` (one row per evaluation), atomically."""
    import pandas as pd

    atomic_write_text(path, pd.DataFrame.from_records(records).to_csv(index=False))


def write_params(path: Path, params: dict[str, np.ndarray]) -> None:
    """Write the parameters as ``params.npz`` (``numpy.load(path)["W1"]``), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **params)
    atomic_write_bytes(path, buffer.getvalue())


def read_json(path: Path) -> dict | None:
    """The parsed JSON file at ``path`` (a ``summary.json``, say), or None when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


#: Statuses that are results: a resumed sweep reuses them. A diverged run is deterministic, so
#: training it again would only repeat the divergence; a failed run is tried again.
REUSABLE_STATUSES = ("completed", "diverged")


#: In a sweep folder: config hash -> folder of every run that had finished when the sweep started.
FINISHED_INDEX = "finished_runs.json"


def finished_summary(run_dir: Path, config_hash: str) -> dict | None:
    """The summary of ``run_dir`` when it finished (completed or diverged) with this config hash, else None.

    A run of another lossbench version is not finished for this one: the code is part of the key.
    """
    summary = read_json(Path(run_dir) / "summary.json")
    if isinstance(summary, dict) and summary.get("status") in REUSABLE_STATUSES \
            and summary.get("config_hash") == config_hash \
            and summary.get("lossbench_version") == lossbench_version():
        return summary
    return None


def _is_finished(run_dir: Path, config_hash: str) -> bool:
    return finished_summary(run_dir, config_hash) is not None


def index_finished_runs(sweep_dir: Path) -> None:
    """Write ``FINISHED_INDEX`` for ``sweep_dir``: read every summary once, when a sweep starts.

    Each job then looks its config hash up in one small file instead of reading every summary
    of the folder, which made a sweep's start-up cost grow with the square of its size.
    """
    sweep_dir = Path(sweep_dir)
    index: dict[str, str] = {}
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        summary = read_json(summary_path)
        if summary and summary.get("status") in REUSABLE_STATUSES:
            index.setdefault(summary.get("config_hash"), summary_path.parent.name)
    write_json(sweep_dir / FINISHED_INDEX, index)


def find_finished_run(sweep_dir: Path, config_hash: str) -> Path | None:
    """The folder of a run in ``sweep_dir`` that completed (or diverged) with this config hash, if any.

    Looks in the sweep's ``FINISHED_INDEX``; a folder without one (a sweep not started by
    lossbench's callback) is scanned.
    """
    sweep_dir = Path(sweep_dir)
    index = read_json(sweep_dir / FINISHED_INDEX)
    if index is None:
        candidates = sorted(path.parent for path in sweep_dir.glob("*/summary.json"))
    else:
        candidates = [sweep_dir / index[config_hash]] if config_hash in index else []
    return next((run_dir for run_dir in candidates if _is_finished(run_dir, config_hash)), None)


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the lossbench source tree when it runs from a git clone (``+dirty`` if edited)."""
    # an editable install runs from the clone; a plain `pip install .` run from inside the clone
    # runs the same commit, so the working directory's clone counts too, if it is lossbench's
    candidates = [Path(__file__).resolve().parents[1], *Path.cwd().resolve().parents[::-1], Path.cwd().resolve()]
    clones = [c for c in candidates if (c / ".git").exists() and (c / "lossbench" / "run.py").is_file()]
    if not clones:
        return None
    root = clones[0]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    """The installed versions of the numerical stack, read once per process (the loaded modules stay these)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("lossbench", "numpy", "scikit-learn", "pandas", "hydra-core", "omegaconf"):
        try:
            versions.append((package, version(package)))
        except PackageNotFoundError:
            versions.append((package, None))
    return tuple(versions)


def provenance() -> dict:
    """Versions of Python and the numerical stack, the BLAS in use, and the git commit."""
    import threadpoolctl

    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
        for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"
    ]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "versions": dict(_package_versions()),
        "blas": blas,
        "git_commit": _git_commit(),
    }


@functools.lru_cache(maxsize=1)
def lossbench_version() -> str | None:
    """The installed lossbench's version (None when it is not installed, e.g. run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lossbench")
    except PackageNotFoundError:
        return None


def code_version() -> dict:
    """``{"lossbench_version": ..., "git_commit": ...}``: the part of a run's cache key that is code."""
    return {"lossbench_version": lossbench_version(), "git_commit": _git_commit()}


def file_digests(run_dir: Path, names=("metrics.csv", "params.npz", "gradients.csv", "calibration.csv")) -> dict:
    """``{name: sha256}`` of the run's data files that exist, for the report's damage check."""
    import hashlib

    digests = {}
    for name in names:
        path = Path(run_dir) / name
        if path.is_file():
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete the ``.NAME.*.tmp`` files a killed attempt left in ``run_dir``; returns how many.

    Call only while holding the run's claim: another process's temporary file is never stale.
    """
    removed = 0
    for path in Path(run_dir).glob(".*.tmp"):
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed
