"""Learning-rate schedules: the learning rate of each training epoch.

Every schedule is a small object built from ``conf/schedule/*.yaml`` and called as
``schedule(epoch, base_lr, epochs) -> lr``, where ``epoch`` counts training epochs from 1 and
``base_lr`` is the optimizer's configured ``lr``. The trainer sets ``optimizer.lr`` to the result at
the start of every epoch, so a schedule never touches optimizer state.
"""

from __future__ import annotations

import math
import numbers


def _check_number(key: str, value, *, low: float, low_inclusive: bool, high: float | None = None,
                  high_inclusive: bool = False, allowed: str) -> float:
    """Return ``value`` as float or raise a ValueError naming the key, the value and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{key}={value!r} is not a finite number; allowed: {allowed}")
    too_low = value < low if low_inclusive else value <= low
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        raise ValueError(f"{key}={value!r} is out of range; allowed: {allowed}")
    return float(value)


class Constant:
    """``lr_e = lr``: the optimizer's learning rate, unchanged."""

    def __call__(self, epoch: int, base_lr: float, epochs: int) -> float:
        return base_lr

    def __repr__(self) -> str:
        return "Constant()"


class Step:
    """``lr_e = lr · gamma^floor((e - 1) / step_size)``: multiply by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int = 10, gamma: float = 0.5):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or not 1 <= step_size <= 1_000_000:
            raise ValueError(f"step_size={step_size!r} is not allowed; allowed: an integer in [1, 1000000]")
        self.step_size = step_size
        self.gamma = _check_number("gamma", gamma, low=0.0, low_inclusive=False, high=1.0,
                                   high_inclusive=True, allowed="0 < gamma <= 1")

    def __call__(self, epoch: int, base_lr: float, epochs: int) -> float:
        return base_lr * self.gamma ** ((epoch - 1) // self.step_size)

    def __repr__(self) -> str:
        return f"Step(step_size={self.step_size}, gamma={self.gamma})"


class Cosine:
    """``lr_e = min_lr + (lr - min_lr) · (1 + cos(π (e - 1) / E)) / 2`` over ``E`` training epochs."""

    def __init__(self, min_lr: float = 0.0):
        self.min_lr = _check_number("min_lr", min_lr, low=0.0, low_inclusive=True, high=1e3, high_inclusive=True,
                                    allowed="a number in [0, 1000], below the optimizer's lr")

    def __call__(self, epoch: int, base_lr: float, epochs: int) -> float:
        progress = (epoch - 1) / epochs
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __repr__(self) -> str:
        return f"Cosine(min_lr={self.min_lr})"


class InverseTime:
    """``lr_e = lr / (1 + decay · (e - 1))``: the classic Robbins-Monro style decay."""

    def __init__(self, decay: float = 0.1):
        self.decay = _check_number("decay", decay, low=0.0, low_inclusive=True, high=1e3, high_inclusive=True,
                                   allowed="a number in [0, 1000]")

    def __call__(self, epoch: int, base_lr: float, epochs: int) -> float:
        return base_lr / (1.0 + self.decay * (epoch - 1))

    def __repr__(self) -> str:
        return f"InverseTime(decay={self.decay})"
