"""``StackedOptimizer``: R built-in optimizers stepping as one on parameters with a leading run axis."""

from __future__ import annotations

import copy
import math

import numpy as np

from lossbench.optim import _as, _Optimizer


class StackedOptimizer:
    """R built-in optimizers of one class and :meth:`~_Optimizer.stack_structure` stepping as one.

    ``params`` and ``grads`` map names to arrays with a leading run axis, (R, ...). Each scalar
    hyperparameter of ``stack_hyperparameters`` becomes an (R, 1) array on a private copy of the
    first optimizer (the *template*), whose ``_direction`` then runs once on flat (R, P) buffers:
    run r's numbers are those its own optimizer computes alone, bit for bit (elementwise
    operations; scalar formulas per run through :func:`_per_run`). The per-run optimizers are
    left untouched until :meth:`unstack` writes the state back into them (for a checkpoint, or
    when the stack changes). All of them must have taken the same number of steps.
    """

    def __init__(self, optimizers: list[_Optimizer]):
        first = optimizers[0]
        structure = first.stack_structure()
        if any(optimizer.stack_structure() != structure for optimizer in optimizers):
            raise ValueError("optimizers of a stack must share class, batch size and state buffers")
        counts = {optimizer.step_count for optimizer in optimizers}
        if len(counts) != 1:
            raise ValueError(f"optimizers of a stack must have taken the same number of steps, got {sorted(counts)}")
        self.optimizers = list(optimizers)
        self.n_runs = len(optimizers)
        template = copy.copy(first)
        for key in first.stack_hyperparameters:
            setattr(template, key, self._column([getattr(optimizer, key) for optimizer in optimizers]))
        self._hyperparameters = first.stack_hyperparameters
        template.step_count = first.step_count
        template._views, template.state = [], {}
        self.template = template
        self._coupled_decay = first.weight_decay != 0.0 and not first.decoupled_weight_decay
        self._decoupled_decay = first.weight_decay != 0.0 and first.decoupled_weight_decay
        self._names = None
        if first._names is not None:
            self._allocate(first._names, first._shapes, first._flat_grad.dtype,
                           {name: np.stack([optimizer._flat_state[name] for optimizer in optimizers])
                            for name in first.state_names})

    def _column(self, values):
        """One value per run as an (R, 1) float64 column; a value all runs share stays the run's own float.

        A shared value is then exactly the operand each run uses alone, and NumPy's fast path for a
        scalar operand is about 3x faster than broadcasting an (R, 1) column along the rows.
        """
        first = values[0]
        if all(value == first for value in values[1:]) and not isinstance(first, np.ndarray):
            return first
        return np.array([float(value) for value in values], dtype=np.float64).reshape(self.n_runs, 1)

    def _allocate(self, names, shapes, dtype, flat_state) -> None:
        self._names, self._shapes = list(names), [tuple(shape) for shape in shapes]
        total = sum(math.prod(shape) for shape in self._shapes)
        self._g = np.empty((self.n_runs, total), dtype=dtype)
        self._out = np.empty((self.n_runs, total), dtype=dtype)
        self.template._flat_state = flat_state
        bounds = np.cumsum([0, *(math.prod(shape) for shape in self._shapes)])
        self._views = []
        for name, start, stop, shape in zip(self._names, bounds[:-1], bounds[1:], self._shapes):
            g_view = self._g[:, start:stop].reshape((self.n_runs, *shape))
            out_view = self._out[:, start:stop].reshape((self.n_runs, *shape))
            assert np.shares_memory(g_view, self._g) and np.shares_memory(out_view, self._out)
            self._views.append((name, g_view, out_view))

    def set_lr(self, lrs) -> None:
        """The learning rate of every run for the coming steps (R,), as the trainer sets ``optimizer.lr``."""
        self.template.lr = self._column(lrs)
        self._lr_column = self.template.lr
        self._lr_expanded = False
        for optimizer, lr in zip(self.optimizers, lrs):
            optimizer.lr = lr

    def _expand_lr(self) -> None:
        """lr (R, 1) -> (R, P) in the parameters' dtype (rounded as a Python float meeting them), once per set_lr."""
        self._lr_expanded = True
        column = getattr(self, "_lr_column", None)
        if isinstance(column, np.ndarray) and self.optimizers[0].stack_lr_as_array:
            self.template.lr = np.repeat(column.astype(self._g.dtype), self._g.shape[1], axis=1)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every (R, ...) array of ``params`` in place from ``grads``, run r as its optimizer would."""
        template = self.template
        if self._names is None:
            first = params[next(iter(params))]
            initial = {name: np.concatenate([np.full((1, 1), optimizer._initial_state_value(name))
                                             for optimizer in self.optimizers]) for name in template.state_names}
            shapes = [params[name].shape[1:] for name in params]
            total = sum(math.prod(shape) for shape in shapes)
            self._allocate(list(params), shapes, first.dtype,
                           {name: np.broadcast_to(value, (self.n_runs, total)).astype(first.dtype)
                            for name, value in initial.items()})
        if not getattr(self, "_lr_expanded", True):
            self._expand_lr()
        g, out = self._g, self._out
        for name, g_view, out_view in self._views:
            np.copyto(g_view, grads[name])
            if self._coupled_decay:
                decay = _as(template.weight_decay, out_view)
                if isinstance(decay, np.ndarray):
                    decay = decay.reshape((-1,) + (1,) * (out_view.ndim - 1))
                np.multiply(params[name], decay, out=out_view)
        if self._coupled_decay:
            g += out
        template.step_count += 1
        template._direction(g, out)
        if self._decoupled_decay:
            shrink = _as(1.0 - template.lr * template.weight_decay, g)  # (R, 1), or a float all share
        for name, _, out_view in self._views:
            param = params[name]
            if self._decoupled_decay:
                param *= shrink.reshape((-1,) + (1,) * (param.ndim - 1)) if isinstance(shrink, np.ndarray) else shrink
            param -= out_view

    @property
    def step_count(self) -> int:
        return self.template.step_count

    def unstack(self) -> list[_Optimizer]:
        """Write the stack's state into the per-run optimizers (copies) and return them."""
        for r, optimizer in enumerate(self.optimizers):
            optimizer.step_count = self.template.step_count
            if self._names is not None:
                optimizer._names, optimizer._shapes = list(self._names), list(self._shapes)
                optimizer._flat_state = {name: flat[r].copy() for name, flat in self.template._flat_state.items()}
                optimizer._flat_grad = np.empty(self._g.shape[1], dtype=self._g.dtype)
                optimizer._flat_out = np.empty(self._g.shape[1], dtype=self._g.dtype)
                optimizer._make_views()
        return self.optimizers
