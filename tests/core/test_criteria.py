"""Judges: verdicts from evidence at an alpha, thresholds and reasons, and the cheap fail screens."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core import sketch, stats
from gatekeeper.core.criteria import (
    JUDGES,
    Evidence,
    Look,
    StatisticalJudge,
    UptimeEvidence,
    UptimeJudge,
    error_rate_judge,
    judges_for,
    latency_judge,
)
from gatekeeper.core.plan import (
    ErrorRateCriterion,
    LatencyCriterion,
    LiftCriterion,
    NoIncidentsCriterion,
    NoRegressionCriterion,
    UptimeCriterion,
)

from .helpers import HOUR, MINUTE, make_plan

ERROR_RATE = ErrorRateCriterion(
    kind="error_rate", pass_below=0.02, fail_above=0.05, min_requests=200, min_requests_to_fail=50
)
LATENCY = LatencyCriterion(
    kind="latency",
    quantile=0.99,
    pass_below_ms=400,
    fail_above_ms=800,
    min_requests=200,
    min_requests_to_fail=50,
)
UPTIME = UptimeCriterion(kind="uptime", at_least=0.9)
ALPHA = 1e-3
NO_DOWN = UptimeEvidence(down_ms=0, elapsed_ms=HOUR, soak_ms=HOUR)


def evidence(requests: int, errors: int = 0, latencies: list[float] | None = None) -> Evidence:
    bins = sketch.empty()
    sketch.add(bins, np.asarray(latencies if latencies is not None else [10.0] * requests, dtype=np.float64))
    return Evidence(requests, errors, bins)


def look(window: Evidence, soak: Evidence | None = None, up: UptimeEvidence = NO_DOWN) -> Look:
    return Look(window, soak or window, up, "exact")


def verdicts(results: list[object]) -> list[tuple[str, str]]:
    return [(r.scope, r.verdict) for r in results]  # type: ignore[attr-defined]


# -- error rate ------------------------------------------------------------------------------------------


def test_error_rate_breach_fails_both_scopes() -> None:
    """100 errors in 200 requests is confidently above a 5 % ceiling in the window and in the soak; the
    result carries the ceiling, the observed rate and the exact lower bound at the look's alpha."""
    judge = error_rate_judge(ERROR_RATE)
    results = judge.fail_checks(look(evidence(200, 100)), ALPHA)
    assert [("window", "fail"), ("soak", "fail")] == verdicts(list(results))
    first = results[0]
    lower, upper = stats.clopper_pearson(100, 200, ALPHA)
    assert (0.05, 0.5, lower, upper, 200) == (
        first.threshold,
        first.observed,
        first.lower,
        first.upper,
        first.requests,
    )
    assert "above the 5% ceiling" in first.reason


def test_error_rate_needs_requests_to_fail() -> None:
    """Below min_requests_to_fail even 100 % errors is inconclusive; the reason says how many are needed."""
    results = error_rate_judge(ERROR_RATE).fail_checks(look(evidence(49, 49)), ALPHA)
    assert [("window", "inconclusive"), ("soak", "inconclusive")] == verdicts(list(results))
    assert "49 requests in the window; 50 needed to fail" == results[0].reason.split(": ", 1)[1]


def test_error_rate_passes_when_confidently_below() -> None:
    """0 errors in 1000 requests is confidently below 2 %: pass, judged against pass_below over the soak."""
    result = error_rate_judge(ERROR_RATE).pass_check(look(evidence(1000, 0)), 0.025)
    assert ("soak", "pass", 0.02, 0.0) == (result.scope, result.verdict, result.threshold, result.observed)
    assert result.upper is not None
    assert result.upper < 0.02


def test_error_rate_between_thresholds_is_inconclusive() -> None:
    """3 % errors with pass below 2 % and fail above 5 %: neither pass nor fail."""
    judge = error_rate_judge(ERROR_RATE)
    ev = evidence(2000, 60)
    assert "inconclusive" == judge.pass_check(look(ev), 0.025).verdict
    assert ["inconclusive", "inconclusive"] == [r.verdict for r in judge.fail_checks(look(ev), ALPHA)]


