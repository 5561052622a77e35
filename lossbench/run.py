"""The Hydra entry point: compose -> validate and build -> train -> write the run's files.

``lossbench [overrides]`` trains one run into ``runs/<date>_<time>-p<pid>/``;
``lossbench -m [sweep overrides]`` runs a sweep, one directory per job, and ends with the report
(see :mod:`lossbench.sweep`). Configuration becomes objects in :mod:`lossbench.build`; this
module decides what a run does with them and what it leaves on disk.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lossbench.build import ConfigError, build, changes_results, config_hash
from lossbench.checkpoint import remove_checkpoint
from lossbench.records import (code_version, file_digests, find_finished_run, finished_summary, provenance, read_json,
                               remove_stale_temporaries, write_json, write_metrics, write_params)
from lossbench.sweep.claim import Claim
from lossbench.sweep.claim import owner as claim_owner
from lossbench.sweep.objective import objective_value
from lossbench.trackers import open_tracker

log = logging.getLogger("lossbench")

# Set by the sweeper's SIGINT handler (lossbench.sweep.engine) while a sweep runs in this process: an
# exception raised after it is the Ctrl-C, whatever type library code gave it, never a run's failure.
CTRL_C = threading.Event()


def _job_dirname(override_dirname: str) -> str:
    """A sweep job's folder name from its overrides: readable, filesystem-safe, at most 120 chars.

    Characters outside ``[A-Za-z0-9=,._+-]`` become ``_``; when that changed the name, a hash of the
    original is appended, so ``dataset.path=a/d.csv`` and ``dataset.path=a_d.csv`` never share a folder.
    """
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "_", override_dirname)
    digest = hashlib.sha256(override_dirname.encode()).hexdigest()[:12]
    if len(name) > 120:
        name = name[:100] + "-" + digest
    elif name != override_dirname:
        name = f"{name}-{digest[:8]}"
    return name


def _study_dir(name: str, overrides) -> str:
    """``runs/NAME`` for a study as shipped; ``runs/NAME,KEY=VALUE,...`` when extra overrides change it.

    Re-running the same command resumes in the same folder; a variant (``trainer.epochs=80``) gets
    its own, so it never mixes its runs into the study's report.
    """
    overrides = OmegaConf.to_container(overrides, resolve=False) if OmegaConf.is_config(overrides) else overrides
    extras = sorted(o for o in overrides or [] if changes_results(o.split("=", 1)[0]))
    return f"runs/{name}" + (f",{_job_dirname(','.join(extras))}" if extras else "")


def _register_resolvers() -> None:
    OmegaConf.register_new_resolver("lossbench_jobdir", _job_dirname, replace=True)
    # cached: every job of a sweep reuses the folder its parent process resolved (Hydra copies the cache)
    OmegaConf.register_new_resolver("lossbench_study_dir", _study_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("lossbench_pid", lambda: str(os.getpid()), use_cache=True, replace=True)


_register_resolvers()


def _register_sweeper() -> None:
    """Make sure Hydra knows lossbench's sweeper, installed from a wheel or editable.

    Hydra finds plugins by listing the ``hydra_plugins`` namespace with ``pkgutil``; the import hook
    of a setuptools editable install can be imported from but not listed, so the sweeper (and its
    ``hydra/sweeper=lossbench`` config) would be missing. Importing the module registers the config;
    ``Plugins.register`` (Hydra's public way to add a plugin class) does the rest. Idempotent.
    """
    from hydra.core.plugins import Plugins
    from hydra_plugins.lossbench_sweeper.lossbench_sweeper import LossbenchSweeper

    Plugins.instance().register(LossbenchSweeper)


_register_sweeper()


class _Progress:
    """Per-epoch feedback: a bar on an interactive terminal, otherwise one log line per epoch.

    Inside a sweep the epoch lines go to each job's ``lossbench.log`` only: the console keeps one
    line per finished run, not thousands of interleaved epochs.
    """

    def __init__(self, mode: str, epochs: int, multirun: bool):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() and not multirun else "log"
        self.mode, self.epochs = mode, epochs
        self.bar = None
        # inside a sweep, this run's own log files, taken now: the runs of a stacked pack train
        # together, after the last of them set up the job logging
        self.files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)] \
            if mode == "log" and multirun else None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc="training", unit="epoch", leave=False, dynamic_ncols=True)

    def __call__(self, record: dict) -> None:
        epoch, loss = record["epoch"], record["train_loss"]
        extra = "".join(f" {k}={record[k]:.4f}" for k in ("val_accuracy", "test_accuracy", "val_r2", "test_r2")
                        if k in record)
        if self.bar is not None:
            if epoch > 0:
                self.bar.update(1)
            self.bar.set_postfix_str(f"train_loss={loss:.4g}{extra.replace('_accuracy', '_acc')}")
        elif self.files is not None:
            line = log.makeRecord(log.name, logging.INFO, __file__, 0, "epoch %d/%d train_loss=%.6g%s",
                                  (epoch, self.epochs, loss, extra), None)
            for handler in self.files:
                handler.handle(line)
        elif self.mode == "log":
            log.info("epoch %d/%d train_loss=%.6g%s", epoch, self.epochs, loss, extra)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _final_and_best(records: list[dict]) -> tuple[dict, dict]:
    """The last row's metrics, and each metric's best value over the epochs (max for accuracy/R²)."""
    if not records:
        return {}, {}
    skip = {"epoch", "step", "time_s", "lr", "grad_norm"}
    final = {k: v for k, v in records[-1].items() if k not in skip}
    best = {}
    for key in final:
        values = [r[key] for r in records if key in r and math.isfinite(r[key])]
        if values:
            higher_is_better = key.endswith("_accuracy") or key.endswith("_r2")
            best[key] = max(values) if higher_is_better else min(values)
    return final, best


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def _cleanup_unfinished(out_dir: Path) -> None:
    """Remove a job folder that holds only Hydra's bookkeeping, so no empty run is left behind."""
    allowed = {".hydra", "lossbench.log"}
    if out_dir.is_dir() and {p.name for p in out_dir.iterdir()} <= allowed:
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)


