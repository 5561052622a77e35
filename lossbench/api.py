"""lossbench from Python: run a sweep or a single run, load finished ones, get typed tables and figures.

>>> import lossbench
>>> study = lossbench.sweep(["loss=l2,ce", "seed=0,1,2", "trainer.epochs=20"], sweep_dir="runs/demo")
>>> study.stats[["group", "mean", "ci_low", "ci_high", "p_holm"]]     # the report's table
>>> fig = study.plot("test_accuracy")                                  # mean and band across seeds
>>> run = lossbench.run(["loss=ce", "trainer.epochs=5"]); run.metrics.tail(1)
>>> study = lossbench.load("runs/demo")                                # the same objects from disk

:func:`sweep` and :func:`run` run the real command line (``python -m lossbench ...``) in a child
process with the caller's working directory and environment, and stream its output lines here.
That is a choice, not a shortcut: the child does exactly what ``lossbench -m ...`` does (the same
files, the same resume, the same report, every launcher including joblib's worker processes and
Slurm), Hydra's global state (``GlobalHydra``, ``HydraConfig``, its logging setup, registered
resolvers) lives and dies in the child, and the caller's working directory is never changed, so
both can be called any number of times in one notebook. The cost is the child's start-up (about a
second). Nothing read back from a folder is imported, instantiated or unpickled: JSON, CSV and
``numpy.load(allow_pickle=False)`` only.
"""

from __future__ import annotations

import json
import os
import signal
import site
import subprocess
import sys
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["sweep", "run", "load", "Study", "Run", "LossbenchError"]


class LossbenchError(RuntimeError):
    """The command failed. ``returncode`` (2: bad input, nothing ran), ``line`` (its error line),
    ``output`` (its last output lines), ``run`` (the :class:`Run`, when a single run failed)."""

    def __init__(self, message: str, returncode: int, line: str, output: list[str], run: "Run | None" = None):
        super().__init__(message)
        self.returncode, self.line, self.output, self.run = returncode, line, output, run


# ------------------------------------------------------------------------------------ running ---

#: Keyword options with their own meaning; any other keyword ``a__b=v`` is the override ``a.b=v``.
_NAMED_OPTIONS = {"launcher": "hydra/launcher", "n_jobs": "hydra.launcher.n_jobs",
                  "skip_invalid": "sweep.skip_invalid", "epochs": "trainer.epochs"}


def _format_value(value, sweep: bool) -> str:
    """A Python value as Hydra override text: ``True`` -> ``true``, ``[1, 2]`` -> ``1,2`` in a sweep."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, range)):
        items = [_format_value(item, False) for item in value]
        return ",".join(items) if sweep else "[" + ",".join(items) + "]"
    return str(value)


def options_to_overrides(options: dict, sweep: bool) -> list[str]:
    """``launcher="joblib", n_jobs=2, progress="log", optimizer__lr=[0.01, 0.1]`` as overrides.

    ``launcher`` -> ``hydra/launcher``, ``n_jobs`` -> ``hydra.launcher.n_jobs`` (and the joblib
    launcher when no launcher is named), ``skip_invalid`` -> ``sweep.skip_invalid``, ``epochs`` ->
    ``trainer.epochs``; any other keyword with ``__`` for ``.``. In a sweep a list is swept
    (``loss=["l2", "ce"]`` -> ``loss=l2,ce``); in a single run it is a list value.
    """
    options = dict(options)
    if options.get("n_jobs") is not None and options.get("launcher") is None:
        options["launcher"] = "joblib"
    overrides = []
    for key, value in options.items():
        if value is None and key in _NAMED_OPTIONS:
            continue
        name = _NAMED_OPTIONS.get(key, key.replace("__", "."))
        overrides.append(f"{name}={_format_value(value, sweep)}")
    return overrides


def _child_env() -> dict:
    """The caller's environment, plus this lossbench's folder on PYTHONPATH when it is a source tree."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])
    installed = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_parent not in installed:  # e.g. a clone on sys.path: the child must run the same code
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _run_cli(args: list[str], quiet: bool) -> tuple[int, list[str]]:
    """Run ``python -m lossbench ARGS`` here (same cwd), streaming its merged output; (status, lines)."""
    command = [sys.executable, "-m", "lossbench", *args]
    lines: list[str] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               text=True, bufsize=1, env=_child_env())
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if not quiet:
                print(line, flush=True)
        return process.wait(), lines
    except KeyboardInterrupt:  # stop the child as Ctrl-C in a terminal would: finished runs stay reusable
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()


