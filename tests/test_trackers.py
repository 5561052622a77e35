"""Trackers (``logger`` config group): MLflow into a real SQLite store, TensorBoard event files read back.

The end-to-end tests run the real CLI in a subprocess and read what it logged with the trackers'
own readers (``MlflowClient``; the event file's records parsed with tensorboardX's protobufs): no
mock of either library.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench.build import ConfigError
from lossbench.trackers import SafeTracker, Tracker, check_config, flat_params, open_tracker
from conftest import run_cli

EPOCHS = 3
# MLflow's own SQLAlchemy store warns about its loader options when the test reads the store back
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def _mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _tracker_warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "logger=" in line and "the run goes on without it" in line]


# ---------------------------------------------------------------------------------------- unit ---

def test_default_logger_is_none_and_does_nothing(compose_cfg, tmp_path):
    cfg, choices = compose_cfg()
    assert choices["logger"] == "none" and cfg.logger.type == "none"
    tracker = open_tracker(cfg, tmp_path, "run")
    assert type(tracker) is Tracker
    tracker.log_epoch({"epoch": 0, "train_loss": 1.0})
    tracker.finish({"status": "completed"})
    assert list(tmp_path.iterdir()) == []


def test_flat_params_leave_out_the_logger_node(compose_cfg):
    cfg, _ = compose_cfg("logger=mlflow", "logger.tracking_uri=http://user:secret@127.0.0.1:5000",
                         "model=mlp", "model.hidden_sizes=[8,4]")
    params = flat_params(cfg)
    assert params["optimizer.lr"] == cfg.optimizer.lr and params["seed"] == 0
    assert params["model.hidden_sizes"] == "[8, 4]"
    assert not any(key.startswith("logger") for key in params)
    assert "secret" not in json.dumps(params)


@pytest.mark.parametrize("overrides, message", [
    (["logger.type=wandb"], "logger.type='wandb' is not allowed; allowed: none | mlflow | tensorboard"),
    (["logger=mlflow", "logger.log_artifacts=3"], "logger.log_artifacts=3 is not allowed; allowed: true | false"),
    (["logger=mlflow", "logger.tracking_uri=''"], "logger.tracking_uri='' is not allowed"),
    (["logger=tensorboard", "logger.log_dir=5"], "logger.log_dir=5 is not allowed"),
])
def test_bad_logger_settings_are_config_errors(compose_cfg, overrides, message):
    cfg, _ = compose_cfg(*overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("|", r"\|")):
        check_config(cfg.logger)


def test_missing_package_is_one_line_naming_the_extra(compose_cfg, tmp_path, monkeypatch, caplog):
    cfg, _ = compose_cfg("logger=mlflow", f"logger.tracking_uri=sqlite:///{tmp_path}/m.db")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an environment without mlflow gives
    with caplog.at_level(logging.WARNING, logger="lossbench"):
        tracker = open_tracker(cfg, tmp_path, "run")
    assert type(tracker) is Tracker
    (record,) = [r for r in caplog.records if r.name == "lossbench"]
    assert 'pip install "lossbench[mlflow]"' in record.getMessage() and "\n" not in record.getMessage()
    assert not (tmp_path / "m.db").exists()


def test_a_tracker_failing_mid_run_warns_once_and_stops(caplog):
    class Flaky:
        calls = 0

        def log_epoch(self, record):
            Flaky.calls += 1
            if record["epoch"] == 1:
                raise OSError("disk full\nsecond line")

        def finish(self, summary):
            Flaky.calls += 1

    tracker = SafeTracker(Flaky(), "mlflow")
    with caplog.at_level(logging.WARNING, logger="lossbench"):
        for epoch in range(4):
            tracker.log_epoch({"epoch": epoch})
        tracker.finish({})
    assert Flaky.calls == 2  # epochs 0 and 1; nothing after the failure
    (record,) = caplog.records
    assert record.getMessage() == "logger=mlflow failed (OSError: disk full); the run goes on without it"


# ------------------------------------------------------------------------------ MLflow, real CLI ---

@pytest.mark.slow
def test_mlflow_sweep_streams_every_epoch_into_a_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep_dir = tmp_path / "my_sweep"
    proc = run_cli(["-m", "dataset=iris", "loss=l2,ce", f"trainer.epochs={EPOCHS}", "progress=none", "report.figures=false",
                    "logger=mlflow", f"logger.tracking_uri={uri}", "logger.log_artifacts=true",
                    f"logger.artifact_location={tmp_path}/artifacts", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _tracker_warnings(proc.stdout + proc.stderr) == []

    client = _mlflow_client(uri)
    experiment = client.get_experiment_by_name("my_sweep")  # experiment_name null: the sweep folder's name
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        run_dir = Path(run.data.tags["lossbench.run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = pd.read_csv(run_dir / "metrics.csv")
        assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
        assert run.data.tags["status"] == summary["status"] == "completed"
        assert run.data.params["loss._target_"] == summary["config"]["loss"]["_target_"]
        assert float(run.data.params["optimizer.lr"]) == summary["config"]["optimizer"]["lr"]
        assert run.data.params["trainer.epochs"] == str(EPOCHS)
        assert not any(key.startswith("logger") for key in run.data.params)
        for name in ("train_loss", "test_accuracy", "val_log_loss", "grad_norm"):
            history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
            assert [m.step for m in history] == list(range(EPOCHS + 1)), name
            np.testing.assert_allclose([m.value for m in history], metrics[name].to_numpy(), rtol=1e-12)
        assert run.data.metrics["final_test_accuracy"] == summary["final"]["test_accuracy"]
        assert run.data.metrics["best_train_loss"] == summary["best"]["train_loss"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics.csv", "summary.json", "params.npz", ".hydra"} <= artifacts


@pytest.mark.slow
@pytest.mark.parametrize("store", ["http://127.0.0.1:9", "sqlite:///{tmp}/a_file/mlflow.db"])
def test_an_unreachable_or_refusing_store_is_one_warning_and_the_run_goes_on(tmp_path, store):
    (tmp_path / "a_file").write_text("not a folder")
    uri = store.format(tmp=tmp_path)
    proc = run_cli([f"trainer.epochs={EPOCHS}", "progress=none", "logger=mlflow", f"logger.tracking_uri={uri}"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = _tracker_warnings(proc.stdout + proc.stderr)
    assert len(warnings) == 1 and "logger=mlflow failed" in warnings[0], proc.stdout + proc.stderr
    (summary,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/summary.json")]
    assert summary["status"] == "completed" and summary["stop_epoch"] == EPOCHS


@pytest.mark.slow
def test_a_job_run_again_continues_its_unfinished_mlflow_run(compose_cfg, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg, _ = compose_cfg("logger=mlflow", f"logger.tracking_uri={uri}", "logger.experiment_name=resume")
    run_dir = tmp_path / "job"
    run_dir.mkdir()
    records = [{"epoch": e, "train_loss": 1.0 / (e + 1), "test_accuracy": 0.1 * e} for e in range(EPOCHS + 1)]
    first = open_tracker(cfg, run_dir, "job")
    for record in records[:2]:
        first.log_epoch(record)  # then the job is killed: no finish()
    second = open_tracker(cfg, run_dir, "job")
    for record in records:  # the job starts again from epoch 0 (or from a checkpoint)
        second.log_epoch(record)
    second.finish({"status": "completed", "stop_epoch": EPOCHS, "final": records[-1], "best": {}})

    client = _mlflow_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(EPOCHS + 1))


# ---------------------------------------------------------------------------- TensorBoard files ---

def _masked_crc(data: bytes) -> int:
    from tensorboardX.crc32c import crc32c

    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: Path) -> list:
    """Every ``Event`` of a TensorBoard event file (TFRecord framing, both checksums verified)."""
    from tensorboardX.proto.event_pb2 import Event

    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        assert header_crc == _masked_crc(header)
        body = data[offset + 12:offset + 12 + length]
        (body_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
        assert body_crc == _masked_crc(body)
        events.append(Event.FromString(body))
        offset += 16 + length
    return events


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_epoch_and_the_hparams(tmp_path):
    proc = run_cli([f"trainer.epochs={EPOCHS}", "progress=none", "logger=tensorboard"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _tracker_warnings(proc.stdout + proc.stderr) == []
    (run_dir,) = tmp_path.glob("runs/*")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    summary = json.loads((run_dir / "summary.json").read_text())

    (event_file,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    scalars: dict[str, dict[int, float]] = {}
    for event in read_events(event_file):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    for name in ("train_loss", "test_accuracy", "val_ece", "lr"):
        assert sorted(scalars[name]) == list(range(EPOCHS + 1)), name
        expected = metrics[name].to_numpy()
        got = np.array([scalars[name][e] for e in range(EPOCHS + 1)])
        np.testing.assert_allclose(got, expected, rtol=1e-6)  # event files store float32
    assert "epoch" not in scalars

    (hparams_file,) = (run_dir / "tensorboard" / "hparams").glob("events.out.tfevents.*")
    hparam_events = read_events(hparams_file)
    plugin_blobs = b"".join(v.metadata.plugin_data.content for e in hparam_events for v in e.summary.value
                            if v.metadata.plugin_data.plugin_name == "hparams")
    assert b"optimizer.lr" in plugin_blobs and b"final_test_accuracy" in plugin_blobs
    finals = {v.tag: v.simple_value for e in hparam_events for v in e.summary.value if v.HasField("simple_value")}
    assert math.isclose(finals["final_test_accuracy"], summary["final"]["test_accuracy"], rel_tol=1e-6)
