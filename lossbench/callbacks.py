"""The Hydra callback that frames every sweep: check all jobs before the first starts, report at the end.

Registered in ``conf/config.yaml`` under ``hydra.callbacks``. It runs in the process that launches
the sweep, whichever launcher runs the jobs (basic, or joblib in parallel).

- ``on_multirun_start``: composes and validates the config of every job of the sweep (the same
  checks a single run makes, data loading included). One bad value or impossible combination stops
  the sweep before anything trains, with one line per bad job and exit status 2; with
  ``sweep.skip_invalid=true`` those jobs are skipped instead.
- ``on_multirun_end``: counts the runs by status (and those reused from an earlier sweep into the
  same folder), then writes ``results.csv``, ``curves.csv`` and ``report/index.html``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("lossbench")

_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job the basic sweeper will launch, in launch order.

    Mirrors ``BasicSweeper.sweep``: ``hydra.sweeper.params`` first, then the command line. Returns
    None for other sweepers, whose job lists are not known in advance.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if config.hydra.sweeper.get("_target_") != _BASIC_SWEEPER:
        return None
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params else {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def validate_jobs(config_name: str, jobs: list[list[str]]) -> list[tuple[list[str], str]]:
    """``(job overrides, message)`` for every job whose config fails :func:`lossbench.build.build`."""
    from hydra import compose

    from lossbench.build import ConfigError, build

    problems = []
    for job in jobs:
        try:
            cfg = compose(config_name=config_name, overrides=job, return_hydra_config=True)
        except Exception as err:  # composition errors: Hydra's message is the useful part
            problems.append((job, str(err).strip().splitlines()[0]))
            continue
        choices = dict(cfg.hydra.runtime.choices)
        with_hydra = OmegaConf.to_container(cfg, resolve=False)
        with_hydra.pop("hydra", None)
        try:
            build(OmegaConf.create(with_hydra), choices=choices)
        except ConfigError as err:
            problems.append((job, str(err)))
    return problems


class SweepCallback(Callback):
    """Validates a sweep before it starts and writes its report when it ends."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lossbench.records import index_finished_runs, write_json

        self.started = time.time()
        jobs = sweep_jobs(config)
        if not jobs:
            return
        tic = time.perf_counter()
        problems = validate_jobs(kwargs.get("config_name") or "config", jobs)
        log.debug("validated %d jobs in %.2f s", len(jobs), time.perf_counter() - tic)
        sweep_dir = Path(config.hydra.sweep.dir)
        if not problems:
            index_finished_runs(sweep_dir)
            return
        lines = "\n".join(f"  {' '.join(job) or '(defaults)'}: {message}" for job, message in problems)
        if config.sweep.skip_invalid:
            skipped = [{"overrides": list(job), "message": message} for job, message in problems]
            write_json(sweep_dir / "skipped.json", {"skipped": skipped})
            index_finished_runs(sweep_dir)
            log.warning("sweep.skip_invalid=true: skipping %d of %d jobs that cannot run:\n%s",
                        len(problems), len(jobs), lines)
            return
        print(f"lossbench: error: {len(problems)} of {len(jobs)} jobs in this sweep cannot run; "
              f"nothing was started.\n{lines}\n"
              "Fix the values, or add sweep.skip_invalid=true to skip impossible combinations.",
              file=sys.stderr)
        sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from lossbench.records import read_json
        from lossbench.results import read_skipped

        sweep_dir = Path(config.hydra.sweep.dir)
        summaries = [s for s in (read_json(p) for p in sorted(sweep_dir.glob("*/summary.json"))) if s]
        if not summaries:
            print(f"lossbench: no finished runs in {sweep_dir}; no report written", file=sys.stderr)
            return
        counts: dict[str, int] = {}
        for summary in summaries:
            counts[summary.get("status", "?")] = counts.get(summary.get("status", "?"), 0) + 1
        reused = sum(1 for s in summaries if s.get("finished_at", self.started) < self.started)
        skipped = read_skipped(sweep_dir)
        if skipped:
            counts["skipped (cannot work)"] = len(skipped)
        status_text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        reused_text = f" ({reused} reused from an earlier sweep into this folder)" if reused else ""
        print(f"lossbench: sweep finished: {status_text}{reused_text}")

        from lossbench.report import build_report

        try:
            index = build_report([sweep_dir], target_fraction=float(config.report.target_fraction))
        except Exception as err:
            log.exception("the report failed")
            print(f"lossbench: error: the report failed: {type(err).__name__}: {err}\n"
                  f"  the runs are intact; rebuild with: lossbench-report {sweep_dir}", file=sys.stderr)
            sys.exit(1)
        print(f"lossbench: results: {sweep_dir / 'results.csv'}\nlossbench: report:  {index}")
