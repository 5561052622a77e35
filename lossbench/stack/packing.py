"""Packing a sweep's jobs into stacked passes, from their overrides alone (for the sweeper).

``pack_key(overrides)`` is a conservative, config-level guess of :func:`lossbench.stack.stack_key`
that needs no data loaded: jobs whose overrides differ only in keys a stack may vary (the seed,
scalar hyperparameters of the optimizer, the loss and the schedule, grad_clip and
divergence_factor) get equal keys. ``packs(jobs, stack_size, n_workers)`` splits each group into
packs of at most ``stack_size`` jobs. A wrong guess costs speed, never numbers:
:func:`lossbench.stack.train_stack` partitions its pack by the real ``stack_key`` and trains a run
whose components do not stack alone.
"""

from __future__ import annotations

import math
import re

#: measured (``python -m lossbench.bench --sections stack`` and ``tests``' notes): on digits the MLP
#: pack's gain peaks near 16 runs (2.5x training clock, 1.8x with evaluation) and falls beyond
#: (32: 2.3x); logistic packs keep gaining (16: 6.8x, 64: 14x) but 16 keeps packs small enough to
#: spread over the workers
DEFAULT_STACK_SIZE = 16

STACKABLE_OVERRIDE = re.compile(
    r"^(seed|optimizer\.(lr|momentum|beta1|beta2|eps|alpha|weight_decay|lr_decay|initial_accumulator_value)"
    r"|loss\.(gamma|delta|label_smoothing)|schedule\.\w+|trainer\.(grad_clip|divergence_factor))$")


def pack_key(overrides: list[str]) -> tuple[str, ...]:
    """The job's overrides without those a stack may vary (sorted): equal keys may share a pass."""
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not STACKABLE_OVERRIDE.match(key):
            kept.append(override)
    return tuple(sorted(kept))


def packs(jobs: list[list[str]], stack_size: int = DEFAULT_STACK_SIZE, n_workers: int = 1) -> list[list[int]]:
    """Job indices grouped into packs: equal :func:`pack_key`, at most ``stack_size`` each, near-equal sizes.

    ``stack_size=1`` gives one job per pack (stacking off). With ``n_workers`` > 1 a group is
    split into at least as many packs as there are workers when it has enough jobs, so a study of
    few groups still keeps every worker busy.
    """
    if stack_size < 1:
        raise ValueError(f"stack_size must be an integer >= 1, got {stack_size!r}")
    groups: dict[tuple, list[int]] = {}
    for index, overrides in enumerate(jobs):
        groups.setdefault(pack_key(overrides), []).append(index)
    result = []
    n_groups = len(groups)
    for members in groups.values():
        count = math.ceil(len(members) / stack_size)
        if n_groups < n_workers:  # few groups: split them so that every worker gets a pack
            count = max(count, min(len(members), math.ceil(n_workers / n_groups)))
        size = math.ceil(len(members) / count)
        result.extend(members[start:start + size] for start in range(0, len(members), size))
    return result
