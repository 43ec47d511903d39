"""Confidence bounds and the alpha-spending schedule behind every verdict.

- Error rate: one-sided Wilson score bounds (optionally with continuity correction).
- Quantiles: distribution-free order-statistic bounds. ``x`` bounds the true q-quantile from above when the
  lower bound of P(X <= x), estimated by the share of samples at or below ``x``, is at least q. Evaluated at
  the sketch's bucket edges, so the sketch's own error is inside the bound.
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
    lower = np.where(n > 0, np.clip(lower, 0.0, 1.0), 0.0)
    upper = np.where(n > 0, np.clip(upper, 0.0, 1.0), 1.0)
    return lower, upper


def rate_bounds(errors: int, requests: int, alpha: float, continuity: bool) -> tuple[float, float]:
    """One-sided (lower, upper) bounds on a rate, each holding with probability >= 1 - alpha."""
    lower, upper = wilson_bounds(errors, requests, z_for(alpha), continuity)
    return float(lower), float(upper)


def quantile_bounds(bins: sketch.Bins, q: float, alpha: float, continuity: bool) -> tuple[float, float]:
    """One-sided (lower, upper) bounds on the true q-quantile from a sketch; (0, inf) without enough data."""
    n = int(bins.sum())
    if n == 0:
        return 0.0, math.inf
    at_or_below = np.cumsum(bins)
    share_lo, share_hi = wilson_bounds(at_or_below, np.full_like(at_or_below, n), z_for(alpha), continuity)
    above = np.flatnonzero(share_lo >= q)  # P(X <= upper edge) >= q with confidence: quantile <= edge
    upper = float(sketch.UPPER_EDGES[above[0]]) if above.size else math.inf
    below = np.flatnonzero(share_hi < q)  # P(X <= upper edge) < q with confidence: quantile > edge
    lower = float(sketch.UPPER_EDGES[below[-1]]) if below.size else 0.0
    return lower, upper


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
