"""Shared fixtures: composing lossbench's config in-process, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

import lossbench.conf

CONF = Path(lossbench.conf.__file__).parent


def conf_names(group: str) -> list[str]:
    """The option names of a config group, from the YAML files shipped in conf/."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """lossbench's cache (parsed bundled sets, lossbench.bundled) in a folder of this session, not ~/.cache;
    the runs and sweeps the tests start inherit it."""
    previous = os.environ.get("LOSSBENCH_CACHE_DIR")
    os.environ["LOSSBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("LOSSBENCH_CACHE_DIR", None)
    else:
        os.environ["LOSSBENCH_CACHE_DIR"] = previous


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides, hydra=False) -> (cfg, choices): lossbench's config, composed in-process."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="lossbench.conf", version_base="1.3"):
        def _compose(*overrides: str):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
            choices = dict(cfg.hydra.runtime.choices)
            from omegaconf import OmegaConf

            plain = OmegaConf.to_container(cfg, resolve=False)
            plain.pop("hydra")
            return OmegaConf.create(plain), choices

        yield _compose
    GlobalHydra.instance().clear()


def run_cli(args: list[str], cwd: Path, timeout: float = 300, module: str = "lossbench") -> subprocess.CompletedProcess:
    """Run ``python -m lossbench ARGS`` (the real CLI, as installed) in ``cwd``."""
    env = dict(os.environ, PYTHONHASHSEED="0", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