def test_error_rate_needs_requests_to_pass() -> None:
    """Fewer than min_requests never pass, however clean."""
    result = error_rate_judge(ERROR_RATE).pass_check(look(evidence(199, 0)), 0.025)
    assert ("inconclusive", 199) == (result.verdict, result.requests)
    assert "200 needed to pass" in result.reason


def test_error_rate_without_data() -> None:
    """No requests: no observed value, bounds (0, 1), inconclusive."""
    result = error_rate_judge(ERROR_RATE).pass_check(look(evidence(0)), 0.025)
    assert ("inconclusive", None, 0.0, 1.0) == (result.verdict, result.observed, result.lower, result.upper)


@pytest.mark.parametrize("method", ["exact", "wilson", "wilson_cc"])
def test_error_rate_method(method: str) -> None:
    """The look's method picks the rate bounds: the result's bounds are rate_bounds(..., method)."""
    result = error_rate_judge(ERROR_RATE).fail_checks(
        Look(evidence(300, 30), evidence(300, 30), NO_DOWN, method), ALPHA
    )
    assert stats.rate_bounds(30, 300, ALPHA, method) == (result[0].lower, result[0].upper)


# -- latency ---------------------------------------------------------------------------------------------


def test_latency_breach_fails() -> None:
    """Half the requests at 2 s put the P99 confidently above an 800 ms ceiling."""
    ev = evidence(400, latencies=[50.0] * 200 + [2000.0] * 200)
    results = latency_judge(LATENCY).fail_checks(look(ev), ALPHA)
    assert [("window", "fail"), ("soak", "fail")] == verdicts(list(results))
    assert "p99_latency_ms" == results[0].name
    assert 800 == results[0].threshold
    assert results[0].lower is not None
    assert results[0].lower > 800


def test_latency_passes_when_fast() -> None:
    """All requests at 50 ms: the P99 is confidently below 400 ms; observed is the sketch's P99."""
    ev = evidence(1000, latencies=[50.0] * 1000)
    result = latency_judge(LATENCY).pass_check(look(ev), 0.025)
    assert ("pass", 400) == (result.verdict, result.threshold)
    assert result.observed == pytest.approx(50.0, rel=sketch.RELATIVE_ACCURACY)
    assert result.upper == pytest.approx(50.0, rel=2 * sketch.RELATIVE_ACCURACY)


def test_latency_without_enough_samples_has_no_upper_bound() -> None:
    """With too few samples for an upper bound on the P99, ``upper`` is None (not inf) and the verdict is
    inconclusive."""
    result = latency_judge(LATENCY).pass_check(look(evidence(20)), 0.025)
    assert ("inconclusive", None) == (result.verdict, result.upper)


# -- the fail screens (``may_fail``) are sound -----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 5000),
    share=st.floats(0, 1),
    fail_above=st.floats(0.001, 0.9),
    alpha=st.floats(1e-9, 0.2),
    method=st.sampled_from(["exact", "wilson", "wilson_cc"]),
)
def test_error_rate_shortcuts_agree_with_the_checks(
    n: int, share: float, fail_above: float, alpha: float, method: str
) -> None:
    """When may_fail says no, fail_checks finds no fail either (the screen only skips work); ``may_pass``
    (unworded, the upper bound alone) says pass exactly when ``pass_check``'s verdict is pass."""
    spec = ErrorRateCriterion(
        kind="error_rate", pass_below=fail_above / 2, fail_above=fail_above, min_requests=100, min_requests_to_fail=1
    )
    judge = error_rate_judge(spec)
    ev = Evidence(n, round(n * share), sketch.empty())
    view = Look(ev, ev, NO_DOWN, method)
    if not judge.may_fail(view):
        assert [] == [r for r in judge.fail_checks(view, alpha) if r.verdict == "fail"]
    assert (judge.pass_check(view, alpha).verdict == "pass") == judge.may_pass(view, alpha)


