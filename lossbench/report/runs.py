"""``Runs``: every run of one or more sweep folders as tables, as ``tables.load_runs`` builds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lossbench.report.common import LR_KEY, REPLICATE_KEY, STATUSES, ordered_values


class ReportInputError(ValueError):
    """Folders the report cannot be built from; ``str(error)`` is one line saying why."""


class NoRunsError(ReportInputError):
    """A sweep directory does not exist or holds no run directory with a ``summary.json``."""


@dataclass
class Runs:
    """Every run of one or more sweep directories, as tables.

    ``results`` (one row per run) and ``curves`` (one row per run and evaluation) are described in
    the module docstring. ``group_keys`` are the swept keys (override names) in the order they
    first appear; ``block_keys`` the subset within which groups are compared (``["dataset"]`` when
    it varies, else ``[]``). ``missing`` lists run directories Hydra created but that have no
    ``summary.json`` (interrupted); ``duplicates`` those dropped because another run had the same
    config hash (the completed, then newest, one is kept). ``question``: the top-level
    ``question`` string of the runs' config when they all share one (an experiment file may set
    it), else None; read from the sweep's ``multirun.yaml`` (the latest launch) when there is one.
    ``skipped``: the jobs a sweep skipped as impossible combinations
    (``sweep.skip_invalid=true``), each ``{"overrides": [...], "message": ...}``, from the sweep
    folder's ``skipped.json`` (see ``skipped_combinations``). ``common_overrides``: the overrides
    every run shares (e.g. ``experiment=l2_vs_ce``), which name no group. ``headline``: the
    figure names listed under ``report.headline`` (a name or a list), found like ``question``.
    ``missing_jobs``: jobs listed in a sweep's ``missing.json`` (lost to a dead worker or Ctrl-C),
    each ``{"overrides": [...], "reason": ...}``. ``damaged``: ``(run folder, what is wrong)`` for
    each run folder left out because its files are damaged; ``problems``: damaged sweep-level files
    (``skipped.json``, ``tuned.csv``, ...), one sentence each.

    With ``protocol=tune``: ``tune_results`` holds the tuning runs (same columns as ``results``;
    empty otherwise), ``tuned`` the sweeps' ``tuned.csv`` (one row per arm), ``tuned_keys`` the
    keys tuned per arm (columns of both tables, never group keys) and ``plan`` the first
    ``sweep.json`` found.

    Per run (keyed by ``run_id``, tuning runs included): ``configs`` (resolved config),
    ``choices`` (config-group choices),
    ``provenance`` (summary's provenance), ``versions`` (lossbench version that wrote it),
    ``split_sizes`` (summary's ``split_sizes``: samples per split, when recorded),
    ``gradients`` (its ``gradients.csv``) and ``calibration`` (its ``calibration.csv``), where
    present. ``early_stopping``: ``report.early_stopping`` is true in every run's config (found
    like ``question``): the report adds the best-validation-epoch view. The report draws from these tables only.
    """

    results: pd.DataFrame
    curves: pd.DataFrame
    group_keys: list[str]
    block_keys: list[str]
    sweep_dirs: list[Path]
    target_fraction: float
    missing: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    question: str | None = None
    skipped: list[dict] = field(default_factory=list)
    common_overrides: list[str] = field(default_factory=list)
    headline: list[str] | None = None
    missing_jobs: list[dict] = field(default_factory=list)
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tune_results: pd.DataFrame | None = None
    tuned: pd.DataFrame | None = None
    tuned_keys: list[str] = field(default_factory=list)
    plan: dict | None = None
    configs: dict[str, dict] = field(default_factory=dict)
    choices: dict[str, dict] = field(default_factory=dict)
    provenance: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    split_sizes: dict[str, dict] = field(default_factory=dict)
    gradients: dict[str, pd.DataFrame] = field(default_factory=dict)
    calibration: dict[str, pd.DataFrame] = field(default_factory=dict)
    early_stopping: bool = False
    also_compare: list[str] = field(default_factory=list)  # report.also_compare: more metrics tested

    @property
    def key_values(self) -> dict[str, list]:
        """Each group key with its distinct values, in sweep order (numbers ascending)."""
        return {key: ordered_values(self.results[key]) for key in self.group_keys}

    @property
    def seeds(self) -> list:
        """The distinct seeds of all runs, ascending."""
        return sorted(self.results[REPLICATE_KEY].dropna().unique().tolist())

    @property
    def status_counts(self) -> dict[str, int]:
        """How many runs completed, diverged and failed (plus any other status seen)."""
        counts = self.results["status"].value_counts().to_dict()
        return {status: int(counts.pop(status, 0)) for status in STATUSES} | counts

    @property
    def lr_varies(self) -> bool:
        """True when the learning rate is one of the compared keys (the tuned view of a grid applies)."""
        return LR_KEY in self.group_keys
