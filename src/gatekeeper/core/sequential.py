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

# The exact per-alternative constants of ``stats.log_lrs`` (computed as there), for the scalar path of
# ``close_window``: ``log_lrs`` is ``k * log_odds - n * cost`` element by element, and the same IEEE operations on
# these same doubles in Python give the same bits.
_EXACT_LOG_ODDS: list[float] = stats.log_odds_list()


class _ExactCosts(dict[float, list[float]]):
    """Per null rate, the per-request costs exactly as ``stats.log_lrs`` computes them (``stats.log_lr_costs``)."""

    def __missing__(self, p0: float) -> list[float]:
        costs = self[p0] = stats.log_lr_costs(p0)
        return costs


_EXACT_COSTS = _ExactCosts()


class _ExactTerms(dict[float, list[tuple[float, float]]]):
    """Per null rate, each alternative's (log odds, cost) of ``stats.log_lrs`` paired (``close_window``'s loop)."""

    def __missing__(self, p0: float) -> list[tuple[float, float]]:
        terms = self[p0] = list(zip(_EXACT_LOG_ODDS, _EXACT_COSTS[p0], strict=True))
        return terms


_EXACT_TERMS = _ExactTerms()


class _Weights(dict[tuple[float, int, int], float]):
    """``change_detect.restart_log_weight`` per (share, window, planned windows): a close folds in one per test."""

    def __missing__(self, key: tuple[float, int, int]) -> float:
        weight = change_detect.restart_log_weight(*key)
        if len(self) < 1 << 16:  # bounded: a worker's window numbers grow without end
            self[key] = weight
        return weight


_WEIGHTS = _Weights()
_LOG2 = float(np.log(2.0))


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
        test_sequential.py), because numpy's per-call cost was ~10x the arithmetic on four alternatives.
        The fold is numpy's ``logaddexp`` of two doubles step for step (npy_logaddexp: equal arguments give x + log 2,
        else the larger plus log1p(exp(-difference))), inlined: as a function it ran ~100,000 times a replay."""
        weight = _WEIGHTS[(self.restart_share, window, self.planned_windows)]
        terms = _EXACT_TERMS[self.null_rate]
        n, k = float(requests), float(hits)
        log1p, exp = math.log1p, math.exp  # ~25,000 calls a replay: the global lookups hoisted
        folded = []
        for log_sum, (log_odds, cost) in zip(restarts.log_sums, terms, strict=True):
            if log_sum == weight:
                both = log_sum + _LOG2
            else:
                tmp = log_sum - weight
                if tmp > 0:
                    both = log_sum + log1p(exp(-tmp))
                elif tmp <= 0:
                    both = weight + log1p(exp(tmp))
                else:
                    both = tmp  # nan
            folded.append(both + (k * log_odds - n * cost))
        restarts.log_sums = folded
        run_requests = restarts.run_requests
        if run_requests == 0:
            restarts.run_start = window_start
        restarts.run_requests = run_requests = run_requests + requests
        restarts.run_hits = run_hits = restarts.run_hits + hits
        n, k = float(run_requests), float(run_hits)
        for log_odds, cost in terms:
            if k * log_odds - n * cost > 0.0:
                return
        # no alternative is favoured since the run began: begin anew
        restarts.run_start, restarts.run_requests, restarts.run_hits = window_end, 0, 0

    def close_screen(self) -> CloseScreen:
        """This test's ``CloseScreen`` (built once per gate: its constants do not change)."""
        return CloseScreen.of(self)

    def lower_bound(self, requests: int, hits: int) -> float:
        """Anytime-valid lower bound on the hit rate from the soak's term (reported with a soak-scope fail)."""
        return stats.evidence_lower_bound(requests, hits, self.log_threshold, 1 - self.restart_share)


# Margin of ``CloseScreen`` in log evidence: far above the rounding of the evidence's float computation (a few ulps of
# its terms, ~1e-6 at ``_SCREEN_MAX_REQUESTS``), far below anything a decision could hinge on.
_SCREEN_MARGIN = 1e-3
_SCREEN_MAX_REQUESTS = 1 << 40  # beyond this the rounding argument is not made: the screen lets the count through
_LOG_MAX_WEIGHT = max(_LOG_WEIGHTS)
_MAX_LOG_ODDS, _MIN_LOG_ODDS = max(_EXACT_LOG_ODDS), min(_EXACT_LOG_ODDS)


