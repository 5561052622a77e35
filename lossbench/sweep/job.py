"""One packed run's Hydra job, as :func:`hydra.core.utils.run_job` runs it, at a third of its cost.

A launcher job of a stacked pack prepares each of its runs in the run's own Hydra job: HydraConfig
set to the run's config, the run folder, its log, its ``.hydra/`` files, the callbacks. Hydra's
``run_job`` copies the whole config three times and HydraConfig twice (~30 ms a run, as much as
preparing the run itself); :func:`run_packed_job` does the same steps with the task config the
composer built from a small base and one HydraConfig copy, and writes the ``.hydra/`` files
atomically. ``tests/test_sweep.py`` checks that the files, HydraConfig, the task's config, the
log and the job's return equal Hydra's. A job that changes directory (``hydra.job.chdir=true``)
goes through Hydra's ``run_job``. HydraConfig gets the job config's own ``hydra`` node
(:func:`_set_hydra_config`), not a copy of it: the job config is the job's own copy already.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers, configure_log, env_override
import yaml
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict, read_write

try:  # the dumper OmegaConf.to_yaml uses (private: without it, every file goes through OmegaConf.to_yaml)
    from omegaconf._utils import get_omega_conf_dumper
except ImportError:  # pragma: no cover
    get_omega_conf_dumper = None

from lossbench.records import atomic_write_text


_ITEM_TEXT: dict[tuple, str] = {}  # (path, key, repr(value)) -> that item's YAML lines, as in the whole file


def _dump(container) -> str:
    """``yaml.dump`` exactly as ``OmegaConf.to_yaml`` calls it."""
    return yaml.dump(container, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     Dumper=get_omega_conf_dumper())


def to_yaml(node) -> str:
    """``OmegaConf.to_yaml(node)``, the same text, from cached dumps of its items (~2x faster for a pack).

    In block style the YAML of a mapping is its items' lines one after another, each item's text
    depending only on its key, value and depth; the runs of a pack differ in a few items (the
    seed, the rate, the folder), so the others are dumped once per process. A lone top-level key
    (``hydra:``) is split one level deeper. Keys that are not plain names go to ``OmegaConf.to_yaml``.
    """
    container = None if get_omega_conf_dumper is None else OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    if not isinstance(container, dict) or not container or not all(_plain(k) for k in container):
        return OmegaConf.to_yaml(node)
    if len(container) == 1:
        ((top, inner),) = container.items()
        if isinstance(inner, dict) and inner and all(_plain(k) for k in inner):
            return f"{top}:\n" + "".join(_item((top,), key, value) for key, value in inner.items())
    return "".join(_item((), key, value) for key, value in container.items())


def _plain(key) -> bool:
    return isinstance(key, str) and key.isidentifier()


def _item(path: tuple, key: str, value) -> str:
    cache_key = (path, key, repr(value))
    text = _ITEM_TEXT.get(cache_key)
    if text is None:
        item = {key: value}
        for name in reversed(path):
            item = {name: item}
        text = _dump(item).split("\n", len(path))[-1]  # without the lines of the enclosing keys
        if len(_ITEM_TEXT) > 4096:
            _ITEM_TEXT.clear()
        _ITEM_TEXT[cache_key] = text
    return text


def _set_hydra_config(instance: HydraConfig, config: DictConfig) -> None:
    """``instance.set_config(config)`` without its deep copy of ``config.hydra`` (~6 ms): HydraConfig's
    config holds the job config's own ``hydra`` node, read-only and parented to ``config`` as
    ``set_config`` leaves its copy, so interpolations read the same values."""
    from hydra.conf import HydraConf

    hydra_node = config._get_node("hydra")
    if not isinstance(hydra_node, DictConfig) or not issubclass(OmegaConf.get_type(config, "hydra") or object,
                                                                HydraConf):
        instance.set_config(config)  # not Hydra's own node: let Hydra say so
        return
    OmegaConf.set_readonly(hydra_node, True)
    masked = DictConfig(content={})
    with flag_override(masked, "no_deepcopy_set_nodes", True):
        masked["hydra"] = hydra_node
    hydra_node._set_parent(config)
    instance.cfg = masked


def run_packed_job(hydra_context, task_function, config: DictConfig, task_cfg: DictConfig) -> JobReturn:
    """Run ``task_function(task_cfg)`` as the sweep job of ``config`` (``hydra.sweep.dir``/``subdir``)."""
    callbacks = hydra_context.callbacks
    instance = HydraConfig.instance()
    previous = instance.cfg
    _set_hydra_config(instance, config)  # the folder's name may read HydraConfig (${hydra:job.num})
    try:
        output_dir = os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                                  str(OmegaConf.select(config, "hydra.sweep.subdir")))
        # run_job sets the folder in the job config, then copies it to HydraConfig again: one node here
        runtime = config.hydra.runtime
        with read_write(runtime), open_dict(runtime):
            runtime.output_dir = os.path.abspath(output_dir)
        hydra_cfg = instance.cfg
        ret = JobReturn()
        ret.cfg, ret.hydra_cfg = task_cfg, hydra_cfg
        ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        ret.working_dir = os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(config.hydra.runtime.output_dir) / Path(config.hydra.output_subdir)
            hydra_output.mkdir(parents=True, exist_ok=True)
            for name, node in (("config.yaml", task_cfg), ("hydra.yaml", hydra_cfg),
                               ("overrides.yaml", config.hydra.overrides.task)):
                atomic_write_text(hydra_output / name, to_yaml(node))
        OmegaConf.copy_cache(from_config=config, to_config=task_cfg)  # run_job's copy carries the cache
        with env_override(hydra_cfg.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as err:
                ret.return_value = err
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        instance.cfg = previous