def _error_text(lines: list[str]) -> tuple[str, list[str]]:
    """(the line saying what went wrong, the block of lines it opens) from a failed command's output.

    lossbench's own ``lossbench: error: ...`` / ``lossbench: run failed: ...`` line when there is
    one; else Hydra's message: the lines after the last log line, without its stack-trace hint.
    """
    for index, line in enumerate(lines):
        if line.startswith(("lossbench: error", "lossbench: run failed")):
            block = [line, *[l for l in lines[index + 1:] if l.startswith(("  ", "Fix the values"))]]
            return line, block[:20]
    after_log = 0
    for index, line in enumerate(lines):
        if line.startswith("[") and "][" in line[:40]:  # "[2026-12-01 21:09:09,260][HYDRA] ..."
            after_log = index + 1
    block = [l for l in lines[after_log:] if l.strip() and not l.startswith("Set the environment variable HYDRA")]
    return (block[0].strip(), block[:20]) if block else ("(no output)", [])


def _raise_failed(what: str, args: list[str], returncode: int, lines: list[str], run: "Run | None" = None):
    line, block = _error_text(lines)
    details = "".join(f"\n  {l}" for l in block[1:])
    raise LossbenchError(f"{what} exited with status {returncode}: {line}{details}\n  command: lossbench "
                         + " ".join(args), returncode, line, lines[-50:], run)


def _listed_path(lines: list[str], prefix: str) -> Path | None:
    """The path on the last output line starting with ``prefix`` (relative to the working directory)."""
    for line in reversed(lines):
        if line.startswith(prefix):
            return Path(line[len(prefix):].strip()).resolve()
    return None


def sweep(overrides: Sequence[str] = (), sweep_dir: str | os.PathLike | None = None, *, quiet: bool = False,
          config_dir: str | os.PathLike | None = None, **options) -> "Study":
    """Run a sweep exactly as ``lossbench -m OVERRIDES`` does and return it as a :class:`Study`.

    ``overrides``: what you would type after ``lossbench -m``, as a list (``["loss=l2,ce", "seed=0,1,2"]``,
    ``["experiment=l2_vs_ce"]``) or one string split as a shell would. ``sweep_dir``: the sweep folder (``hydra.sweep.dir``); None keeps
    lossbench's default (``runs/multirun/<time>``, or ``runs/<study>`` for an experiment), relative
    to the working directory. Running again into the same folder resumes it: finished runs are
    reused, the report is rebuilt. ``config_dir``: your own config groups (``--config-dir``).
    ``quiet=True`` hides the command's output. ``options`` become overrides (see
    :func:`options_to_overrides`): ``launcher="joblib", n_jobs=2``, ``progress="log"``,
    ``skip_invalid=True``, ``epochs=20``, ``optimizer__lr=[0.01, 0.1]``.

    Raises :class:`LossbenchError` (with the command's error line) when it exits non-zero, e.g.
    status 2 when a job's config cannot work (nothing was started).

    >>> study = lossbench.sweep(["dataset=breast_cancer", "model=logistic", "loss=l2,bce", "seed=0,1,2"],
    ...                         sweep_dir="runs/binary", launcher="joblib", epochs=20)
    >>> study.results.groupby("loss")["final_test_accuracy"].mean()
    """
    args = ["-m", *_config_dir_args(config_dir), *_split(overrides), *options_to_overrides(options, sweep=True)]
    if sweep_dir is not None:
        args.append(f"hydra.sweep.dir={os.fspath(sweep_dir)}")  # the child runs in this same folder
    returncode, lines = _run_cli(args, quiet)
    if returncode != 0:
        _raise_failed("lossbench -m", args, returncode, lines)
    results = _listed_path(lines, "lossbench: results:")
    path = results.parent if results else (Path(sweep_dir).resolve() if sweep_dir is not None else None)
    if path is None or not path.is_dir():
        _raise_failed("lossbench -m", args, returncode, lines)
    return Study(path)


