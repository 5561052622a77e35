"""Statistics for the report: pure functions of NumPy arrays returning frozen, named results.

In the manner of ``scipy.stats``: every result has named fields (``statistic``, ``pvalue``,
``method``, ``n``, ...) and, where an interval is meaningful, ``confidence_interval()``. The report
formats these results; it never computes a statistic inline. Nothing here reads files or draws from
a global random state: Monte-Carlo steps take a ``numpy.random.Generator`` (or a seed), and default
to a fixed seed so that the same data always give the same numbers.

- :func:`bounded_mean_ci`: a mean with a confidence interval that never leaves the metric's range.
- :func:`paired_difference`: the mean paired difference, its sign-flip-inversion interval and the
  sign-flip (paired permutation) test, exact for up to 14 non-zero differences.
- :func:`holm`, :func:`all_pairs_holm`: Holm's step-down adjustment over all k(k-1)/2 pairs.
- :func:`rank_groups`: the best group, the groups not distinguishable from it with n seeds, ties.
- :func:`censored_time_to_target`: the Kaplan-Meier median of epochs to target, unreached runs
  right-censored at the last epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as _scipy_stats

EXACT_MAX_N = 14  # sign-flip tests enumerate all 2^m patterns up to m = 14 (16384 patterns)
N_RESAMPLES = 9999  # Monte-Carlo sign patterns / bootstrap resamples by default
DEFAULT_SEED = 0  # rng=None means this seed: the same data give the same numbers
_RTOL = 1e-12  # |T*| >= |T| - _RTOL * sum|d|: patterns equal in exact arithmetic count as ties


@dataclass(frozen=True)
class ConfidenceInterval:
    """A confidence interval ``[low, high]`` (as ``scipy.stats``' ``ConfidenceInterval``)."""

    low: float
    high: float


# ---------------------------------------------------------------------------------------------
# A mean inside the metric's range


@dataclass(frozen=True)
class MeanInterval:
    """A mean of n values and its confidence interval, inside ``[range_low, range_high]``."""

    mean: float
    low: float
    high: float
    method: str
    n: int
    confidence: float
    range_low: float = -math.inf
    range_high: float = math.inf

    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.low, self.high)


