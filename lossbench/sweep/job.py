"""One packed run's Hydra job, as :func:`hydra.core.utils.run_job` runs it, at a third of its cost.

A launcher job of a stacked pack prepares each of its runs in the run's own Hydra job: HydraConfig
set to the run's config, the run folder, its log, its ``.hydra/`` files, the callbacks. Hydra's
``run_job`` copies the whole config three times and HydraConfig twice (~30 ms a run, as much as
preparing the run itself); :func:`run_packed_job` does the same steps with the task config the
composer built from a small base and one HydraConfig copy, and writes the ``.hydra/`` files
atomically. ``tests/test_sweep.py`` checks that the files, HydraConfig, the task's config, the
log and the job's return equal Hydra's. A job that changes directory (``hydra.job.chdir=true``)
goes through Hydra's ``run_job``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers, configure_log, env_override
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lossbench.records import atomic_write_text


def run_packed_job(hydra_context, task_function, config: DictConfig, task_cfg: DictConfig) -> JobReturn:
    """Run ``task_function(task_cfg)`` as the sweep job of ``config`` (``hydra.sweep.dir``/``subdir``)."""
    callbacks = hydra_context.callbacks
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.set_config(config)  # the folder's name may read HydraConfig (${hydra:job.num})
    try:
        output_dir = os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                                  str(OmegaConf.select(config, "hydra.sweep.subdir")))
        # run_job sets the folder, then copies HydraConfig again; setting it in both is the same
        for runtime in (config.hydra.runtime, instance.cfg.hydra.runtime):
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
                atomic_write_text(hydra_output / name, OmegaConf.to_yaml(node))
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
