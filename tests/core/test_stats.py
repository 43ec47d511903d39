"""Confidence bounds and alpha spending: Wilson bounds against scipy, exact (Clopper-Pearson) bounds against
the binomial tails, order-statistic quantile bounds by simulation, and the look schedules' budgets."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from gatekeeper.core import sketch, stats

REL = 1e-9
SIZES = (1, 7, 12345, 10**6)

alphas = st.floats(min_value=1e-7, max_value=0.2)


@st.composite
def trials(draw: st.DrawFn) -> tuple[int, int]:
    """(k, n) with 1 <= n <= 1e6 and 0 <= k <= n, often at the edges (k in {0, 1, n-1, n})."""
    n = draw(st.one_of(st.integers(1, 50), st.integers(1, 10**6)))
    k = draw(st.one_of(st.integers(0, n), st.sampled_from([0, 1, n - 1, n]).map(lambda k: min(max(k, 0), n))))
    return k, n


def close(expected: float, actual: float) -> bool:
    return math.isclose(expected, actual, rel_tol=REL, abs_tol=0.0)


def sf_level(z: float) -> float:
    """The two-sided level whose interval ends are one-sided bounds at ``z``: 1 - 2 (1 - Phi(z))."""
    return float(1 - 2 * scipy_stats.norm.sf(z))


# -- Wilson ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("continuity", "method"), [(False, "wilson"), (True, "wilsoncc")])
@settings(max_examples=300, deadline=None)
@given(kn=trials(), alpha=alphas)
def test_wilson_matches_scipy(continuity: bool, method: str, kn: tuple[int, int], alpha: float) -> None:
    """wilson_bounds(k, n, z) is scipy's binomtest(k, n).proportion_ci(method="wilson"/"wilsoncc") at the
    two-sided level 1 - 2 (1 - Phi(z)): each end of that interval is a one-sided bound at z (rel. 1e-9)."""
    k, n = kn
    z = stats.z_for(alpha)
    lower, upper = stats.wilson_bounds(k, n, z, continuity)
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=sf_level(z), method=method)
    assert close(ci.low, float(lower)), (float(lower), ci.low)
    assert close(ci.high, float(upper)), (float(upper), ci.high)


@pytest.mark.parametrize("continuity", [False, True])
def test_wilson_without_trials_is_uninformative(continuity: bool) -> None:
    """n = 0 gives the bounds (0, 1)."""
    lower, upper = stats.wilson_bounds(0, 0, 2.0, continuity)
    assert (0.0, 1.0) == (float(lower), float(upper))


@pytest.mark.parametrize("continuity", [False, True])
def test_wilson_lower_is_zero_without_successes(continuity: bool) -> None:
    """k = 0 gives a lower bound of exactly 0, for any n and z."""
    z = np.linspace(0.5, 6, 400)
    lowers = [float(stats.wilson_bounds(0, n, float(zz), continuity)[0]) for zz in z for n in SIZES]
    assert {0.0} == set(lowers)


@pytest.mark.parametrize("continuity", [False, True])
def test_wilson_upper_is_one_when_all_succeed(continuity: bool) -> None:
    """k = n gives an upper bound of exactly 1, for any n and z (regression: without continuity correction
    the formula gave 0.9999999999999998 for many z)."""
    z = np.linspace(0.5, 6, 400)
    uppers = [float(stats.wilson_bounds(n, n, float(zz), continuity)[1]) for zz in z for n in SIZES]
    assert {1.0} == set(uppers)


def test_wilson_is_vectorised() -> None:
    """Arrays of (k, n) give arrays of bounds equal to the scalar results."""
    k, n = np.array([0, 3, 10, 0]), np.array([10, 10, 10, 0])
    lower, upper = stats.wilson_bounds(k, n, 2.0, True)
    pairs = zip(k.tolist(), n.tolist(), strict=True)
    one_by_one = [tuple(float(x) for x in stats.wilson_bounds(a, b, 2.0, True)) for a, b in pairs]
    assert one_by_one == list(zip(lower.tolist(), upper.tolist(), strict=True))


@settings(max_examples=200, deadline=None)
@given(alphas)
def test_z_for(alpha: float) -> None:
    """z_for(alpha) is the one-sided normal critical value: P(Z > z) = alpha."""
    assert math.isclose(float(scipy_stats.norm.isf(alpha)), stats.z_for(alpha), rel_tol=1e-9)


# -- exact (Clopper-Pearson) and rate_bounds -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(kn=trials(), alpha=alphas)
def test_clopper_pearson_solves_the_binomial_tails(kn: tuple[int, int], alpha: float) -> None:
    """The exact lower bound p_lo solves P(X >= k | p_lo) = alpha for X ~ Binomial(n, p), and the upper
    bound is its mirror image, p_hi(k, n) = 1 - p_lo(n - k, n), so P(X <= k | p_hi) = alpha too (checked
    directly where p_hi <= 0.5: nearer to 1 a float holds too few digits of 1 - p_hi to recompute the tail).
    scipy's own "exact" interval finds these roots with an absolute tolerance of ~1e-12, too coarse for a
    1e-9 relative comparison near 0, so the tails are the oracle here."""
    k, n = kn
    lower, upper = stats.clopper_pearson(k, n, alpha)
    if k == 0:
        assert 0.0 == lower
    else:
        assert math.isclose(alpha, float(scipy_stats.binom.sf(k - 1, n, lower)), rel_tol=1e-6)
    if k == n:
        assert 1.0 == upper
    else:
        mirror = 1 - stats.clopper_pearson(n - k, n, alpha)[0]
        assert math.isclose(mirror, upper, rel_tol=1e-9, abs_tol=1e-15)
        if upper <= 0.5:
            assert math.isclose(alpha, float(scipy_stats.binom.cdf(k, n, upper)), rel_tol=1e-6)
    assert lower <= k / n <= upper


def test_clopper_pearson_without_trials() -> None:
    """No requests: the rate could be anything, (0, 1)."""
    assert (0.0, 1.0) == stats.clopper_pearson(0, 0, 0.05)


@settings(max_examples=100, deadline=None)
@given(kn=trials(), alpha=alphas)
def test_rate_bounds_dispatch(kn: tuple[int, int], alpha: float) -> None:
    """rate_bounds uses Clopper-Pearson by default ("exact") and Wilson (with or without continuity
    correction) on request, at z = z_for(alpha)."""
    k, n = kn
    z = stats.z_for(alpha)
    assert stats.clopper_pearson(k, n, alpha) == stats.rate_bounds(k, n, alpha)
    assert stats.clopper_pearson(k, n, alpha) == stats.rate_bounds(k, n, alpha, "exact")
    for method, continuity in (("wilson", False), ("wilson_cc", True)):
        lower, upper = stats.wilson_bounds(k, n, z, continuity)
        assert (float(lower), float(upper)) == stats.rate_bounds(k, n, alpha, method)


# -- quantile bounds -------------------------------------------------------------------------------------

MU, SIGMA = 3.0, 0.8  # lognormal latencies, median ~20 ms


def true_quantile(q: float) -> float:
    return math.exp(MU + SIGMA * NormalDist().inv_cdf(q))


def sketch_rows(samples: np.ndarray) -> np.ndarray:
    """One sketch per row of samples, as an (rows, NBINS) count array."""
    index = sketch.bucket_of(samples.ravel()).reshape(samples.shape)
    rows = np.arange(samples.shape[0])[:, None] * sketch.NBINS
    counts = np.bincount((rows + index).ravel(), minlength=samples.shape[0] * sketch.NBINS)
    return counts.reshape(samples.shape[0], sketch.NBINS).astype(np.int64)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_quantile_bounds_contain_truth_on_a_large_sample(q: float) -> None:
    """With 200k lognormal samples the true quantile lies within [lower, upper] at alpha = 1e-6, and the
    interval is narrow (within 5 % either side)."""
    rng = np.random.default_rng(20251019)
    bins = sketch.empty()
    sketch.add(bins, rng.lognormal(MU, SIGMA, 200_000))
    lower, upper = stats.quantile_bounds(bins, q, 1e-6)
    truth = true_quantile(q)
    assert lower <= truth <= upper
    assert truth / 1.05 < lower
    assert upper < truth * 1.05


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_quantile_bounds_coverage(q: float) -> None:
    """Over 400 repetitions of n = 2000 lognormal samples at alpha = 0.05, each one-sided bound misses the
    true quantile in at most 5 % (+ 3 % for simulation noise) of the repetitions."""
    rng = np.random.default_rng(int(q * 1000))
    truth = true_quantile(q)
    rows = sketch_rows(rng.lognormal(MU, SIGMA, (400, 2000)))
    bounds = np.array([stats.quantile_bounds(row, q, 0.05) for row in rows])
    lower_misses = float(np.mean(bounds[:, 0] > truth))
    upper_misses = float(np.mean(bounds[:, 1] < truth))
    assert lower_misses <= 0.05 + 0.03
    assert upper_misses <= 0.05 + 0.03
    assert np.isfinite(bounds).all()


def test_quantile_upper_bound_is_never_below_values_past_the_sketch_range() -> None:
    """Latencies above the sketch's top edge (1e8 ms) are clamped into its top bucket; an upper bound landing
    there is unbounded, never the bucket's edge below the true values (regression: a P99 of 5e8 ms had an
    upper bound of ~1e8 ms when the core was fed directly, bypassing the decoder's one-day limit)."""
    bins = sketch.empty()
    sketch.add(bins, np.full(1000, 5e8))
    lower, upper = stats.quantile_bounds(bins, 0.99, 0.01)
    assert (True, math.inf) == (lower <= 5e8, upper)


