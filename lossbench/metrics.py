"""Loss-independent metrics, computed from raw model outputs on a whole split.

Every function takes the model's raw ``outputs`` (n, k) and turns them into probabilities itself,
the same way for every loss: sigmoid for k = 1 (the probability of class 1), softmax for k >= 2.
So a run trained with L2, hinge or cross-entropy is scored on the same scale.

Non-finite outputs (a diverged model) give NaN for every metric rather than a warning or a
misleading number. Everything is vectorised: these run every epoch on whole splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ECE_BINS = 15  # equal-width confidence bins for ECE (Guo et al. 2017 use 15)


def _as_outputs(outputs) -> np.ndarray:
    """outputs as a float64 (n, k) array."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if outputs.ndim != 2 or outputs.shape[1] < 1:
        raise ValueError(f"outputs of shape {outputs.shape}: expected (n, k) with k >= 1")
    return outputs


def _as_labels(labels, outputs: np.ndarray) -> np.ndarray:
    """labels as int64 (n,), checked against outputs (n, k)."""
    labels = np.asarray(labels)
    n, k = outputs.shape
    n_classes = max(k, 2)
    if labels.shape != (n,):
        raise ValueError(f"labels of shape {labels.shape}: expected ({n},) to match outputs")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels of dtype {labels.dtype}: expected integer class labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels in [{labels.min()}, {labels.max()}]: expected labels in [0, {n_classes}) "
            f"for outputs with k = {k}"
        )
    return labels.astype(np.int64, copy=False)


def log_probabilities(outputs) -> np.ndarray:
    """Log class probabilities (n, C), C = max(k, 2), computed without overflow.

    k = 1:  log p1 = -log(1 + e^-z) = -logaddexp(0, -z),  log p0 = -logaddexp(0, z).
    k >= 2: log p = z - logsumexp(z) with the row maximum subtracted first.
    """
    outputs = _as_outputs(outputs)
    if outputs.shape[1] == 1:
        z = outputs[:, 0]
        return np.column_stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def probabilities(outputs) -> np.ndarray:
    """Class probabilities (n, C) from raw outputs (n, k), C = max(k, 2); rows sum to 1.

    k = 1:  columns [1 - sigmoid(z), sigmoid(z)] (sigmoid(z) = 1 / (1 + e^-z)).
    k >= 2: softmax(z)_c = e^(z_c - max z) / sum_j e^(z_j - max z).
    """
    outputs = _as_outputs(outputs)
    if outputs.shape[1] == 1:
        return np.exp(log_probabilities(outputs))  # exp(-logaddexp) never overflows
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _bin_statistics(confidence: np.ndarray, correct: np.ndarray, n_bins: int):
    """Per bin (lower, upper] of [0, 1]: sample count, summed confidence, summed correctness."""
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    return count, confidence_sum, correct_sum


def classification_metrics(outputs, labels) -> dict[str, float]:
    """Accuracy, log loss, Brier score and ECE of raw outputs (n, k) against labels (n,).

    With p = probabilities(outputs) (n, C), C = max(k, 2), and y the labels:
      accuracy = mean_i [argmax_c p_ic == y_i]                      (k = 1: z > 0 predicts 1)
      log_loss = -mean_i log p_{i,y_i}, log p from log_probabilities (stable for any finite z)
      brier    = C == 2: mean_i (p_i1 - y_i)^2, identical for one sigmoid output or two softmax
                 outputs (sklearn's binary brier_score_loss);
                 C > 2:  mean_i sum_c (p_ic - [y_i == c])^2 (sklearn's multi-class form, in [0, 2])
      ece      = sum_b (n_b / n) |accuracy_b - confidence_b| over ECE_BINS = 15 equal-width bins
                 (lower, upper] of the top-label confidence max_c p_ic; accuracy_b and
                 confidence_b are the bin's mean correctness and mean confidence.
    Returns NaN for every metric if any output is non-finite.
    """
    outputs = _as_outputs(outputs)
    labels = _as_labels(labels, outputs)
    names = ("accuracy", "log_loss", "brier", "ece")
    if not np.all(np.isfinite(outputs)):
        return dict.fromkeys(names, float("nan"))
    n = len(labels)
    rows = np.arange(n)
    log_p = log_probabilities(outputs)
    p = np.exp(log_p)
    predicted = p.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    if p.shape[1] == 2:
        brier = np.mean((p[:, 1] - labels) ** 2)
    else:
        squared_error = np.square(p)
        squared_error[rows, labels] += 1.0 - 2.0 * p[rows, labels]  # (p - 1)^2 = p^2 - 2p + 1
        brier = np.mean(squared_error.sum(axis=1))
    count, confidence_sum, correct_sum = _bin_statistics(p[rows, predicted], correct, ECE_BINS)
    ece = np.abs(correct_sum - confidence_sum).sum() / n  # sum_b n_b/n |acc_b - conf_b|
    return {
        "accuracy": float(correct.mean()),
        "log_loss": float(-np.mean(log_p[rows, labels])),
        "brier": float(brier),
        "ece": float(ece),
    }


def regression_metrics(outputs, targets) -> dict[str, float]:
    """MSE, MAE and R² of outputs (n, k) against targets (n, k) (or (n,) when k = 1).

      mse = mean over all n*k elements of (output - target)^2
      mae = mean over all n*k elements of |output - target|
      r2  = mean_j [1 - sum_i (o_ij - t_ij)^2 / sum_i (t_ij - mean_i t_ij)^2]
            (sklearn's r2_score, multioutput="uniform_average"; a constant target column scores
            1 if predicted exactly, else 0)
    Returns NaN for every metric if any output is non-finite.
    """
    outputs = _as_outputs(outputs)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.shape != outputs.shape:
        raise ValueError(f"targets of shape {targets.shape}: expected {outputs.shape} like outputs")
    if not np.all(np.isfinite(outputs)):
        return dict.fromkeys(("mse", "mae", "r2"), float("nan"))
    with np.errstate(over="ignore"):  # huge finite outputs: mse = inf is the honest answer
        error = outputs - targets
        squared_error = np.square(error)
        residual_sum = squared_error.sum(axis=0)
    total_sum = np.square(targets - targets.mean(axis=0)).sum(axis=0)
    constant = total_sum == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_per_output = np.where(
            constant, np.where(residual_sum == 0, 1.0, 0.0), 1.0 - residual_sum / total_sum
        )
    return {
        "mse": float(squared_error.mean()),
        "mae": float(np.abs(error).mean()),
        "r2": float(r2_per_output.mean()),
    }


def calibration_table(outputs, labels, n_bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram data: one row per equal-width bin (lower, upper] of top-label confidence.

    Columns: bin (0..n_bins-1), lower, upper, count, confidence (mean max_c p_ic in the bin),
    accuracy (fraction of the bin's samples predicted correctly). Empty bins have count 0 and NaN
    means. Samples with non-finite outputs are left out.
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}: expected an integer >= 1")
    outputs = _as_outputs(outputs)
    labels = _as_labels(labels, outputs)
    finite = np.all(np.isfinite(outputs), axis=1)
    p = probabilities(outputs[finite])
    predicted = p.argmax(axis=1)
    confidence = p[np.arange(len(p)), predicted]
    correct = (predicted == labels[finite]).astype(np.float64)
    count, confidence_sum, correct_sum = _bin_statistics(confidence, correct, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: 0/0 -> NaN on purpose
        mean_confidence = confidence_sum / count
        accuracy = correct_sum / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count,
            "confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )
