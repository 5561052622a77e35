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

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from lossbench.sweep.plan import PlanError, parse

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
        structural = tuple(o.input_line for o in overrides if self._structural(o))
        base = self._bases.get(structural)
        if base is None:
            try:
                full = self.loader.load_sweep_config(master_config=self.master, sweep_overrides=list(structural))
                self.n_compositions += 1
                plain = OmegaConf.to_container(full, resolve=False)
                plain.pop("hydra", None)
                base = (plain, {k: v for k, v in full.hydra.runtime.choices.items()})
            except Exception as err:  # ConfigCompositionException, MissingConfigException, ...
                base = _one_line(err)
            self._bases[structural] = base
        if isinstance(base, str):
            raise PlanError(base)
        plain, choices = base
        cfg = OmegaConf.create(copy.deepcopy(plain))
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
        OmegaConf.set_struct(cfg, True)
        return cfg, dict(choices)


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


class quiet_repeats:
    """Context manager: repeated identical warnings of the ``lossbench`` logger are shown once."""

    def __enter__(self):
        self.filter = _Once()
        logging.getLogger("lossbench").addFilter(self.filter)
        return self

    def __exit__(self, *exc):
        logging.getLogger("lossbench").removeFilter(self.filter)
