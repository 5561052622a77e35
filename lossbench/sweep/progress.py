"""What a sweep prints: the plan line, one line per finished run with an ETA, and the outcome.

Runs are watched on disk, not through the launcher: a background thread looks for each launched
run's ``summary.json`` (its presence marks a run as finished), so the lines come as runs finish
under any launcher (in-process, joblib workers, submitit jobs on other hosts sharing the folder).
``progress=none`` silences the per-run lines; the plan line, the outcome and errors always show.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

from lossbench.records import read_json


def plan_line(n_jobs: int, n_run: int, n_finished: int, n_skipped: int, n_elsewhere: int = 0) -> str:
    """``lossbench: 30 jobs: 25 to run, 0 finished earlier, 5 skipped (cannot work)``."""
    text = f"lossbench: {n_jobs} jobs: {n_run} to run, {n_finished} finished earlier, {n_skipped} skipped (cannot work)"
    if n_elsewhere:
        text += f", {n_elsewhere} in progress in another process"
    return text


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def headline_metric(summary: dict) -> str:
    """``test_accuracy=0.978`` (or test_r2, else the first final metric), '' when there is none."""
    final = summary.get("final") or {}
    for key in ("test_accuracy", "test_r2", "val_accuracy", "val_r2", "train_loss"):
        value = final.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f" {key}={value:.3f}" if math.isfinite(value) else f" {key}={value}"
    return ""


def _stamp(path: Path):
    try:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return None


class Watcher:
    """Prints ``[12/25] completed loss=ce,seed=3 test_accuracy=0.978 (0.8 s) ETA 0:41`` as runs finish.

    ``jobs`` are the planned jobs to watch (each with ``run_dir`` and ``label``); a run counts as
    finished when its ``summary.json`` changed since the plan was made.
    """

    def __init__(self, jobs, labels: dict, enabled: bool, interval: float = 0.25, stream=None):
        self.pending = {id(job): job for job in jobs}
        self.labels = labels
        self.total = len(jobs)
        self.enabled = enabled
        self.interval = interval
        self.stream = stream or sys.stdout
        self.before = {id(job): _stamp(job.run_dir / "summary.json") for job in jobs}
        self.done: dict[int, dict] = {}
        self.started = time.time()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="lossbench-progress", daemon=True)

    def start(self) -> "Watcher":
        self.started = time.time()
        self._thread.start()
        return self

    def _loop(self) -> None:
        # a stat per pending run and poll: slow down for big sweeps (10,000 runs: every 5 s), kind to NFS
        while not self._stop.wait(max(self.interval, len(self.pending) / 2000)):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for key, job in list(self.pending.items()):
                path = job.run_dir / "summary.json"
                stamp = _stamp(path)
                if stamp is None or stamp == self.before[key]:
                    continue
                summary = read_json(path)
                if not isinstance(summary, dict) or summary.get("config_hash") != job.config_hash:
                    continue
                del self.pending[key]
                self.done[key] = summary
                self._line(job, summary)

    def _line(self, job, summary: dict) -> None:
        if not self.enabled:
            return
        n = len(self.done)
        elapsed = time.time() - self.started
        remaining = self.total - n
        eta = f" ETA {_clock(elapsed / n * remaining)}" if remaining and n else ""
        wall = summary.get("wall_time_s")
        took = f" ({wall:.1f} s)" if isinstance(wall, (int, float)) else ""
        status = summary.get("status", "?")
        print(f"[{n}/{self.total}] {status} {self.labels.get(id(job), job.label)}{headline_metric(summary)}{took}{eta}",
              file=self.stream, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.poll()