def _choices(hydra_cfg) -> dict:
    """The option picked in each lossbench config group, e.g. ``{"loss": "ce", ...}``."""
    return {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra/") and v is not None}


def _quiet_console() -> None:
    """Inside a sweep a job logs to its ``lossbench.log`` only: the sweeper prints one line per run."""
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if isinstance(h, logging.FileHandler)
                     or not isinstance(h, logging.StreamHandler)]


def _refuse(cfg: DictConfig, err: ConfigError, out_dir: Path, multirun: bool, label: str,
            overrides: list[str]) -> dict | None:
    """Bad input: one line and exit 2 for a single run; inside a sweep, skip or record and go on.

    Nothing of an earlier attempt in ``out_dir`` is touched: a failed record is written only into a
    folder that holds no summary yet, under the run's claim.
    """
    if multirun and cfg.sweep.get("skip_invalid") is True:
        log.info("skip %s: not a valid combination: %s", label, err)
        _cleanup_unfinished(out_dir)
        return None
    if multirun:  # the sweep checked every job before starting, so this is rare: record it, go on
        log.error("invalid configuration: %s", err)
        summary = {"status": "failed", "message": f"invalid configuration: {err}", "stop_epoch": 0,
                   "task": None, "final": {}, "best": {}, "overrides": overrides, "seed": None, "config": {},
                   "config_hash": "invalid-" + hashlib.sha256(label.encode()).hexdigest()[:8],
                   "choices": _choices(HydraConfig.get()), "finished_at": time.time(),
                   "stage": cfg.sweep.get("stage"), **code_version()}
        with Claim(out_dir) as claim:
            if claim.held and not (out_dir / "summary.json").exists():
                write_json(out_dir / "summary.json", summary)
        return summary
    print(f"lossbench: error: {err}", file=sys.stderr)
    _cleanup_unfinished(out_dir)
    sys.exit(2)


def _log_to_file(message: str, *args) -> None:
    """Log a line to the run's ``lossbench.log`` only (the separator between attempts is no console news)."""
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, args, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


DATA_FILES = ("metrics.csv", "params.npz", "calibration.csv", "gradients.csv")