def run(overrides: Sequence[str] = (), run_dir: str | os.PathLike | None = None, *, quiet: bool = False,
        config_dir: str | os.PathLike | None = None, **options) -> "Run":
    """Train one run exactly as ``lossbench OVERRIDES`` does and return it as a :class:`Run`.

    ``run_dir``: the run folder (``hydra.run.dir``); None keeps the default ``runs/<time>-p<pid>``.
    ``options`` as for :func:`sweep` (a list is a list value here, not a sweep). A diverged run is a
    result (``run.status == "diverged"``); bad input (status 2) or a failed run raises
    :class:`LossbenchError` (``err.run`` holds the failed run, when its folder was written).

    >>> r = lossbench.run(["dataset=digits", "model=mlp", "loss=ce"], epochs=5)
    >>> r.metrics[["epoch", "train_loss", "test_accuracy"]].tail(2); r.params()["W1"].shape
    """
    args = [*_config_dir_args(config_dir), *_split(overrides), *options_to_overrides(options, sweep=False)]
    if run_dir is not None:
        args.append(f"hydra.run.dir={os.fspath(run_dir)}")
    returncode, lines = _run_cli(args, quiet)
    path = _listed_path(lines, "  run directory:")
    found = Run(path) if path is not None and (path / "summary.json").is_file() else None
    if returncode != 0 or found is None:
        _raise_failed("lossbench", args, returncode, lines, found)
    return found


def _split(overrides) -> list[str]:
    """Overrides as a list; a single string is split as a shell would (``"loss=l2,ce seed=0,1"``)."""
    if isinstance(overrides, str):
        import shlex

        return shlex.split(overrides)
    return [str(o) for o in overrides]


def _config_dir_args(config_dir) -> list[str]:
    return [] if config_dir is None else ["--config-dir", str(Path(config_dir).resolve())]


def load(path: str | os.PathLike) -> "Study | Run":
    """A finished sweep folder as a :class:`Study`, or a run folder (with ``summary.json``) as a :class:`Run`."""
    path = Path(path)
    if (path / "summary.json").is_file():
        return Run(path)
    if path.is_dir() and ((path / "results.csv").is_file() or any(path.glob("*/summary.json"))):
        return Study(path)
    raise FileNotFoundError(f"{path} is neither a lossbench sweep folder (results.csv, or run folders with "
                            "summary.json) nor a run folder (summary.json)")


# ------------------------------------------------------------------------------ typed tables ---

#: Columns of results.csv / curves.csv with a fixed type; metric columns are float64, other keys inferred.
_TEXT = ("run_id", "run_dir", "sweep_dir", "group", "status", "message", "task", "config_hash", "primary_metric",
         "stage", "loss", "model", "dataset", "optimizer", "schedule", "experiment")
_INTEGER = ("seed", "stop_epoch", "epoch", "step", "schema_version")
_FLOAT_PREFIXES = ("final_", "best_", "train_", "val_", "test_", "target_value", "target_time_s", "target_epoch",
                   "wall_time_s", "train_time_s", "time_s", "lr", "grad_norm")


def _dtypes(columns: Iterable[str]) -> dict[str, str]:
    dtypes = {}
    for column in columns:
        if column in _TEXT:
            dtypes[column] = "string"
        elif column in _INTEGER:
            dtypes[column] = "Int64"
        elif column.startswith(_FLOAT_PREFIXES):
            dtypes[column] = "float64"
    return dtypes


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """``results`` or ``curves`` of a sweep folder as a typed DataFrame: the one place that reads them.

    The report's typed reader (``lossbench.report.exports.read_results`` / ``read_curves``: parquet
    when present, schema version checked) when this lossbench has it, else :func:`read_csv_typed`.
    """
    try:
        from lossbench.report.exports import read_curves, read_results
    except ImportError:  # a lossbench without the versioned tables
        return read_csv_typed(folder, name)
    return (read_results if name == "results" else read_curves)(folder)


def read_csv_typed(folder: Path, name: str) -> pd.DataFrame:
    """``<name>.parquet`` when present (its types are stored), else ``<name>.csv`` with explicit dtypes.

    Text as ``string``, counts as nullable ``Int64``, metrics as ``float64``, so an all-empty
    ``message`` column stays text instead of reading back as float64.
    """
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if parquet.is_file():
        try:
            return pd.read_parquet(parquet)
        except ImportError:  # pyarrow not installed here: the CSV holds the same table
            pass
    if not csv.is_file():
        raise FileNotFoundError(f"no {name}.csv in {folder}: the sweep has not finished; build its tables with "
                                f"lossbench-report {folder} (or Study.rebuild_report())")
    header = pd.read_csv(csv, nrows=0).columns
    return pd.read_csv(csv, dtype=_dtypes(header))


