"""Confidence bounds and the alpha-spending schedule behind every verdict.

- Error rate: exact one-sided Clopper-Pearson bounds (default). Wilson score bounds are offered too, but they
  under-cover badly at the tiny per-look alphas used here: 3 errors in 157 requests at a true rate of 0.05 %
  (P = 8e-5) gives a Wilson lower bound of 0.17 % at alpha 7e-6, where the exact bound is 0.022 %.
- Quantiles: distribution-free order-statistic bounds. With B ~ Binomial(n, q) samples at or below the true
  q-quantile Q, the r-th smallest sample exceeds Q with probability P(B < r); ranks are chosen exactly from the
  binomial, and the sample of that rank is bounded by its sketch bucket's edges, so the sketch's error is
  inside the bound.
- Repeated looks: a look gets a share of the total alpha such that all looks together, however many, never
  exceed it (Bonferroni over an alpha-spending sequence; see ``look_alpha``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch
from gatekeeper.core.lazy_module import lazy

special = lazy("scipy.special")  # loaded at its first use, not at start-up (core/lazy_module.py)

Method = str  # "exact" (Clopper-Pearson), "wilson" or "wilson_cc"


@lru_cache(maxsize=4096)
def z_for(alpha: float) -> float:
    """One-sided standard normal critical value: P(Z > z) = alpha."""
    return NormalDist().inv_cdf(1 - alpha)


def wilson_bounds(
    successes: npt.ArrayLike, trials: npt.ArrayLike, z: float, continuity: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Wilson score (lower, upper) bounds, each one-sided at level Phi(z); vectorised. n == 0 gives (0, 1)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 2 * (n + z2)
        if continuity:
            q = 1 - p
            lo_root = np.sqrt(np.maximum(z2 - 1 / n + 4 * n * p * q + (4 * p - 2), 0.0))
            hi_root = np.sqrt(np.maximum(z2 - 1 / n + 4 * n * p * q - (4 * p - 2), 0.0))
            lower = (2 * n * p + z2 - (z * lo_root + 1)) / denom
            upper = (2 * n * p + z2 + (z * hi_root + 1)) / denom
            lower = np.where(k == 0, 0.0, lower)
            upper = np.where(k == n, 1.0, upper)
        else:
            center = 2 * n * p + z2
            spread = z * np.sqrt(z2 + 4 * n * p * (1 - p))
            lower = (center - spread) / denom
            upper = (center + spread) / denom
    lower = np.where((n > 0) & (k > 0), np.clip(lower, 0.0, 1.0), 0.0)
    upper = np.where((n > 0) & (k < n), np.clip(upper, 0.0, 1.0), 1.0)
    return lower, upper


def clopper_pearson(errors: int, requests: int, alpha: float) -> tuple[float, float]:
    """Exact one-sided (lower, upper) binomial bounds, each holding with probability >= 1 - alpha."""
    if requests <= 0:
        return 0.0, 1.0
    lower = 0.0 if errors == 0 else float(special.betaincinv(errors, requests - errors + 1, alpha))
    return lower, clopper_pearson_upper(errors, requests, alpha)


def clopper_pearson_upper(errors: int, requests: int, alpha: float) -> float:
    """``clopper_pearson``'s upper bound alone (a pass check needs no lower bound)."""
    if requests <= 0:
        return 1.0
    return 1.0 if errors >= requests else float(special.betaincinv(errors + 1, requests - errors, 1 - alpha))


def rate_bounds(errors: int, requests: int, alpha: float, method: Method = "exact") -> tuple[float, float]:
    """One-sided (lower, upper) bounds on a rate, each holding with probability >= 1 - alpha."""
    if method == "exact":
        return clopper_pearson(errors, requests, alpha)
    lower, upper = wilson_bounds(errors, requests, z_for(alpha), method == "wilson_cc")
    return float(lower), float(upper)