def test_quantile_bounds_without_data() -> None:
    """An empty sketch bounds nothing: (0, inf)."""
    assert (0.0, math.inf) == stats.quantile_bounds(sketch.empty(), 0.99, 0.05)


def test_quantile_bounds_with_too_few_samples() -> None:
    """Ten samples cannot bound a P99 from above at 95 %: the upper bound is inf."""
    bins = sketch.empty()
    sketch.add(bins, np.linspace(10, 100, 10))
    lower, upper = stats.quantile_bounds(bins, 0.99, 0.05)
    assert math.inf == upper
    assert 0 < lower <= 100


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5000),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]),
    alpha=alphas,
)
def test_quantile_bounds_bracket_the_point_estimate(seed: int, n: int, q: float, alpha: float) -> None:
    """lower <= sketch.quantile(bins, q) <= upper: the metrics never show a quantile outside its own bounds.
    Any n, even a handful of samples."""
    rng = np.random.default_rng(seed)
    bins = sketch.empty()
    sketch.add(bins, rng.lognormal(rng.uniform(0, 8), rng.uniform(0.1, 2), n))
    lower, upper = stats.quantile_bounds(bins, q, alpha)
    estimate = sketch.quantile(bins, q)
    assert estimate is not None
    assert lower <= estimate <= upper


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_quantile_bounds_bracket_the_point_estimate_for_tiny_samples(n: int) -> None:
    """Even with a handful of requests, p99_lower_ms <= p99_ms (regression: with the lower-rank estimate
    floor(q (n - 1)) the lower bound passed the estimate for n = 2..5 at alpha = 0.05)."""
    bins = sketch.empty()
    sketch.add(bins, np.linspace(100.0, 200.0, n))
    lower, _ = stats.quantile_bounds(bins, 0.99, 0.05)
    estimate = sketch.quantile(bins, 0.99)
    assert estimate is not None
    assert lower <= estimate


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 100_000), q=st.floats(0.01, 0.999), alpha=alphas)
def test_order_statistic_ranks_are_exact(n: int, q: float, alpha: float) -> None:
    """The ranks are the tightest valid ones: P(B <= l - 1) <= alpha < P(B <= l) and
    P(B <= u - 2) < 1 - alpha <= P(B <= u - 1) for B ~ Binomial(n, q) (0 and n + 1 meaning no bound)."""
    low, high = stats.order_statistic_ranks(n, q, alpha)
    cdf = scipy_stats.binom(n, q).cdf
    assume(abs(cdf(low) - alpha) > 1e-9 and abs(cdf(high - 1) - (1 - alpha)) > 1e-9)  # no knife edges
    assert 0 <= low <= n
    assert 1 <= high <= n + 1
    if low >= 1:
        assert cdf(low - 1) <= alpha
    assert cdf(low) > alpha
    if high <= n:
        assert cdf(high - 1) >= 1 - alpha
    assert cdf(high - 2) < 1 - alpha


