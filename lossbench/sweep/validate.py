"""Check every job of a sweep before anything trains, at a few milliseconds a job.

Composing a config with Hydra costs ~60 ms and loading a data set up to ~100 ms, so doing both for
every job made validation 70-125 ms a job. Here a config is composed once per distinct set of
*structural* overrides (config groups such as ``loss=ce``, ``+key``/``~key``, package overrides),
and each job's value overrides (``optimizer.lr=0.1``, ``seed=3``) are applied to a copy of it the
way Hydra applies them (``OmegaConf.update(cfg, key, value, merge=True)`` on a key that must
exist). :func:`lossbench.build.build` then checks the job with each distinct data-set config loaded
once (``build``'s ``data_cache``): the seed changes which rows land in which split, not whether a
combination can work. Each job still runs the full checks when it starts.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lossbench.sweep.plan import PlanError, override_dirname, parse

_ABSENT = object()
_DATA: dict[str, object] = {}  # loaded data sets by their resolved config (lossbench.build.build's data_cache)


def _exists(cfg: DictConfig, key: str) -> bool:
    """True when ``key`` (dotted) is in ``cfg``, also when its value is ``???`` (missing, to be set)."""
    parent_key, _, last = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=_ABSENT, throw_on_missing=False) if parent_key else cfg
    if isinstance(parent, DictConfig):
        return last in parent.keys()
    if OmegaConf.is_list(parent):
        return last.isdigit() and int(last) < len(parent)
    return False


def _one_line(err: BaseException) -> str:
    """A composition error in one line: Hydra's lines joined (the options list included), bounded."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    return text if len(text) <= 400 else text[:397] + "..."


