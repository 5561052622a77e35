"""Optimizers: SGD (plain, momentum, Nesterov), RMSprop, Adam, AdamW and Adagrad.

Interface (shared by all optimizers)::

    opt = Optimizer(lr=..., weight_decay=..., batch_size=..., **rule_specific)
    opt.step(params, grads)    # dicts name -> ndarray; params are updated IN PLACE
    opt.lr                     # public; the trainer rewrites it for learning-rate schedules
    opt.batch_size             # None = full batch; read by the trainer, unused here
    opt.state_dict()           # the state as arrays only; opt.load_state_dict(state) restores it

Each update rule equals the documented algorithm of the ``torch.optim`` class of the same name,
step for step (same defaults where a key is omitted). ``weight_decay`` is coupled L2,
``g <- g + weight_decay * p``, except in AdamW where it is decoupled.

State is explicit and per parameter: ``opt.state[name]`` maps the torch buffer names
(``momentum_buffer``, ``square_avg``, ``exp_avg``, ``exp_avg_sq``, ``sum``, ...) to arrays shaped
like ``params[name]``, created on the first step in the parameters' dtype (a float32 model stays
float32); ``opt.step_count`` is the number of steps taken (torch's ``step``, shared by all
parameters since they always step together).

Stacked runs (:mod:`lossbench.stack`): every built-in optimizer has ``stackable = True``;
:class:`lossbench.stack.optimizer.StackedOptimizer` steps R optimizers of one class and structure
(:meth:`_Optimizer.stack_structure`) on parameters with a leading run axis, each run with its own
scalar hyperparameters (an (R, 1) array in place of a float the runs do not share: ``lr``,
betas, ...) and its own state (flat buffers (R, P)). The rules below are written so that the
same code serves both: elementwise NumPy operations give each run the numbers it gets alone, and
the few scalar formulas (Adam's bias corrections) are evaluated per run in Python float
arithmetic (:func:`_per_run`), as alone.

Speed: at batch size 1 a step of a small model costs per NumPy call, not per element. So each
state buffer of all parameters is ONE flat array and ``opt.state[name][...]`` are views into it;
a step copies the gradients into one flat array, applies the rule in a dozen in-place operations
on flat arrays (``np.multiply(..., out=...)``, no temporaries), then subtracts the result from
each parameter.
"""

from __future__ import annotations

import math

import numpy as np


#: Upper ends of the documented ranges (conf/optimizer/*.yaml): a step of lr = 1e3 on standardised
#: data already diverges at once; larger values only overflow. eps, a guard against division by
#: 0, in (0, 1); accumulators and decays likewise bounded so that no value is absurd.
MAX_LR = 1e3
MAX_WEIGHT_DECAY = 100.0
MAX_LR_DECAY = 1e3
MAX_INITIAL_ACCUMULATOR = 1e6


def _check_number(key: str, value, low: float, high: float, *, low_open: bool, high_open: bool):
    """Return ``float(value)`` if it is a finite number in the interval, else raise ValueError."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.integer, np.floating))
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{key} must be a finite number in {left}{low:g}, {high:g}{right}, got {value!r}")
    return float(value)


def _per_run(function, *values):
    """``function(*values)`` of Python floats; for (R, 1) arrays (a stack), one Python call per run.

    Scalar formulas stay in Python float arithmetic in a stack too, so each run gets the number
    it computes alone (NumPy's power of an array need not round as Python's ``**`` does).
    """
    if not isinstance(values[0], np.ndarray):
        return function(*values)
    columns = [np.broadcast_to(value, values[0].shape).ravel().tolist() for value in values]
    return np.array([function(*row) for row in zip(*columns)], dtype=np.float64).reshape(values[0].shape)


def _as(value, array: np.ndarray):
    """A hyperparameter (expression) as an operand of ``array``: a Python float as it is; a stack's
    (R, 1) float64 column cast to the array's dtype, which is what NumPy does to a Python float
    meeting a float32 array (so a float32 stack rounds as each float32 run does alone)."""
    return value.astype(array.dtype, copy=False) if isinstance(value, np.ndarray) else value


def _check_batch_size(batch_size):
    """Return batch_size if it is None (full batch) or an int >= 1, else raise ValueError."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"batch_size must be null (full batch) or an int >= 1, got {batch_size!r}"
        )
    return int(batch_size)


