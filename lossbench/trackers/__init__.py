"""Experiment trackers: stream a run's metrics to MLflow or TensorBoard while it trains.

Selected with the ``logger`` config group (``conf/logger/*.yaml``, default ``none``)::

    lossbench -m loss=l2,ce seed=0,1,2 logger=mlflow logger.tracking_uri=sqlite:///mlflow.db
    lossbench logger=tensorboard

The job's own process (whichever launcher runs it) calls, around training::

    tracker = open_tracker(cfg, run_dir, run_name)   # before the first epoch
    tracker.log_epoch(record)                        # from the training loop's on_epoch hook
    tracker.finish(summary)                          # after summary.json is written

A tracker never stops a run: a missing package, a store that cannot be reached (server down) or
that refuses a write is one warning line, and the tracker becomes a no-op for the rest of the run.
``mlflow`` and ``tensorboardX`` are imported only when their logger is selected.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from pathlib import Path

log = logging.getLogger("lossbench")

#: The options of the ``logger`` group, as its ``type`` key names them, and the extra installing each.
TYPES = {"none": None, "mlflow": "mlflow", "tensorboard": "tensorboard"}
#: Top-level config keys never sent to a tracker: ``logger`` may hold credentials in its URI.
PRIVATE_KEYS = ("logger", "hydra")


class Tracker:
    """The tracker interface, and the ``none`` tracker: every method does nothing."""

    name = "none"

    def log_epoch(self, record: dict) -> None:
        """One evaluation of the run: ``record`` is a row of ``metrics.csv`` (``epoch`` = step)."""

    def finish(self, summary: dict) -> None:
        """The run ended: ``summary`` is the content of ``summary.json`` (status, final, best, ...)."""


class SafeTracker(Tracker):
    """Wraps a backend so that its first exception is one warning line and then nothing at all."""

    def __init__(self, backend, name: str):
        self.backend, self.name = backend, name

    def _call(self, method: str, *args) -> None:
        if self.backend is None:
            return
        try:
            getattr(self.backend, method)(*args)
        except Exception as err:  # a tracker must never stop a run
            self.backend = None
            warn_failed(self.name, err)

    def log_epoch(self, record: dict) -> None:
        self._call("log_epoch", record)

    def finish(self, summary: dict) -> None:
        self._call("finish", summary)
        self.backend = None


def warn_failed(name: str, err: BaseException) -> None:
    """The one line a failing tracker gets: what failed, why (first line), and that the run goes on."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if len(reason) > 200:
        reason = reason[:200] + "..."
    log.warning("logger=%s failed (%s: %s); the run goes on without it", name, type(err).__name__, reason)


def check_config(node) -> None:
    """Validate the ``logger`` config node; :class:`lossbench.build.ConfigError` names the bad key.

    ``node`` may be None (a config composed without the ``logger`` group: no tracker).
    """
    from lossbench.build import ConfigError

    if node is None:
        return
    kind = node.get("type", "none")
    if kind not in TYPES:
        raise ConfigError(f"logger.type={kind!r} is not allowed; allowed: {' | '.join(TYPES)}")
    text_keys = {"mlflow": ("tracking_uri", "experiment_name", "artifact_location"),
                 "tensorboard": ("log_dir",)}.get(kind, ())
    for key in text_keys:
        value = node.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"logger.{key}={value!r} is not allowed; allowed: null or a non-empty string")
    if kind == "mlflow" and not isinstance(node.get("log_artifacts", False), bool):
        raise ConfigError(f"logger.log_artifacts={node.get('log_artifacts')!r} is not allowed; allowed: true | false")


def open_tracker(cfg, run_dir: Path, run_name: str) -> Tracker:
    """The tracker ``cfg.logger`` selects, ready for :meth:`Tracker.log_epoch`; never raises.

    ``run_dir`` is the run folder (its files become MLflow artifacts with ``log_artifacts=true``;
    TensorBoard writes into ``run_dir/tensorboard`` unless ``logger.log_dir`` is set); ``run_name``
    names the run in the tracker (the job folder's name in a sweep).
    """
    node = cfg.get("logger") if hasattr(cfg, "get") else None
    kind = "none" if node is None else node.get("type", "none")
    if kind == "none":
        return Tracker()
    try:
        check_config(node)
        params = flat_params(cfg)
        if kind == "mlflow":
            from lossbench.trackers.mlflow_tracker import MLflowTracker as backend_class
        else:
            from lossbench.trackers.tensorboard_tracker import TensorBoardTracker as backend_class
        backend = backend_class(node, Path(run_dir), run_name, params, context(cfg, Path(run_dir)))
    except ImportError as err:
        package = "tensorboardX" if kind == "tensorboard" else kind
        log.warning("logger=%s needs the %s package (%s): install it with pip install \"lossbench[%s]\"; "
                    "the run goes on without it", kind, package, err, TYPES[kind])
        return Tracker()
    except Exception as err:
        warn_failed(kind, err)
        return Tracker()
    return SafeTracker(backend, kind)


def context(cfg, run_dir: Path) -> dict:
    """Where the run sits, from Hydra when it runs the job: ``{"sweep_dir": Path | None, "overrides": [...]}``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        hydra_cfg = HydraConfig.get()
        overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
        sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
        return {"sweep_dir": sweep_dir, "overrides": [str(o) for o in overrides]}
    except Exception:  # not inside a Hydra job (open_tracker called directly): a single run
        return {"sweep_dir": None, "overrides": []}


def flat_params(cfg) -> dict[str, object]:
    """The resolved config as ``{"optimizer.lr": 0.01, "model.hidden_sizes": "[64, 32]", ...}``.

    Nested keys are joined with dots; lists become JSON text; ``logger`` and ``hydra`` are left out.
    """
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    flat: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = json.dumps(value, default=str)
        else:
            flat[prefix] = value

    for key in PRIVATE_KEYS:
        container.pop(key, None)
    walk("", container)
    return flat


def numeric_items(record: dict):
    """``(name, float value)`` for every number in ``record`` except ``epoch`` (the step); NaN kept."""
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        yield key, float(value)


def final_metrics(summary: dict) -> dict[str, float]:
    """``final_<metric>`` and ``best_<metric>`` from a summary, finite numbers only."""
    out = {}
    for prefix in ("final", "best"):
        for key, value in (summary.get(prefix) or {}).items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{prefix}_{key}"] = float(value)
    return out
