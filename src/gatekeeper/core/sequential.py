"""The anytime-valid fail test of one criterion (``evaluation.method: sequential``): pure, on counts.

Evidence of a breach at any moment is the mixture (docs/statistics.md)

    M = (1 - share) * LR(soak start .. now) + sum over windows j >= 2 of w_j * LR(start of window j .. now)

where LR is the likelihood-ratio mixture of ``stats.log_lrs`` against the ceiling's rate and the restart
weights w_j sum to at most ``share``: their schedule, and the exact false-fail bound, are in ``change_detect``.
Every term is a nonnegative supermartingale while the true rate stays at or below the ceiling, so M is one with
M_0 <= 1, and by Ville's inequality P(M ever >= 1 / alpha) <= alpha: the test may be read after every pane,
forever. The first term keeps all the evidence of a breach present from the start; the restarted terms are the
Shiryaev-Roberts statistic, so a breach that starts on day 10 is not held back by ten days of evidence for health.

The soak's term is recomputed from the soak's counts; only the restarted terms need state (``Restarts``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gatekeeper.core import change_detect, stats

_LOG_ODDS = [math.log(r) for r in stats.FAIL_ODDS]
_LOG_WEIGHTS = [math.log(w) for w in stats.FAIL_WEIGHTS]


class _Costs(dict[float, list[float]]):
    """Per null rate, each alternative's log-likelihood cost of one request without a hit: log(1 + (r - 1) p0)."""

    def __missing__(self, p0: float) -> list[float]:
        costs = self[p0] = [math.log1p((r - 1) * p0) for r in stats.FAIL_ODDS]
        return costs


_COSTS = _Costs()
_LOG_TERMS = math.log(2 * len(stats.FAIL_ODDS))  # may_reach sums two terms per alternative


class _Screen(dict[tuple[float, float], list[tuple[float, float, float]]]):
    """Per (null rate, restart share), each alternative's (log weight + log(1 - share), log odds, cost): the
    constant parts of ``may_reach``'s soak terms, added in the order it adds them."""

    def __missing__(self, key: tuple[float, float]) -> list[tuple[float, float, float]]:
        p0, share = key
        log_prior = math.log(1 - share)
        terms = [(w + log_prior, o, c) for w, o, c in zip(_LOG_WEIGHTS, _LOG_ODDS, _COSTS[p0], strict=True)]
        self[key] = terms
        return terms


_SCREEN = _Screen()

# The exact per-alternative constants of ``stats.log_lrs`` (computed by numpy, as there), for the scalar path of
# ``close_window``: ``log_lrs`` is ``k * log_odds - n * cost`` element by element, and the same IEEE operations on
# these same doubles in Python give the same bits.
_EXACT_LOG_ODDS: list[float] = stats.log_odds_list()


class _ExactCosts(dict[float, list[float]]):
    """Per null rate, ``np.log1p(np.expm1(log_odds) * p0)`` exactly as ``stats.log_lrs`` computes it."""

    def __missing__(self, p0: float) -> list[float]:
        costs = self[p0] = stats.log_lr_costs(p0)
        return costs


_EXACT_COSTS = _ExactCosts()
_LOG2 = float(np.log(2.0))


def _np_logaddexp(x: float, y: float) -> float:
    """numpy's ``logaddexp`` of two doubles, step for step (npy_logaddexp: equal arguments give x + log 2, else the
    larger plus log1p(exp(-difference))), so that state folded here has the bits the numpy path gave."""
    if x == y:
        return x + _LOG2
    tmp = x - y
    if tmp > 0:
        return x + math.log1p(math.exp(-tmp))
    if tmp <= 0:
        return y + math.log1p(math.exp(tmp))
    return tmp  # nan


def _logaddexp(a: float, b: float) -> float:
    top = max(a, b)
    return top if top == -math.inf else top + math.log(math.exp(a - top) + math.exp(b - top))


def _no_restart() -> list[float]:
    return [-math.inf] * len(stats.FAIL_ODDS)


@dataclass(slots=True)
class Restarts:
    """One criterion's restarted tests: log of the Shiryaev-Roberts sum per alternative, and, for the reasons,
    the counts since the restart whose own test is still above 1 (CUSUM's current run)."""

    log_sums: list[float] = field(default_factory=_no_restart)
    run_start: int = 0
    run_requests: int = 0
    run_hits: int = 0