def _write_outputs(built, result, out_dir: Path, summary: dict) -> None:
    """The run's data files (each atomic), then their checksums into ``summary``."""
    write_metrics(out_dir / "metrics.csv", result.records)
    summary["final"], summary["best"] = _final_and_best(result.records)
    write_params(out_dir / "params.npz", built.model.params)
    built.write_calibration(out_dir / "calibration.csv")  # not written for a loss without a link
    built.write_gradient_curves(out_dir / "gradients.csv")
    summary["files"] = file_digests(out_dir)


def run(cfg: DictConfig) -> dict | None:
    """Validate and build everything from ``cfg``, claim the run, train, and write the run's files.

    Returns the summary dict (also written to ``summary.json``); inside a sweep, the summary of an
    identical run that finished earlier (nothing is trained or written then), or ``None`` when the
    run was skipped (``sweep.skip_invalid``) or another process holds its claim. Bad input in a
    single run exits with status 2, a run that cannot write its files with status 1.
    """
    prepared = prepare(cfg)
    if not isinstance(prepared, Prepared):
        return prepared
    try:
        result, error = prepared.train()
    except BaseException:  # Ctrl-C: the claim goes, the checkpoint stays for the next attempt
        prepared.release()
        raise
    return prepared.finish(result, error)


def run_pack(runs: list[Prepared]) -> list[dict]:
    """Train prepared runs together where they stack (:func:`lossbench.stack.train_stack`), then finish each.

    Every run keeps its own folder, files, claim, checkpoint and tracker, and its numbers equal the
    run trained alone (every column of metrics.csv but ``time_s``, and params.npz); runs that do
    not stack train one after another inside the same call. When the stacked pass raises, each run
    trains alone from its own checkpoint, so one run's error is its own failure only.
    """
    from lossbench.stack import train_stack

    error = None
    try:
        with runs[0].blas_limit():  # blas_threads is part of the pack key: the runs of a pack share it
            shared = provenance()  # the same process, packages and BLAS limit for every run of the pack
            for prepared in runs:
                prepared.summary["provenance"] = copy.deepcopy(shared)
            results = train_stack([prepared.built for prepared in runs],
                                  on_epochs=[prepared.on_epoch for prepared in runs],
                                  checkpoints=[prepared.out_dir for prepared in runs],
                                  config_hashes=[prepared.summary["config_hash"] for prepared in runs])
    except Exception as err:  # one run's error must not fail the others: each trains alone instead,
        if CTRL_C.is_set():
            for prepared in runs:
                prepared.release()
            raise KeyboardInterrupt from err
        log.warning("the stacked pass failed (%s: %s); its runs train one at a time, each from its own "
                    "checkpoint", type(err).__name__, err)
        results = None
    except BaseException:
        for prepared in runs:
            prepared.release()
        raise
    summaries, first_error = [], None
    for index, prepared in enumerate(runs):
        try:
            result, error = (results[index], None) if results is not None else prepared.train()
            summaries.append(prepared.finish(result, error))
        except Exception as err:  # finishing one run (a write that fails) must not leave the others unfinished
            prepared.release()
            log.error("finishing %s failed: %s: %s", prepared.label, type(err).__name__, err)
            summaries.append(None)
            first_error = first_error or err
        except BaseException:
            for later in runs[index:]:
                later.release()
            raise
    if first_error is not None:
        raise first_error
    return summaries


def prepare(cfg: DictConfig):
    """Everything before training: validate and build ``cfg``, claim the run, clear an earlier attempt.

    Returns a claimed :class:`Prepared` run, or what :func:`run` returns for a run that does not
    train (a summary reused from disk, or None), so that a packed launcher job can train several
    prepared runs in one stacked pass (:func:`run_pack`). Must run inside the run's Hydra job
    (it reads the output folder and overrides from ``HydraConfig``).

    Order matters for the files of an earlier attempt: nothing in the folder is touched until the
    config is valid and the run is claimed (:class:`lossbench.sweep.claim.Claim`).
    """
    started = time.time()
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)  # "${...}" kept as typed
    label = " ".join(overrides) or "defaults"
    if multirun:
        _quiet_console()

    try:
        run_config_hash = config_hash(cfg)
        if multirun:
            done = find_finished_run(Path(hydra_cfg.sweep.dir), run_config_hash)
            if done is not None:
                log.info("skip %s: finished earlier with the same config (%s)", label, done)
                if done.resolve() != out_dir.resolve():
                    _cleanup_unfinished(out_dir)
                return read_json(done / "summary.json")
        built = build(cfg)
    except ConfigError as err:
        return _refuse(cfg, err, out_dir, multirun, label, overrides)

    claim = Claim(out_dir)
    try:
        if not claim.acquire():
            holder = claim_owner(out_dir)
            text = (f"another process (pid {holder.get('pid', '?')} on {holder.get('host', '?')}) is training "
                    f"this run in {_display_path(out_dir)}")
            log.warning("skip %s: %s", label, text)
            if not multirun:
                print(f"lossbench: error: {text}", file=sys.stderr)
                sys.exit(1)
            return None
        if multirun:  # another process may have finished it while we waited for the claim
            done = finished_summary(out_dir, run_config_hash)
            if done is not None:
                log.info("skip %s: another process finished it meanwhile", label)
                claim.release()
                return done
        return Prepared(cfg, built, out_dir, multirun, label, overrides, run_config_hash, started, hydra_cfg, claim)
    except BaseException:
        claim.release()
        raise