def bounded_mean_ci(values, low: float | None = None, high: float | None = None, confidence: float = 0.95,
                    method: str = "bootstrap", rng=None, n_resamples: int = N_RESAMPLES) -> MeanInterval:
    """Mean of ``values`` (n,) and a ``confidence`` interval that never leaves ``[low, high]``.

    ``low``/``high`` are the metric's range (accuracy: 0, 1; R²: None or -inf, 1; a loss: 0, None);
    either may be open (None or ±inf). Every value must lie in the range and be finite. Methods:

    - ``"bootstrap"`` (default): expanded percentile bootstrap (Hesterberg 2015, "What teachers
      should know about the bootstrap", Am. Stat. 69): the percentile interval of the means of
      ``n_resamples`` resamples with replacement, at the widened level
      ``α' = 2 Φ(-sqrt(n/(n-1)) t_{1-α/2, n-1})`` with ``α = 1 - confidence``, which corrects the
      plain percentile interval's narrowness for small n (about t's width). Quantiles of resampled
      means lie between ``min(values)`` and ``max(values)``, so inside the range.
    - ``"percentile"``: the plain percentile bootstrap at level α (as ``scipy.stats.bootstrap(...,
      method="percentile")``, and identical to it for the same Generator).
    - ``"logit-t"``: a t interval on a transformed scale, mapped back: with ``u = (m - low)/(high -
      low)`` the interval ``expit(logit(u) ± t_{1-α/2,n-1} se/((high-low) u (1-u)))`` (delta-method
      standard error, ``se = s/√n``); with one bound, ``log(m - low)`` or ``log(high - m)``; with
      none, the plain t interval ``m ± t se``.

    n = 1: the interval is NaN (one seed says nothing about the spread). Constant values: the
    degenerate interval ``[v, v]``. n = 0: everything NaN.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    range_low = -math.inf if low is None else float(low)
    range_high = math.inf if high is None else float(high)
    if not range_low < range_high:
        raise ValueError(f"bounded_mean_ci: low={low} must be below high={high}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bounded_mean_ci: confidence={confidence}, allowed: 0 < confidence < 1")
    if not np.all(np.isfinite(x)):
        raise ValueError("bounded_mean_ci: values contain NaN or inf; drop unfinished runs first")
    if np.any(x < range_low) or np.any(x > range_high):
        raise ValueError(f"bounded_mean_ci: values outside the range [{range_low}, {range_high}]")
    names = {"bootstrap": f"expanded percentile bootstrap ({n_resamples} resamples)",
             "percentile": f"percentile bootstrap ({n_resamples} resamples)",
             "logit-t": _transformed_t_name(range_low, range_high)}
    if method not in names:
        raise ValueError(f"bounded_mean_ci: method={method!r}, allowed: {', '.join(names)}")
    n = x.size
    result = dict(method=names[method], n=n, confidence=confidence, range_low=range_low, range_high=range_high)
    if n == 0:
        return MeanInterval(math.nan, math.nan, math.nan, **result)
    mean = float(np.clip(x.mean(), x.min(), x.max()))  # the rounded mean can step past a bound
    if n == 1:
        return MeanInterval(mean, math.nan, math.nan, **result)
    if np.all(x == x[0]):
        return MeanInterval(float(x[0]), float(x[0]), float(x[0]), **result)
    alpha = 1.0 - confidence
    if method == "logit-t":
        ci_low, ci_high = _transformed_t(x, range_low, range_high, alpha)
    else:
        if method == "bootstrap":
            t_quantile = _scipy_stats.t.ppf(1.0 - alpha / 2.0, n - 1)
            alpha = 2.0 * _scipy_stats.norm.cdf(-math.sqrt(n / (n - 1)) * t_quantile)
        means = x[_generator(rng).integers(0, n, (n_resamples, n))].mean(axis=-1)
        ci_low, ci_high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    # Rounding in the back-transform must neither leave the range nor exclude the mean.
    ci_low = float(np.clip(ci_low, range_low, mean))
    ci_high = float(np.clip(ci_high, mean, range_high))
    return MeanInterval(mean, ci_low, ci_high, **result)


def _transformed_t_name(low: float, high: float) -> str:
    """The name of the "logit-t" interval for this range."""
    if math.isfinite(low) and math.isfinite(high):
        return "t interval on the logit scale (delta method)"
    if math.isfinite(low) or math.isfinite(high):
        return "t interval on the log scale (delta method)"
    return "t interval"


def _transformed_t(x: np.ndarray, low: float, high: float, alpha: float) -> tuple[float, float]:
    """The "logit-t" interval of :func:`bounded_mean_ci` (values not constant, n >= 2)."""
    n = x.size
    mean, se = x.mean(), x.std(ddof=1) / math.sqrt(n)
    t_quantile = _scipy_stats.t.ppf(1.0 - alpha / 2.0, n - 1)
    if (math.isfinite(low) and mean <= low) or (math.isfinite(high) and mean >= high):
        return float(x.min()), float(x.max())  # non-constant values whose mean rounds onto a bound
    if math.isfinite(low) and math.isfinite(high):
        u = (mean - low) / (high - low)
        half = t_quantile * se / ((high - low) * u * (1.0 - u))
        centre = math.log(u) - math.log1p(-u)
        return tuple(low + (high - low) * float(_scipy_stats.logistic.cdf(centre + s * half)) for s in (-1, 1))
    if math.isfinite(low):
        half = t_quantile * se / (mean - low)
        return low + (mean - low) * math.exp(-half), low + (mean - low) * math.exp(half)
    if math.isfinite(high):
        half = t_quantile * se / (high - mean)
        return high - (high - mean) * math.exp(half), high - (high - mean) * math.exp(-half)
    return mean - t_quantile * se, mean + t_quantile * se


def _generator(rng) -> np.random.Generator:
    """``rng`` as a Generator: None -> seed DEFAULT_SEED, an int -> that seed, a Generator as is."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(DEFAULT_SEED if rng is None else rng)


