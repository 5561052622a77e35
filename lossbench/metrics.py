"""Metrics of raw model outputs on a whole split, for classification and regression.

Classification metrics take the raw ``outputs`` (n, k) and, separately, the class
``probabilities`` (n, C), C = max(k, 2), that the run's loss gives them through its own link
(``loss.probabilities(outputs)``: sigmoid, softmax, normalised sigmoids for BCE with k >= 2).
Accuracy depends on the outputs alone; log loss, Brier score and ECE on the probabilities, and
they are NaN ("not applicable") for a loss without a probabilistic link (hinge, l2_logits): a
softmax of margins would score something the loss never trained.

One ECE everywhere: ``ECE_BINS`` = 15 equal-width bins (lower, upper] of the top-label confidence
``max_c p_ic`` (Guo et al. 2017), here and in :func:`calibration_table` (calibration.csv).

Non-finite outputs (a diverged model) give NaN for every metric rather than a warning or a
misleading number. Everything is vectorised: these run every epoch on whole splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ECE_BINS = 15  # equal-width confidence bins for ECE (Guo et al. 2017 use 15)
VANISHING_FRACTION = 0.01  # a gradient below this fraction of the split's largest one "vanishes"
#: a probability that underflows to 0 counts as the smallest positive float64 in the log loss
#: (per-sample log loss at most 744.4), so a confidently wrong sample gives a finite number
_SMALLEST_PROBABILITY = float(np.finfo(np.float64).smallest_subnormal)


def _as_outputs(outputs) -> np.ndarray:
    """outputs as a float64 (n, k) array."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if outputs.ndim != 2 or outputs.shape[1] < 1:
        raise ValueError(f"outputs of shape {outputs.shape}: expected (n, k) with k >= 1")
    return outputs


def _as_labels(labels, n: int, n_classes: int) -> np.ndarray:
    """labels as int64 (n,) in [0, n_classes)."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels of shape {labels.shape}: expected ({n},) to match outputs")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels of dtype {labels.dtype}: expected integer class labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels in [{labels.min()}, {labels.max()}]: expected labels in [0, {n_classes}) "
                         f"for {n_classes} classes")
    return labels.astype(np.int64, copy=False)


def _as_probabilities(probabilities, n: int, n_classes: int) -> np.ndarray:
    """probabilities as float64 (n, n_classes)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (n, n_classes):
        raise ValueError(f"probabilities of shape {probabilities.shape}: expected ({n}, {n_classes}), "
                         "one column per class (two for one sigmoid output)")
    return probabilities


def predicted_classes(outputs) -> np.ndarray:
    """The predicted class of raw outputs (n, k): ``z > 0`` for k = 1, else ``argmax_c z_c`` (int64 (n,))."""
    outputs = _as_outputs(outputs)
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0).astype(np.int64)
    return outputs.argmax(axis=1)


def _bin_statistics(confidence: np.ndarray, correct: np.ndarray, n_bins: int):
    """Per bin (lower, upper] of [0, 1]: sample count, summed confidence, summed correctness."""
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    return count, confidence_sum, correct_sum