def order_statistic_ranks(n: int, q: float, alpha: float) -> tuple[int, int]:
    """1-based ranks (l, u): P(X_(l) > Q) <= alpha and P(X_(u) < Q) <= alpha for the true q-quantile Q.
    l == 0 means no lower bound exists; u == n + 1 means no upper bound exists (too few samples)."""
    if n <= 0:
        return 0, 1
    upper_rank = _upper_rank(n, q, alpha)
    # l - 1 = largest i with P(B <= i) <= alpha (none when P(B <= 0) > alpha)
    i = max(-1, min(n - 1, math.floor(float(special.bdtrik(alpha, n, q)))))
    while i >= 0 and special.bdtr(i, n, q) > alpha:
        i -= 1
    while i + 1 <= n - 1 and special.bdtr(i + 1, n, q) <= alpha:
        i += 1
    return i + 1, upper_rank


def _upper_rank(n: int, q: float, alpha: float) -> int:
    """``order_statistic_ranks``' u (n >= 1)."""
    # u - 1 = smallest j with P(B <= j) >= 1 - alpha
    j = max(0, min(n, math.ceil(float(special.bdtrik(1 - alpha, n, q)))))
    while j > 0 and special.bdtr(j - 1, n, q) >= 1 - alpha:
        j -= 1
    while j < n and special.bdtr(j, n, q) < 1 - alpha:
        j += 1
    return j + 1


def quantile_upper(bins: sketch.Bins, q: float, alpha: float) -> float:
    """``quantile_bounds``' upper bound alone (a pass check needs no lower bound)."""
    n = int(bins.sum())
    if n == 0:
        return math.inf
    return _upper_edge(np.cumsum(bins), _upper_rank(n, q, alpha), n)


def _upper_edge(cumulative: npt.NDArray[np.int64], high_rank: int, n: int) -> float:
    """The upper edge of the bucket holding the sample of rank ``high_rank``; inf past the n samples."""
    if high_rank > n:
        return math.inf
    index = int(np.searchsorted(cumulative, high_rank, side="left"))
    # The top bucket also holds every value clamped into it from above MAX_VALUE_MS: no finite upper edge.
    return math.inf if index == sketch.NBINS - 1 else float(sketch.UPPER_EDGES[index])


def quantile_bounds(bins: sketch.Bins, q: float, alpha: float) -> tuple[float, float]:
    """One-sided (lower, upper) bounds on the true q-quantile from a sketch; (0, inf) without enough data."""
    n = int(bins.sum())
    if n == 0:
        return 0.0, math.inf
    low_rank, high_rank = order_statistic_ranks(n, q, alpha)
    cumulative = np.cumsum(bins)
    lower = 0.0
    if low_rank >= 1:
        lower = float(sketch.LOWER_EDGES[int(np.searchsorted(cumulative, low_rank, side="left"))])
    return lower, _upper_edge(cumulative, high_rank, n)


def look_alpha(total_alpha: float, look: int, planned_looks: int) -> float:
    """Alpha for look ``look`` (1-based): half the budget spread evenly over the planned looks, the other half
    over any looks beyond them as alpha/2 * 1/(j(j+1)), j = look - planned. Sums to ``total_alpha`` at most."""
    if look < 1 or planned_looks < 1:
        raise ValueError("looks are counted from 1 and at least one look is planned")
    if look <= planned_looks:
        return total_alpha / 2 / planned_looks
    extra = look - planned_looks
    return total_alpha / 2 / (extra * (extra + 1))


def pass_look_alpha(total_alpha: float, look: int) -> float:
    """Alpha for the ``look``-th pass evaluation (1-based): alpha/(j(j+1)), summing to ``total_alpha``."""
    if look < 1:
        raise ValueError("looks are counted from 1")
    return total_alpha / (look * (look + 1))


# -- anytime-valid tests (evaluation.method: sequential) -------------------------------------------------
#
# A mixture of likelihood ratios is a nonnegative supermartingale under the null, so by Ville's inequality it
# ever reaches 1/alpha with probability <= alpha, however often it is looked at (docs/statistics.md).
# Alternatives are odds ratios r against the null rate p0: the per-request likelihood ratio is
# r^hit / (1 + (r - 1) p0), whose mean is <= 1 for every true rate <= p0 (r > 1: a composite null is covered
# by its boundary) or >= p0 (r < 1), and whose product over a scope depends only on its counts (n, k).

