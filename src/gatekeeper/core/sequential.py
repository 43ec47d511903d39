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
        log_prior = math.log(1 - self.restart_share)
        terms = []
        for log_odds, cost, log_weight, log_sum in zip(
            _LOG_ODDS, _COSTS[self.null_rate], _LOG_WEIGHTS, restarts.log_sums, strict=True
        ):
            terms.append(log_weight + log_prior + soak_hits * log_odds - soak_requests * cost)
            terms.append(log_weight + _logaddexp(log_sum, weight) + window_hits * log_odds - window_requests * cost)
        top = max(terms)
        if top == -math.inf:
            return False
        bound = top + math.log(sum(math.exp(t - top) for t in terms))
        return bound >= self.log_threshold - 1e-9  # the margin absorbs rounding: never screens out a crossing

    def close_window(
        self, restarts: Restarts, window: int, requests: int, hits: int, window_start: int, window_end: int
    ) -> None:
        """Fold a closed window (1-based index ``window``) into the restarted tests."""
        window_lrs = stats.log_lrs(requests, hits, self.null_rate)
        weight = change_detect.restart_log_weight(self.restart_share, window, self.planned_windows)
        restarts.log_sums = change_detect.restart_update(np.asarray(restarts.log_sums), weight, window_lrs).tolist()
        if restarts.run_requests == 0:
            restarts.run_start = window_start
        restarts.run_requests += requests
        restarts.run_hits += hits
        run = stats.log_lrs(restarts.run_requests, restarts.run_hits, self.null_rate)
        if float(np.max(run)) <= 0.0:  # no alternative is favoured since the run began: begin anew
            restarts.run_start, restarts.run_requests, restarts.run_hits = window_end, 0, 0

    def lower_bound(self, requests: int, hits: int) -> float:
        """Anytime-valid lower bound on the hit rate from the soak's term (reported with a soak-scope fail)."""
        return stats.evidence_lower_bound(requests, hits, self.log_threshold, 1 - self.restart_share)