class Prepared:
    """A claimed, valid run, its earlier attempt cleared: :meth:`train` it, then :meth:`finish` it.

    Holds the run's claim until :meth:`finish` (or :meth:`release`); ``on_epoch`` feeds the
    progress lines and the tracker, ``summary`` is filled in by :meth:`finish`.
    """

    def __init__(self, cfg, built, out_dir: Path, multirun: bool, label: str, overrides: list[str],
                 run_config_hash: str, started: float, hydra_cfg, claim: Claim):
        self.cfg, self.built, self.out_dir, self.multirun, self.label = cfg, built, out_dir, multirun, label
        self.claim, self.started = claim, started
        self.summary = _start(cfg, built, out_dir, overrides, run_config_hash, hydra_cfg)
        self.progress = _Progress(cfg.progress, int(cfg.trainer.epochs), multirun)
        self.tracker = open_tracker(cfg, out_dir, out_dir.name)  # logger=mlflow|tensorboard; never raises
        # the job's own log files: a packed job finishes its runs after the next run's job set up logging
        self.log_files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]

    def on_epoch(self, record: dict) -> None:
        self.progress(record)
        self.tracker.log_epoch(record)

    def blas_limit(self):
        """threadpoolctl's limit for this run's ``blas_threads`` (0: the library's default)."""
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=None if self.cfg.blas_threads == 0 else int(self.cfg.blas_threads))

    def train(self):
        """``(result, error)``: the TrainResult, or None and the exception of a run that failed."""
        try:
            with self.blas_limit():
                self.summary["provenance"] = provenance()  # inside the limit: records the threads BLAS runs with
                return self.built.train(on_epoch=self.on_epoch, checkpoint=self.out_dir), None
        except Exception as err:  # a failed run is a result too; the sweep goes on
            if CTRL_C.is_set():  # ... unless it is a Ctrl-C that library code turned into another exception
                raise KeyboardInterrupt from err
            return None, err

    def release(self) -> None:
        self.progress.close()
        self.claim.release()

    def finish(self, result, error: BaseException | None = None) -> dict:
        """Write the run's files and summary.json (last), release the claim; returns the summary."""
        root = logging.getLogger()
        others = [h for h in root.handlers if isinstance(h, logging.FileHandler) and h not in self.log_files]
        if not others and all(h in root.handlers for h in self.log_files):  # still this run's job
            try:
                return _finish(self, result, error)
            finally:
                self.release()
        for handler in others:
            root.removeHandler(handler)
        for handler in self.log_files:
            if handler not in root.handlers:
                root.addHandler(handler)
        try:
            return _finish(self, result, error)
        finally:
            self.release()
            for handler in self.log_files:
                if handler not in others:
                    root.removeHandler(handler)
            for handler in others:
                root.addHandler(handler)


