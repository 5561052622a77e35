"""lossbench's Hydra sweeper: plan the sweep, launch only what is missing, survive dead jobs, report.

Selected by default in ``conf/config.yaml`` (``hydra/sweeper: lossbench``; the plugin class lives in
``hydra_plugins/lossbench_sweeper``, where Hydra discovers plugins). Hydra's launchers (basic,
joblib, submitit) still run the jobs; this class decides which jobs they get and in what batches,
as Hydra's Optuna sweeper does.

1. **Plan**: expand the overrides as the basic sweeper does (:mod:`.plan`), compose each job
   (:mod:`.validate`), look its config hash up among the finished runs of the sweep folder.
2. **Validate** the jobs that will run; bad ones stop the sweep (exit 2) or, with
   ``sweep.skip_invalid=true``, are listed in ``skipped.json``.
3. **Launch** the rest in batches of ``max_batch_size`` launcher jobs, ``runs_per_job`` runs each,
   skipping runs another process has claimed (:mod:`.claim`), printing a line per finished run
   (:mod:`.progress`).
4. **Finish**: whatever happened (a launcher raised, Ctrl-C), write ``missing.json``, the tables and
   the report from every finished run, one line naming what was lost and the command that resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf

from lossbench.sweep.plan import Job, PlanError, chunks, expand, override_dirname, parse, sweep_arguments

log = logging.getLogger("lossbench")

SWEEP_LOG = "lossbench-sweep.log"


def _display(path: Path) -> str:
    relative = os.path.relpath(path)
    return Path(path).as_posix() if relative.startswith("..") else relative


def resume_command(sweep_dir: Path) -> str:
    """The command line that resumes this sweep into ``sweep_dir``."""
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    if "-m" not in args and "--multirun" not in args:
        args.insert(0, "-m")
    args.append(f"hydra.sweep.dir={_display(sweep_dir)}")
    return "lossbench " + " ".join(shlex.quote(a) for a in args)


class Engine:
    """The sweeper's work; :class:`hydra_plugins.lossbench_sweeper.LossbenchSweeper` is its Hydra face."""

    def __init__(self, max_batch_size: int | None = 100, runs_per_job: int = 1, stack_size: int = 16, params=None):
        self.max_batch_size = max_batch_size
        self.runs_per_job = runs_per_job
        self.stack_size = stack_size
        self.params = params or {}
        self.hydra_context = None
        self.config: DictConfig | None = None
        self.launcher = None
        self.warming = None  # the thread starting the joblib workers (warm_joblib_workers)
        self.figure_helper = None  # the report's figure helper, importing while the runs train
        self.task = None
        self.jobs: list[Job] = []
        self.outcomes: list[dict] = []
        self.n_planned = self.next_index = 0
        self.ctrl_c = False

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from hydra.types import HydraContext

        from lossbench.sweep.launch import PlannedLoader, SweepTask

        self.hydra_context = hydra_context
        self.config = config
        self.task = SweepTask(task_function, hydra_context, config)
        # the launcher composes a pack's first job with the sweep's composition (the task ships it)
        launching = HydraContext(config_loader=PlannedLoader(hydra_context.config_loader, self.task),
                                 callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=launching, task_function=self.task,
                                                                config=config)

    # ---------------------------------------------------------------- entry point
    def sweep(self, arguments: list[str]) -> list[float]:
        for key, value, ok in (("hydra.sweeper.max_batch_size", self.max_batch_size,
                                self.max_batch_size is None or (isinstance(self.max_batch_size, int)
                                                                and not isinstance(self.max_batch_size, bool)
                                                                and self.max_batch_size >= 1)),
                               ("hydra.sweeper.runs_per_job", self.runs_per_job,
                                isinstance(self.runs_per_job, int) and not isinstance(self.runs_per_job, bool)
                                and self.runs_per_job >= 1),
                               ("hydra.sweeper.stack_size", self.stack_size,
                                isinstance(self.stack_size, int) and not isinstance(self.stack_size, bool)
                                and self.stack_size >= 1)):
            if not ok:
                print(f"lossbench: error: {key}={value!r} is not allowed; allowed: an integer >= 1"
                      + (" or null" if "batch" in key else ""), file=sys.stderr)
                sys.exit(2)
        try:
            return self._sweep(arguments)
        except PlanError as err:
            print(f"lossbench: error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:  # during planning: nothing started
            print("lossbench: interrupted before any run started", file=sys.stderr)
            sys.exit(130)
        finally:
            if self.figure_helper is not None:  # the report did not use it (an error, no report)
                self.figure_helper.close()
                self.figure_helper = None

    # ---------------------------------------------------------------- planning
    def _job_dir(self, sweep_dir: Path, overrides, index: int) -> Path:
        from lossbench.run import _job_dirname

        hydra_cfg = self.config.hydra
        settings = hydra_cfg.job.config.override_dirname
        dirname = override_dirname(overrides, list(settings.exclude_keys), settings.item_sep, settings.kv_sep)
        subdir = OmegaConf.to_container(hydra_cfg.sweep, resolve=False)["subdir"]
        if subdir == "${lossbench_jobdir:${hydra.job.override_dirname}}":
            return sweep_dir / _job_dirname(dirname)
        node = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)})
        node.hydra.job.override_dirname = dirname
        node.hydra.job.num = index
        node.hydra.job.id = f"job_{index}"
        return sweep_dir / str(OmegaConf.select(node, "hydra.sweep.subdir"))

    def expand(self, arguments: list[str]) -> list[tuple[str, ...]]:
        """Every job's overrides: ``hydra.sweeper.params`` and the command line, expanded."""
        return expand(parse(sweep_arguments(self.params, arguments), self.hydra_context.config_loader))

    def plan(self, specs: list[tuple[tuple[str, ...], str | None]]) -> list[Job]:
        """Compose, hash and place each ``(overrides, stage)``; composition errors make a job invalid."""
        from lossbench.build import ConfigError, config_hash

        sweep_dir = Path(self.config.hydra.sweep.dir)
        jobs = []
        for overrides, stage in specs:
            overrides = tuple(overrides) + ((f"sweep.stage={stage}",) if stage else ())
            job = Job(overrides=overrides, index=self.n_planned, stage=stage)
            self.n_planned += 1
            parsed = [self.composer.parsed(line) for line in overrides]
            job.run_dir = self._job_dir(sweep_dir, parsed, job.index)
            try:
                cfg, choices = self.composer.compose(overrides)
                job.config_hash = config_hash(cfg)
            except (PlanError, ConfigError) as err:
                job.status, job.message = "invalid", str(err)
                cfg = choices = None
            job.extra["cfg"], job.extra["choices"] = cfg, choices
            jobs.append(job)
        return jobs

    def _finished_runs(self, sweep_dir: Path) -> dict[str, tuple[Path, dict]]:
        """config hash -> (folder, summary) of every reusable run in the sweep folder."""
        from lossbench.records import REUSABLE_STATUSES, read_json

        found: dict[str, tuple[Path, dict]] = {}
        if not sweep_dir.is_dir():
            return found
        for path in sorted(sweep_dir.glob("*/summary.json")):
            summary = read_json(path)
            if isinstance(summary, dict) and summary.get("status") in REUSABLE_STATUSES:
                found.setdefault(str(summary.get("config_hash")), (path.parent, summary))
        return found

    def _classify(self, jobs: list[Job], sweep_dir: Path, skip_invalid: bool) -> list[str]:
        """Set each job's status (finished | run | invalid | skipped | elsewhere); returns warning lines."""
        from lossbench.build import ConfigError
        from lossbench.records import code_version
        from lossbench.sweep.claim import held_elsewhere
        from lossbench.sweep.validate import check, quiet_repeats, work_estimate

        finished = self.finished
        version = code_version()
        other_version, other_commit = 0, 0
        folders: dict[Path, Job] = {}
        verdicts: dict[tuple, tuple[str | None, str | None]] = {}
        with quiet_repeats():
            for job in jobs:
                if job.status == "invalid":
                    continue
                twin = folders.setdefault(job.run_dir.resolve(), job)
                if twin is not job and twin.config_hash != job.config_hash:
                    raise PlanError(f"two different jobs would share the folder {job.run_dir.name}: "
                                    f"'{twin.label}' and '{job.label}'; name them apart (e.g. a different "
                                    "hydra.sweep.subdir) or sweep them separately")
                done = finished.get(job.config_hash)
                if done is not None:
                    summary = done[1]
                    if summary.get("lossbench_version") != version["lossbench_version"]:
                        other_version += 1  # another lossbench may compute other numbers: train again
                    else:
                        if summary.get("git_commit") != version["git_commit"]:
                            other_commit += 1
                        job.status, job.task = "finished", summary.get("task")
                        job.extra["summary"] = summary
                        job.run_dir = done[0]
                        continue
                # the seed picks rows and initial weights, not whether a combination works: jobs that
                # differ only in a valid seed share one check
                key = (tuple(line for line in job.overrides if not line.startswith("seed=")),
                       _valid_seed(job.extra["cfg"]))
                if key not in verdicts:
                    try:
                        built = check(job.extra["cfg"], job.extra["choices"])
                        work = work_estimate(built, int(job.extra["cfg"].trainer.epochs))
                        verdicts[key] = (built.data.task, None, work)
                    except ConfigError as err:
                        verdicts[key] = (None, str(err), 0.0)
                job.task, message, job.extra["work"] = verdicts[key]
                if message is not None:
                    job.status, job.message = ("skipped" if skip_invalid else "invalid"), message
                    continue
                if held_elsewhere(job.run_dir):
                    job.status = "elsewhere"
        notes = []
        if other_version:
            notes.append(f"lossbench: {other_version} finished runs were trained by another lossbench version "
                         f"(this is {version['lossbench_version']}): they are trained again")
        if other_commit:
            notes.append(f"lossbench: warning: {other_commit} finished runs were trained from another git commit "
                         f"(this is {version['git_commit']}); reused, as their lossbench version and config match")
        return notes

    # ---------------------------------------------------------------- the sweep
    def _sweep(self, arguments: list[str]) -> list[float]:
        from lossbench.records import atomic_write_text
        from lossbench.sweep.objective import check_objective
        from lossbench.sweep.validate import Composer

        started = time.time()
        cfg = self.config
        self.sweep_dir = sweep_dir = Path(cfg.hydra.sweep.dir)
        problem = check_objective(cfg.sweep.get("objective", "auto"))
        if problem:
            raise PlanError(problem)
        self.composer = Composer(self.hydra_context.config_loader, cfg)
        self.finished = self._finished_runs(sweep_dir)
        self.jobs, self.outcomes, self.n_planned, self.next_index = [], [], 0, 0
        self.validation_seconds = 0.0
        lines = self.expand(arguments)
        if len(self.finished) < len(lines):  # runs to train: start the workers while the sweep plans
            from lossbench.sweep.launch import warm_joblib_workers

            self.warming = warm_joblib_workers(self.launcher)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(cfg))
        protocol = (cfg.sweep.get("protocol") or {}).get("name", "grid")
        if protocol not in ("grid", "tune"):
            raise PlanError(f"protocol={protocol!r} is not allowed; allowed: grid | tune")
        try:
            with self._noting_ctrl_c():
                if protocol == "tune":
                    from lossbench.sweep.protocol import run_tune

                    run_tune(self, lines)
                else:
                    from lossbench.sweep.protocol import write_grid_plan

                    write_grid_plan(self, lines)
                    self.round([(job, None) for job in lines])
        except KeyboardInterrupt:  # between two rounds: what finished still gets its report
            if not self.jobs:
                raise
            self.outcomes.append({"interrupted": True, "errors": [], "failed": {}, "watcher": None})
        return self._finish(started)

    @contextlib.contextmanager
    def _noting_ctrl_c(self):
        """Note a Ctrl-C (SIGINT) in ``self.ctrl_c`` before Python raises KeyboardInterrupt.

        With the basic launcher the runs train in this process, where the KeyboardInterrupt can
        surface inside library code that turns it into another exception (a job that "failed"):
        the signal itself, not the exception's type, says the user stopped the sweep.
        """
        from lossbench.run import CTRL_C

        self.ctrl_c = False
        CTRL_C.clear()
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous) and previous != signal.SIG_DFL:  # ignored (nohup, a background job): stays so
            yield
            return

        def note(signum, frame):
            self.ctrl_c = True
            CTRL_C.set()  # in this process (basic launcher): no further run starts, no run records it as its failure
            if callable(previous):
                previous(signum, frame)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, note)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            CTRL_C.clear()

    def stopped(self) -> bool:
        """True when a round was interrupted or lost runs: no further round may start."""
        return any(o["interrupted"] or o["errors"] for o in self.outcomes) or bool(self.lost())

    def summary_of(self, job: Job) -> dict | None:
        """The summary of a job that finished (earlier, or in this sweep), else None."""
        if "summary" in job.extra:
            return job.extra["summary"]
        for outcome in self.outcomes:
            watcher = outcome.get("watcher")
            if watcher is not None and id(job) in watcher.done:
                return watcher.done[id(job)]
        return None

    def lost(self) -> list[Job]:
        return [job for job in self.jobs if job.status in ("run", "elsewhere") and self.summary_of(job) is None]

    def round(self, specs, title: str | None = None, skip_invalid: bool | None = None) -> list[Job]:
        """Plan, check and launch one list of jobs (a grid, or one stage of a protocol); returns its jobs."""
        from lossbench.records import FINISHED_INDEX, write_json

        cfg, sweep_dir = self.config, self.sweep_dir
        if skip_invalid is None:
            skip_invalid = cfg.sweep.get("skip_invalid") is True
        tic = time.perf_counter()
        jobs = self.plan(specs)
        notes = self._classify(jobs, sweep_dir, skip_invalid)
        self.validation_seconds += time.perf_counter() - tic
        log.debug("planned %d jobs in %.3f s (%d compositions so far)", len(jobs), time.perf_counter() - tic,
                  self.composer.n_compositions)
        invalid = [job for job in jobs if job.status == "invalid"]
        if invalid:
            lines = "\n".join(f"  {job.label}: {job.message}" for job in invalid[:20])
            more = f"\n  ... and {len(invalid) - 20} more" if len(invalid) > 20 else ""
            print(f"lossbench: error: {len(invalid)} of {len(jobs)} jobs in this sweep cannot run; nothing was "
                  f"started.\n{lines}{more}\nFix the values, or add sweep.skip_invalid=true to skip impossible "
                  "combinations.", file=sys.stderr)
            sys.exit(2)
        self.jobs.extend(jobs)
        skipped = [job for job in self.jobs if job.status == "skipped"]
        write_json(sweep_dir / "skipped.json",
                   {"skipped": [{"overrides": list(j.overrides), "message": j.message} for j in skipped]})
        write_json(sweep_dir / FINISHED_INDEX,
                   {j.config_hash: j.run_dir.name for j in self.jobs if j.status == "finished"})
        quiet = cfg.get("progress") == "none"
        print(plan_line_for(jobs, title), flush=True)
        for note in notes:
            print(note, flush=True)
        reasons: dict[str, int] = {}
        for job in jobs:
            if job.status == "skipped":
                reasons[job.message] = reasons.get(job.message, 0) + 1
        if reasons and not quiet:  # one line per distinct reason; every job is in skipped.json
            for message, n in list(reasons.items())[:3]:
                print(f"  {n} skipped: {message}", flush=True)
        to_run = [job for job in jobs if job.status == "run"]
        elsewhere = [job for job in jobs if job.status == "elsewhere"]
        self.outcomes.append(self._launch(to_run, elsewhere, jobs, sweep_dir, quiet))
        return jobs

    def _labels(self, jobs: list[Job]) -> dict[int, str]:
        """Each job's overrides that vary across the sweep (``loss=ce,seed=3``), for progress lines."""
        from lossbench.build import changes_results

        counts: dict[str, set] = {}
        for job in jobs:
            for line in job.overrides:
                key, _, value = line.partition("=")
                counts.setdefault(key, set()).add(value)
        varying = {k for k, values in counts.items() if len(values) > 1 and changes_results(k)}
        return {id(job): ",".join(line for line in job.overrides if line.partition("=")[0] in varying) or job.label
                for job in jobs}

    def _parallel_jobs(self) -> int:
        """How many launcher jobs run at once: 1 (basic), joblib's n_jobs, submitit's array_parallelism."""
        launcher = self.config.hydra.get("launcher") or {}
        target = str(launcher.get("_target_", ""))
        if "BasicLauncher" in target:
            return 1
        for key in ("n_jobs", "array_parallelism"):
            value = launcher.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return os.cpu_count() or 1

    def _packs(self, to_run: list[Job]) -> list[list[Job]]:
        """The launcher jobs: runs that can share a stacked pass together (at most ``stack_size``),
        then consecutive packs merged up to ``runs_per_job`` runs a launcher job."""
        if self.stack_size <= 1:
            return chunks(to_run, self.runs_per_job)
        from lossbench.stack import packs as stack_packs

        workers = self._parallel_jobs()
        stacks = [[to_run[i] for i in pack]
                  for pack in stack_packs([list(job.overrides) for job in to_run], self.stack_size, workers)]
        merged: list[list[Job]] = []
        for pack in stacks:
            if merged and len(merged[-1]) + len(pack) <= self.runs_per_job:
                merged[-1].extend(pack)
            else:
                merged.append(list(pack))
        return merged

    def _launch(self, to_run: list[Job], elsewhere: list[Job], jobs: list[Job], sweep_dir: Path, quiet: bool) -> dict:
        """Launch the batches; returns {"interrupted": bool, "errors": [(exception, lost jobs)], "watcher": ...}."""
        from lossbench.bundled import bundled_read
        from lossbench.sweep.claim import held_elsewhere
        from lossbench.sweep.progress import Watcher

        outcome = {"interrupted": False, "errors": [], "failed": {}}
        watched = to_run + elsewhere
        if not watched:
            outcome["watcher"] = None
            return outcome
        watcher = Watcher(watched, self._labels(jobs), enabled=not quiet).start()
        outcome["watcher"] = watcher
        if self.warming is not None:  # the workers' head start: done before the launcher uses them
            self.warming.join()
            self.warming = None
        self._start_figure_helper()
        packs = self._packs(to_run)
        if 1 < self._parallel_jobs() < len(packs):  # jobs wait for a worker: the longest go first, so no
            # worker starts a long one at the end (when every job starts at once, the plan's order stays)
            packs.sort(key=lambda pack: -sum(job.extra.get("work", 0.0) for job in pack))
        self.task.packs = {tuple(p[0].overrides): [(j.index, j.overrides) for j in p[1:]] for p in packs}
        self.task.stacked = self.stack_size > 1
        self.task.bundled = bundled_read()  # the sets the plan's checks read: no worker reads (imports) them again
        self.task.bases = self.composer.bases([pack[0].overrides for pack in packs if len(pack) > 1])
        try:
            for batch in chunks(packs, self.max_batch_size):
                try:
                    returns = self.launcher.launch([list(p[0].overrides) for p in batch],
                                                   initial_job_idx=self.next_index)
                    if self.ctrl_c:  # a Ctrl-C that a job turned into its own failure is still a Ctrl-C
                        raise KeyboardInterrupt
                    for pack, job_return in zip(batch, returns):  # a task that raised: its log is the sweep's
                        if job_return.status == JobStatus.FAILED:
                            try:
                                job_return.return_value  # re-raises the task's exception
                            except Exception as err:
                                self._log_error(sweep_dir, err, f"the task of {pack[0].label} raised")
                                for job in pack:
                                    outcome["failed"][id(job)] = f"{type(err).__name__}: {err}"
                except KeyboardInterrupt:
                    raise
                except Exception as err:  # a dead worker, a scheduler error: lose this batch only
                    lost = [job for pack in batch for job in pack]
                    outcome["errors"].append((err, lost))
                    self._log_error(sweep_dir, err)
                self.next_index += len(batch)
            # runs another process is training: wait for them, so both sweeps end with a full report
            watcher.poll()
            waiting = [job for job in watched if id(job) not in watcher.done and held_elsewhere(job.run_dir)]
            if waiting:
                if not quiet:
                    print(f"lossbench: waiting for {len(waiting)} runs that another process is training", flush=True)
                while waiting:
                    time.sleep(0.5)
                    waiting = [job for job in waiting if held_elsewhere(job.run_dir)]
        except KeyboardInterrupt:
            outcome["interrupted"] = True
        finally:
            watcher.stop()
        return outcome

    def _log_error(self, sweep_dir: Path, err: BaseException, what: str = "the launcher raised") -> None:
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        try:
            with open(sweep_dir / SWEEP_LOG, "a", encoding="utf-8") as f:
                f.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {what}:\n{text}\n")
        except OSError:
            pass

    def _finish(self, started: float) -> list[float]:
        from lossbench.records import write_json
        from lossbench.sweep.launch import end_workers
        from lossbench.sweep.objective import objective_value

        sweep_dir, jobs = self.sweep_dir, self.jobs
        interrupted = any(o["interrupted"] for o in self.outcomes) or self.ctrl_c
        errors = [error for o in self.outcomes for error in o["errors"]]
        if interrupted or errors:
            end_workers()
            for outcome in self.outcomes:  # a worker may have finished a run while we stopped: count it
                if outcome.get("watcher") is not None:
                    outcome["watcher"].poll()
        launched = [job for job in jobs if job.status in ("run", "elsewhere")]
        missing = self.lost()
        reasons = {}
        for err, lost in errors:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            for job in lost:
                reasons[id(job)] = f"the launcher raised {type(err).__name__}: {first}"
        for outcome in self.outcomes:
            for key, message in outcome.get("failed", {}).items():
                reasons.setdefault(key, f"its job raised {message} (traceback in {SWEEP_LOG})")
        for job in missing:
            reasons.setdefault(id(job), "interrupted (Ctrl-C)" if interrupted else
                               "the run did not finish (its job ended without a summary; see its lossbench.log)")
        write_json(sweep_dir / "missing.json",
                   {"missing": [{"overrides": list(j.overrides), "reason": reasons[id(j)]} for j in missing]})

        reused = [job for job in jobs if job.status == "finished"]
        skipped = [job for job in jobs if job.status == "skipped"]
        summaries = [s for s in (self.summary_of(job) for job in jobs) if s is not None]
        counts: dict[str, int] = {}
        for summary in summaries:
            counts[summary.get("status", "?")] = counts.get(summary.get("status", "?"), 0) + 1
        if skipped:
            counts["skipped (cannot work)"] = len(skipped)
        if missing:
            counts["missing"] = len(missing)
        status_text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no runs"
        reused_text = f" ({len(reused)} reused from an earlier sweep into this folder)" if reused else ""
        word = "interrupted" if interrupted else ("finished with lost runs" if missing else "finished")
        print(f"lossbench: sweep {word}: {status_text}{reused_text}", flush=True)
        log.debug("sweep took %.1f s", time.time() - started)

        try:
            self._report(sweep_dir, summaries)
        except KeyboardInterrupt:
            print(f"lossbench: interrupted while writing the report; rebuild it with: lossbench-report "
                  f"{_display(sweep_dir)}", file=sys.stderr)
            sys.exit(130)
        if missing:
            cause = "Ctrl-C" if interrupted else (type(errors[0][0]).__name__ if errors else "jobs that ended early")
            print(f"lossbench: {len(missing)} of {len(launched)} runs lost ({cause}); they are listed in "
                  f"{_display(sweep_dir / 'missing.json')}. Resume with: {resume_command(sweep_dir)}",
                  file=sys.stderr, flush=True)
            sys.exit(130 if interrupted else 1)
        if interrupted:  # a Ctrl-C when every launched run had finished: a later round (the tune
            # protocol's confirmation) may not have started, so the exit and the resume line say Ctrl-C too
            print(f"lossbench: interrupted (Ctrl-C) when every run launched had finished; a round not started "
                  f"yet starts on a re-run. Resume with: {resume_command(sweep_dir)}", file=sys.stderr, flush=True)
            sys.exit(130)
        setting = self.config.sweep.get("objective", "auto")
        return [objective_value(s, setting) for s in summaries]

    def _start_figure_helper(self) -> None:
        """Start the report's figure helper as the first runs launch (a study with a figure to draw on
        two or more cores): its imports then use idle CPU while the runs train, not the report's time."""
        if self.figure_helper is not None or not self.config.report.get("figures", True):
            return
        from lossbench.report.drawing import Helper, helper_pays

        if helper_pays(len(self.jobs)):
            self.figure_helper = Helper(nice=10)

    def _report(self, sweep_dir: Path, summaries: list[dict]) -> None:
        if not summaries:
            print(f"lossbench: no finished runs in {_display(sweep_dir)}; no report written", file=sys.stderr)
            return
        from filelock import FileLock

        from lossbench.report import build_report

        try:  # one report writer at a time: two sweeps into one folder may finish together
            with FileLock(str(sweep_dir / ".lossbench.report.lock")):
                helper, self.figure_helper = self.figure_helper, None  # the report closes it
                index = build_report([sweep_dir], target_fraction=float(self.config.report.target_fraction),
                                     figures=bool(self.config.report.get("figures", True)), helper=helper)
        except Exception as err:
            self._log_error(sweep_dir, err)
            print(f"lossbench: error: the report failed: {type(err).__name__}: {err}\n"
                  f"  the runs are intact; rebuild with: lossbench-report {_display(sweep_dir)}", file=sys.stderr)
            sys.exit(1)
        print(f"lossbench: results: {_display(sweep_dir / 'results.csv')}\nlossbench: report:  {_display(Path(index))}",
              flush=True)


def _valid_seed(cfg) -> bool:
    seed = cfg.get("seed") if cfg is not None else None
    return isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0


def plan_line_for(jobs: list[Job], title: str | None = None) -> str:
    from lossbench.sweep.progress import plan_line

    count = lambda status: sum(1 for job in jobs if job.status == status)  # noqa: E731
    line = plan_line(len(jobs), count("run"), count("finished"), count("skipped"), count("elsewhere"))
    return line.replace("lossbench: ", f"lossbench: {title}: ", 1) if title else line
