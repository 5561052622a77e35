"""Models: linear, logistic, softmax and a multi-layer perceptron, with hand-written backprop.

Every model maps inputs ``X`` of shape ``(n, n_inputs)`` to raw outputs (logits) of shape
``(n, k)``. The link (sigmoid, softmax) is never applied here: it belongs to the loss, so a
model's ``backward`` starts from whatever ``dlogits`` the loss returns.

Interface (shared by all models)::

    model = Model(**hyperparameters)            # validates its keys, raises ValueError
    k = model.output_size(task, n_targets)      # raises ValueError saying what fits instead
    model.build(n_inputs, k, rng)               # creates model.params: dict[str, ndarray]
    outputs, cache = model.forward(X)           # (n, n_inputs) -> (n, k)
    grads = model.backward(cache, dlogits)      # dict with the keys of model.params

``backward`` returns the gradient of ``sum_i dlogits_i . outputs_i`` with respect to every
parameter; for a mean loss the caller passes ``dlogits / n``. Gradients are returned, never stored
on the model.

All arrays live in the model's ``dtype`` (float64 by default, float32 selectable). ``forward``
casts ``X`` only when its dtype differs, so a trainer that casts the data once pays nothing.

Stacked runs (:mod:`lossbench.stack`): a model class with ``stackable = True`` also computes R
runs at once, each with its own parameters, from parameters with a leading run axis::

    outputs, cache = model.forward_stacked(params, X)         # params[name]: (R, ...); X: (R, n, d)
    grads = model.backward_stacked(params, cache, dlogits)    # (R, n, k) -> grads[name]: (R, ...)

``X`` may also be (1, n, d), shared by every run (broadcast). Run r's results equal
``forward``/``backward`` with ``params[name][r]`` bit for bit: ``np.matmul`` on a stack makes, per
run, the same BLAS call ``np.dot`` makes on one matrix (gemm, or gemv when a side is a vector;
checked with one BLAS thread), and everything else is elementwise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

TASKS = ("classification", "regression")
DTYPES = ("float64", "float32")
ACTIVATIONS = ("relu", "tanh", "sigmoid")


def _check_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float64 or float32, else raise ValueError."""
    if str(dtype) not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return np.dtype(str(dtype))


