"""``logger=tensorboard``: TensorBoard event files through tensorboardX's ``SummaryWriter``.

- scalars: every column of ``metrics.csv`` under its own name (``train_loss``, ``test_accuracy``,
  ...) with ``step = epoch``, written as the run trains;
- at the end: the run's settings (the flattened resolved config: numbers, text and booleans) as
  hparams with ``final_<metric>`` / ``best_<metric>`` as their metrics (TensorBoard's HParams tab,
  in the ``hparams/`` subfolder), and the status line as text.

Files go to ``<run folder>/tensorboard/`` (so ``tensorboard --logdir <sweep folder>`` shows every run
of a sweep, named by its job folder), or to ``<logger.log_dir>/<run name>/`` when ``log_dir`` is set.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

from lossbench.trackers import final_metrics, numeric_items


class TensorBoardTracker:
    """Streams one run to an event file; see the module docstring. Wrapped by ``SafeTracker``."""

    def __init__(self, node, run_dir: Path, run_name: str, params: dict, context: dict):
        from tensorboardX import SummaryWriter

        log_dir = node.get("log_dir")
        self.log_dir = Path(log_dir) / run_name if log_dir else run_dir / "tensorboard"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.params = {key: value for key, value in params.items()
                       if isinstance(value, (str, bool, numbers.Real)) and value is not None}
        self.writer = SummaryWriter(logdir=str(self.log_dir), flush_secs=10)

    def log_epoch(self, record: dict) -> None:
        epoch = int(record.get("epoch", 0))
        for key, value in numeric_items(record):
            self.writer.add_scalar(key, value, global_step=epoch)

    def finish(self, summary: dict) -> None:
        try:
            status = {key: summary.get(key) for key in ("status", "message", "stop_epoch", "config_hash")}
            self.writer.add_text("summary", json.dumps(status), global_step=int(summary.get("stop_epoch") or 0))
            params = {**self.params, "status": str(summary.get("status"))}
            self.writer.add_hparams(params, final_metrics(summary), name="hparams")
        finally:
            self.writer.close()