def test_latency_screen_never_hides_a_fail() -> None:
    """When may_fail says no, fail_checks finds no fail either, for any data, quantile and threshold; the data
    put the quantile on both sides of the ceiling, so both answers of the screen are exercised many times
    (regression: the generated data never made the screen say no for q >= 0.9, so nothing was checked)."""
    rng = np.random.default_rng(20261201)
    screened = {True: 0, False: 0}
    for _ in range(600):
        n = int(rng.integers(1, 3000))
        q = float(rng.choice([0.5, 0.9, 0.99, 0.999]))
        fail_above = float(rng.uniform(1, 1000))
        alpha = float(10 ** rng.uniform(-9, np.log10(0.2)))
        spec = LatencyCriterion(
            kind="latency", quantile=q, pass_below_ms=fail_above, fail_above_ms=fail_above, min_requests_to_fail=1
        )
        judge = latency_judge(spec)
        sigma = rng.uniform(0.05, 2)
        # The median at 1/30 to 3x the ceiling: the q-quantile lands below the ceiling about as often as above.
        median = fail_above * np.exp(rng.uniform(np.log(1 / 30), np.log(3)))
        ev = evidence(n, latencies=list(rng.lognormal(np.log(median), sigma, n)))
        view = look(ev)
        may_fail = judge.may_fail(view)
        screened[may_fail] += 1
        if not may_fail:
            assert [] == [r for r in judge.fail_checks(view, alpha) if r.verdict == "fail"]
    assert (True, True) == (screened[False] >= 100, screened[True] >= 100), screened


def test_latency_may_pass_is_the_pass_checks_verdict() -> None:
    """``may_pass`` says pass exactly when ``pass_check``'s verdict is pass, for any data, quantile and pass line;
    the data put the quantile on both sides of the line, so both answers are checked many times."""
    rng = np.random.default_rng(20261202)
    seen = {True: 0, False: 0}
    for _ in range(400):
        n = int(rng.integers(0, 3000))
        q = float(rng.choice([0.5, 0.9, 0.99]))
        pass_below = float(rng.uniform(1, 1000))
        alpha = float(10 ** rng.uniform(-9, np.log10(0.2)))
        spec = LatencyCriterion(kind="latency", quantile=q, pass_below_ms=pass_below, fail_above_ms=2 * pass_below)
        judge = latency_judge(spec)
        median = pass_below * np.exp(rng.uniform(np.log(1 / 30), np.log(3)))
        view = look(evidence(n, latencies=list(rng.lognormal(np.log(median), rng.uniform(0.05, 2), n))))
        passes = judge.may_pass(view, alpha)
        seen[passes] += 1
        assert (judge.pass_check(view, alpha).verdict == "pass") == passes
    assert (True, True) == (seen[False] >= 50, seen[True] >= 50), seen


# -- uptime ----------------------------------------------------------------------------------------------


def uptime_look(down_min: int, elapsed: int = HOUR, soak: int = HOUR) -> Look:
    return look(evidence(0), up=UptimeEvidence(down_min * MINUTE, elapsed, soak))


def test_uptime_fails_beyond_the_budget() -> None:
    """90 % over a 1 h soak allows 6 down minutes: 7 fail (a certain breach, whatever the alpha)."""
    judge = UptimeJudge(UPTIME)
    results = judge.fail_checks(uptime_look(7, elapsed=30 * MINUTE), ALPHA)
    assert [("soak", "fail")] == verdicts(list(results))
    assert (0.9, True) == (results[0].threshold, judge.may_fail(uptime_look(7, elapsed=30 * MINUTE)))
    assert "7 min down" in results[0].reason


def test_uptime_within_the_budget_is_inconclusive() -> None:
    """5 down minutes of the 6 allowed do not fail."""
    judge = UptimeJudge(UPTIME)
    assert [("soak", "inconclusive")] == verdicts(list(judge.fail_checks(uptime_look(5), ALPHA)))
    assert not judge.may_fail(uptime_look(5))