@dataclass(frozen=True, slots=True)
class CloseScreen:
    """A cheap necessary condition for a test's evidence to reach its threshold at a window's close (the open window
    holding nothing yet) or at any pane of an open window: ``may_cross``. A few comparisons instead of ``may_reach``'s
    lists and logs; it lets through every state where the evidence could reach the threshold, and screens out the
    healthy soak's (docs/statistics.md, "Screening a window's close"; tested against ``log_evidence`` over random
    states).

    The bound. With n requests and k hits over the soak, restart sums S_i and the open window's weight w, the
    evidence is log M = log(sum_i e^(log(1-s) + W_i + LR_i) + sum_i e^(W_i + log(e^S_i + e^w))), LR_i = k L_i - n C_i
    (L_i = log r_i > 0, C_i = log(1 + (r_i - 1) p0) > 0, W_i the log mixture weights). A log-sum-exp of 8 terms is at
    most log 8 plus the largest, so log M >= T (the threshold) needs one of
      (a) log(1-s) + W_i + LR_i >= T - log 8 for some i: with rho = min_i C_i / L_i and D = T - margin - log 8 -
          log(1-s) - max W, k <= rho n + D / L (L = max L_i if D >= 0, else min L_i) gives k L_i <= n C_i + D, so
          every soak term is at most T - margin - log 8: (a) needs k > rho n + D / L;
      (b) W_i + log(e^S_i + e^w) >= T - log 8 for some i: that term is at most max W + log 2 + max(max S, w_cap),
          w_cap the largest restart weight of any window (``change_detect.restart_log_weight``: the in-soak weight
          or the first block after the soak, later blocks weigh less);
      (c) with an open window of n_w requests and k_w hits, each restarted term also gains k_w L_i - n_w C_i <=
          L_i (k_w - rho n_w), at most (k_w - rho n_w) times max L_i if that is positive, else times min L_i;
          (b) then reads max W + log 2 + max(max S, w_cap) + that.
    ``margin`` covers the rounding of the exact evaluation; the screen's own constants are nudged the safe way."""

    rho: float
    headroom: float
    weight_cap: float
    restart_cap: float

    @staticmethod
    def of(test: FailTest) -> CloseScreen:
        costs = _EXACT_COSTS[test.null_rate]
        ratio = min(cost / log_odds for cost, log_odds in zip(costs, _EXACT_LOG_ODDS, strict=True))
        room = test.log_threshold - _SCREEN_MARGIN - _LOG_TERMS - math.log(1 - test.restart_share) - _LOG_MAX_WEIGHT
        per_hit = _MAX_LOG_ODDS if room >= 0 else _MIN_LOG_ODDS
        # shrunk a little: the comparison's own rounding must not let a state through that the reals would not
        headroom = room / per_hit
        headroom = headroom * (1 - 1e-9) if headroom >= 0 else headroom * (1 + 1e-9)
        weight_cap = max(
            change_detect.restart_log_weight(test.restart_share, 2, test.planned_windows),
            change_detect.restart_log_weight(test.restart_share, test.planned_windows + 2, test.planned_windows),
        )
        # (b) fails to hold while max(max S, w_cap) + (c) < restart_cap
        restart_cap = test.log_threshold - _SCREEN_MARGIN - _LOG_TERMS - _LOG_MAX_WEIGHT - _LOG2
        return CloseScreen(ratio * (1 - 1e-9), headroom, weight_cap, restart_cap)

    def may_cross(
        self, soak_requests: int, soak_hits: int, restarts: Restarts, window_requests: int = 0, window_hits: int = 0
    ) -> bool:
        """False only if ``log_evidence(soak_requests, soak_hits, restarts, w, window_requests, window_hits)`` stays
        below the threshold for every window ``w`` (see the class). Like ``may_reach`` it bounds every pane of an
        open window when given the fewest requests (when the panes begin) and the most hits (once they end)."""
        rho = self.rho
        if soak_requests > _SCREEN_MAX_REQUESTS or soak_hits > rho * soak_requests + self.headroom:
            return True
        top = max(*restarts.log_sums, self.weight_cap)
        if not window_hits and not window_requests:
            return top >= self.restart_cap  # at a window's close
        excess = window_hits - rho * window_requests  # (c) of the class: the open window's ratios
        return top + excess * (_MAX_LOG_ODDS if excess > 0 else _MIN_LOG_ODDS) >= self.restart_cap