class _Optimizer:
    """Shared validation, flat per-parameter state and the step: gather, rule, scatter.

    A subclass names its state buffers in ``state_names`` and defines ``_direction(g, out)``:
    given the flat gradient ``g`` (weight decay included when coupled) it writes into ``out``
    the flat amount to subtract from the parameters, ``p <- p - out``. ``g`` and ``out`` are
    distinct scratch arrays; ``g`` may be overwritten.
    """

    #: names (torch's) of the state buffers, each shaped like the parameters
    state_names: tuple[str, ...] = ()
    #: True for AdamW: p <- p * (1 - lr * weight_decay) instead of adding weight_decay * p to g
    decoupled_weight_decay = False
    #: the scalar hyperparameters a stack may vary per run (each becomes an (R, 1) array)
    stack_hyperparameters: tuple[str, ...] = ("lr", "weight_decay")
    #: True when ``_direction`` only multiplies arrays by ``lr`` itself (no formula of it): a stack
    #: then passes the runs' rates as a full (R, P) array, a faster NumPy loop than an (R, 1) broadcast
    stack_lr_as_array = False

    def __init__(self, lr, weight_decay, batch_size):
        self.lr = _check_number("lr", lr, 0.0, MAX_LR, low_open=True, high_open=False)
        self.weight_decay = _check_number(
            "weight_decay", weight_decay, 0.0, MAX_WEIGHT_DECAY, low_open=False, high_open=False
        )
        self.batch_size = _check_batch_size(batch_size)
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._flat_state: dict[str, np.ndarray] = {}
        self._names: list[str] | None = None

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every array in ``params`` in place from ``grads`` (same keys and shapes)."""
        if self._names is None:
            self._create_state(params)
        elif len(params) != len(self._names) or any(name not in params for name in self._names):
            raise ValueError(
                f"params must keep the keys of the first step {self._names}, got {list(params)}"
            )
        g, out = self._flat_grad, self._flat_out
        coupled_decay = self.weight_decay != 0.0 and not self.decoupled_weight_decay
        for name, grad_view, out_view in self._views:
            np.copyto(grad_view, grads[name])
            if coupled_decay:
                np.multiply(params[name], self.weight_decay, out=out_view)
        if coupled_decay:
            g += out  # g = grad + weight_decay * p
        self.step_count += 1
        self._direction(g, out)
        shrink = 1.0 - self.lr * self.weight_decay  # decoupled decay (AdamW)
        for name, _, out_view in self._views:
            param = params[name]
            if self.decoupled_weight_decay and shrink != 1.0:
                param *= shrink
            param -= out_view

    def stack_structure(self) -> tuple:
        """What optimizers must share to step in one stack: class, batch size, state buffers, code paths.

        Everything else (``stack_hyperparameters``) may differ per run. Weight decay on/off is
        structural: a coupled ``g + 0 * p`` would turn a -0.0 gradient into +0.0.
        """
        return (f"{type(self).__module__}.{type(self).__qualname__}", self.batch_size, tuple(self.state_names),
                self.weight_decay != 0.0, bool(getattr(self, "nesterov", False)),
                bool(getattr(self, "centered", False)))

    def _create_state(self, params: dict[str, np.ndarray]) -> None:
        """Allocate the flat buffers (state: zeros, or ``_initial_state_value``) and their views."""
        dtypes = {param.dtype for param in params.values()}
        if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
            raise ValueError(f"params must share one floating dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        self._names = list(params)
        self._shapes = [params[name].shape for name in self._names]
        total = sum(math.prod(shape) for shape in self._shapes)
        self._flat_grad = np.empty(total, dtype=dtype)
        self._flat_out = np.empty(total, dtype=dtype)
        for buffer_name in self.state_names:
            initial = self._initial_state_value(buffer_name)
            self._flat_state[buffer_name] = np.full(total, initial, dtype=dtype)
        self._make_views()

    def _make_views(self) -> None:
        """Per-parameter views into the flat buffers: ``self.state`` and the scratch views."""
        bounds = np.cumsum([0, *(math.prod(shape) for shape in self._shapes)])

        def views(flat):
            return [flat[start:stop].reshape(shape)
                    for start, stop, shape in zip(bounds[:-1], bounds[1:], self._shapes)]

        self._views = list(zip(self._names, views(self._flat_grad), views(self._flat_out)))
        self.state = {name: {} for name in self._names}
        for buffer_name, flat in self._flat_state.items():
            for name, view in zip(self._names, views(flat)):
                self.state[name][buffer_name] = view

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state as arrays only (``numpy.savez`` / ``load(allow_pickle=False)`` safe).

        Keys: ``step_count`` (0-d int64); after the first step also ``param_names`` (unicode (P,)),
        ``dtype`` (0-d unicode), ``shape/<param>`` (int64 (ndim,)) and ``buffer/<state name>``
        (the flat buffer over all parameters, e.g. ``buffer/exp_avg``). Hyperparameters and
        ``lr`` are not state: they come from the config (the trainer sets ``lr`` every epoch).
        The arrays are copies.
        """
        state = {"step_count": np.array(self.step_count, dtype=np.int64)}
        if self._names is not None:
            state["param_names"] = np.array(self._names, dtype=str)
            state["dtype"] = np.array(self._flat_grad.dtype.name)
            for name, shape in zip(self._names, self._shapes):
                state[f"shape/{name}"] = np.array(shape, dtype=np.int64)
            for buffer_name, flat in self._flat_state.items():
                state[f"buffer/{buffer_name}"] = flat.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the state of :meth:`state_dict` (copies the arrays); ValueError if it does not fit.

        The next ``step`` continues exactly where the saved optimizer would have: same step count,
        same buffers, bit for bit.
        """
        try:
            step_count = int(state["step_count"])
            if "param_names" not in state:
                names, shapes, flat_state, dtype = None, [], {}, None
            else:
                names = [str(name) for name in state["param_names"]]
                shapes = [tuple(int(d) for d in state[f"shape/{name}"]) for name in names]
                dtype = np.dtype(str(state["dtype"]))
                flat_state = {key[len("buffer/"):]: np.array(value) for key, value in state.items()
                              if key.startswith("buffer/")}
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a {type(self).__name__} state: {err}") from None
        if step_count < 0 or (names is None) != (step_count == 0):
            raise ValueError(f"{type(self).__name__} state: step_count={step_count} does not fit the buffers")
        if names is not None:
            total = sum(math.prod(shape) for shape in shapes)
            if set(flat_state) != set(self.state_names) or any(
                    flat.shape != (total,) or flat.dtype != dtype for flat in flat_state.values()):
                raise ValueError(f"{type(self).__name__} state: buffers {sorted(flat_state)} do not fit "
                                 f"{list(self.state_names)} of {total} {dtype} values")
        self.step_count = step_count
        self._names = names
        self._flat_state = flat_state
        self.state = {}
        if names is not None:
            self._shapes = shapes
            self._flat_grad = np.empty(total, dtype=dtype)
            self._flat_out = np.empty(total, dtype=dtype)
            self._make_views()

    def __getstate__(self):
        # copy/pickle the flat buffers only: a copied view would no longer alias its buffer
        return {key: value for key, value in vars(self).items() if key not in ("_views", "state")}

    def __setstate__(self, state):
        vars(self).update(state)
        self.state = {}
        if self._names is not None:
            self._make_views()

    def _initial_state_value(self, buffer_name: str) -> float:
        """Starting value of a state buffer (0; Adagrad's sum: initial_accumulator_value)."""
        return 0.0

    def _direction(self, g: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{key}={value!r}"
            for key, value in vars(self).items()
            if not key.startswith("_") and key not in ("state", "step_count")
        )
        return f"{type(self).__name__}({fields})"


class SGD(_Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    With ``g_t = grad_t + weight_decay * p`` and momentum ``mu`` (dampening 0)::

        mu == 0:   p <- p - lr * g_t
        mu > 0:    buf_1 = g_1,  buf_t = mu * buf_{t-1} + g_t
                   p <- p - lr * buf_t                  (heavy ball)
                   p <- p - lr * (g_t + mu * buf_t)     (nesterov=True)

    State: ``momentum_buffer`` (only when mu > 0). ``batch_size``: None (full-batch gradient
    descent) or samples per step, read by the trainer.
    """

    stackable = True  # StackedOptimizer: bit-identical to each alone (lossbench.stack); declared per class

    def __init__(
        self,
        lr: float = 0.001,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
    ):
        super().__init__(lr, weight_decay, batch_size)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0, low_open=False, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be true or false, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError(f"nesterov=true needs momentum > 0, got momentum={momentum!r}")
        self.nesterov = bool(nesterov)
        self.state_names = ("momentum_buffer",) if self.momentum > 0.0 else ()

    stack_hyperparameters = ("lr", "weight_decay", "momentum")
    stack_lr_as_array = True

    def _direction(self, g, out):
        if not self.state_names:  # momentum 0 (structural, so that a stack of runs takes one path)
            np.multiply(g, _as(self.lr, g), out=out)  # lr * g
            return
        buf = self._flat_state["momentum_buffer"]
        if self.step_count == 1:
            np.copyto(buf, g)  # buf_1 = g_1
        else:
            buf *= _as(self.momentum, g)  # buf_t = mu * buf_{t-1} + g_t
            buf += g
        if self.nesterov:
            np.multiply(buf, _as(self.momentum, g), out=out)  # lr * (g_t + mu * buf_t)
            out += g
            out *= _as(self.lr, g)
        else:
            np.multiply(buf, _as(self.lr, g), out=out)  # lr * buf_t


class RMSprop(_Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    With ``g = grad + weight_decay * p``, ``v`` (square_avg) and ``gbar`` (grad_avg) starting at 0::

        v <- alpha * v + (1 - alpha) * g**2
        centered=False:  denom = sqrt(v) + eps
        centered=True:   gbar <- alpha * gbar + (1 - alpha) * g;  denom = sqrt(v - gbar**2) + eps
        momentum == 0:   p <- p - lr * g / denom
        momentum > 0:    buf <- momentum * buf + g / denom;  p <- p - lr * buf   (buf starts at 0)
    """

    stackable = True  # StackedOptimizer: bit-identical to each alone (lossbench.stack); declared per class

    def __init__(
        self,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
    ):
        super().__init__(lr, weight_decay, batch_size)
        self.alpha = _check_number("alpha", alpha, 0.0, 1.0, low_open=False, high_open=True)
        self.eps = _check_number("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0, low_open=False, high_open=True)
        if not isinstance(centered, (bool, np.bool_)):
            raise ValueError(f"centered must be true or false, got {centered!r}")
        self.centered = bool(centered)
        self.state_names = ("square_avg",)
        if self.momentum > 0.0:
            self.state_names += ("momentum_buffer",)
        if self.centered:
            self.state_names += ("grad_avg",)

    stack_hyperparameters = ("lr", "weight_decay", "alpha", "eps", "momentum")
    stack_lr_as_array = True

    def _direction(self, g, out):
        square_avg = self._flat_state["square_avg"]
        square_avg *= _as(self.alpha, g)  # v = alpha * v + (1 - alpha) * g**2
        np.square(g, out=out)
        out *= _as(1.0 - self.alpha, g)
        square_avg += out
        if self.centered:
            grad_avg = self._flat_state["grad_avg"]
            grad_avg *= _as(self.alpha, g)  # gbar = alpha * gbar + (1 - alpha) * g
            np.multiply(g, _as(1.0 - self.alpha, g), out=out)
            grad_avg += out
            np.square(grad_avg, out=out)  # denom = sqrt(v - gbar**2) + eps
            np.subtract(square_avg, out, out=out)
            # v >= gbar**2 in exact arithmetic; clip the rounding that could make it -1e-20
            # (torch would return nan there)
            np.maximum(out, 0.0, out=out)
            np.sqrt(out, out=out)
        else:
            np.sqrt(square_avg, out=out)  # denom = sqrt(v) + eps
        out += _as(self.eps, g)
        np.divide(g, out, out=out)  # g / denom
        if "momentum_buffer" in self.state_names:  # momentum > 0
            buf = self._flat_state["momentum_buffer"]
            buf *= _as(self.momentum, g)  # buf = momentum * buf + g / denom
            buf += out
            np.multiply(buf, _as(self.lr, g), out=out)  # lr * buf
        else:
            out *= _as(self.lr, g)  # lr * g / denom


class Adam(_Optimizer):
    """Adam, as ``torch.optim.Adam`` (amsgrad off); ``weight_decay`` is coupled L2.

    With ``g = grad + weight_decay * p``, ``m`` (exp_avg), ``v`` (exp_avg_sq) starting at 0 and
    step ``t = 1, 2, ...``::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        p <- p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    stackable = True  # StackedOptimizer: bit-identical to each alone (lossbench.stack); declared per class

    state_names = ("exp_avg", "exp_avg_sq")
    stack_hyperparameters = ("lr", "weight_decay", "beta1", "beta2", "eps")

    def __init__(
        self,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
    ):
        super().__init__(lr, weight_decay, batch_size)
        self.beta1 = _check_number("beta1", beta1, 0.0, 1.0, low_open=False, high_open=True)
        self.beta2 = _check_number("beta2", beta2, 0.0, 1.0, low_open=False, high_open=True)
        self.eps = _check_number("eps", eps, 0.0, 1.0, low_open=True, high_open=True)

    def _direction(self, g, out):
        exp_avg, exp_avg_sq = self._flat_state["exp_avg"], self._flat_state["exp_avg_sq"]
        t = self.step_count
        exp_avg *= _as(self.beta1, g)  # m = beta1 * m + (1 - beta1) * g
        np.multiply(g, _as(1.0 - self.beta1, g), out=out)
        exp_avg += out
        exp_avg_sq *= _as(self.beta2, g)  # v = beta2 * v + (1 - beta2) * g**2
        np.square(g, out=out)
        out *= _as(1.0 - self.beta2, g)
        exp_avg_sq += out
        bias_correction1 = _per_run(lambda beta1: 1.0 - beta1**t, self.beta1)
        bias_correction2_sqrt = _per_run(lambda beta2: math.sqrt(1.0 - beta2**t), self.beta2)
        # (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
        #   = (lr * sqrt(bc2) / bc1) * m / (sqrt(v) + eps * sqrt(bc2)):  one array operation fewer
        np.sqrt(exp_avg_sq, out=out)
        out += _as(self.eps * bias_correction2_sqrt, g)
        np.divide(exp_avg, out, out=out)
        out *= _as(self.lr * bias_correction2_sqrt / bias_correction1, g)


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    First ``p <- p * (1 - lr * weight_decay)``, then the step of ``Adam`` computed from the raw
    gradient (no L2 term in g). Default ``weight_decay`` 0.01, as torch.
    """

    stackable = True  # StackedOptimizer: bit-identical to each alone (lossbench.stack); declared per class

    decoupled_weight_decay = True

    def __init__(
        self,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        batch_size: int | None = None,
    ):
        super().__init__(lr, beta1, beta2, eps, weight_decay, batch_size)


class Adagrad(_Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``.

    With ``g = grad + weight_decay * p``, ``s`` (sum) starting at ``initial_accumulator_value``
    and step ``t = 1, 2, ...``::

        lr_t = lr / (1 + (t - 1) * lr_decay)
        s <- s + g**2
        p <- p - lr_t * g / (sqrt(s) + eps)
    """

    stackable = True  # StackedOptimizer: bit-identical to each alone (lossbench.stack); declared per class

    state_names = ("sum",)
    stack_hyperparameters = ("lr", "weight_decay", "lr_decay", "eps", "initial_accumulator_value")

    def __init__(
        self,
        lr: float = 0.01,
        lr_decay: float = 0.0,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
    ):
        super().__init__(lr, weight_decay, batch_size)
        self.lr_decay = _check_number(
            "lr_decay", lr_decay, 0.0, MAX_LR_DECAY, low_open=False, high_open=False
        )
        self.eps = _check_number("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
        self.initial_accumulator_value = _check_number(
            "initial_accumulator_value", initial_accumulator_value, 0.0, MAX_INITIAL_ACCUMULATOR,
            low_open=False, high_open=False,
        )

    def _initial_state_value(self, buffer_name):
        return self.initial_accumulator_value

    def _direction(self, g, out):
        lr_t = self.lr / (1.0 + (self.step_count - 1) * self.lr_decay)
        accumulated = self._flat_state["sum"]
        np.square(g, out=out)  # s = s + g**2
        accumulated += out
        np.sqrt(accumulated, out=out)  # lr_t * g / (sqrt(s) + eps)
        out += _as(self.eps, g)
        np.divide(g, out, out=out)
        out *= _as(lr_t, g)

