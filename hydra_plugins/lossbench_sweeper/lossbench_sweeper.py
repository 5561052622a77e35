"""Hydra's view of lossbench's sweeper: ``hydra/sweeper=lossbench`` (the default of ``lossbench``).

Hydra instantiates plugins only from the ``hydra_plugins`` namespace, so the class Hydra sees lives
here; the work is in :mod:`lossbench.sweep.engine`. This module stays light: Hydra imports every
plugin module of the environment when any Hydra app starts. The config, with its defaults, is
``lossbench/conf/hydra/sweeper/lossbench.yaml`` (a file in lossbench's config path, so composing
lossbench's config works wherever lossbench is installed, editable or not).
"""


from typing import Any, Dict, List, Optional

from hydra.plugins.sweeper import Sweeper


class LossbenchSweeper(Sweeper):
    """Plans a sweep, launches only the missing runs through Hydra's launcher, and reports."""

    def __init__(self, max_batch_size: Optional[int] = 100, runs_per_job: int = 1, stack_size: int = 16,
                 params: Optional[Dict[str, str]] = None) -> None:
        from lossbench.sweep.engine import Engine

        self.engine = Engine(max_batch_size=max_batch_size, runs_per_job=runs_per_job, stack_size=stack_size,
                             params=params)
        self.hydra_context = None
        self.config = None
        self.launcher = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.engine.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.hydra_context, self.config, self.launcher = hydra_context, config, self.engine.launcher

    def sweep(self, arguments: List[str]) -> Any:
        return self.engine.sweep(arguments)
