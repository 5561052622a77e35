"""The package as a user gets it: the sdist holds what the tests need, the wheel works installed.

Slow: builds the sdist and, from it, the wheel (``python -m build``, isolated, as a release is made),
then installs the wheel into a fresh virtual environment and runs the console scripts from a
folder that is not the source tree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

import lossbench

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=300, env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, PYTHONHASHSEED="0", HYDRA_FULL_ERROR="0")
    env.pop("PYTHONPATH", None)  # the installed wheel only, never a source tree someone put on the path
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict:
    """``{"sdist": Path, "wheel": Path, "log": str}``: built once for the module, wheel from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,), (wheel,) = out.glob("lossbench-*.tar.gz"), out.glob("lossbench-*.whl")
    return {"sdist": sdist, "wheel": wheel, "log": proc.stdout + proc.stderr}


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (and nothing of the source tree).

    The dependencies come from the test runner's environment through a ``.pth`` file listing its
    site-packages (no download, and its editable lossbench is not picked up: a ``.pth`` file's path
    lines add folders, they do not run that folder's own ``.pth`` files).
    """
    root = tmp_path_factory.mktemp("venv") / "env"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root.parent)
    assert proc.returncode == 0, proc.stderr
    python = root / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip()
    runner_dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "runner-deps.pth").write_text("\n".join(sorted(runner_dirs)) + "\n")
    proc = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--force-reinstall",
                 "--no-compile", "--quiet", dists["wheel"]], cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_build_has_no_setuptools_warnings(dists):
    # the TOML-table license form and packages missing from `packages` both warned here before
    problems = [line for line in dists["log"].splitlines()
                if re.search(r"(?i)deprecat|is absent from|SetuptoolsWarning|_MissingDynamic", line)]
    assert problems == []


def test_sdist_holds_what_the_test_suite_needs(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("LICENSE", "README.md", "tests/conftest.py", "tests/fixtures/sweeps.py", ".ci/run",
                   "docs/l2_vs_ce_test_accuracy.png", "lossbench/conf/config.yaml",
                   "lossbench/conf/loss/ce.yaml"):
        assert needed in names, needed
    assert not any(name.startswith(("runs/", ".venv/")) for name in names)


def test_wheel_metadata_license_and_version(dists):
    import zipfile

    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"lossbench-{lossbench.__version__}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    assert f"Version: {lossbench.__version__}" in metadata
    assert any(name.endswith("dist-info/licenses/LICENSE") for name in names)
    for shipped in ("lossbench/conf/optimizer/adam.yaml", "lossbench/conf/logger/none.yaml",
                    "lossbench/trackers/mlflow_tracker.py", "lossbench/api.py", "lossbench/cli.py"):
        assert shipped in names, shipped  # config groups ship as package data, subpackages are found
    for extra in ("slurm", "optuna", "mlflow", "parquet", "tensorboard", "all", "test"):
        assert f"Provides-Extra: {extra}" in metadata


def test_installed_wheel_runs_from_another_directory(venv, tmp_path):
    bin_dir = venv / "bin"
    where = _run([bin_dir / "python", "-c", "import lossbench; print(lossbench.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr

    version = _run([bin_dir / "python", "-m", "lossbench", "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(rf"lossbench {re.escape(lossbench.__version__)} \(Hydra 1\.3\.\d+, Python [\d.]+\)\n",
                        version.stdout), version.stdout
    assert _run([bin_dir / "lossbench", "--version"], cwd=tmp_path).stdout == version.stdout

    helps = _run([bin_dir / "lossbench", "--help"], cwd=tmp_path)
    assert helps.returncode == 0 and "== Configuration groups ==" in helps.stdout, helps.stderr
    assert "optimizer: adagrad, adam" in helps.stdout  # the groups were found in the installed package
    report_help = _run([bin_dir / "lossbench-report", "--help"], cwd=tmp_path)
    assert report_help.returncode == 0 and "usage: lossbench-report" in report_help.stdout, report_help.stderr

    single = _run([bin_dir / "lossbench", "trainer.epochs=2", "progress=none"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    (summary_path,) = tmp_path.glob("runs/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed" and summary["stop_epoch"] == 2


def test_tests_run_from_the_unpacked_sdist(dists, venv, tmp_path):
    with tarfile.open(dists["sdist"]) as tar:
        tar.extractall(tmp_path, filter="data")
    (source,) = tmp_path.glob("lossbench-*")
    proc = _run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                 "tests/test_readme.py", "tests/test_run.py"], cwd=source)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", proc.stdout)
