"""Rendering a report's figures: in this process and, with two or more cores, in a helper process.

A :class:`FigureSpec` names one of the report's drawing functions and its arguments; :func:`render`
calls it and saves the figure as PNG (dpi 110) and SVG. :func:`render_all` hands the specs out one
at a time, heaviest first, to this process and to a :class:`Helper`: a child Python process running
:func:`main` of this module, started before the report loads its runs. The helper
loads the same runs itself, as data, with the report's own reader, and derives the same figure
list; it draws only when its list and a fingerprint of the runs it read equal this process's (a
sweep still writing to the folder can change it in between). Messages are JSON lines, and a drawn
figure's PNG and SVG follow its line as raw bytes: nothing is unpickled. Both draw with the same
matplotlib settings, so a figure's bytes do not depend on who drew it. A figure the helper could
not draw (an error, a dead helper) is drawn here, where its error is raised as it would be alone.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import select
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: a helper pays ~2 s of start-up on another core: worth it for the figures of a study, not of 4 runs
HELPER_MIN_RUNS = 20
#: how long a figure the helper draws may take (at least; render_all allows 5x its own slowest), and its start-up
FIGURE_PATIENCE_S = 20.0
HELLO_PATIENCE_S = 120.0


@dataclass
class FigureSpec:
    """One figure: file stem, heading, caption, and ``draw(*args)`` (a Figure, None, or (Figure, notes))."""

    name: str
    title: str
    caption: str
    draw: Callable
    args: tuple = field(default_factory=tuple)
    cost: float = 1.0  # relative drawing time: the heaviest are handed out first


def render(spec: FigureSpec) -> tuple[str, bytes, bytes] | None:
    """``(caption, png, svg)`` of the figure, or None when it does not apply (nothing to draw)."""
    import matplotlib  # here, not at the top: a sweep starts its Helper without importing matplotlib

    from lossbench.report.layout import RC

    with matplotlib.rc_context(RC):  # the report's settings, whichever process draws
        drawn = spec.draw(*spec.args)
        figure, notes = drawn if isinstance(drawn, tuple) else (drawn, [])
        if figure is None:
            return None
        png, svg = io.BytesIO(), io.BytesIO()
        figure.savefig(png, format="png", dpi=110, metadata={"Software": None})
        figure.set_layout_engine("none")  # keep the layout the PNG got: constrained layout is slow
        figure.savefig(svg, format="svg", metadata={"Date": None})
    caption = spec.caption + (" Not drawn: " + "; ".join(notes) + "." if notes else "")
    return caption, png.getvalue(), svg.getvalue()


def helper_pays(n_runs: int) -> bool:
    """True when a figure helper is worth its start-up: two or more usable cores, a study of
    ``HELPER_MIN_RUNS`` runs or more."""
    return n_runs >= HELPER_MIN_RUNS and usable_cores() >= 2


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _send(stream, message: dict, *payloads: bytes) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    for payload in payloads:
        stream.write(payload)
    stream.flush()


def _receive(stream) -> dict:
    line = stream.readline()
    if not line.endswith(b"\n"):
        raise EOFError("the other side closed the pipe")
    return json.loads(line)


class _Reader:
    """Reads the child's stdout with a deadline (select on the pipe): a stuck helper costs a wait, not the report."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
            raise TimeoutError("the helper did not answer in time")
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise EOFError("the helper closed the pipe")
        self.buffer += chunk

    def line(self, deadline: float) -> dict:
        while b"\n" not in self.buffer:
            self._fill(deadline)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            self._fill(deadline)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _fingerprint(runs) -> str:
    """A digest of the runs a report read (its results table and the size of its curves)."""
    text = runs.results.to_csv(index=False) + f"|{runs.curves.shape}|{len(runs.tune_results)}"
    return hashlib.sha256(text.encode()).hexdigest()


def hello(runs, specs: list[FigureSpec]) -> dict:
    """What a helper says first, and what the report expects it to say: the lossbench it imported,
    a fingerprint of the runs it read, and the figures (name, title, caption) it would draw."""
    import lossbench

    return {"lossbench": str(Path(lossbench.__file__).resolve()), "runs": _fingerprint(runs),
            "figures": [[spec.name, spec.title, spec.caption] for spec in specs]}


