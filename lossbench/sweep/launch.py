"""What runs inside a launcher job, and what ends the worker processes of a sweep that stopped.

:class:`SweepTask` is the task function the sweeper hands to Hydra's launcher (basic, joblib,
submitit). It runs lossbench's own task for the job's run, then the other runs packed into the same
launcher job (``hydra.sweeper.runs_per_job``), each composed and run as its own Hydra job into its
own run folder (:func:`lossbench.sweep.job.run_packed_job`, the steps of Hydra's ``run_job``); with
stacking (``hydra.sweeper.stack_size`` > 1) every run of the launcher job is first prepared in its
own Hydra job (folder, log, claim), then they train in one stacked pass and each is finished as if
alone. In a worker process on the sweeper's host it also watches the sweeper: when the sweeper is
gone (SIGKILL, a closed terminal), the worker ends itself instead of training on for minutes and
racing a re-run (its run claims are released by the kernel). :func:`warm_joblib_workers` starts
the joblib launcher's workers while the sweep plans.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

from hydra.core.config_loader import ConfigLoader

log = logging.getLogger("lossbench")

_COMPOSERS: dict = {}  # sweep token -> Composer, in this process (see SweepTask._composer)


class PlannedLoader(ConfigLoader):
    """The launcher's config loader: Hydra's, except that a launcher job leading a pack gets the config
    the sweep composed while planning (shipped with the task, :meth:`SweepTask.planned_config`), equal
    to what Hydra's ``load_sweep_config`` would compose in the worker (~0.15 s a launcher job) from the
    same config files: the one the plan checked. Every other call, and every job the sweep did not
    ship (another working folder, ``hydra.job.env_copy``: see :meth:`Composer.bases`), goes to Hydra's loader."""

    def __init__(self, inner: ConfigLoader, task: SweepTask):
        self.inner = inner
        self.task = task

    def load_sweep_config(self, master_config, sweep_overrides):
        planned = self.task.planned_config(tuple(sweep_overrides))
        if planned is not None:
            return planned
        return self.inner.load_sweep_config(master_config, sweep_overrides)

    def load_configuration(self, *args, **kwargs):
        return self.inner.load_configuration(*args, **kwargs)

    def get_search_path(self):
        return self.inner.get_search_path()

    def get_sources(self):
        return self.inner.get_sources()

    def list_groups(self, parent_name):
        return self.inner.list_groups(parent_name)

    def get_group_options(self, *args, **kwargs):
        return self.inner.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args, **kwargs):
        return self.inner.compute_defaults_list(*args, **kwargs)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from /proc (Linux); None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], fields[19]