def _read_report_csv(path: Path) -> pd.DataFrame:
    """A CSV the report wrote (stats.csv, tuned.csv), through its own reader when it has one.

    The report may guard text cells against spreadsheet formulas; its reader removes the guards.
    """
    try:
        from lossbench.report.output import read_csv_cells
    except ImportError:  # a lossbench whose report writes plain CSV
        return pd.read_csv(path)
    return read_csv_cells(path)


# ------------------------------------------------------------------------------------ objects ---

def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as the command prints it), else absolute."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


class Run:
    """One run folder: ``summary`` (summary.json), ``metrics`` (metrics.csv), ``params()`` (params.npz).

    >>> r = lossbench.load("runs/2026-11-22_01-46-49-p7184")
    >>> r.status, r.summary["final"]["test_accuracy"], r.metrics.shape
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        if not (self.path / "summary.json").is_file():
            raise FileNotFoundError(f"no summary.json in {self.path}: not a finished lossbench run")

    def __repr__(self) -> str:
        final = self.summary.get("final") or {}
        shown = ", ".join(f"{k}={final[k]:.4f}" for k in ("train_loss", "test_accuracy", "test_r2") if k in final)
        return f"Run({_shown_path(self.path)!r}, status={self.status!r}, {shown})"

    @cached_property
    def summary(self) -> dict:
        """summary.json: status, message, stop_epoch, final and best metrics, seed, config, provenance."""
        return json.loads((self.path / "summary.json").read_text())

    @property
    def status(self) -> str:
        return self.summary.get("status")

    @property
    def config(self) -> dict:
        """The run's resolved config (a plain dict)."""
        return self.summary.get("config") or {}

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv: one row per evaluation (epoch 0 = before training); epoch/step Int64, the rest float64."""
        path = self.path / "metrics.csv"
        if not path.is_file():
            return pd.DataFrame({"epoch": pd.Series(dtype="Int64")})
        header = pd.read_csv(path, nrows=0).columns
        return pd.read_csv(path, dtype={c: ("Int64" if c in ("epoch", "step") else "float64") for c in header})

    def params(self) -> dict[str, np.ndarray]:
        """The final parameters from params.npz (``numpy.load(..., allow_pickle=False)``): ``{"W1": ..., ...}``."""
        with np.load(self.path / "params.npz", allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    @cached_property
    def calibration(self) -> pd.DataFrame | None:
        """calibration.csv (reliability table of the final model), or None (regression, failed run)."""
        path = self.path / "calibration.csv"
        return pd.read_csv(path) if path.is_file() else None


class Study:
    """A sweep folder: typed ``results`` and ``curves``, the report's ``stats``, ``tuned``, ``plot()``.

    >>> study = lossbench.load("runs/l2_vs_ce")
    >>> study.results[["group", "seed", "status", "final_test_accuracy"]].head()
    >>> study.stats.query("metric == 'final_test_accuracy'")[["group", "mean", "ci_low", "ci_high"]]
    >>> study.plot("test_accuracy").savefig("accuracy.png")
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"no sweep folder {self.path}")

    def __repr__(self) -> str:
        try:
            counts = self.results["status"].value_counts()
            status = ", ".join(f"{n} {s}" for s, n in counts.items())
            groups = list(dict.fromkeys(self.results["group"].dropna()))
            return f"Study({_shown_path(self.path)!r}: {len(self.results)} runs ({status}); groups: {', '.join(groups)})"
        except FileNotFoundError:
            return f"Study({_shown_path(self.path)!r}: no results.csv yet)"

    @cached_property
    def results(self) -> pd.DataFrame:
        """One row per run (results.csv): key columns, seed, status, message, final_/best_ metrics, target_epoch."""
        return read_table(self.path, "results")

    @cached_property
    def curves(self) -> pd.DataFrame:
        """Every run's metrics.csv rows (curves.csv), with run_id, key columns, seed, group and status."""
        return read_table(self.path, "curves")

    @cached_property
    def stats(self) -> pd.DataFrame | None:
        """The report's statistics table (report/stats.csv): per group and metric n, mean, CI, rank, tests."""
        path = self.path / "report" / "stats.csv"
        if not path.is_file():
            return None
        return _read_report_csv(path)

    @cached_property
    def tuned(self) -> pd.DataFrame | None:
        """tuned.csv (protocol=tune: each arm's chosen settings), or None when the sweep did not tune."""
        path = self.path / "tuned.csv"
        return _read_report_csv(path) if path.is_file() else None

    @property
    def report_path(self) -> Path | None:
        """report/index.html, or None when no report was written."""
        path = self.path / "report" / "index.html"
        return path if path.is_file() else None

    @property
    def runs(self) -> list[Run]:
        """Every finished run folder of the sweep, as :class:`Run`."""
        return [Run(p.parent) for p in sorted(self.path.glob("*/summary.json"))]

    def rebuild_report(self) -> Path:
        """Rebuild results.csv, curves.csv and report/ from the run folders (as ``lossbench-report``)."""
        from lossbench.report import build_report

        for name in ("results", "curves", "stats", "tuned"):
            self.__dict__.pop(name, None)
        return build_report([self.path])

    def plot(self, metric: str = "test_accuracy", x: str = "epoch", band: str | None = "ci"):
        """Mean of ``metric`` against ``x`` (``epoch`` or ``time_s``) per group across seeds, with a band.

        As in the report, only completed runs enter a curve (diverged and failed runs are counted
        there, never averaged). ``band``: ``"ci"`` (95% Student-t interval of the mean across
        seeds, ``mean ± t_{0.975,n-1} s/√n``, clipped to the metric's range, e.g. [0, 1] for
        accuracy), ``"range"`` (min to max across seeds) or None. Against ``time_s`` each epoch is
        drawn at its mean time. One panel per data set when ``dataset`` varies. Returns the
        matplotlib Figure (a notebook shows it).
        """
        return curve_figure(self.curves, metric=metric, x=x, band=band)


