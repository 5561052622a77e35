"""One trainer per run: an exclusive claim on a run folder, held while the run trains.

The claim is an OS file lock (``fcntl``/``flock`` through :mod:`filelock`) on ``.lossbench.claim``
inside the run folder. The kernel drops the lock when its process ends, however it ends (exit,
SIGKILL, OOM killer, a preempted cluster job), so a claim is never stale after its process is gone
and nothing has to clean it up. ``.lossbench.owner`` says who holds it (pid, host, start time), for
messages only: the lock is the truth.

A second sweep into the same folder cannot claim a run another process is training: it skips the
run and waits for it, and no run's files are ever deleted by a process that does not hold its claim.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

CLAIM_FILE = ".lossbench.claim"
OWNER_FILE = ".lossbench.owner"

# filelock >= 3.16 can delete the lock file on release; keep it: deleting a lock file another process
# is waiting on lets two processes hold "the" lock at once (on two different inodes).
_KEEP = {"preserve_lock_file": True} if "preserve_lock_file" in inspect.signature(FileLock.__init__).parameters else {}


class Claim:
    """``with Claim(run_dir) as claim: if claim.held: ...``: try to claim ``run_dir`` for this process.

    ``wait`` seconds are spent retrying (a sweeper probing the claim holds it for microseconds).
    """

    def __init__(self, run_dir: Path, wait: float = 1.0):
        self.run_dir = Path(run_dir)
        self.wait = wait
        self.held = False
        self._lock = FileLock(str(self.run_dir / CLAIM_FILE), **_KEEP)

    def acquire(self) -> bool:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=self.wait, poll_interval=0.05)
        except Timeout:
            return False
        self.held = True
        from lossbench.records import write_json

        try:
            write_json(self.run_dir / OWNER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                                    "since": time.time()})
        except OSError:
            pass  # the owner file is for messages only
        return True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._lock.release(force=True)

    def __enter__(self) -> "Claim":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def held_elsewhere(run_dir: Path) -> bool:
    """True when another process holds the claim on ``run_dir`` now (creates nothing when there is no claim file)."""
    path = Path(run_dir) / CLAIM_FILE
    if not path.exists():
        return False
    lock = FileLock(str(path), **_KEEP)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False  # an unreadable folder: the run will fail with its own message
    lock.release(force=True)
    return False


def owner(run_dir: Path) -> dict:
    """Who claimed ``run_dir`` last: ``{"pid": ..., "host": ...}``, or {} when unknown."""
    try:
        data = json.loads((Path(run_dir) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
