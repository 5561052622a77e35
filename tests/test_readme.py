"""The README's worked examples run as written: a user's own loss, plugged in without editing lossbench."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    """The fenced code block that follows ``<!-- example: MARKER -->`` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- example: {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"no example block {marker!r} in README.md"
    return match.group(1)


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    """A user's folder with the README's my_losses.py and my_conf/loss/logcosh.yaml."""
    (tmp_path / "my_losses.py").write_text(readme_block("my_losses.py"))
    (tmp_path / "my_conf" / "loss").mkdir(parents=True)
    (tmp_path / "my_conf" / "loss" / "logcosh.yaml").write_text(readme_block("my_conf/loss/logcosh.yaml"))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_readme_loss_passes_check_loss(user_project):
    from my_losses import LogCosh

    from lossbench.testing import check_loss

    report = check_loss(LogCosh())
    assert report is not None


def test_test_command_in_readme_is_what_ci_runs():
    text = README.read_text()
    command = re.search(r"<!-- test-command -->\s*```bash\n(.*?)\n```", text, re.S).group(1)
    assert "pytest" in command and "pip install" in command
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci


@pytest.mark.slow
def test_readme_loss_runs_in_a_sweep_from_the_users_config_dir(user_project):
    env = dict(os.environ, PYTHONPATH=str(user_project))
    sweep_dir = user_project / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench", "--config-dir", "my_conf", "-m", "dataset=diabetes", "model=linear",
         "loss=l2,logcosh", "trainer.epochs=3", "progress=none", "hydra/launcher=joblib",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=user_project, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    statuses = {json.loads(p.read_text())["choices"]["loss"]: json.loads(p.read_text())["status"]
                for p in sweep_dir.glob("*/summary.json")}
    assert statuses == {"l2": "completed", "logcosh": "completed"}