def _start(cfg, built, out_dir: Path, overrides: list[str], run_config_hash: str, hydra_cfg) -> dict:
    """Clear an earlier attempt's files (not its checkpoint) and return the run's summary skeleton."""
    removed = remove_stale_temporaries(out_dir)
    _log_to_file("==== %s: attempt started by pid %d%s ====", time.strftime("%Y-%m-%d %H:%M:%S"), os.getpid(),
                 f" (removed {removed} temporary files of a killed attempt)" if removed else "")
    # an earlier attempt's summary must not sit beside new, partial files, nor its data files beside
    # this attempt's (a regression run writes no calibration.csv); the checkpoint stays: it resumes
    for name in ("summary.json", *DATA_FILES):
        (out_dir / name).unlink(missing_ok=True)

    summary = {
        "status": "failed", "message": None, "stop_epoch": 0, "epochs": int(cfg.trainer.epochs),
        "task": built.data.task, "dataset": built.data.name, "final": {}, "best": {},
        "wall_time_s": None, "train_time_s": None, "seed": int(cfg.seed), "config_hash": run_config_hash,
        "overrides": overrides, "choices": _choices(hydra_cfg), "stage": cfg.sweep.get("stage"),
        **code_version(), "resumed_from_epoch": 0,
        "config": OmegaConf.to_container(cfg, resolve=True), "provenance": None, "files": {},
        "split_sizes": {split: len(getattr(built.data, f"y_{split}")) for split in ("train", "val", "test")
                        if getattr(built.data, f"y_{split}") is not None},
    }
    return summary


def _finish(prepared: Prepared, result, error: BaseException | None) -> dict:
    """Write a trained (or failed) run's files and summary; a failure to write is one line and a failed record."""
    summary, out_dir, multirun, built = prepared.summary, prepared.out_dir, prepared.multirun, prepared.built
    prepared.progress.close()
    if result is not None:
        summary["status"], summary["message"] = result.status, result.message
        summary["stop_epoch"], summary["train_time_s"] = result.stop_epoch, result.train_time_s
        summary["resumed_from_epoch"] = result.resumed_from_epoch
        summary["stack_size"] = result.stack_size
        summary["collapsed_to_chance"] = result.collapsed_to_chance
        if result.collapse_message:
            summary["message"] = summary["message"] or result.collapse_message
    else:
        summary["message"] = f"{type(error).__name__}: {error}"
        log.error("run failed: %s\n%s", summary["message"],
                  "".join(traceback.format_exception(type(error), error, error.__traceback__)))
        if not multirun:
            print(f"lossbench: run failed: {summary['message']}", file=sys.stderr)

    try:
        if result is not None:
            _write_outputs(built, result, out_dir, summary)
        summary["wall_time_s"] = time.time() - prepared.started
        summary["finished_at"] = time.time()
        write_json(out_dir / "summary.json", summary)  # last: its presence marks the run as finished
    except OSError as err:
        message = f"cannot write the run's files in {_display_path(out_dir)}: {err.strerror or err}"
        log.error("%s\n%s", message, traceback.format_exc())
        summary.update(status="failed", message=message, final={}, best={}, finished_at=time.time())
        try:  # a small record may still fit where the data did not
            write_json(out_dir / "summary.json", summary)
        except OSError:
            pass
        if not multirun:
            print(f"lossbench: error: {message}", file=sys.stderr)
            sys.exit(1)
        return summary
    try:
        remove_checkpoint(out_dir)  # the run is finished: its checkpoint would only mislead a re-run
    except OSError as err:  # the run's result stands; a checkpoint left over is only ignored or replaced
        log.warning("could not remove the checkpoint in %s: %s", _display_path(out_dir), err)
    prepared.tracker.finish(summary)

    final = summary["final"]
    shown = ", ".join(f"{k}={final[k]:.4f}" for k in ("train_loss", "test_accuracy", "test_r2") if k in final)
    message = f" ({summary['message']})" if summary["message"] else ""
    log.info("%s: %s%s %s -> %s", summary["status"], prepared.label, message, shown, out_dir)
    if not multirun:
        print(f"lossbench: {summary['status']}{message}: {shown}\n  run directory: {_display_path(out_dir)}")
        if summary["status"] == "failed":
            sys.exit(1)
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Console script ``lossbench``: one run, or a sweep with ``-m``.

    Returns the run's ``sweep.objective`` (a float: NaN for a failed run, the worst value for a
    diverged one), also for a run reused from disk, so a tuner such as Hydra's Optuna sweeper can
    drive lossbench.
    """
    return objective_value(run(cfg), cfg.sweep.get("objective", "auto"))


if __name__ == "__main__":
    main()