class Helper:
    """A child process drawing figures for :func:`render_all`; :meth:`close` ends it.

    The child imports what drawing needs (~2 s), then waits for :meth:`start` to name the runs.
    ``Helper(sweep_dirs, target_fraction)`` starts at once; a sweep makes ``Helper(nice=10)`` while
    its runs train, so that the imports use an idle core (a lower priority: never a busy one's
    time), and starts it when the report begins.
    """

    def __init__(self, sweep_dirs=None, target_fraction: float | None = None, *, nice: int = 0):
        # the child imports this lossbench, first on its path (``-m`` would put the working folder
        # first: a source tree there would shadow an installed lossbench)
        package_root = str(Path(__file__).resolve().parents[2])
        code = f"import sys; sys.path.insert(0, {package_root!r}); from lossbench.report.drawing import main; main()"
        command = [sys.executable, "-c", code, f"--nice={int(nice)}"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.expected: dict | None = None  # hello() of the report's runs and figures, set once it knows them
        self.hello: dict | None = None
        self.failed: str | None = None
        self.started = False
        self.drawn = 0
        self.patience = FIGURE_PATIENCE_S  # raised by render_all to 5x the slowest figure drawn here
        self._reader = _Reader(self.process.stdout)
        if sweep_dirs is not None:
            self.start(sweep_dirs, target_fraction)

    def start(self, sweep_dirs, target_fraction: float) -> None:
        """Tell the child which runs to load (once); a dead child is noted in ``failed``, not raised."""
        if self.started:
            return
        self.started = True
        try:
            _send(self.process.stdin, {"runs": [str(d) for d in sweep_dirs], "target_fraction": float(target_fraction)})
        except OSError as err:
            self.failed = f"{type(err).__name__}: {err}"

    def alive(self) -> bool:
        """The child still runs and nothing has failed (a sweep's helper may have died while waiting)."""
        return self.process.poll() is None and self.failed is None

    def ready(self, timeout: float = HELLO_PATIENCE_S) -> dict:
        """Wait for the child's first message: its lossbench, the runs it read, the figures it would draw."""
        if self.hello is None:
            self.hello = self._reader.line(time.monotonic() + timeout)
        return self.hello

    def serve(self, take: Callable[[], int | None], results: list, done: list) -> None:
        """Run in a thread: once the child has the same figures, draw those ``take`` hands out."""
        try:
            if self.ready() != self.expected:
                raise RuntimeError("the helper read other runs or another lossbench")
            while (index := take()) is not None:
                _send(self.process.stdin, {"draw": index})
                deadline = time.monotonic() + self.patience
                reply = self._reader.line(deadline)
                for category, message in reply.get("warnings", []):
                    found = getattr(builtins, category, None)
                    kind = found if isinstance(found, type) and issubclass(found, Warning) else UserWarning
                    warnings.warn(message, kind, stacklevel=2)
                if reply.get("drawn"):
                    png = self._reader.exactly(reply["png"], deadline)
                    svg = self._reader.exactly(reply["svg"], deadline)
                    results[index], done[index] = (reply["caption"], png, svg), True
                    self.drawn += 1
                elif reply.get("nothing"):
                    results[index], done[index] = None, True
                    self.drawn += 1
                # an error: left undone, so this process draws it and raises it as it would alone
            _send(self.process.stdin, {"draw": None})
        except Exception as err:  # a dead or broken helper: this process draws what is left
            self.failed = f"{type(err).__name__}: {err}"

    def close(self) -> None:
        """End the child (it holds nothing: the files are written by this process); safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def render_all(specs: list[FigureSpec], helper: Helper | None = None) -> list[tuple[str, bytes, bytes] | None]:
    """:func:`render` of every spec, in order; with a helper (its ``expected`` set), shared out one at a time."""
    results: list = [None] * len(specs)
    done = [False] * len(specs)
    queue = deque(sorted(range(len(specs)), key=lambda i: -specs[i].cost))
    lock = threading.Lock()
    in_flight: list[int] = []  # the spec the helper is drawing

    def take() -> int | None:
        with lock:
            return queue.popleft() if queue else None

    def take_for_helper() -> int | None:
        with lock:
            in_flight.clear()
            if queue:
                in_flight.append(queue.popleft())
            return in_flight[0] if in_flight else None

    thread = None
    if helper is not None and len(specs) > 1:
        thread = threading.Thread(target=helper.serve, args=(take_for_helper, results, done),
                                  name="lossbench-figures", daemon=True)
        thread.start()
    try:
        while (index := take()) is not None:
            tic = time.monotonic()
            results[index], done[index] = render(specs[index]), True
            if helper is not None:
                helper.patience = max(helper.patience, 5 * (time.monotonic() - tic))
        if thread is not None:
            with lock:
                idle = not in_flight
            if idle:  # still starting, or done: this process drew everything, nothing to wait for
                helper.close()
            thread.join()
    finally:
        if helper is not None:
            helper.close()
    for index, spec in enumerate(specs):  # what the helper could not draw
        if not done[index]:
            results[index] = render(spec)
    return results


def _child(argv: list[str]) -> None:
    """The helper: import, wait for the runs to load, say which figures it would draw, then draw each
    index it is sent."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library's print must not corrupt the pipe
    nice = int(argv[0].split("=", 1)[1])
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    import matplotlib.pyplot  # noqa: F401  (what every figure needs, imported before the runs are known)

    from lossbench.report.gallery import figure_specs
    from lossbench.report.page import views
    from lossbench.report.tables import load_runs

    request = _receive(stdin)
    sweep_dirs = [Path(d) for d in request["runs"]]
    runs = load_runs(sweep_dirs, target_fraction=float(request["target_fraction"]))
    tuned, layout = views(runs)
    specs = figure_specs(runs, tuned, layout)
    _send(stdout, hello(runs, specs))
    while (index := _receive(stdin)["draw"]) is not None:
        with warnings.catch_warnings(record=True) as caught:
            try:
                result, error = render(specs[index]), None
            except Exception as err:
                result, error = None, f"{type(err).__name__}: {err}"
        noted = [[w.category.__name__, str(w.message)] for w in caught]
        if error is not None:
            _send(stdout, {"error": error, "warnings": noted})
        elif result is None:
            _send(stdout, {"nothing": True, "warnings": noted})
        else:
            caption, png, svg = result
            _send(stdout, {"drawn": True, "caption": caption, "png": len(png), "svg": len(svg),
                           "warnings": noted}, png, svg)


def main() -> None:
    """The helper process's entry point (see :class:`Helper`)."""
    try:
        _child(sys.argv[1:])
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the report ended, or stopped needing it
        pass