class Composer:
    """Composes the jobs of one sweep: ``compose(lines) -> (cfg, choices)`` (cfg without ``hydra``)."""

    def __init__(self, config_loader, master: DictConfig):
        self.loader = config_loader
        self.master = master
        self.groups = self._list_groups("")
        self._parsed: dict[str, Override] = {}
        self._bases: dict[tuple[str, ...], tuple[dict, dict] | str] = {}
        self._full: dict[tuple[str, ...], DictConfig | None] = {}
        self._task_bases: dict[tuple[str, ...], DictConfig] = {}
        self._frozen: dict[tuple, bytes | None] = {}  # pickles of the bases (_copy); None: it does not pickle
        self._unpicklable: dict[tuple, DictConfig] = {}
        self._adopted: set[tuple[str, ...]] = set()  # structural keys whose base came from adopt()
        self.n_compositions = 0

    def _list_groups(self, parent: str) -> set[str]:
        found = set()
        for name in self.loader.list_groups(parent):
            full = f"{parent}/{name}" if parent else name
            found.add(full)
            if full != "hydra":  # hydra/launcher etc. count as groups; no need to walk deeper
                found |= self._list_groups(full)
            else:
                found |= {f"hydra/{n}" for n in self.loader.list_groups("hydra")}
        return found

    def parsed(self, line: str) -> Override:
        if line not in self._parsed:
            self._parsed[line] = parse([line])[0]
        return self._parsed[line]

    def _structural(self, override: Override) -> bool:
        key = override.key_or_group
        return (key in self.groups or override.package is not None or override.is_add() or override.is_delete() or override.is_force_add()
                or key == "hydra" or key.startswith("hydra."))

    def compose(self, lines: tuple[str, ...]) -> tuple[DictConfig, dict]:
        """The job's config (as Hydra will compose it in the job) and its group choices; PlanError if it cannot."""
        overrides = [self.parsed(line) for line in lines]
        structural = self._structural_key(overrides)
        base = self._bases.get(structural)
        if base is None:
            try:
                full = self.loader.load_sweep_config(master_config=self.master, sweep_overrides=list(structural))
                self.n_compositions += 1
                if self._shareable(overrides):
                    self._full.setdefault(structural, full)  # job_config's base too (it is only read)
                plain = OmegaConf.to_container(full, resolve=False)
                plain.pop("hydra", None)
                base = (plain, {k: v for k, v in full.hydra.runtime.choices.items()})
            except Exception as err:  # ConfigCompositionException, MissingConfigException, ...
                base = _one_line(err)
            self._bases[structural] = base
        if isinstance(base, str):
            raise PlanError(base)
        plain, choices = base
        key = ("plain", structural)  # a fresh OmegaConf.create(plain), from its pickle
        cfg = self._copy(key, None if key in self._frozen else OmegaConf.create(copy.deepcopy(plain)))
        self._apply_values(cfg, overrides)
        OmegaConf.set_struct(cfg, True)
        return cfg, dict(choices)

    def _apply_values(self, cfg: DictConfig, overrides: list[Override]) -> None:
        """Apply the value overrides to ``cfg`` as Hydra does (the key must exist); PlanError if one cannot."""
        for override in overrides:
            if self._structural(override):
                continue
            key = override.key_or_group
            if not _exists(cfg, key):
                raise PlanError(f"Could not override '{key}'. To append to your config use +{override.input_line}")
            try:
                OmegaConf.update(cfg, key, override.value(), merge=True)
            except Exception as err:
                raise PlanError(f"Error merging override {override.input_line}: {_one_line(err)}") from None


    def job_config(self, lines: tuple[str, ...]) -> DictConfig | None:
        """The job's full config, ``hydra`` node included, equal to Hydra's ``load_sweep_config``.

        Composed once per distinct set of structural overrides; the job's value overrides are then
        applied to a copy, and ``hydra.overrides.task`` and ``hydra.job.override_dirname`` set as
        Hydra sets them. Runs packed into one launcher job differ in value overrides only (a seed,
        a learning rate), so a pack of 16 composes once, not 16 times (~0.1 s each). None when a
        structural override adds, deletes or re-packages a key, or a value override's key does not
        exist: the caller then composes with Hydra, which says what is wrong.
        """
        found = self._base(lines)
        if found is None:
            return None
        overrides, key, base = found
        cfg = self._copy(("full", key), base)
        try:
            self._apply_values(cfg, overrides)
        except PlanError:
            return None
        task = [o for o in overrides if not o.is_hydra_override()]
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.overrides.task.clear()
            for override in task:
                cfg.hydra.overrides.task.append(override.input_line)
            names = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = override_dirname(task, exclude_keys=list(names.exclude_keys),
                                                              item_sep=names.item_sep, kv_sep=names.kv_sep)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg

    def task_config(self, lines: tuple[str, ...]) -> DictConfig | None:
        """The config the job's task gets (its full config without ``hydra``), as Hydra's ``run_job``
        makes it, from a copy of a hydra-less base: a tenth of the cost of copying the whole config.
        Call after :meth:`job_config` of the same lines (None where that was None)."""
        found = self._base(lines)
        if found is None:
            return None
        overrides, key, base = found
        if key not in self._task_bases:
            without = copy.deepcopy(base)
            with read_write(without), open_dict(without):
                del without["hydra"]
            self._task_bases[key] = without
        cfg = self._copy(("task", key), self._task_bases[key])
        try:
            self._apply_values(cfg, overrides)
        except PlanError:
            return None
        return cfg

    def _copy(self, key: tuple, base: DictConfig | None = None) -> DictConfig:
        """A deep copy of the base stored under ``key`` (given the first time), from its pickle, made
        once (a quarter of ``copy.deepcopy``'s time); ``copy.deepcopy`` where it does not pickle (a
        base unpickled from the sweep may name a config class that Hydra's plugin scan imported
        again in this process)."""
        if key not in self._frozen:
            try:
                self._frozen[key] = pickle.dumps(base)
            except (pickle.PicklingError, TypeError, AttributeError):
                self._frozen[key], self._unpicklable[key] = None, base
        frozen = self._frozen[key]
        return copy.deepcopy(self._unpicklable[key]) if frozen is None else pickle.loads(frozen)  # bytes made here

    def _structural_key(self, overrides: list[Override]) -> tuple[str, ...]:
        """The job's structural overrides (groups, ``+``/``~`` keys, packages, ``hydra``): one composition each."""
        return tuple(o.input_line for o in overrides if self._structural(o))

    def _shareable(self, overrides: list[Override]) -> bool:
        """True unless a structural override adds, deletes or re-packages a key (then Hydra composes the job)."""
        return not any(o.package is not None or o.is_add() or o.is_delete() or o.is_force_add()
                       for o in overrides if self._structural(o))

    def bases(self, jobs: list[tuple[str, ...]]) -> dict:
        """The composed bases of these jobs (structural key -> full config) this composer holds, with the
        working folder they were composed in (``hydra.runtime.cwd``): for :meth:`adopt` in a worker.
        A base that copies environment variables (``hydra.job.env_copy``) holds this process's values
        of them: it is not shared, the worker composes it with its own environment."""
        keys = {self._structural_key([self.parsed(line) for line in lines]) for lines in jobs}
        bases = {}
        for key in keys:
            if self._full.get(key) is not None and not self._full[key].hydra.job.get("env_copy"):
                self._copy(("full", key), self._full[key])  # pickled here, where its classes are the modules'
                if self._frozen[("full", key)] is not None:
                    bases[key] = self._frozen[("full", key)]
        return {"cwd": os.getcwd(), "bases": bases}

    def adopt(self, shared: dict) -> None:
        """Use bases another process composed (:meth:`bases`: pickles of them) instead of composing them
        again (~0.15 s each), when this process works in the same folder (``hydra.runtime.cwd``; the
        other process-dependent values, ``hydra.job.env_copy``'s, keep a base from being shared)."""
        if shared and shared.get("cwd") == os.getcwd():
            for key, frozen in shared["bases"].items():
                if key not in self._full:
                    self._frozen[("full", key)] = frozen
                    self._full[key] = pickle.loads(frozen)  # the sweep's own bytes, as the launcher sends the task
                    self._adopted.add(key)

    def adopted_config(self, lines: tuple[str, ...]) -> DictConfig | None:
        """:meth:`job_config` of a job whose base this process adopted from the sweep, else None (this
        process has not composed it: the caller composes with Hydra)."""
        overrides = [self.parsed(line) for line in lines]
        if not self._shareable(overrides) or self._structural_key(overrides) not in self._adopted:
            return None
        return self.job_config(lines)

    def _base(self, lines: tuple[str, ...]):
        """``(overrides, structural key, composed base)`` of the job, or None (compose it with Hydra)."""
        overrides = [self.parsed(line) for line in lines]
        if not self._shareable(overrides):
            return None
        key = self._structural_key(overrides)
        if key not in self._full:
            try:
                self._full[key] = self.loader.load_sweep_config(master_config=self.master, sweep_overrides=list(key))
                self.n_compositions += 1
            except Exception:  # the job composes on its own and fails with Hydra's message
                self._full[key] = None
        base = self._full[key]
        return None if base is None else (overrides, key, base)


class _Once(logging.Filter):
    """Lets each distinct warning through once: 30 jobs of one data set need not say it 30 times."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def check(cfg: DictConfig, choices: dict):
    """Run :func:`lossbench.build.build` on ``cfg`` with cached data; returns the Built (data included)."""
    from lossbench.build import build

    return build(cfg, choices=choices, data_cache=_DATA)


def work_estimate(built, epochs: int) -> float:
    """A run's relative cost, to launch the longest launcher jobs first: epochs x (rows trained on
    plus rows evaluated) x parameters. Only the order matters, not the unit."""
    data = built.data
    rows = sum(len(y) for y in (data.y_train, data.y_train, data.y_val, data.y_test) if y is not None)
    params = sum(int(value.size) for value in built.model.params.values())
    return float(epochs) * rows * max(params, 1)


class quiet_repeats:
    """Context manager: repeated identical warnings of the ``lossbench`` logger are shown once."""

    def __enter__(self):
        self.filter = _Once()
        logging.getLogger("lossbench").addFilter(self.filter)
        return self

    def __exit__(self, *exc):
        logging.getLogger("lossbench").removeFilter(self.filter)
