"""The anytime-valid fail test (core/sequential.py and its math in core/stats.py): the likelihood ratios against
the binomial, the mixture's mean under the null (the supermartingale property Ville's inequality needs), the
restart weights' budget, the lower confidence bound, and a breach after a long healthy stretch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

from gatekeeper.core import change_detect, stats
from gatekeeper.core.sequential import FailTest, Restarts


def odds_alternative(p0: float, odds: float) -> float:
    """The rate whose odds are ``odds`` times those of ``p0``."""
    return odds * p0 / (1 - p0 + odds * p0)


@pytest.mark.parametrize(("n", "k", "p0"), [(1, 0, 0.001), (1, 1, 0.001), (2400, 5, 0.001), (500, 9, 0.01)])
def test_log_likelihood_ratios_are_the_binomials(n: int, k: int, p0: float) -> None:
    """log_lrs(n, k, p0) is, per alternative odds ratio r, log Binom(k; n, p1) - log Binom(k; n, p0) with p1 the
    rate of odds r * odds(p0): the ratio of the two binomial likelihoods (rel. 1e-9)."""
    expected = [
        scipy_stats.binom.logpmf(k, n, odds_alternative(p0, r)) - scipy_stats.binom.logpmf(k, n, p0)
        for r in stats.FAIL_ODDS
    ]
    actual = stats.log_lrs(n, k, p0).tolist()
    assert expected == pytest.approx(actual, rel=1e-9, abs=1e-12)


def test_log_likelihood_ratios_are_libm_bits_on_every_cpu() -> None:
    """log_lrs is, bit for bit, k log r - n log1p(expm1(log r) p0) with libm's log, log1p and expm1 (Python's
    math), for every alternative and many null rates: numpy's vectorised ones differ in the last bit on CPUs with
    AVX-512, which made the evidence depend on the machine."""
    n, k = np.array([1, 250, 2400, 1_000_000]), np.array([0, 3, 9, 1200])
    for p0 in np.linspace(0.0001, 0.05, 200).tolist():
        logs = [math.log(r) for r in stats.FAIL_ODDS]
        expected = [
            [kk * lo - nn * math.log1p(math.expm1(lo) * p0) for lo in logs]
            for nn, kk in zip(n.tolist(), k.tolist(), strict=True)
        ]
        assert expected == stats.log_lrs(n, k, p0).tolist()


@pytest.mark.parametrize(("p", "expected_at_most"), [(0.001, 1.0), (0.0005, 1.0), (0.0, 1.0)])
def test_mixture_has_mean_at_most_one_under_the_null(p: float, expected_at_most: float) -> None:
    """E[mixture likelihood ratio] over K ~ Binomial(2400, p), summed exactly over k, is 1 at p = p0 = 0.1 % and
    below 1 for every p below it: the product over panes is a nonnegative supermartingale, whatever the pane
    sizes."""
    n, p0 = 2400, 0.001
    k = np.arange(n + 1)
    with np.errstate(divide="ignore"):  # logpmf(k > 0) at p = 0 is -inf
        terms = scipy_stats.binom.logpmf(k, n, p) + stats.log_mixture(stats.log_lrs(n, k, p0))
    mean = math.exp(float(special.logsumexp(terms)))
    if p == p0:
        assert expected_at_most == pytest.approx(mean, rel=1e-9)
    else:
        assert mean < expected_at_most


def test_mixture_of_nothing_is_minus_infinity() -> None:
    """All terms -inf (no restart yet) mix to -inf, not NaN."""
    assert -math.inf == float(stats.log_mixture(np.full(len(stats.FAIL_ODDS), -math.inf)))


def test_restart_weights_never_exceed_their_share() -> None:
    """The weights of all restarts, 100,000 windows of a 504-window soak, sum to at most ``share``; the soak's own
    test covers window 1, which gets no restart."""
    weights = [math.exp(change_detect.restart_log_weight(0.1, j, 504)) for j in range(1, 100_001)]
    assert 0.0 == weights[0]
    assert sum(weights) <= 0.1


def test_restarts_inside_the_soak_share_most_of_the_budget_evenly() -> None:
    """Every restart inside a 504-window soak gets the same weight, 0.8 of the share over 504; the first soak
    length after it gets 0.2/2 of the share spread over 504 windows, the second 0.2/6: a breach starting on day 10
    pays the same as one on day 2, and a gate that keeps watching after its soak is still covered."""
    share, planned = 0.1, 504
    windows = (2, 241, 505, 506, 1009, 1010, 1513)
    weight = [math.exp(change_detect.restart_log_weight(share, j, planned)) for j in windows]
    expected = [0.08 / 504] * 3 + [0.01 / 504] * 2 + [0.02 / 6 / 504] * 2
    assert expected == pytest.approx(weight, rel=1e-12)


def test_lower_bound_is_where_the_test_stops_rejecting() -> None:
    """The anytime-valid lower bound L on a rate (40 errors in 20,000 requests, threshold 1/0.001): the soak's
    test rejects every rate just below L and none just above it; L is below the observed 0.2 %."""
    n, k, log_threshold, share = 20_000, 40, math.log(1000), 0.9

    def rejected(p0: float) -> bool:
        return float(stats.log_mixture(stats.log_lrs(n, k, p0))) + math.log(share) >= log_threshold

    lower = stats.evidence_lower_bound(n, k, log_threshold, share)
    assert (True, False) == (rejected(lower * 0.999), rejected(lower * 1.001))
    assert 0 < lower < k / n


def test_no_lower_bound_without_errors() -> None:
    """Without hits nothing is rejected: the lower bound is 0."""
    assert 0.0 == stats.evidence_lower_bound(10_000, 0, math.log(100), 0.9)


def crossing_window(test: FailTest, healthy_windows: int, breach: tuple[int, int], healthy: tuple[int, int]) -> int:
    """Windows of breach (after ``healthy_windows`` healthy ones) until the test reaches its threshold."""
    restarts, soak_n, soak_k = Restarts(), 0, 0
    for window in range(1, 10_000):
        n, k = healthy if window <= healthy_windows else breach
        soak_n, soak_k = soak_n + n, soak_k + k
        test.close_window(restarts, window, n, k, 0, 0)
        total, _ = test.log_evidence(soak_n, soak_k, restarts, window + 1, 0, 0)
        if total >= test.log_threshold:
            return window - healthy_windows
    raise AssertionError("never crossed")


def test_a_breach_after_a_long_healthy_stretch_is_caught_as_fast_as_after_a_short_one() -> None:
    """2,400 requests an hour with 1 error (healthy), then 6 errors an hour (2.5x the 0.1 % ceiling): after 24 or
    after 240 healthy hours the restarted tests need the same number of breach hours, although the soak's own
    test drifted ten times further towards health."""
    test = FailTest(null_rate=0.001, alpha=0.01, restart_share=0.1, planned_windows=504)
    after_a_day = crossing_window(test, 24, breach=(2400, 6), healthy=(2400, 1))
    after_ten_days = crossing_window(test, 240, breach=(2400, 6), healthy=(2400, 1))
    assert after_a_day == after_ten_days


def test_a_breach_from_the_start_is_caught_by_the_soaks_own_test_sooner() -> None:
    """The soak's own test holds 90 % of the alpha, a restart 8 %/504 of it: a breach present from the start
    is caught in fewer hours than one that starts on day 10."""
    test = FailTest(null_rate=0.001, alpha=0.01, restart_share=0.1, planned_windows=504)
    from_start = crossing_window(test, 0, breach=(2400, 6), healthy=(2400, 1))
    mid_soak = crossing_window(test, 240, breach=(2400, 6), healthy=(2400, 1))
    assert from_start < mid_soak


def test_the_run_follows_the_breach() -> None:
    """The counts reported with a restarted test's fail start at the breach: healthy windows end the run (no
    alternative favoured), breach windows extend it."""
    test = FailTest(null_rate=0.001, alpha=0.01, restart_share=0.1, planned_windows=504)
    restarts = Restarts()
    hour = 3_600_000
    for window in range(1, 6):
        test.close_window(restarts, window, 2400, 1, (window - 1) * hour, window * hour)
    for window in range(6, 9):
        test.close_window(restarts, window, 2400, 8, (window - 1) * hour, window * hour)
    assert (5 * hour, 7200, 24) == (restarts.run_start, restarts.run_requests, restarts.run_hits)


@pytest.mark.slow
def test_false_alarms_stay_below_alpha_at_the_ceiling_over_a_long_soak() -> None:
    """Exactly at the ceiling, panes of ~40 requests read after every pane for 150 windows, 200 replicas: the
    test (alpha 10 %, so the rate is measurable) fires in at most 10 % + 3 standard errors of them."""
    test = FailTest(null_rate=0.01, alpha=0.1, restart_share=0.1, planned_windows=150)
    rng = np.random.default_rng(7)
    fired = 0
    for _ in range(200):
        restarts, soak_n, soak_k = Restarts(), 0, 0
        for window in range(1, 151):
            n = rng.poisson(40, 60)
            k = rng.binomial(n, 0.01)
            part_n, part_k = np.cumsum(n), np.cumsum(k)
            total, _ = test.log_evidence(soak_n + part_n, soak_k + part_k, restarts, window, part_n, part_k)
            if bool(np.any(total >= test.log_threshold)):
                fired += 1
                break
            test.close_window(restarts, window, int(part_n[-1]), int(part_k[-1]), 0, 0)
            soak_n, soak_k = soak_n + int(part_n[-1]), soak_k + int(part_k[-1])
    assert fired <= 20 + 3 * math.sqrt(200 * 0.1 * 0.9)


def test_the_screen_never_hides_a_crossing() -> None:
    """may_reach is a necessary condition: over 2,000 random windows (soak and window counts, restart states, 60
    panes of 0-80 requests at rates from 0 to 1 %), whenever some pane's evidence reaches the threshold, may_reach
    says so; and it does screen out a healthy window (0.079 % errors, 10 days into a soak)."""
    rng = np.random.default_rng(5)
    test = FailTest(null_rate=0.001, alpha=0.01, restart_share=0.1, planned_windows=504)
    missed, crossings = 0, 0
    for _ in range(2000):
        soak_n = int(rng.integers(0, 200_000))
        soak_k = int(rng.binomial(soak_n, rng.uniform(0, 0.003)))
        restarts = Restarts(log_sums=rng.uniform(-30, 6, len(stats.FAIL_ODDS)).tolist())
        window = int(rng.integers(1, 700))
        n = rng.integers(0, 80, 60)
        part_n, part_k = np.cumsum(n), np.cumsum(rng.binomial(n, rng.uniform(0, 0.01)))
        total, _ = test.log_evidence(soak_n + part_n, soak_k + part_k, restarts, window, part_n, part_k)
        if bool(np.any(total >= test.log_threshold)):
            crossings += 1
            missed += not test.may_reach(soak_n, soak_k + int(part_k[-1]), restarts, window, 0, int(part_k[-1]))
    assert (0, True) == (missed, crossings > 100)
    assert not test.may_reach(576_000, 455, Restarts(), 241, 0, 2)


def close_window_with_numpy(
    test: FailTest, restarts: Restarts, window: int, requests: int, hits: int, start: int, end: int
) -> None:
    """``FailTest.close_window`` as it was, in numpy (``stats.log_lrs``, ``change_detect.restart_update``): the
    reference the scalar path must reproduce bit for bit."""
    window_lrs = stats.log_lrs(requests, hits, test.null_rate)
    weight = change_detect.restart_log_weight(test.restart_share, window, test.planned_windows)
    restarts.log_sums = change_detect.restart_update(np.asarray(restarts.log_sums), weight, window_lrs).tolist()
    if restarts.run_requests == 0:
        restarts.run_start = start
    restarts.run_requests += requests
    restarts.run_hits += hits
    if float(np.max(stats.log_lrs(restarts.run_requests, restarts.run_hits, test.null_rate))) <= 0.0:
        restarts.run_start, restarts.run_requests, restarts.run_hits = end, 0, 0


@pytest.mark.parametrize("rate", [0.0, 0.0008, 0.002, 0.02])
def test_scalar_close_window_is_bit_identical_to_numpy(rate: float) -> None:
    """close_window (scalar Python) leaves exactly the state the numpy version leaves (the same doubles, run
    start and counts) over 800 windows of random traffic, healthy (0 and 0.08 %, within the 0.1 % ceiling) and
    breaching (0.2 %, 2 %: the run grows and the sums rise), including windows without requests."""
    rng = np.random.default_rng(11)
    test = FailTest(null_rate=0.001, alpha=0.0004, restart_share=0.8, planned_windows=504)
    fast, slow = Restarts(), Restarts()
    for window in range(1, 801):
        n = int(rng.integers(0, 3000)) if window % 7 else 0
        k = int(rng.binomial(n, rate))
        start, end = window * 3_600_000, (window + 1) * 3_600_000
        test.close_window(fast, window, n, k, start, end)
        close_window_with_numpy(test, slow, window, n, k, start, end)
        assert (slow.log_sums, slow.run_start, slow.run_requests, slow.run_hits) == (
            fast.log_sums,
            fast.run_start,
            fast.run_requests,
            fast.run_hits,
        )


def test_numpy_logaddexp_is_reproduced_exactly() -> None:
    """The scalar logaddexp that close_window folds with (inlined there) gives numpy's bits: an empty window folds
    each restart sum S into logaddexp(S, w) + 0, checked for 20,000 random sums, sums equal to the weight, and
    -inf on either side or both (window 1 weighs nothing), at weights inside and after the planned soak."""
    rng = np.random.default_rng(2)
    test = FailTest(null_rate=0.001, alpha=0.0004, restart_share=0.8, planned_windows=504)
    for window in (1, 2, 300, 506, 5000):
        weight = change_detect.restart_log_weight(test.restart_share, window, test.planned_windows)
        center = weight if math.isfinite(weight) else 0.0
        xs = np.concatenate((rng.normal(center, 40, 20_000), [-np.inf, 3.5, 0.0, weight]))
        xs[:500] = weight
        xs = np.concatenate((xs, [0.0] * (-xs.size % 4)))
        expected = (np.logaddexp(xs, weight) + 0.0).tolist()
        actual: list[float] = []
        for at in range(0, xs.size, 4):
            restarts = Restarts(log_sums=xs[at : at + 4].tolist(), run_requests=1)
            test.close_window(restarts, window, 0, 0, 0, 0)
            actual.extend(restarts.log_sums)
        assert expected == actual


@pytest.mark.parametrize(
    ("null_rate", "alpha", "share", "planned"),
    [(0.001, 0.01, 0.1, 504), (0.01, 0.0004, 0.8, 504), (0.05, 0.2, 0.5, 3), (0.3, 0.001, 0.1, 168)],
)
def test_the_close_screen_never_hides_a_crossing(null_rate: float, alpha: float, share: float, planned: int) -> None:
    """CloseScreen.may_cross is a necessary condition: over 20,000 random states at a window's close (soak counts
    with hit rates from 0 to 3x the null rate, restart sums from -inf to past the threshold, windows inside and
    after the planned soak), whenever the exact evidence (log_evidence, the open window empty) reaches the
    threshold the screen lets the state through; and it screens out most of the healthy states (rate < null)."""
    rng = np.random.default_rng(17)
    test = FailTest(null_rate=null_rate, alpha=alpha, restart_share=share, planned_windows=planned)
    screen = test.close_screen()
    missed, crossings, healthy, screened = 0, 0, 0, 0
    for _ in range(20_000):
        n = int(rng.integers(0, 2_000_000)) if rng.uniform() < 0.9 else int(rng.integers(0, 200))
        rate = rng.uniform(0, 3 * null_rate)
        k = min(n, int(rng.binomial(n, rate)))
        top = test.log_threshold + 2
        sums = rng.uniform(-40, top, len(stats.FAIL_ODDS))
        sums[rng.uniform(size=sums.size) < 0.1] = -np.inf
        restarts = Restarts(log_sums=sums.tolist())
        window = int(rng.integers(1, 4 * planned + 3))
        total, _ = test.log_evidence(n, k, restarts, window, 0, 0)
        may = screen.may_cross(n, k, restarts)
        if bool(total >= test.log_threshold):
            crossings += 1
            missed += not may
        elif rate < null_rate and max(sums) < 0:
            healthy += 1
            screened += not may
    assert (0, True, True) == (missed, crossings > 2000, screened > 0.9 * healthy)


@pytest.mark.parametrize(("null_rate", "alpha"), [(0.001, 0.01), (0.01, 0.0004), (0.1, 0.05)])
def test_the_close_screen_never_hides_a_pane_crossing(null_rate: float, alpha: float) -> None:
    """Over an open window, CloseScreen.may_cross given the counts when the panes begin (requests) and once they
    end (hits) is a necessary condition for any pane's evidence reaching the threshold: 5,000 random windows
    (30 panes of 0-400 requests at rates up to 10x the null rate, restart sums up to the threshold), none missed,
    and most healthy windows (rates below half the null rate, restart sums below 0) screened out."""
    rng = np.random.default_rng(23)
    test = FailTest(null_rate=null_rate, alpha=alpha, restart_share=0.1, planned_windows=504)
    screen = test.close_screen()
    missed, crossings, healthy, screened = 0, 0, 0, 0
    for _ in range(5_000):
        soak_n = int(rng.integers(0, 500_000))
        soak_k = int(rng.binomial(soak_n, rng.uniform(0, 2 * null_rate)))
        sums = rng.uniform(-40, test.log_threshold, len(stats.FAIL_ODDS))
        restarts = Restarts(log_sums=sums.tolist())
        window = int(rng.integers(1, 2000))
        open_n = int(rng.integers(0, 3000))
        rate = rng.uniform(0, 10 * null_rate)
        open_k = int(rng.binomial(open_n, rate))
        n = rng.integers(0, 400, 30)
        part_n, part_k = open_n + np.cumsum(n), open_k + np.cumsum(rng.binomial(n, rate))
        total, _ = test.log_evidence(soak_n + part_n, soak_k + part_k, restarts, window, part_n, part_k)
        may = screen.may_cross(soak_n + open_n, soak_k + int(part_k[-1]), restarts, open_n, int(part_k[-1]))
        if bool(np.any(total >= test.log_threshold)):
            crossings += 1
            missed += not may
        elif rate < 0.5 * null_rate and max(sums) < 0 and soak_k < 0.5 * null_rate * soak_n:
            healthy += 1
            screened += not may
    assert (0, True, True) == (missed, crossings > 200, screened > 0.5 * healthy)


def test_the_close_screen_at_the_boundary() -> None:
    """Right at the edge: for soak sizes from 10 to 10^9 requests, the smallest hit count whose exact evidence
    reaches the threshold (restart sums empty) is let through by the screen, and so is every restart sum that
    reaches it alone (no soak evidence)."""
    test = FailTest(null_rate=0.001, alpha=0.0004, restart_share=0.8, planned_windows=504)
    screen = test.close_screen()
    for n in (10, 1_000, 100_000, 10_000_000, 1_000_000_000):
        lo, hi = 0, n  # the first k whose evidence reaches the threshold (it rises with k)
        while lo < hi:
            mid = (lo + hi) // 2
            total, _ = test.log_evidence(n, mid, Restarts(), 2, 0, 0)
            lo, hi = (lo, mid) if bool(total >= test.log_threshold) else (mid + 1, hi)
        total, _ = test.log_evidence(n, lo, Restarts(), 2, 0, 0)
        assert (True, True) == (bool(total >= test.log_threshold), screen.may_cross(n, lo, Restarts()))
    crossing = []
    for level in np.linspace(0, 20, 2001).tolist():
        restarts = Restarts(log_sums=[level] * len(stats.FAIL_ODDS))
        total, _ = test.log_evidence(0, 0, restarts, 2, 0, 0)
        if bool(total >= test.log_threshold):
            crossing.append(screen.may_cross(0, 0, restarts))
    assert (True, True) == (len(crossing) > 100, all(crossing))
