"""The Hydra entry point: compose -> validate and build -> train -> write the run's files.

``lossbench [overrides]`` trains one run into ``runs/<date>_<time>-p<pid>/``;
``lossbench -m [sweep overrides]`` runs a sweep, one directory per job, and ends with the report
(see :mod:`lossbench.callbacks`). Configuration becomes objects in :mod:`lossbench.build`; this
module decides what a run does with them and what it leaves on disk.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lossbench.build import ConfigError, build, changes_results, config_hash
from lossbench.records import find_finished_run, provenance, write_json, write_metrics, write_params
from lossbench.trackers import open_tracker

log = logging.getLogger("lossbench")


def _job_dirname(override_dirname: str) -> str:
    """A sweep job's folder name from its overrides: readable, filesystem-safe, at most 120 chars."""
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "_", override_dirname)
    if len(name) > 120:
        name = name[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
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
        self.logger = log
        if mode == "log" and multirun:
            self.logger = logging.getLogger("lossbench.epochs")
            self.logger.propagate = False
            self.logger.setLevel(logging.INFO)
            self.logger.handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
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
        elif self.mode == "log":
            self.logger.info("epoch %d/%d train_loss=%.6g%s", epoch, self.epochs, loss, extra)

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


def _refuse(cfg: DictConfig, err: ConfigError, out_dir: Path, multirun: bool, label: str,
            overrides: list[str]) -> dict | None:
    """Bad input: one line and exit 2 for a single run; inside a sweep, skip or record and go on."""
    if multirun and cfg.sweep.get("skip_invalid") is True:
        log.info("skip %s: not a valid combination: %s", label, err)
        _cleanup_unfinished(out_dir)
        return None
    if multirun:  # the sweep checked every job before starting, so this is rare: record it, go on
        log.error("invalid configuration: %s", err)
        summary = {"status": "failed", "message": f"invalid configuration: {err}", "stop_epoch": 0,
                   "task": None, "final": {}, "best": {}, "overrides": overrides, "seed": None, "config": {},
                   "config_hash": "invalid-" + hashlib.sha256(label.encode()).hexdigest()[:8],
                   "choices": _choices(HydraConfig.get()), "finished_at": time.time()}
        write_json(out_dir / "summary.json", summary)
        return summary
    print(f"lossbench: error: {err}", file=sys.stderr)
    _cleanup_unfinished(out_dir)
    sys.exit(2)


def run(cfg: DictConfig) -> dict | None:
    """Validate and build everything from ``cfg``, train, and write the run's files.

    Returns the summary dict (also written to ``summary.json``), or ``None`` when the run was
    skipped: an identical run already finished in the sweep, or (``sweep.skip_invalid``) the
    combination cannot work. Bad input in a single run exits with status 2.
    """
    started = time.time()
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)  # "${...}" kept as typed
    label = " ".join(overrides) or "defaults"

    try:
        run_config_hash = config_hash(cfg)
        if multirun:
            done = find_finished_run(Path(hydra_cfg.sweep.dir), run_config_hash)
            if done is not None:
                log.info("skip %s: finished earlier with the same config (%s)", label, done)
                if done.resolve() != out_dir.resolve():
                    _cleanup_unfinished(out_dir)
                return None
        # a summary left from an earlier attempt in this folder must not sit beside new, partial files
        (out_dir / "summary.json").unlink(missing_ok=True)
        built = build(cfg)
    except ConfigError as err:
        return _refuse(cfg, err, out_dir, multirun, label, overrides)

    summary = {
        "status": "failed", "message": None, "stop_epoch": 0, "epochs": int(cfg.trainer.epochs),
        "task": built.data.task, "dataset": built.data.name, "final": {}, "best": {},
        "wall_time_s": None, "train_time_s": None, "seed": int(cfg.seed), "config_hash": run_config_hash,
        "overrides": overrides, "choices": _choices(hydra_cfg),
        "config": OmegaConf.to_container(cfg, resolve=True), "provenance": None,
    }
    progress = _Progress(cfg.progress, int(cfg.trainer.epochs), multirun)
    tracker = open_tracker(cfg, out_dir, out_dir.name)  # logger=mlflow|tensorboard; never raises

    def on_epoch(record: dict) -> None:
        progress(record)
        tracker.log_epoch(record)

    result = None
    try:
        from threadpoolctl import threadpool_limits

        limit = None if cfg.blas_threads == 0 else int(cfg.blas_threads)
        with threadpool_limits(limits=limit):
            summary["provenance"] = provenance()  # inside the limit: records the threads BLAS runs with
            result = built.train(on_epoch=on_epoch)
        summary["status"], summary["message"] = result.status, result.message
        summary["stop_epoch"], summary["train_time_s"] = result.stop_epoch, result.train_time_s
    except Exception as err:  # a failed run is a result too; the sweep goes on
        summary["message"] = f"{type(err).__name__}: {err}"
        log.error("run failed: %s\n%s", summary["message"], traceback.format_exc())
        if not multirun:
            print(f"lossbench: run failed: {summary['message']}", file=sys.stderr)
    finally:
        progress.close()

    if result is not None:
        write_metrics(out_dir / "metrics.csv", result.records)
        summary["final"], summary["best"] = _final_and_best(result.records)
        write_params(out_dir / "params.npz", built.model.params)
        built.write_calibration(out_dir / "calibration.csv")
    summary["wall_time_s"] = time.time() - started
    summary["finished_at"] = time.time()
    write_json(out_dir / "summary.json", summary)  # last: its presence marks the run as finished
    tracker.finish(summary)

    final = summary["final"]
    shown = ", ".join(f"{k}={final[k]:.4f}" for k in ("train_loss", "test_accuracy", "test_r2") if k in final)
    message = f" ({summary['message']})" if summary["message"] else ""
    log.info("%s: %s%s %s -> %s", summary["status"], label, message, shown, out_dir)
    if not multirun:
        print(f"lossbench: {summary['status']}{message}: {shown}\n  run directory: {_display_path(out_dir)}")
        if summary["status"] == "failed":
            sys.exit(1)
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Console script ``lossbench``: one run, or a sweep with ``-m``."""
    run(cfg)


if __name__ == "__main__":
    main()
