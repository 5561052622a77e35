"""Hydra's view of lossbench's sweeper: ``hydra/sweeper=lossbench`` (the default of ``lossbench``).

Hydra instantiates plugins only from the ``hydra_plugins`` namespace, so the class Hydra sees lives
here; the work is in :mod:`lossbench.sweep.engine`. This module stays light (Hydra imports every
plugin module of the environment when any Hydra app starts) and has no ``from __future__ import
annotations``: Hydra executes it before registering it in sys.modules, which string annotations of a
dataclass need.
"""


from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class LossbenchSweeperConf:
    _target_: str = "hydra_plugins.lossbench_sweeper.lossbench_sweeper.LossbenchSweeper"
    #: launcher jobs per launcher call: a launcher that raises (a dead worker) loses at most one batch
    max_batch_size: Optional[int] = 100
    #: runs per launcher job (each still its own run folder): fewer, longer cluster jobs
    runs_per_job: int = 1
    #: sweep overrides, as the basic sweeper's (``loss: l2,ce``); the command line comes after them
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="lossbench", node=LossbenchSweeperConf,
                             provider="lossbench")


class LossbenchSweeper(Sweeper):
    """Plans a sweep, launches only the missing runs through Hydra's launcher, and reports."""

    def __init__(self, max_batch_size: Optional[int] = 100, runs_per_job: int = 1,
                 params: Optional[Dict[str, str]] = None) -> None:
        from lossbench.sweep.engine import Engine

        self.engine = Engine(max_batch_size=max_batch_size, runs_per_job=runs_per_job, params=params)
        self.hydra_context = None
        self.config = None
        self.launcher = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.engine.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.hydra_context, self.config, self.launcher = hydra_context, config, self.engine.launcher

    def sweep(self, arguments: List[str]) -> Any:
        return self.engine.sweep(arguments)