def _top_label(p: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence ``max_c p_ic`` and correctness ``[predicted_i == y_i]`` (float), each (n,).

    ``predicted`` defaults to ``argmax_c p_ic``; the outputs' prediction is the same class except
    where rounding ties two saturated probabilities (BCE's normalised sigmoids of logits > 37), and
    passing it makes such ties break as accuracy does.
    """
    if predicted is None:
        predicted = p.argmax(axis=1)
    return p.max(axis=1), (predicted == labels).astype(np.float64)


def classification_metrics(outputs, labels, probabilities=None) -> dict[str, float]:
    """Accuracy of raw outputs (n, k), and log loss, Brier score and ECE of class probabilities (n, C).

    With y the labels (n,), C = max(k, 2) and p = ``probabilities`` (the loss's link, rows
    summing to 1):
      accuracy = mean_i [predicted_classes(outputs)_i == y_i]   (k = 1: z > 0 predicts class 1)
      log_loss = -mean_i log max(p_{i,y_i}, 4.9e-324)           (a probability that underflowed
                 to 0 counts as the smallest float64, so the value stays finite)
      brier    = C == 2: mean_i (p_i1 - y_i)^2 (sklearn's binary brier_score_loss);
                 C > 2:  mean_i sum_c (p_ic - [y_i == c])^2 (sklearn's multi-class form, in [0, 2])
      ece      = sum_b (n_b / n) |accuracy_b - confidence_b| over ECE_BINS = 15 equal-width bins
                 (lower, upper] of the top-label confidence max_c p_ic; accuracy_b is the bin's
                 mean correctness of the prediction (the top label), confidence_b its mean confidence.
    ``probabilities=None`` (a loss without a probabilistic link): log_loss, brier and ece are NaN.
    Every metric is NaN if any output is non-finite.
    """
    outputs = _as_outputs(outputs)
    n, k = outputs.shape
    n_classes = max(k, 2)
    labels = _as_labels(labels, n, n_classes)
    nan = float("nan")
    if not np.all(np.isfinite(outputs)):
        return dict.fromkeys(("accuracy", "log_loss", "brier", "ece"), nan)
    result = {"accuracy": float(np.mean(predicted_classes(outputs) == labels)) if n else nan,
              "log_loss": nan, "brier": nan, "ece": nan}
    if probabilities is None or n == 0:
        return result
    p = _as_probabilities(probabilities, n, n_classes)
    if not np.all(np.isfinite(p)):
        return result
    rows = np.arange(n)
    p_label = p[rows, labels]
    if n_classes == 2:
        brier = np.mean((p[:, 1] - labels) ** 2)
    else:
        squared_error = np.square(p)
        squared_error[rows, labels] += 1.0 - 2.0 * p_label  # (p - 1)^2 = p^2 - 2p + 1
        brier = np.mean(squared_error.sum(axis=1))
    confidence, correct = _top_label(p, labels, predicted_classes(outputs))
    _, confidence_sum, correct_sum = _bin_statistics(confidence, correct, ECE_BINS)
    result["log_loss"] = float(-np.mean(np.log(np.maximum(p_label, _SMALLEST_PROBABILITY))))
    result["brier"] = float(brier)
    result["ece"] = float(np.abs(correct_sum - confidence_sum).sum() / n)  # sum_b n_b/n |acc_b - conf_b|
    return result


def gradient_diagnostics(outputs, labels, dlogits) -> dict[str, float]:
    """Why losses differ: per-sample gradient norms over the correctly and wrongly classified samples.

    With ``g_i = ||dlogits_i||_2`` (dlogits (n, k): the gradient of sample i's loss with respect
    to its own outputs, as the loss returns it) and the predictions of :func:`predicted_classes`:
      dz_norm_correct       = mean of g_i over correctly classified samples (NaN if none)
      dz_norm_wrong         = mean of g_i over wrongly classified samples (NaN if none)
      wrong_vanishing_frac  = fraction of the wrongly classified samples with
                              g_i < VANISHING_FRACTION (1%) x max_j g_j over all n samples, or
                              g_i == 0 (NaN if none is wrong)
    L2 on a softmax gives confidently wrong samples a vanishing gradient; cross-entropy does not.
    All NaN if an output or a gradient is non-finite.
    """
    outputs = _as_outputs(outputs)
    n, k = outputs.shape
    labels = _as_labels(labels, n, max(k, 2))
    dlogits = np.asarray(dlogits, dtype=np.float64).reshape(n, -1)
    names = ("dz_norm_correct", "dz_norm_wrong", "wrong_vanishing_frac")
    result = dict.fromkeys(names, float("nan"))
    if not (np.all(np.isfinite(outputs)) and np.all(np.isfinite(dlogits))):
        return result
    norms = np.sqrt(np.einsum("ij,ij->i", dlogits, dlogits))
    correct = predicted_classes(outputs) == labels
    wrong = ~correct
    if correct.any():
        result["dz_norm_correct"] = float(norms[correct].mean())
    if wrong.any():
        wrong_norms = norms[wrong]
        result["dz_norm_wrong"] = float(wrong_norms.mean())
        vanishing = (wrong_norms < VANISHING_FRACTION * norms.max()) | (wrong_norms == 0)
        result["wrong_vanishing_frac"] = float(vanishing.mean())
    return result


GRADIENT_CURVE_Z = np.linspace(-10.0, 10.0, 201)  # the varied logit of gradients.csv, step 0.1


def gradient_curves(loss, task: str, n_outputs: int) -> pd.DataFrame:
    """The per-sample loss and its derivative along one logit: the data of the gradient figure.

    Columns ``k`` (number of outputs), ``target``, ``z``, ``loss``, ``dloss_dz``. The first
    output is set to each ``z`` of :data:`GRADIENT_CURVE_Z` (201 points in [-10, 10]), every other
    output to 0, and the real ``loss`` is evaluated there: ``loss`` is the per-sample loss and
    ``dloss_dz`` the first column of its dlogits.

    - classification: for k = 1 (if the loss serves one output) and for k = ``n_outputs`` when it
      is >= 2. ``target = 1``: the varied logit's class is the label (class 1 for k = 1, class 0
      for k >= 2); ``target = 0``: it is not (class 0 for k = 1, class 1 for k >= 2). At k >= 2
      the softmax Jacobian and the 1/k of losses averaged over the outputs (L2, BCE) show.
    - regression: k = ``n_outputs``, regression target 0 in every column, ``target = 0``, so
      ``z`` is the residual of the first output.

    A k the loss refuses (ValueError, e.g. ce with one output) is left out.
    """
    z = GRADIENT_CURVE_Z
    n = len(z)
    settings = []
    if task == "classification":
        for k in sorted({1, n_outputs} if n_outputs >= 2 else {1}):
            for target in (1, 0):
                label = (1 if target else 0) if k == 1 else (0 if target else 1)
                settings.append((k, target, np.full(n, label, dtype=np.int64)))
    else:
        settings.append((n_outputs, 0, np.zeros((n, n_outputs))))
    frames = []
    for k, target, targets in settings:
        outputs = np.zeros((n, k))
        outputs[:, 0] = z
        try:
            per_sample_loss, dlogits = loss(outputs, targets)
        except ValueError:
            continue
        frames.append(pd.DataFrame({"k": k, "target": target, "z": z,
                                    "loss": np.asarray(per_sample_loss, dtype=np.float64),
                                    "dloss_dz": np.asarray(dlogits, dtype=np.float64)[:, 0]}))
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in
                             (("k", "int64"), ("target", "int64"), ("z", "float64"), ("loss", "float64"),
                              ("dloss_dz", "float64"))})
    return pd.concat(frames, ignore_index=True)


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


def calibration_table(probabilities, labels, n_bins: int = ECE_BINS, predicted=None) -> pd.DataFrame:
    """Reliability-diagram data of class probabilities (n, C): one row per equal-width bin (lower, upper].

    The bins of the ECE in :func:`classification_metrics` (15 by default), over the top-label
    confidence ``max_c p_ic``. Columns: bin (0..n_bins-1), lower, upper, count (samples in the bin),
    confidence (their mean top-label confidence), accuracy (the fraction whose top label is right).
    Empty bins have count 0 and NaN means. Rows with non-finite probabilities are left out.
    ``sum_b count_b / n |accuracy_b - confidence_b|`` over the non-empty bins is the ECE of
    :func:`classification_metrics` when ``predicted`` is the outputs' prediction
    (:func:`predicted_classes`; default: ``argmax_c p_ic``, the same class but at rounding ties).
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}: expected an integer >= 1")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities of shape {p.shape}: expected (n, C) with C >= 2 classes")
    labels = _as_labels(labels, p.shape[0], p.shape[1])
    finite = np.all(np.isfinite(p), axis=1)
    predicted = None if predicted is None else np.asarray(predicted)[finite]
    confidence, correct = _top_label(p[finite], labels[finite], predicted)
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