# -- alpha spending --------------------------------------------------------------------------------------


@pytest.mark.parametrize("planned", [1, 6, 168, 504])
def test_look_alpha_spends_at_most_the_budget(planned: int) -> None:
    """look_alpha is positive at every look and sums to at most the total over 100k looks, however many
    were planned; the planned looks share half the budget evenly."""
    total = 0.01
    spent = [stats.look_alpha(total, look, planned) for look in range(1, 100_001)]
    assert min(spent) > 0
    assert math.fsum(spent) <= total
    assert math.isclose(total / 2, math.fsum(spent[:planned]))
    assert {total / 2 / planned} == set(spent[:planned])


def test_pass_look_alpha_spends_at_most_the_budget() -> None:
    """pass_look_alpha is positive, decreasing and sums to at most the total over 100k looks."""
    total = 0.05
    spent = [stats.pass_look_alpha(total, look) for look in range(1, 100_001)]
    assert min(spent) > 0
    assert spent == sorted(spent, reverse=True)
    assert math.fsum(spent) <= total
    assert total / 2 == spent[0]


@pytest.mark.parametrize(("look", "planned"), [(0, 1), (1, 0), (-1, 5)])
def test_look_alpha_counts_from_one(look: int, planned: int) -> None:
    """Looks are 1-based and at least one must be planned."""
    with pytest.raises(ValueError, match="counted from 1"):
        stats.look_alpha(0.01, look, planned)


def test_pass_look_alpha_counts_from_one() -> None:
    """Pass looks are 1-based."""
    with pytest.raises(ValueError, match="counted from 1"):
        stats.pass_look_alpha(0.05, 0)
