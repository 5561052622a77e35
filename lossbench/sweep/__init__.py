"""The sweep engine: lossbench's Hydra sweeper and its parts.

- :mod:`.plan`: expand the overrides into jobs (the basic sweeper's grammar), job folder names.
- :mod:`.validate`: compose each job cheaply and check it before anything trains.
- :mod:`.claim`: one trainer per run (an OS file lock per run folder).
- :mod:`.launch`: the task launcher jobs run (packed runs, a watchdog on the sweeper), ending workers.
- :mod:`.progress`: the plan line and one line per finished run.
- :mod:`.objective`: the float a run returns to a tuner.
- :mod:`.engine`: the sweeper itself; Hydra finds it as ``hydra_plugins.lossbench_sweeper``.
"""
