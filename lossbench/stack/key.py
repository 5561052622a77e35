"""``stack_key(built)``: which runs may train in one stacked pass."""

from __future__ import annotations

import numpy as np

from lossbench.train import split_arrays

KEY_VERSION = 1


def _qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def stackable(component) -> bool:
    """True when the component's own class declares ``stackable = True`` (a leading run axis is handled).

    Declared, not inherited: a user's subclass of a built-in model, loss or optimizer may change
    what the stacked methods assume (a loss that normalises over the batch is no longer row-wise),
    so it stacks only once it declares ``stackable = True`` itself.
    """
    return vars(type(component)).get("stackable", False) is True


def stack_key(built) -> tuple | None:
    """A hashable key: runs with equal keys may train in one pass (:func:`train_stack`); None: train alone.

    The key holds what the runs must share: the task and every split's shapes and dtypes (the
    split's content may differ: it depends on the seed), the model's class, ``repr`` (its
    structural hyperparameters) and parameter shapes, the loss's class (its hyperparameters may
    differ: runs are grouped by the loss's ``repr``), the optimizer's ``stack_structure()`` (class,
    batch size, state buffers; its ``stack_hyperparameters`` may differ), the effective batch size
    and the number of epochs. Seeds, learning rates, schedules, grad_clip and divergence_factor
    may differ. None when the model, the loss or the optimizer does not declare ``stackable``, the
    optimizer has no ``stack_structure``, or an array of the data is not C-contiguous.
    """
    model, loss, optimizer = built.model, built.loss, built.optimizer
    if not (stackable(model) and stackable(loss) and stackable(optimizer)):
        return None
    if not all(callable(getattr(model, name, None)) for name in ("forward_stacked", "backward_stacked")):
        return None
    if not callable(getattr(optimizer, "stack_structure", None)):
        return None
    splits = split_arrays(built.data)
    shapes = []
    for split, (X, y) in splits.items():
        if not (isinstance(X, np.ndarray) and isinstance(y, np.ndarray) and X.flags.c_contiguous
                and y.flags.c_contiguous):
            return None
        shapes.append((split, X.shape, X.dtype.str, y.shape, y.dtype.str))
    n_train = splits["train"][0].shape[0]
    batch_size = min(optimizer.batch_size or n_train, n_train)
    params = tuple((name, value.shape, value.dtype.str) for name, value in model.params.items())
    return ("lossbench.stack", KEY_VERSION, built.data.task, tuple(shapes), _qualname(model), repr(model), params,
            _qualname(loss), optimizer.stack_structure(), batch_size, int(built.cfg.trainer.epochs))
