"""Change detection for breaches that start mid-soak: the schedule of restarted tests and its false-fail bound.

A criterion's fail evidence (``sequential.FailTest``) is

    M_t = (1 - s) * LR(soak start .. t)  +  sum over windows j >= 2 started by t of  w_j * LR(start of j .. t)

with s = ``confidence.restart_share`` and w_j = ``restart_weight(s, j, N)`` (N: the soak's planned windows).
The sum over restarts is the Shiryaev-Roberts statistic with weights, the e-SR detector of Shin, Ramdas, Rinaldo
("E-detectors: a nonparametric framework for sequential change detection", 2023).

**The bound used.** While the true rate never exceeds the ceiling, every LR term is a nonnegative supermartingale
from its start, so ``M_t + (the weights of restarts not yet started)`` is a nonnegative supermartingale whose
start value is ``initial_evidence(s, N) <= 1``. By Ville's inequality P(M ever >= 1/alpha) <= alpha *
initial_evidence <= alpha, over the whole soak and every window after it, however often M is read. Inside the
soak this is the brief's Shiryaev-Roberts form: with equal weights, R_n = sum over j of LR(j .. n) and
``R_n - n`` a martingale at the ceiling (``R_n + N - n`` a nonnegative one for n <= N), P(max over n <= N of R_n
>= N / a) <= a; the weighted sum spends a = (1 - RESTARTS_AFTER_SOAK) * s * alpha of the criterion's alpha this
way (``soak_level``), the rest on the soak's own test and on windows after the soak.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

# Of the restarts' share, the part for restarts after the planned soak (a gate keeps watching after it passed, and
# a soak extended by stalls or thin traffic runs on). The rest is spread evenly over the planned soak's windows:
# every start time in the soak is equally likely, and a restart's weight is what a breach starting there pays
# (log(1/weight) nats of evidence). The former even split (half after the soak, mostly in its first hours) left
# a restart inside the soak 0.5 of the share; 0.8 makes a breach on day 10 ~0.5 h sooner at 2x the ceiling.
RESTARTS_AFTER_SOAK = 0.2


def restart_log_weight(share: float, window: int, planned_windows: int) -> float:
    """log of the prior weight of a test restarted at the start of window ``window`` (1-based; the soak's own
    test covers window 1). Inside the planned soak each restart gets ``(1 - RESTARTS_AFTER_SOAK) * share`` spread
    evenly over its windows; after it, the b-th further soak length (b = 1, 2, ...) gets
    ``RESTARTS_AFTER_SOAK * share / (b (b + 1))`` spread evenly over its windows, so that all restarts, however
    many, sum to at most ``share``."""
    if window < 2:
        return -math.inf
    if planned_windows < 1:
        raise ValueError("at least one window is planned")
    look = window - 1
    if look <= planned_windows:
        return math.log((1 - RESTARTS_AFTER_SOAK) * share / planned_windows)
    block = (look - planned_windows - 1) // planned_windows + 1
    return math.log(RESTARTS_AFTER_SOAK * share / (block * (block + 1)) / planned_windows)


def initial_evidence(share: float, planned_windows: int, windows: int) -> float:
    """M's start value with every restart up to window ``windows`` counted at its weight: ``1 - share`` for the
    soak's test plus the restarts' weights. At most 1 for any ``windows`` (the b-th soak length after the soak
    gets ``RESTARTS_AFTER_SOAK * share / (b (b + 1))``, a telescoping sum), so Ville's inequality bounds the
    false-fail probability by alpha times this."""
    restarts = math.fsum(math.exp(restart_log_weight(share, j, planned_windows)) for j in range(2, windows + 1))
    return (1 - share) + restarts


def soak_level(alpha: float, share: float, planned_windows: int) -> float:
    """The level the unweighted Shiryaev-Roberts statistic R_n (one LR per restart, all of weight 1) must reach
    inside the planned soak to fail on restarts alone: w * R_n >= 1/alpha with w the in-soak weight, i.e.
    ``N / a`` with a = (1 - RESTARTS_AFTER_SOAK) * share * alpha the alpha those restarts spend."""
    return planned_windows / ((1 - RESTARTS_AFTER_SOAK) * share * alpha)


def restart_update(
    log_state: npt.NDArray[np.float64], log_weight: float, window_lrs: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Shiryaev-Roberts step, per alternative: (S + w) * L. S sums w_s * LR(s..now) over past restarts s."""
    result: npt.NDArray[np.float64] = np.logaddexp(log_state, log_weight) + window_lrs
    return result