def _metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: accuracy/ECE/Brier in [0, 1], R² at most 1, losses and errors >= 0."""
    if metric.endswith(("accuracy", "ece", "brier")):
        return 0.0, 1.0
    if metric.endswith("r2"):
        return -np.inf, 1.0
    if metric.endswith(("loss", "mse", "mae", "grad_norm", "time_s", "lr")):
        return 0.0, np.inf
    return -np.inf, np.inf


def curve_figure(curves: pd.DataFrame, metric: str, x: str = "epoch", band: str | None = "ci"):
    """The figure of :meth:`Study.plot` from a curves table (one row per run and evaluation)."""
    import matplotlib.pyplot as plt
    from scipy import stats

    if metric not in curves.columns:
        available = [c for c in curves.columns if c.startswith(("train_", "val_", "test_"))]
        raise ValueError(f"metric {metric!r} is not in the curves; available: {', '.join(available)}")
    if band not in ("ci", "range", None):
        raise ValueError(f"band={band!r} is not allowed; allowed: 'ci' | 'range' | None")
    done = curves[curves["status"] == "completed"]
    panels = (list(dict.fromkeys(done["dataset"].dropna()))
              if "dataset" in done.columns and done["dataset"].nunique() > 1 else [None])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    low_limit, high_limit = _metric_range(metric)
    for ax, panel in zip(axes[0], panels):
        part = done if panel is None else done[done["dataset"] == panel]
        for group, rows in part.groupby("group", sort=False):
            by_epoch = rows.groupby("epoch")
            values = by_epoch[metric]
            mean, n = values.mean(), values.count()
            xs = mean.index.to_numpy(dtype=float) if x == "epoch" else by_epoch[x].mean().to_numpy(dtype=float)
            (line,) = ax.plot(xs, mean.to_numpy(dtype=float), label=f"{group} (n={int(n.max())})")
            if band == "range":
                low, high = values.min(), values.max()
            elif band == "ci" and n.max() > 1:
                half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * values.std(ddof=1) / np.sqrt(n)
                low, high = (mean - half).clip(low_limit, high_limit), (mean + half).clip(low_limit, high_limit)
            else:
                continue
            ax.fill_between(xs, low.to_numpy(dtype=float), high.to_numpy(dtype=float), color=line.get_color(),
                            alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch" if x == "epoch" else "training time (s)")
        ax.set_ylabel(metric)
        band_text = {"ci": "mean, 95% t-interval across seeds", "range": "mean, min-max across seeds",
                     None: "mean across seeds"}[band]
        ax.set_title(f"{panel + ': ' if panel else ''}{metric} ({band_text})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
