"""``logger=mlflow``: one MLflow run per lossbench run, under one experiment per sweep.

- params: the resolved config, flattened (``optimizer.lr``, ``model.hidden_sizes``, ...; the
  ``logger`` node is left out, its URI may hold credentials);
- metrics: every column of ``metrics.csv`` with ``step = epoch`` as the run trains (so a run has
  ``epochs + 1`` values per metric: epoch 0 is the initial model), then ``final_<metric>`` and
  ``best_<metric>`` from ``summary.json``;
- tags: ``status`` (completed | diverged | failed), ``message``, ``stop_epoch``, the config hash, the
  run and sweep folders, the overrides and lossbench's version; the MLflow run ends FINISHED, or
  FAILED for a failed run;
- artifacts (``log_artifacts: true``): the run folder's files, checkpoints excluded.

A job that runs again into the same folder (resume after an interruption) continues its unfinished
MLflow run instead of starting a second one, and does not log an epoch twice (same config and
seed give the same numbers, so the values already logged stand).

The client talks to the store given by ``tracking_uri`` directly (``MlflowClient``), never through
MLflow's global "active run", so parallel jobs in one process and the caller's own MLflow session
do not interfere. An HTTP server that does not answer is detected by a 3-second connection probe;
MLflow's own retries are capped (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``,
``MLFLOW_HTTP_REQUEST_TIMEOUT=15`` unless already set) so a dead server costs seconds, not minutes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from lossbench.trackers import final_metrics, numeric_items

_MAX_BATCH = 100        # MLflow's limit of params (and tags) per log_batch call
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value's length


def _probe(uri: str) -> None:
    """Raise ConnectionError when an http(s) tracking server does not accept a connection."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=3).close()
    except OSError as err:
        raise ConnectionError(f"cannot reach the tracking server {parts.hostname}:{port}: {err}") from None


class MLflowTracker:
    """Streams one run to MLflow; see the module docstring. Wrapped by ``SafeTracker`` (never raises)."""

    def __init__(self, node, run_dir: Path, run_name: str, params: dict, context: dict):
        import mlflow  # noqa: F401  (ImportError here: open_tracker names the extra to install)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        import lossbench

        for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)  # table creation chatter on a new sqlite store
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

        uri = node.get("tracking_uri")
        if uri:
            _probe(uri)
        self.client = MlflowClient(tracking_uri=uri or None)
        self.run_dir, self.log_artifacts = run_dir, bool(node.get("log_artifacts", False))
        sweep_dir = context.get("sweep_dir")
        name = node.get("experiment_name") or (sweep_dir.name if sweep_dir else "lossbench")
        experiment_id = self._experiment(name, node.get("artifact_location"))

        tags = {"lossbench.run_dir": str(run_dir.resolve()), "lossbench.version": lossbench.__version__,
                "lossbench.sweep_dir": str(sweep_dir.resolve()) if sweep_dir else "",
                "lossbench.overrides": " ".join(context.get("overrides") or [])}
        self.run_id, self.logged_up_to = self._unfinished_run(experiment_id, tags["lossbench.run_dir"])
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            items = [Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in params.items()]
            for start in range(0, len(items), _MAX_BATCH):
                self.client.log_batch(self.run_id, params=items[start:start + _MAX_BATCH])
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        """The id of experiment ``name``, created if needed (parallel jobs may race to create it)."""
        from mlflow.exceptions import MlflowException

        for attempt in range(3):
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    self.client.restore_experiment(experiment.experiment_id)
                return experiment.experiment_id
            try:
                return self.client.create_experiment(name, artifact_location=artifact_location or None)
            except MlflowException:  # another job created it meanwhile: read it again
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"cannot create the MLflow experiment {name!r}")

    def _unfinished_run(self, experiment_id: str, run_dir: str) -> tuple[str | None, int]:
        """An earlier, unfinished MLflow run of this run folder, and the last epoch it logged (-1: none)."""
        quoted = run_dir.replace("'", "\\'")
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`lossbench.run_dir` = '{quoted}'", max_results=20,
            order_by=["attributes.start_time DESC"])
        for run in runs:
            if run.info.status != "FINISHED":
                history = self.client.get_metric_history(run.info.run_id, "train_loss")
                return run.info.run_id, max((m.step for m in history), default=-1)
        return None, -1

    def log_epoch(self, record: dict) -> None:
        from mlflow.entities import Metric

        epoch = int(record.get("epoch", 0))
        if epoch <= self.logged_up_to:  # a resumed job re-reporting an epoch already logged
            return
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, epoch) for key, value in numeric_items(record)]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.logged_up_to = epoch

    def finish(self, summary: dict) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        step = int(summary.get("stop_epoch") or 0)
        metrics = [Metric(key, value, now, step) for key, value in final_metrics(summary).items()]
        tags = {"status": summary.get("status") or "", "message": summary.get("message") or "",
                "stop_epoch": str(summary.get("stop_epoch")),
                "lossbench.config_hash": str(summary.get("config_hash") or "")}
        if summary.get("resumed_from_epoch"):
            tags["lossbench.resumed_from_epoch"] = str(summary["resumed_from_epoch"])
        self.client.log_batch(self.run_id, metrics=metrics,
                              tags=[RunTag(key, value[:5000]) for key, value in tags.items()])
        if self.log_artifacts:
            for path in sorted(p for p in self.run_dir.rglob("*") if p.is_file()):
                if path.name.startswith("checkpoint.") or path.name.endswith(".tmp"):
                    continue  # a checkpoint is deleted once the run is finished; temporaries are partial
                parent = path.parent.relative_to(self.run_dir).as_posix()
                self.client.log_artifact(self.run_id, str(path), artifact_path=None if parent == "." else parent)
        self.client.set_terminated(self.run_id, status="FAILED" if summary.get("status") == "failed" else "FINISHED")