# ---------------------------------------------------------------------------------------------
# Paired difference: sign-flip test and its inversion


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of a and b (aligned by seed): ``d = a - b``.

    ``statistic`` is the test statistic, the mean difference; ``pvalue`` two-sided;
    ``min_attainable_pvalue`` the smallest p-value the test can give with these n seeds;
    ``tie``: a and b are identical at every seed.
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    statistic: float
    pvalue: float
    min_attainable_pvalue: float
    method: str
    n: int
    tie: bool
    n_nonzero: int = 0
    confidence: float = 0.95
    ci_method: str = "sign-flip test inversion"

    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.ci_low, self.ci_high)


@lru_cache(maxsize=None)
def sign_patterns(m: int) -> np.ndarray:
    """All 2^m sign patterns, shape (2^m, m), entries ±1.0 (row 0 all +1: the observed pattern)."""
    bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1
    signs = 1.0 - 2.0 * bits
    signs.flags.writeable = False
    return signs


def sign_flip_pvalues(differences: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """Two-sided sign-flip p-values of each row of ``differences`` (..., m).

    ``T = Σ d_i``, ``T*_s = Σ s_i d_i``. ``signs=None``: exact, over all 2^m patterns s (the
    observed one among them), ``p = #{s: |T*_s| >= |T|} / 2^m``; as ``|T*_s| = |T*_{-s}|`` only
    the half with ``s_m = +1`` is evaluated. ``signs`` (P, m) random ±1 patterns: Monte Carlo,
    ``p = (1 + #{...}) / (P + 1)``. Vectorised over leading axes, e.g. repetitions of a
    simulation. Patterns equal in exact arithmetic count as reaching T (relative tolerance 1e-12).
    """
    observed = np.abs(differences.sum(axis=-1))
    tolerance = _RTOL * np.abs(differences).sum(axis=-1)
    m = differences.shape[-1]
    if m == 0:
        return np.ones(differences.shape[:-1])
    patterns = sign_patterns(m)[: 2 ** (m - 1)] if signs is None else signs
    permuted = np.abs(differences @ patterns.T)
    count = (permuted >= (observed - tolerance)[..., None]).sum(axis=-1)
    if signs is None:
        return count / patterns.shape[0]
    return (1.0 + count) / (patterns.shape[0] + 1.0)


def paired_difference(a, b, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, rng=None,
                      exact_max_n: int = EXACT_MAX_N) -> PairedResult:
    """Mean paired difference of ``a`` and ``b`` (n,), aligned by seed, with test and interval.

    Test: sign-flip (paired permutation) test of "d = a - b is symmetric about 0", statistic the
    mean difference, two-sided, ``p = P(|mean(s·d)| >= |mean(d)|)`` over sign patterns s.
    Zero differences are kept; flipping them changes nothing, so the test is that of the m
    non-zero differences (the same as dropping the zeros). Exact for m <= ``exact_max_n``: all 2^m
    patterns, the observed one included, so the smallest attainable p is ``2/2^m`` (0.0625 for
    5 seeds, 0.00195 for 10). Beyond, Monte Carlo: ``n_resamples`` random patterns from ``rng``,
    ``p = (1 + count) / (n_resamples + 1)``, smallest attainable ``1/(n_resamples + 1)``.
    Tie (a == b at every seed): p = 1.0, ``tie=True``.

    Interval: inversion of the same test, ``{δ : p(d - δ) > 1 - confidence}`` (all 2^n patterns of
    the n shifted differences for n <= ``exact_max_n``, else a fixed set of random patterns),
    its ends found by bisection. When ``2/2^n > 1 - confidence`` (n <= 5 at 95%) no shift can be
    rejected and the interval is ``(-inf, inf)``: say "not estimable with n seeds".
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: a has {a.size} values, b {b.size}; pair them by seed first")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired_difference: values contain NaN or inf; drop unfinished runs first")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_difference: confidence={confidence}, allowed: 0 < confidence < 1")
    n = a.size
    if n == 0:
        raise ValueError("paired_difference: no paired values")
    generator = _generator(rng)
    d = a - b
    nonzero = d[d != 0.0]
    m = nonzero.size
    mean = float(d.mean())
    if m == 0:
        signs, min_p = None, 1.0
        method = "tie: identical at every seed, p = 1 (no sign-flip test needed)"
    elif m <= exact_max_n:
        signs = None
        method = f"exact sign-flip test (all 2^{m} sign patterns of the non-zero differences)"
        min_p = min(1.0, 2.0 / 2 ** m)
    else:
        signs = _random_signs(generator, n_resamples, m)
        method = f"Monte-Carlo sign-flip test ({n_resamples} random sign patterns)"
        min_p = 1.0 / (n_resamples + 1.0)
    pvalue = 1.0 if m == 0 else float(min(1.0, sign_flip_pvalues(nonzero, signs)))
    ci_signs = None if n <= exact_max_n else _random_signs(generator, n_resamples, n)
    ci_low, ci_high = _invert_sign_flip(d, ci_signs, 1.0 - confidence)
    return PairedResult(mean_difference=mean, ci_low=ci_low, ci_high=ci_high, statistic=mean, pvalue=pvalue,
                        min_attainable_pvalue=min_p, method=method, n=n, tie=m == 0, n_nonzero=m,
                        confidence=confidence)


def _random_signs(generator: np.random.Generator, count: int, m: int) -> np.ndarray:
    """``count`` random sign patterns (count, m), entries ±1.0."""
    return 1.0 - 2.0 * generator.integers(0, 2, (count, m))


def _invert_sign_flip(d: np.ndarray, signs: np.ndarray | None, alpha: float) -> tuple[float, float]:
    """Ends of ``{δ : p(d - δ) > alpha}`` by bisection outward from the mean (see paired_difference)."""
    mean = float(d.mean())
    spread = float(d.max() - d.min())
    scale = spread if spread > 0 else max(abs(mean), 1.0)

    def accepted(delta: float) -> bool:
        return bool(sign_flip_pvalues(d - delta, signs) > alpha)

    ends = []
    for direction in (-1.0, 1.0):
        width = scale
        while accepted(mean + direction * width):
            width *= 2.0
            if width > 1e6 * scale:  # p never drops to alpha: 2/2^n (or the MC floor) > alpha
                ends.append(direction * math.inf)
                break
        else:
            inside, outside = mean, mean + direction * width
            for _ in range(100):
                middle = 0.5 * (inside + outside)
                if abs(outside - inside) <= 1e-12 * scale or middle in (inside, outside):
                    break
                inside, outside = (middle, outside) if accepted(middle) else (inside, middle)
            ends.append(inside)
    return ends[0], ends[1]


# ---------------------------------------------------------------------------------------------
# Multiple comparisons


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the given order.

    With the m finite p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))``
    (monotone in p, capped at 1). NaN entries stay NaN and are not counted in m. Rejecting
    ``p_adj <= alpha`` controls the family-wise error at alpha under any dependence.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("holm: p-values must lie in [0, 1]")
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


@dataclass(frozen=True)
class PairComparison:
    """One pair of groups: ``result`` is ``paired_difference(groups[a], groups[b])``.

    ``p_holm`` is Holm-adjusted over all pairs; ``reject``: ``p_holm <= alpha``, the groups are
    distinguishable; ``better`` the label with the better mean (None when the means are equal).
    """

    a: Hashable
    b: Hashable
    result: PairedResult
    p_holm: float
    reject: bool
    better: Hashable | None = None


def all_pairs_holm(groups: Mapping[Hashable, np.ndarray], alpha: float = 0.05, higher_is_better: bool = True,
                   confidence: float = 0.95, n_resamples: int = N_RESAMPLES, rng=None,
                   drop_missing: bool = False) -> list[PairComparison]:
    """All k(k-1)/2 pairs of ``groups`` ({label: per-seed values (n,)}, aligned by seed), Holm-adjusted.

    Each pair is :func:`paired_difference` (sign-flip test), a before b in the mapping's order; the
    k(k-1)/2 p-values are adjusted together by :func:`holm`, so the chance of calling any pair of
    truly equal groups different is at most alpha (unlike testing each group against the one that
    looked best, which selects the comparison after seeing the data). Note that with n seeds no
    pair can be rejected when ``2/2^n * k(k-1)/2 > alpha`` (10 seeds: k >= 8; see seeds_needed).
    NaN (a run that diverged or is missing) raises, unless ``drop_missing``: then each pair uses
    the seeds where both values are finite (its ``result.n`` says how many).
    """
    values = _aligned(groups)
    labels = list(values)
    generator = _generator(rng)
    pairs, results = [], []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            keep = np.isfinite(values[a]) & np.isfinite(values[b]) if drop_missing else slice(None)
            pairs.append((a, b))
            results.append(paired_difference(values[a][keep], values[b][keep], confidence, n_resamples, generator))
    adjusted = holm([r.pvalue for r in results])
    comparisons = []
    for (a, b), result, p_holm in zip(pairs, results, adjusted):
        sign = np.sign(result.mean_difference) * (1 if higher_is_better else -1)
        better = a if sign > 0 else b if sign < 0 else None
        comparisons.append(PairComparison(a, b, result, float(p_holm), bool(p_holm <= alpha), better))
    return comparisons


def _aligned(groups: Mapping[Hashable, np.ndarray]) -> dict:
    """{label: float64 (n,)}, checking that every group has the same number of seeds."""
    values = {label: np.asarray(v, dtype=np.float64).ravel() for label, v in groups.items()}
    sizes = {label: v.size for label, v in values.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"groups must hold the same seeds (aligned by seed); sizes: {sizes}")
    return values


def seeds_needed(k: int, alpha: float = 0.05) -> int:
    """Fewest seeds n with which all-pairs Holm can reject anything among k groups.

    The exact sign-flip test's smallest p is ``2/2^n`` and Holm's smallest threshold
    ``alpha / (k(k-1)/2)``, so ``n = ceil(log2(k(k-1) / alpha))``: at alpha = 0.05, 6 seeds for
    2 groups, 7 for 3, 8 for 4, 9 for 5, 10 for 6 or 7, 11 for 8 to 10, 12 for 11 to 14.
    """
    pairs = max(k * (k - 1) // 2, 1)
    return max(1, math.ceil(math.log2(2 * pairs / alpha) - 1e-12))


@dataclass(frozen=True)
class GroupRanking:
    """Which group is best, and what n seeds can and cannot say about the others.

    ``order``: labels from best to worst mean; ``best``: the first; ``not_distinguishable``: groups
    whose pair with ``best`` is not rejected (Holm over all pairs), best excluded;
    ``worse``: groups distinguishably worse than ``best``; ``ties``: tuples of groups identical at
    every seed (each of size >= 2); ``best_tied``: the tie that contains ``best`` (empty if none);
    ``can_reject``: whether any pair could be rejected with these seeds (else ``seeds_needed``).
    """

    order: tuple
    means: dict
    best: Hashable
    not_distinguishable: tuple
    worse: tuple
    ties: tuple
    best_tied: tuple
    n: int
    alpha: float
    can_reject: bool
    seeds_needed: int
    method: str
    comparisons: tuple = field(default=(), repr=False)


def rank_groups(groups: Mapping[Hashable, np.ndarray], alpha: float = 0.05, higher_is_better: bool = True,
                comparisons: Sequence[PairComparison] | None = None, **kwargs) -> GroupRanking:
    """Rank ``groups`` ({label: per-seed values (n,)}, aligned by seed) by mean, using all-pairs Holm.

    The best group is the one with the best mean (first in the mapping's order among equal means);
    a group is "worse" only if its pair with the best is rejected in :func:`all_pairs_holm` (the
    family is all pairs, so choosing the best after seeing the data does not inflate the error);
    otherwise it is "not distinguishable with n seeds" (not the same as equivalent). Groups equal
    at every seed are ties. ``can_reject`` is False when with n seeds no pair could be rejected at
    all (``2/2^n * k(k-1)/2 > alpha``, i.e. n < ``seeds_needed``). Extra keyword arguments go to
    all_pairs_holm.
    """
    values = _aligned(groups)
    labels = list(values)
    if not labels:
        raise ValueError("rank_groups: no groups")
    if comparisons is None:
        comparisons = all_pairs_holm(values, alpha=alpha, higher_is_better=higher_is_better, **kwargs)
    sign = 1.0 if higher_is_better else -1.0
    means = {label: float(np.nanmean(values[label])) if np.any(np.isfinite(values[label])) else math.nan
             for label in labels}
    order = tuple(sorted(labels, key=lambda label: (math.isnan(means[label]), -sign * means[label],
                                                    labels.index(label))))
    best = order[0]
    with_best = {(c.b if c.a == best else c.a): c for c in comparisons if best in (c.a, c.b)}
    worse = tuple(label for label in order[1:] if with_best[label].reject)
    not_distinguishable = tuple(label for label in order[1:] if not with_best[label].reject)
    ties = _ties(values, order)
    best_tied = next((tie for tie in ties if best in tie), ())
    n = values[best].size
    n_pairs = len(comparisons)
    needed = seeds_needed(len(labels), alpha)
    can_reject = n_pairs > 0 and (n >= needed or n > EXACT_MAX_N)
    tested = [c.result.method for c in comparisons if not c.result.tie] or [c.result.method for c in comparisons]
    method = f"{tested[0]}, Holm over all {n_pairs} pairs" if tested else "one group, nothing to compare"
    return GroupRanking(order=order, means=means, best=best, not_distinguishable=not_distinguishable, worse=worse,
                        ties=ties, best_tied=best_tied, n=n, alpha=alpha, can_reject=can_reject,
                        seeds_needed=needed, method=method, comparisons=tuple(comparisons))


def _ties(values: Mapping[Hashable, np.ndarray], order: Sequence) -> tuple:
    """Groups of labels whose values are identical at every seed, in ``order`` (sizes >= 2)."""
    ties, seen = [], set()
    for i, label in enumerate(order):
        if label in seen:
            continue
        tie = [label] + [other for other in order[i + 1:]
                         if other not in seen and np.array_equal(values[label], values[other], equal_nan=True)]
        if len(tie) > 1:
            seen.update(tie)
            ties.append(tuple(tie))
    return tuple(ties)


# ---------------------------------------------------------------------------------------------
# Epochs to target, with unreached runs censored


@dataclass(frozen=True)
class CensoredSummary:
    """Kaplan-Meier median of epochs to target; ``median_is_censored``: the median is "> median"."""

    median: float
    median_is_censored: bool
    n_reached: int
    n: int
    text: str
    method: str = "Kaplan-Meier median, unreached runs right-censored at the last epoch"


def censored_time_to_target(epochs_reached, max_epoch: float) -> CensoredSummary:
    """Median epochs to target of n runs, ``epochs_reached`` (n,) with NaN for "never reached".

    A run that never reached the target is right-censored at ``max_epoch`` (the last epoch).
    Kaplan-Meier survival ``S(t) = Π_{t_j <= t} (1 - e_j / r_j)`` (e_j runs reaching at t_j, r_j
    runs not yet reached before t_j); as all censoring is at the end, S(t) is the fraction of runs
    not reached by t. The median is the smallest t with ``S(t) < 1/2``, or, where S is exactly 1/2
    between reaches at t and t', the midpoint ``(t + t')/2`` (R survival's rule: with every run
    reached it is the ordinary median, ``np.median``; for odd n it is statsmodels'
    ``SurvfuncRight.quantile(0.5)``). When at most half the runs reached, S never drops below 1/2
    within the follow-up, so the median is only known to exceed ``max_epoch``: ``median =
    max_epoch``, ``median_is_censored = True``, text "> 100 (2 of 5 reached)"; otherwise text
    "27 (5 of 5 reached)". No runs: median NaN, text "no runs".
    """
    t = np.asarray(epochs_reached, dtype=np.float64).ravel()
    n = t.size
    reached = np.sort(t[np.isfinite(t)])
    k = reached.size
    if np.any(reached > max_epoch):
        raise ValueError(f"censored_time_to_target: an epoch reached exceeds max_epoch={max_epoch}")
    if n == 0:
        return CensoredSummary(math.nan, False, 0, 0, "no runs")
    count = f"({k} of {n} reached)"
    if 2 * k <= n:
        return CensoredSummary(float(max_epoch), True, k, n, f"> {_fmt_epoch(max_epoch)} {count}")
    half = (n + 1) // 2  # the smallest number of reached runs with S(t) = 1 - j/n <= 1/2
    median = reached[half - 1]
    if n % 2 == 0:  # S = 1/2 exactly between reached[half-1] and reached[half] (which exists: k > n/2)
        median = 0.5 * (median + reached[half])
    return CensoredSummary(float(median), False, k, n, f"{_fmt_epoch(median)} {count}")


def _fmt_epoch(value: float) -> str:
    """27 -> "27", 27.5 -> "27.5", 3.6667 -> "3.667"."""
    return f"{value:.4g}" if value != round(value) else f"{int(round(value))}"
