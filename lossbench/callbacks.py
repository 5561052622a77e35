"""The Hydra callback for sweeps that lossbench's own sweeper does not run (``hydra/sweeper=optuna``).

lossbench's sweeper (:mod:`lossbench.sweep`) plans, resumes and reports by itself, and this callback
then does nothing. Under another sweeper it does what a callback can: index the finished runs of the
sweep folder when the sweep starts (each job looks its config hash up there and reuses a finished
run instead of training it again), and write ``results.csv``, ``curves.csv`` and the report when it
ends.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

_OURS = "hydra_plugins.lossbench_sweeper.lossbench_sweeper.LossbenchSweeper"


def _other_sweeper(config: DictConfig) -> bool:
    return config.hydra.sweeper.get("_target_") != _OURS


class ReportCallback(Callback):
    """Index finished runs at the start of another sweeper's sweep; write its report at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _other_sweeper(config):
            from lossbench.records import index_finished_runs

            index_finished_runs(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _other_sweeper(config):
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.glob("*/summary.json")):
            print(f"lossbench: no finished runs in {sweep_dir}; no report written", file=sys.stderr)
            return
        from lossbench.report import build_report

        try:
            index = build_report([sweep_dir], target_fraction=float(config.report.target_fraction))
        except Exception as err:
            print(f"lossbench: error: the report failed: {type(err).__name__}: {err}\n"
                  f"  the runs are intact; rebuild with: lossbench-report {sweep_dir}", file=sys.stderr)
            sys.exit(1)
        print(f"lossbench: results: {sweep_dir / 'results.csv'}\nlossbench: report:  {index}")
