"""lossbench's Hydra callback: what must happen before Hydra writes anything, and reports for other sweepers.

- Before a run or a sweep, the output folder is checked by writing a small probe file into it: an
  unwritable path (``hydra.run.dir=/proc/x``), a read-only folder or a full disk is one line and exit
  status 1, instead of a traceback from Hydra's first write.
- lossbench's sweeper (:mod:`lossbench.sweep`) plans, resumes and reports by itself. Under another
  sweeper (``hydra/sweeper=optuna``) the callback indexes the finished runs of the sweep folder when
  the sweep starts (each job looks its config hash up there and reuses a finished run instead of
  training it again), and writes ``results.csv``, ``curves.csv`` and the report when it ends.
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


def check_writable(folder: Path, what: str) -> None:
    """Exit 1 with one line when ``folder`` cannot be created or written (64 KiB probe, then removed)."""
    import os
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lossbench.probe.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(65536))
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(probe)
    except OSError as err:
        print(f"lossbench: error: cannot write to {what} {folder}: {err.strerror or err}; choose another folder "
              f"(e.g. {'hydra.sweep.dir' if 'sweep' in what else 'hydra.run.dir'}=...)", file=sys.stderr)
        sys.exit(1)


class ReportCallback(Callback):
    """Check the output folder first; index finished runs and write the report for other sweepers."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(config.hydra.run.dir), "the run folder")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(config.hydra.sweep.dir), "the sweep folder")
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