def process_alive(pid: int, start: str | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, when ``start`` is given, is the same process."""
    stat = _proc_stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (macOS): signal 0 tests existence only
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, started = stat
    return state not in ("Z", "X") and (start is None or started == start)


def _watch_parent(pid: int, start: str | None, parent: int, interval: float = 0.5) -> None:
    while True:
        time.sleep(interval)
        reparented = parent == pid and os.getppid() != parent
        if reparented or not process_alive(pid, start):
            log.error("the sweep (pid %d) is gone: ending this worker (pid %d)", pid, os.getpid())
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            os._exit(143)


class SweepTask:
    """The launcher's task function: lossbench's task for the job's run, then its packed runs.

    Picklable (joblib and submitit send it to their workers). ``packs`` maps the override tuple of a
    launcher job's first run to ``[(job_index, overrides), ...]`` of the runs packed with it.
    """

    def __init__(self, task_function, hydra_context, master_config):
        self.task_function = task_function
        self.hydra_context = hydra_context
        self.master_config = master_config
        self.packs: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}
        self.stacked = False  # train a launcher job's runs in one stacked pass (hydra.sweeper.stack_size > 1)
        self.bundled: dict = {}  # bundled data sets the sweep has read (name -> arrays): the workers use them
        self.bases: dict = {}  # the sweep's composed configs of the packs (Composer.bases): no worker composes them
        self.sweeper_pid = os.getpid()
        self.sweeper_start = (_proc_stat(self.sweeper_pid) or (None, None))[1]
        self.sweeper_host = socket.gethostname()
        self.sweep_token = uuid.uuid4().hex  # names this sweep's composer in a worker process

    def _start_watchdog(self) -> None:
        if os.getpid() == self.sweeper_pid or socket.gethostname() != self.sweeper_host:
            return  # in-process (basic launcher), or a cluster node: nothing to watch from here
        if getattr(SweepTask, "_watching", False):
            return
        SweepTask._watching = True
        threading.Thread(target=_watch_parent, args=(self.sweeper_pid, self.sweeper_start, os.getppid()),
                         name="lossbench-watchdog", daemon=True).start()

    def __call__(self, cfg):
        from hydra.core.hydra_config import HydraConfig

        from lossbench.run import CTRL_C

        self._start_watchdog()
        if self.bundled:
            from lossbench.bundled import adopt_bundled

            adopt_bundled(self.bundled)
        if CTRL_C.is_set():  # the basic launcher goes on to its next job after one that failed: stop it
            raise KeyboardInterrupt
        key = tuple(HydraConfig.get().overrides.task)
        if self.stacked and self.packs.get(key):
            return self._stacked(cfg, self.packs[key])
        error, value = None, None
        try:
            value = self.task_function(cfg)
        except Exception as err:  # the packed runs still run; the launcher job reports the first error
            error = err
        for index, overrides in self.packs.get(key, []):
            result = self._packed_job(index, overrides, self.task_function)
            if error is None and result.status.name == "FAILED":
                try:
                    result.return_value  # re-raises the packed run's exception
                except Exception as err:
                    error = err
        if error is not None:
            raise error
        return value

    def _stacked(self, cfg, packed: list[tuple[int, tuple[str, ...]]]):
        """Prepare every run of the launcher job in its own Hydra job (folder, log, claim), train the
        prepared ones in one stacked pass (:func:`lossbench.run.run_pack`), then finish each."""
        from lossbench.run import Prepared, prepare, run_pack
        from lossbench.sweep.objective import objective_value

        first = prepare(cfg)
        prepared = [first] if isinstance(first, Prepared) else []
        try:
            error = self._prepare_packed(packed, prepared)
        except BaseException:  # Ctrl-C while preparing: no claim outlives the attempt
            for run in prepared:
                run.release()
            raise
        summaries = run_pack(prepared) if prepared else []
        if error is not None:
            raise error
        summary = summaries[0] if isinstance(first, Prepared) else first
        return objective_value(summary, cfg.sweep.get("objective", "auto"))

    def _composer(self):
        """This process's composer of the sweep's packed runs' configs: the sweep's own compositions
        (``bases``, composed while planning), else one Hydra composition per structural override set
        (a data set, a loss) and process, not per run nor per launcher job (a worker unpickles a new
        SweepTask for every job; the composer outlives it)."""
        if getattr(self, "_job_composer", None) is None:
            from lossbench.sweep.validate import Composer

            if self.sweep_token not in _COMPOSERS:
                _COMPOSERS.clear()  # one sweep at a time per process
                _COMPOSERS[self.sweep_token] = Composer(self.hydra_context.config_loader, self.master_config)
            self._job_composer = _COMPOSERS[self.sweep_token]
            self._job_composer.adopt(self.bases)
        return self._job_composer

    def planned_config(self, overrides: tuple[str, ...]):
        """The full config of a launcher job that leads a pack, from the sweep's composition (``bases``);
        None for any other job, or in a process working in another folder."""
        if not self.bases or not self.packs.get(overrides) or self.bases.get("cwd") != os.getcwd():
            return None
        return self._composer().adopted_config(overrides)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_job_composer", None)  # a worker composes with its own (it holds configs, not code)
        return state

    def _packed_job(self, index: int, overrides, task_function):
        """Run ``task_function`` as the Hydra job of a packed run (its own folder, log, config files)."""
        from hydra.core.utils import run_job
        from omegaconf import open_dict

        from lossbench.run import CTRL_C
        from lossbench.sweep.job import run_packed_job

        if CTRL_C.is_set():  # after a Ctrl-C in this process (basic launcher) no further packed run starts
            raise KeyboardInterrupt

        composer = self._composer()
        config = composer.job_config(tuple(overrides))
        task_cfg = None if config is None else composer.task_config(tuple(overrides))
        if config is None:
            config = self.hydra_context.config_loader.load_sweep_config(
                master_config=self.master_config, sweep_overrides=list(overrides))
        with open_dict(config):
            config.hydra.job.id = f"packed_{index}"
            config.hydra.job.num = index
        if task_cfg is not None and config.hydra.job.chdir is False:
            return run_packed_job(self.hydra_context, task_function, config, task_cfg)
        return run_job(hydra_context=self.hydra_context, task_function=task_function, config=config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")

    def _prepare_packed(self, packed, prepared: list) -> Exception | None:
        """Prepare each packed run in its own Hydra job, appending to ``prepared``; returns the first error."""
        from lossbench.run import Prepared, prepare

        error = None
        for index, overrides in packed:
            result = self._packed_job(index, overrides, prepare)
            try:
                value = result.return_value  # re-raises the exception of a run that could not be prepared
            except Exception as err:
                error = error or err
                continue
            if isinstance(value, Prepared):
                prepared.append(value)
        return error


def _warm_worker() -> int:
    """In a joblib worker: import what its runs need (NumPy, Hydra, the runner; scikit-learn's bundled
    sets come from the sweep, its generators are imported by the runs that use them)."""
    import hydra.core.utils  # noqa: F401

    import lossbench.data  # noqa: F401
    import lossbench.run  # noqa: F401
    import lossbench.stack  # noqa: F401
    import lossbench.sweep.job  # noqa: F401

    return os.getpid()


def warm_joblib_workers(launcher) -> threading.Thread | None:
    """Start the joblib launcher's worker processes now, in a thread, so that their start-up (~2 s of
    imports each) overlaps the sweep's planning; None for another launcher.

    The workers are loky's reusable executor, created with the launcher's own ``Parallel`` arguments,
    so the launcher's first ``launch`` finds them running (loky reuses an executor whose arguments
    are equal). A failure here costs nothing but the head start.
    """
    settings = getattr(launcher, "joblib", None)
    if type(launcher).__name__ != "JoblibLauncher" or settings is None:
        return None
    arguments = dict(settings)
    arguments["backend"] = "loky"  # as hydra_joblib_launcher's launch sets it
    for key in ("pre_dispatch", "batch_size", "max_nbytes"):  # ... and converts these
        if arguments.get(key):
            try:
                arguments[key] = int(arguments[key])
            except ValueError:
                pass

    def warm():
        try:
            from joblib import Parallel, cpu_count, delayed

            n_jobs = arguments.get("n_jobs") or 1
            workers = cpu_count() if n_jobs < 0 else n_jobs
            thread.pids = set(Parallel(**arguments)(delayed(_warm_worker)() for _ in range(2 * workers)))
        except Exception as err:
            log.debug("warming the joblib workers failed: %s", err)

    thread = threading.Thread(target=warm, name="lossbench-warm-workers", daemon=True)
    thread.pids = set()  # the workers that ran the warm-up
    thread.start()
    return thread


def descendants(pid: int | None = None) -> list[int]:
    """Every process below ``pid`` (default: this one) in the process tree, from /proc (Linux only)."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_workers(grace: float = 3.0) -> int:
    """SIGTERM every descendant process (joblib workers, submitit_local jobs), SIGKILL what remains."""
    if not Path("/proc/self/stat").exists():
        return 0
    pids = descendants()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if process_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return len(pids)
