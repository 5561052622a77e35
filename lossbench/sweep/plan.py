"""The job list of a sweep: expand the overrides exactly as Hydra's basic sweeper does.

``hydra.sweeper.params`` first, then the command line; ``a=1,2``, ``a=range(1,4)``,
``a=choice(x,y)`` and ``glob()`` are expanded to their cartesian product, last key varying
fastest (``itertools.product``), as ``BasicSweeper.split_arguments`` does. Interval sweeps
(``interval(0,1)``) have no finite job list: they are refused with a message that names the key.

The folder a job will write to is computed here too, mirroring Hydra's ``override_dirname``
(the overrides' input lines, minus ``exclude_keys``, sorted, joined), so the sweeper can find a
job's run folder without launching it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf


class PlanError(ValueError):
    """The sweep cannot be expanded (an unsupported sweep type, a syntax error); the message says why."""


@dataclass
class Job:
    """One run of the sweep: its overrides as the launcher receives them, and what the plan learnt.

    ``status`` is set by the sweeper: ``run`` (to launch), ``finished`` (a reusable run on disk),
    ``skipped`` (cannot work, ``sweep.skip_invalid``), ``invalid`` (cannot work, stops the sweep),
    ``elsewhere`` (claimed by another process).
    """

    overrides: tuple[str, ...]
    index: int
    run_dir: Path | None = None
    config_hash: str | None = None
    task: str | None = None
    status: str = "run"
    message: str | None = None
    stage: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "(defaults)"


def parse(lines: list[str], config_loader=None) -> list[Override]:
    """Parse override strings with Hydra's own grammar; PlanError with Hydra's message on a syntax error."""
    try:
        return OverridesParser.create(config_loader=config_loader).parse_overrides(list(lines))
    except Exception as err:  # OverrideParseException and friends: the first line says it all
        raise PlanError(str(err).strip().splitlines()[0]) from None


def sweep_arguments(params: dict | DictConfig | None, arguments: list[str]) -> list[str]:
    """``hydra.sweeper.params`` as ``key=value`` lines, then the command-line arguments."""
    if OmegaConf.is_config(params):
        params = OmegaConf.to_container(params, resolve=False)
    return [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)


def expand(overrides: list[Override]) -> list[tuple[str, ...]]:
    """Every job's override lines, in the basic sweeper's order (a later key for one key replaces an earlier)."""
    final: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise PlanError(f"{key}: the sweep type {override.value_type.name} has no finite list of jobs; "
                                "use a=1,2,3, range(), choice() or glob() (or hydra/sweeper=optuna for intervals)")
            final[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            final[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [tuple(job) for job in itertools.product(*final.values())]


def override_dirname(overrides: list[Override], exclude_keys, item_sep: str, kv_sep: str) -> str:
    """Hydra's ``hydra.job.override_dirname`` for one job (mirrors ``get_overrides_dirname``)."""
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in set(exclude_keys))
    return re.sub("[=]", kv_sep, item_sep.join(lines))


def chunks(items: list, size: int | None) -> list[list]:
    """``items`` in consecutive chunks of at most ``size`` (None or <= 0: one chunk)."""
    if not size or size <= 0:
        return [list(items)] if items else []
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