FAIL_ODDS: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0)  # breaches of 1.5x to 5x the ceiling's odds
# Most of the prior on 2x, the breach the plan's targets are set for: a discrete mixture's regret at one of its
# alternatives is log(1 / its weight) nats, and beyond 2x evidence accrues 3-10x faster, so its smaller weights
# cost minutes there (docs/statistics.md: 0.75 instead of 0.6 makes a 2x canary ~0.15-0.3 h sooner).
FAIL_WEIGHTS: tuple[float, ...] = (0.1, 0.75, 0.08, 0.07)
# Transcendentals by libm, one scalar at a time: numpy's vectorised log, log1p and expm1 take other code paths on
# CPUs with AVX-512 and differ in the last bit, which would make the evidence (and, at a threshold, a verdict)
# depend on the machine. The per-request arithmetic on these constants is IEEE multiply/add, the same everywhere.
_LOG_FAIL_ODDS = np.array([math.log(r) for r in FAIL_ODDS])
_LOG_FAIL_WEIGHTS = np.array([math.log(w) for w in FAIL_WEIGHTS])


def _costs(log_odds: npt.NDArray[np.float64], p0: float) -> list[float]:
    """Per alternative, the per-request cost log(1 + (r - 1) p0) of its likelihood ratio (libm's log1p, expm1)."""
    return [math.log1p(math.expm1(x) * p0) for x in log_odds.tolist()]


def log_lrs(
    requests: npt.ArrayLike, hits: npt.ArrayLike, p0: float, log_odds: npt.NDArray[np.float64] = _LOG_FAIL_ODDS
) -> npt.NDArray[np.float64]:
    """log likelihood ratio of each alternative odds ratio against rate ``p0`` for ``hits`` in ``requests``;
    shape (..., alternatives), vectorised over the counts."""
    n = np.asarray(requests, dtype=np.float64)[..., None]
    k = np.asarray(hits, dtype=np.float64)[..., None]
    result: npt.NDArray[np.float64] = k * log_odds - n * np.asarray(_costs(np.asarray(log_odds), p0))
    return result


def log_odds_list() -> list[float]:
    """``log_lrs``'s default log odds ratios as Python floats (the same doubles)."""
    result: list[float] = _LOG_FAIL_ODDS.tolist()
    return result


def log_lr_costs(p0: float) -> list[float]:
    """``log_lrs``'s per-request cost of each default alternative at rate ``p0``, computed as it does."""
    return _costs(_LOG_FAIL_ODDS, p0)


def log_mixture(per_alternative: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """log of the weighted mixture (``FAIL_WEIGHTS``) of per-alternative log likelihood ratios, over the last axis
    (numpy's logaddexp.reduce: exact at all -inf, and ~10x cheaper than scipy's logsumexp, read after every pane)."""
    result: npt.NDArray[np.float64] = np.logaddexp.reduce(per_alternative + _LOG_FAIL_WEIGHTS, axis=-1)
    return result


def evidence_lower_bound(requests: int, hits: int, log_threshold: float, start_share: float) -> float:
    """Anytime-valid lower confidence bound on a rate: the smallest p0 whose soak test (weight ``start_share``)
    stays below ``log_threshold``; 0 when none is rejected. The mixture falls as p0 rises (d/dp0 of each term is
    -n (r - 1) / (1 + (r - 1) p0) < 0), so bisection finds it."""
    if requests <= 0 or hits <= 0:
        return 0.0

    def rejected(p0: float) -> bool:
        return float(log_mixture(log_lrs(requests, hits, p0))) + math.log(start_share) >= log_threshold

    lo, hi = 1e-12, hits / requests
    if not rejected(lo):
        return 0.0
    for _ in range(60):  # geometric bisection: relative precision far below what a reason shows
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
    return lo