def _check_task(model_name: str, task: str, n_targets: int) -> None:
    """Raise ValueError unless task is known and n_targets fits it."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if isinstance(n_targets, bool) or not isinstance(n_targets, (int, np.integer)):
        raise ValueError(f"n_targets must be an int, got {n_targets!r}")
    if task == "classification" and n_targets < 2:
        raise ValueError(
            f"model '{model_name}': classification needs n_targets >= 2 classes, got {n_targets}"
        )
    if task == "regression" and n_targets < 1:
        raise ValueError(
            f"model '{model_name}': regression needs n_targets >= 1 target columns, got {n_targets}"
        )


_ONES: dict[np.dtype, np.ndarray] = {}


def _sum_over_samples(dz: np.ndarray) -> np.ndarray:
    """``dz.sum(axis=0)`` for dz (n, m), as one BLAS product ``ones(n) @ dz`` (2x faster)."""
    n = dz.shape[0]
    ones = _ONES.get(dz.dtype)
    if ones is None or ones.shape[0] < n:
        ones = _ONES[dz.dtype] = np.ones(max(n, 256), dtype=dz.dtype)
    return np.dot(ones[:n], dz)


def _sum_over_samples_stacked(dz: np.ndarray) -> np.ndarray:
    """``dz.sum(axis=1)`` for dz (R, n, m) as ``ones(n) @ dz[r]`` per run: the numbers of :func:`_sum_over_samples`."""
    n = dz.shape[1]
    ones = _ONES.get(dz.dtype)
    if ones is None or ones.shape[0] < n:
        ones = _ONES[dz.dtype] = np.ones(max(n, 256), dtype=dz.dtype)
    return np.matmul(ones[:n], dz)


def _weight_gradient_stacked(a: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """``a[r].T @ dz[r]`` for a (R, n, m), dz (R, n, p) -> (R, m, p), each run's what ``np.dot`` gives alone.

    At n = 1 (batch size 1) with m, p > 1 ``np.matmul`` takes its slow no-BLAS loop for the outer
    product; ``np.einsum`` forms the same products (one rounding each, summed into zeros as BLAS
    does, so a -0.0 product becomes +0.0 there too) about 1.3x faster.
    """
    if a.shape[-2] == 1 and a.shape[-1] > 1 and dz.shape[-1] > 1 and a.shape[0] == dz.shape[0]:
        return np.einsum("rni,rnj->rij", a, dz)
    return np.matmul(_transposed(a), dz)


def _transposed(W: np.ndarray) -> np.ndarray:
    """The last two axes swapped: a stack of transposes (a view)."""
    return W.swapaxes(-1, -2)


class _AffineModel:
    """One affine layer ``outputs = X @ W + b``; subclasses only decide the output size.

    Parameters: ``W`` (n_inputs, k) and ``b`` (k,), both zero at build time (the loss of a
    linear model is convex in them, so no symmetry needs breaking and every seed starts alike).
    """

    name = "affine"

    def __init__(self, dtype: str = "float64"):
        self.dtype = _check_dtype(dtype)
        self.params: dict[str, np.ndarray] = {}

    def output_size(self, task: str, n_targets: int) -> int:
        raise NotImplementedError

    def build(self, n_inputs: int, n_outputs: int, rng: np.random.Generator) -> None:
        """Create ``params = {"W": zeros (n_inputs, n_outputs), "b": zeros (n_outputs,)}``.

        ``rng`` is accepted for a uniform interface and not used.
        """
        _check_layer_sizes([n_inputs, n_outputs])
        self.params = {
            "W": np.zeros((n_inputs, n_outputs), dtype=self.dtype),
            "b": np.zeros(n_outputs, dtype=self.dtype),
        }

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``outputs = X @ W + b``; X (n, n_inputs) -> outputs (n, k). The cache is X."""
        if X.dtype != self.dtype:
            X = X.astype(self.dtype)
        outputs = np.dot(X, self.params["W"])
        outputs += self.params["b"]
        return outputs, X

    def backward(self, cache: np.ndarray, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """``dW = X.T @ dlogits`` (n_inputs, k), ``db = sum_i dlogits_i`` (k,)."""
        X = cache
        if dlogits.dtype != self.dtype:
            dlogits = dlogits.astype(self.dtype)
        return {"W": np.dot(X.T, dlogits), "b": _sum_over_samples(dlogits)}

    def forward_stacked(self, params: dict, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``outputs[r] = X[r] @ W[r] + b[r]``: X (R or 1, n, d), W (R, d, k), b (R, k) -> (R, n, k); cache X."""
        if X.dtype != self.dtype:
            X = X.astype(self.dtype)
        outputs = np.matmul(X, params["W"])
        outputs += params["b"][:, None, :]
        return outputs, X

    def backward_stacked(self, params: dict, cache: np.ndarray, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """``dW[r] = X[r].T @ dlogits[r]`` (R, d, k), ``db[r] = sum_i dlogits[r, i]`` (R, k)."""
        X = cache
        if dlogits.dtype != self.dtype:
            dlogits = dlogits.astype(self.dtype)
        return {"W": _weight_gradient_stacked(X, dlogits), "b": _sum_over_samples_stacked(dlogits)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype.name!r})"


class Linear(_AffineModel):
    """Linear regression: ``outputs = X @ W + b``, one output per target column (any k >= 1).

    Regression only. Pair it with l2 (least squares), l1 or huber.
    """

    name = "linear"
    stackable = True  # forward_stacked / backward_stacked (lossbench.stack); declared per class, not inherited

    def output_size(self, task: str, n_targets: int) -> int:
        """k = n_targets for regression; classification raises ValueError."""
        _check_task(self.name, task, n_targets)
        if task == "classification":
            raise ValueError(
                "model 'linear' is for regression, but the data set is a classification task "
                f"({n_targets} classes); use model=logistic (binary), model=softmax or model=mlp"
            )
        return n_targets


class Logistic(_AffineModel):
    """Binary logistic model: one logit ``z = X @ W + b`` per sample, k = 1.

    The probability ``sigmoid(z)`` of class 1 is computed by the loss, not here.
    """

    name = "logistic"
    stackable = True  # forward_stacked / backward_stacked (lossbench.stack); declared per class, not inherited

    def output_size(self, task: str, n_targets: int) -> int:
        """k = 1 for binary classification; more classes or regression raise ValueError."""
        _check_task(self.name, task, n_targets)
        if task == "regression":
            raise ValueError(
                "model 'logistic' is for binary classification, but the data set is a regression "
                "task; use model=linear or model=mlp"
            )
        if n_targets != 2:
            raise ValueError(
                "model 'logistic' is binary (one output) but the data set has "
                f"{n_targets} classes; use model=softmax or model=mlp"
            )
        return 1


class Softmax(_AffineModel):
    """Multinomial logistic (softmax) regression: k = n_classes logits ``Z = X @ W + b``.

    A binary problem gets two logits (an over-parametrised but equivalent logistic model).
    """

    name = "softmax"
    stackable = True  # forward_stacked / backward_stacked (lossbench.stack); declared per class, not inherited

    def output_size(self, task: str, n_targets: int) -> int:
        """k = n_classes for classification; regression raises ValueError."""
        _check_task(self.name, task, n_targets)
        if task == "regression":
            raise ValueError(
                "model 'softmax' is for classification, but the data set is a regression task; "
                "use model=linear or model=mlp"
            )
        return n_targets


def _check_layer_sizes(sizes) -> None:
    """Raise ValueError unless every layer size is an int >= 1."""
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"layer sizes must be ints >= 1, got {list(sizes)}")


def _relu_(z: np.ndarray) -> None:
    """In place: ``z <- max(z, 0)``."""
    np.maximum(z, 0, out=z)


def _relu_backward_(da: np.ndarray, a: np.ndarray) -> None:
    """In place: ``da <- da * 1[a > 0]`` (relu'(z) = 1[z > 0] = 1[a > 0])."""
    np.multiply(da, a > 0, out=da)


def _tanh_(z: np.ndarray) -> None:
    """In place: ``z <- tanh(z)``."""
    np.tanh(z, out=z)


def _tanh_backward_(da: np.ndarray, a: np.ndarray) -> None:
    """In place: ``da <- da * (1 - a**2)`` with a = tanh(z)."""
    derivative = np.square(a)
    np.subtract(1, derivative, out=derivative)
    da *= derivative


def _sigmoid_(z: np.ndarray) -> None:
    """In place: ``z <- 1 / (1 + exp(-z))``, overflow-free (scipy's expit)."""
    expit(z, out=z)


def _sigmoid_backward_(da: np.ndarray, a: np.ndarray) -> None:
    """In place: ``da <- da * a * (1 - a)`` with a = sigmoid(z)."""
    derivative = np.subtract(1, a)
    derivative *= a
    da *= derivative


# activation name -> (in-place forward on z, in-place backward on da given a = activation(z)).
# Both derivatives are written in terms of the activation a, so the cache keeps only a.
_ACTIVATION_FUNCTIONS = {
    "relu": (_relu_, _relu_backward_),
    "tanh": (_tanh_, _tanh_backward_),
    "sigmoid": (_sigmoid_, _sigmoid_backward_),
}


class MLP:
    """Multi-layer perceptron with hand-written backprop.

    With ``L = len(hidden_sizes) + 1`` layers, ``a_0 = X`` (n, n_inputs) and activation ``f``::

        z_l = a_{l-1} @ W_l + b_l,  a_l = f(z_l)      for l = 1 .. L-1   (hidden layers)
        outputs = z_L = a_{L-1} @ W_L + b_L          (raw logits, no link)

    Backward, from ``dz_L = dlogits`` (n, k) down::

        dW_l = a_{l-1}.T @ dz_l        (n_{l-1}, n_l)
        db_l = sum_i dz_l[i]           (n_l,)
        da_{l-1} = dz_l @ W_l.T        (n, n_{l-1})
        dz_{l-1} = da_{l-1} * f'(z_{l-1})

    with ``f'`` written through the activation: relu ``1[a > 0]``, tanh ``1 - a**2``,
    sigmoid ``a (1 - a)``.

    Init (every layer, output layer included): relu -> He normal, ``W ~ N(0, 2 / fan_in)``;
    tanh and sigmoid -> Glorot uniform, ``W ~ U(-r, r)``, ``r = sqrt(6 / (fan_in + fan_out))``
    (variance ``2 / (fan_in + fan_out)``). Biases start at 0. Weights are drawn in float64 and then
    cast, so a float32 model starts from the same (rounded) weights as a float64 one.

    Parameters: ``W1, b1, ..., WL, bL``; ``Wl`` has shape (n_{l-1}, n_l), ``bl`` (n_l,).

    Output size: classification -> 1 logit if binary (pair with a sigmoid loss, e.g. bce) else
    n_classes; regression -> n_targets.
    """

    name = "mlp"
    stackable = True  # forward_stacked / backward_stacked (lossbench.stack); declared per class, not inherited

    def __init__(self, hidden_sizes=(64,), activation: str = "relu", dtype: str = "float64"):
        # Hydra passes a ListConfig; anything iterable (but not a string) is read as a list.
        if not isinstance(hidden_sizes, (str, bytes, dict)) and hasattr(hidden_sizes, "__iter__"):
            hidden_sizes = list(hidden_sizes)
        if not isinstance(hidden_sizes, list) or len(hidden_sizes) == 0 or any(
            isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1
            for size in hidden_sizes
        ):
            raise ValueError(
                "hidden_sizes must be a non-empty list of ints >= 1 (e.g. [64] or [128, 64]), "
                f"got {hidden_sizes!r}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        self.hidden_sizes = [int(size) for size in hidden_sizes]
        self.activation = activation
        self.dtype = _check_dtype(dtype)
        self._activate, self._activate_backward = _ACTIVATION_FUNCTIONS[activation]
        self.params: dict[str, np.ndarray] = {}
        self._layer_keys: list[tuple[str, str]] = []

    def output_size(self, task: str, n_targets: int) -> int:
        """k = 1 for binary classification, n_classes for more, n_targets for regression."""
        _check_task(self.name, task, n_targets)
        if task == "classification" and n_targets == 2:
            return 1
        return n_targets

    def build(self, n_inputs: int, n_outputs: int, rng: np.random.Generator) -> None:
        """Create ``params`` (``W1, b1, ..., WL, bL``) with He or Glorot weights and zero biases."""
        sizes = [n_inputs, *self.hidden_sizes, n_outputs]
        _check_layer_sizes(sizes)
        self._layer_keys = [(f"W{l}", f"b{l}") for l in range(1, len(sizes))]
        self.params = {}
        for (W_key, b_key), fan_in, fan_out in zip(self._layer_keys, sizes[:-1], sizes[1:]):
            if self.activation == "relu":
                weights = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
            else:
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                weights = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            self.params[W_key] = weights.astype(self.dtype)
            self.params[b_key] = np.zeros(fan_out, dtype=self.dtype)

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """X (n, n_inputs) -> outputs (n, k); the cache is ``[a_0 = X, a_1, ..., a_{L-1}]``."""
        if X.dtype != self.dtype:
            X = X.astype(self.dtype)
        params = self.params
        activations = [X]
        a = X
        for W_key, b_key in self._layer_keys[:-1]:
            z = np.dot(a, params[W_key])
            z += params[b_key]
            self._activate(z)  # z now holds a_l = f(z_l); z_l itself is not needed again
            activations.append(z)
            a = z
        W_key, b_key = self._layer_keys[-1]
        outputs = np.dot(a, params[W_key])
        outputs += params[b_key]
        return outputs, activations

    def backward(self, cache: list[np.ndarray], dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of ``sum_i dlogits_i . outputs_i``: ``{"W1": dW1, "b1": db1, ...}``."""
        activations = cache
        if dlogits.dtype != self.dtype:
            dlogits = dlogits.astype(self.dtype)
        params = self.params
        grads = dict.fromkeys(params)  # same key order as params, filled from the last layer down
        dz = dlogits
        for layer in range(len(self._layer_keys) - 1, -1, -1):
            W_key, b_key = self._layer_keys[layer]
            a_prev = activations[layer]
            grads[W_key] = np.dot(a_prev.T, dz)  # dW_l = a_{l-1}.T @ dz_l
            grads[b_key] = _sum_over_samples(dz)  # db_l = sum over samples of dz_l
            if layer > 0:  # no gradient w.r.t. the inputs X
                da = np.dot(dz, params[W_key].T)  # da_{l-1} = dz_l @ W_l.T (a fresh array)
                self._activate_backward(da, a_prev)  # dz_{l-1} = da_{l-1} * f'(z_{l-1})
                dz = da
        return grads

    def forward_stacked(self, params: dict, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`forward` of R runs: X (R or 1, n, d), params[name] (R, ...) -> outputs (R, n, k), cache."""
        if X.dtype != self.dtype:
            X = X.astype(self.dtype)
        activations = [X]
        a = X
        for W_key, b_key in self._layer_keys[:-1]:
            z = np.matmul(a, params[W_key])
            z += params[b_key][:, None, :]
            self._activate(z)
            activations.append(z)
            a = z
        W_key, b_key = self._layer_keys[-1]
        outputs = np.matmul(a, params[W_key])
        outputs += params[b_key][:, None, :]
        return outputs, activations

    def backward_stacked(self, params: dict, cache: list[np.ndarray], dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`backward` of R runs: dlogits (R, n, k) -> grads[name] (R, ...), run r's equal to backward's."""
        activations = cache
        if dlogits.dtype != self.dtype:
            dlogits = dlogits.astype(self.dtype)
        grads = dict.fromkeys(params)
        dz = dlogits
        for layer in range(len(self._layer_keys) - 1, -1, -1):
            W_key, b_key = self._layer_keys[layer]
            a_prev = activations[layer]
            grads[W_key] = _weight_gradient_stacked(a_prev, dz)
            grads[b_key] = _sum_over_samples_stacked(dz)
            if layer > 0:
                da = np.matmul(dz, _transposed(params[W_key]))
                self._activate_backward(da, a_prev)
                dz = da
        return grads

    def __repr__(self) -> str:
        return (
            f"MLP(hidden_sizes={self.hidden_sizes}, activation={self.activation!r}, "
            f"dtype={self.dtype.name!r})"
        )