@dataclass(frozen=True, slots=True)
class FailTest:
    """The fixed parts of one criterion's test: its null rate, alpha, and the schedule of restart weights."""

    null_rate: float
    alpha: float
    restart_share: float
    planned_windows: int

    @property
    def log_threshold(self) -> float:
        return -math.log(self.alpha)

    def log_evidence(
        self,
        soak_requests: npt.ArrayLike,
        soak_hits: npt.ArrayLike,
        restarts: Restarts,
        window: int,
        window_requests: npt.ArrayLike,
        window_hits: npt.ArrayLike,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(log M, log of the soak term) with the open window ``window`` (1-based) holding the given counts so
        far (vectorised: one value per pane); ``soak_*`` include them."""
        start = stats.log_mixture(stats.log_lrs(soak_requests, soak_hits, self.null_rate))
        start = start + math.log(1 - self.restart_share)
        weight = change_detect.restart_log_weight(self.restart_share, window, self.planned_windows)
        sums = change_detect.restart_update(
            np.asarray(restarts.log_sums), weight, stats.log_lrs(window_requests, window_hits, self.null_rate)
        )
        total: npt.NDArray[np.float64] = np.logaddexp(start, stats.log_mixture(sums))
        return total, start

    def may_reach(
        self,
        soak_requests: int,
        soak_hits: int,
        restarts: Restarts,
        window: int,
        window_requests: int,
        window_hits: int,
    ) -> bool:
        """Cheap necessary condition for ``log_evidence`` to reach the threshold at any pane of the open window
        ``window``, given the counts (soak, window) when the panes begin and the hits once they end: within a window
        requests and hits only grow, and a log likelihood ratio ``k log r - n log(1 + (r - 1) p0)`` rises with k
        and falls with n (r > 1), so the ratios at (fewest requests, most hits) bound every pane's. Scalar Python
        (no numpy call): almost every pane of a healthy soak is screened out here."""
        weight = change_detect.restart_log_weight(self.restart_share, window, self.planned_windows)
        limit = self.log_threshold - 1e-9  # the margin absorbs rounding: never screens out a crossing
        costs = _COSTS[self.null_rate]
        soak = [
            weighted + soak_hits * log_odds - soak_requests * cost
            for weighted, log_odds, cost in _SCREEN[(self.null_rate, self.restart_share)]
        ]
        # first a looser bound without a logaddexp (log(e^a + e^b) <= max(a, b) + log 2), which rules out most
        # calls; the sum of the terms is at most their number times the largest
        restart = max(
            log_weight + max(log_sum, weight) + window_hits * log_odds - window_requests * cost
            for log_weight, log_odds, cost, log_sum in zip(
                _LOG_WEIGHTS, _LOG_ODDS, costs, restarts.log_sums, strict=True
            )
        )
        loose = max(*soak, restart + _LOG2)
        if loose == -math.inf or loose + _LOG_TERMS < limit - 1e-6:  # slack: its additions round differently
            return False
        terms = soak + [
            log_weight + _logaddexp(log_sum, weight) + window_hits * log_odds - window_requests * cost
            for log_weight, log_odds, cost, log_sum in zip(
                _LOG_WEIGHTS, _LOG_ODDS, costs, restarts.log_sums, strict=True
            )
        ]
        top = max(terms)
        if top == -math.inf:
            return False
        bound = top + math.log(sum(math.exp(t - top) for t in terms))
        return bound >= limit

    def close_window(
        self, restarts: Restarts, window: int, requests: int, hits: int, window_start: int, window_end: int
    ) -> None:
        """Fold a closed window (1-based index ``window``) into the restarted tests. Scalar Python with the very
        operations of ``stats.log_lrs`` and ``change_detect.restart_update`` (bit-identical: tests/core/
        test_sequential.py), because numpy's per-call cost was ~10x the arithmetic on four alternatives."""
        weight = change_detect.restart_log_weight(self.restart_share, window, self.planned_windows)
        costs = _EXACT_COSTS[self.null_rate]
        n, k = float(requests), float(hits)
        restarts.log_sums = [
            _np_logaddexp(log_sum, weight) + (k * log_odds - n * cost)
            for log_sum, log_odds, cost in zip(restarts.log_sums, _EXACT_LOG_ODDS, costs, strict=True)
        ]
        if restarts.run_requests == 0:
            restarts.run_start = window_start
        restarts.run_requests += requests
        restarts.run_hits += hits
        n, k = float(restarts.run_requests), float(restarts.run_hits)
        if max(k * log_odds - n * cost for log_odds, cost in zip(_EXACT_LOG_ODDS, costs, strict=True)) <= 0.0:
            # no alternative is favoured since the run began: begin anew
            restarts.run_start, restarts.run_requests, restarts.run_hits = window_end, 0, 0

    def lower_bound(self, requests: int, hits: int) -> float:
        """Anytime-valid lower bound on the hit rate from the soak's term (reported with a soak-scope fail)."""
        return stats.evidence_lower_bound(requests, hits, self.log_threshold, 1 - self.restart_share)