def test_uptime_exactly_at_the_floor_does_not_fail() -> None:
    """Uptime exactly at ``at_least`` (6 of 60 minutes down at 90 %) is not a breach: the pass check accepts
    it and the fail check does not fail it (regression: 1 - 0.9 = 0.09999999999999998 made the budget
    5.99 minutes)."""
    judge = UptimeJudge(UPTIME)
    assert "pass" == judge.pass_check(uptime_look(6), 0.05).verdict
    assert ["inconclusive"] == [r.verdict for r in judge.fail_checks(uptime_look(6), ALPHA)]
    assert not judge.may_fail(uptime_look(6))


def test_uptime_budget_grows_past_the_soak() -> None:
    """After the soak the budget is a share of the elapsed time: 11 down minutes in 2 h at 90 % are fine."""
    judge = UptimeJudge(UPTIME)
    within = judge.fail_checks(uptime_look(11, elapsed=2 * HOUR), ALPHA)
    assert ["inconclusive"] == [r.verdict for r in within]
    assert ["fail"] == [r.verdict for r in judge.fail_checks(uptime_look(13, elapsed=2 * HOUR), ALPHA)]


def test_uptime_passes_only_after_the_soak() -> None:
    """Uptime passes once the whole soak elapsed with uptime >= at_least; before that it is inconclusive."""
    judge = UptimeJudge(UPTIME)
    done = judge.pass_check(uptime_look(3), 0.05)
    assert (done.verdict, done.observed) == ("pass", 1 - 3 / 60)
    assert "inconclusive" == judge.pass_check(uptime_look(0, elapsed=50 * MINUTE), 0.05).verdict


def test_uptime_before_any_time_elapsed() -> None:
    """With no elapsed time there is no uptime to show: observed None, 'n/a' in the reason."""
    result = UptimeJudge(UPTIME).pass_check(uptime_look(0, elapsed=0), 0.05)
    assert (None, "inconclusive") == (result.observed, result.verdict)
    assert "n/a" in result.reason


@settings(max_examples=300, deadline=None)
@given(
    down=st.integers(0, HOUR),
    elapsed=st.integers(0, 2 * HOUR),
    at_least=st.sampled_from([0.5, 0.9, 0.999, 0.999999]),
)
def test_uptime_may_fail_is_exact(down: int, elapsed: int, at_least: float) -> None:
    """``may_fail`` says yes exactly when ``fail_checks`` fails, no down time included (its fast path)."""
    judge = UptimeJudge(UptimeCriterion(kind="uptime", at_least=at_least))
    view = look(evidence(0), up=UptimeEvidence(down, elapsed, HOUR))
    assert ("fail" in [r.verdict for r in judge.fail_checks(view, ALPHA)]) == judge.may_fail(view)


def test_uptime_evidence() -> None:
    """uptime = 1 - down / elapsed, None before any time elapsed."""
    assert 0.75 == UptimeEvidence(15 * MINUTE, HOUR, HOUR).uptime
    assert UptimeEvidence(0, 0, HOUR).uptime is None


# -- registry --------------------------------------------------------------------------------------------


def test_judges_for_follow_plan_order() -> None:
    """A tier's judges come in the order of its criteria, one per criterion, statistical ones flagged."""
    plan = make_plan()
    judges = judges_for(plan.phases[0].tiers[0], plan.evaluation)
    assert [
        ("error_rate", True),
        ("p99_latency_ms", True),
        ("uptime", False),
    ] == [(j.name, j.statistical) for j in judges]
    assert isinstance(judges[0], StatisticalJudge)
    assert isinstance(judges[2], UptimeJudge)


def test_every_criterion_kind_has_a_judge() -> None:
    """JUDGES covers every criterion kind of the plan model."""
    kinds = {
        ErrorRateCriterion,
        LatencyCriterion,
        UptimeCriterion,
        NoIncidentsCriterion,
        LiftCriterion,
        NoRegressionCriterion,
    }
    assert kinds == set(JUDGES)
