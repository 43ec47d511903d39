"""Statistical guarantees of the verdicts, measured on the real Gate by Monte-Carlo (slow), and the methods
compared on the same simulated traffic (the CI side of bench/verdict_rates.py)."""

from __future__ import annotations

import math

import pytest

from gatekeeper.core.plan import Plan
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.sim.verdicts import (
    Change,
    Regime,
    quantile_of,
    run_replica,
    sprt_fail_hours,
    verdict_rates,
    with_method,
)

WEEK_MS = 604_800_000
REPLICAS = 100


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(default_plan())


@pytest.mark.slow
def test_healthy_tier_is_never_failed_and_passes_after_its_soak(plan: Plan) -> None:
    """A rollout tier at half its error ceiling, looked at hourly for two weeks, is failed in at most a few
    of 100 replicas (the plan allows 1 %) and passes in nearly all, never before its one-week soak."""
    report = verdict_rates(plan, "rollout-75", Regime(0.0005, 35), 100, REPLICAS, 2 * WEEK_MS)
    assert report.failed <= 4  # P(>= 5 | 100 trials at 1 %) < 0.4 %
    assert report.passed_first >= 95
    assert report.median_pass_hours is not None
    assert report.median_pass_hours >= 168


@pytest.mark.slow
def test_breaching_tier_never_slips_through(plan: Plan) -> None:
    """A tier at twice its error ceiling is failed in every replica and passed in none."""
    report = verdict_rates(plan, "rollout-75", Regime(0.002, 35), 100, REPLICAS, 2 * WEEK_MS)
    assert REPLICAS == report.failed
    assert 0 == report.passed_first


@pytest.mark.slow
def test_tier_exactly_at_its_ceiling_passes_rarely(plan: Plan) -> None:
    """At the pass threshold itself (the worst case for a false pass) the plan allows 5 %: at most 12 of
    100 replicas may pass (P(>= 13 | 100 at 5 %) < 0.2 %)."""
    report = verdict_rates(plan, "rollout-75", Regime(0.001, 35), 100, REPLICAS, 2 * WEEK_MS)
    assert report.passed_first <= 12


@pytest.mark.slow
def test_thin_traffic_neither_passes_nor_fails(plan: Plan) -> None:
    """At 0.05 requests a minute a tier never reaches the minimum sample: no verdict either way."""
    report = verdict_rates(plan, "rollout-75", Regime(0.0005, 35), 0.05, 20, 2 * WEEK_MS)
    assert (0, 0) == (report.failed, report.passed_first)


# -- the methods side by side on the same traffic (bench/verdict_rates.py has the full table) ----------------


def fail_hours(plan: Plan, regime: Regime, replicas: int, change: Change | None = None) -> list[float]:
    """Hours to the first fail of each replica of the canary at 40 requests a minute (4 weeks at most)."""
    runs = [run_replica(plan, "canary", regime, 40, 4 * WEEK_MS, 100_003 + i, change) for i in range(replicas)]
    return [o.fail_hours for o in runs if o.fail_hours is not None]


@pytest.mark.slow
def test_sequential_method_fails_a_2x_canary_sooner_than_the_fixed_one(plan: Plan) -> None:
    """Canary at 2x its 0.1 % ceiling, 40 requests a minute, 100 replicas on the same traffic: every method fails
    every replica; the sequential method's median time to fail is below the fixed method's with the plan's 1 %
    per gate, and still below it with the 1 % held for the whole rollout (1 %/24 per gate)."""
    fixed = fail_hours(with_method(plan, "fixed", "gate"), Regime(0.002, 35), REPLICAS)
    per_gate = fail_hours(with_method(plan, "sequential", "gate"), Regime(0.002, 35), REPLICAS)
    per_rollout = fail_hours(with_method(plan, "sequential", "rollout"), Regime(0.002, 35), REPLICAS)
    assert [REPLICAS] * 3 == [len(fixed), len(per_gate), len(per_rollout)]
    median = [quantile_of(h, 0.5) or math.inf for h in (fixed, per_gate, per_rollout)]
    assert median[1] < median[2] < median[0]


@pytest.mark.slow
def test_breach_starting_mid_soak_is_caught_by_the_restarted_tests(plan: Plan) -> None:
    """Canary healthy (the seed's 0.079 %) for 4 days, then 4x its ceiling: with the sequential method every
    one of 30 replicas fails after the change (none before), within a day of it."""
    change = Change(96, Regime(0.004, 35))
    hours = fail_hours(plan, Regime(0.00079, 35), 30, change)
    assert 30 == len(hours)
    assert [] == [h for h in hours if not 96 < h <= 96 + 24]


def with_false_fail(plan: Plan, false_fail: float) -> Plan:
    """``plan`` on the sequential method with ``false_fail`` per gate (large, so that a rate below it is measurable)."""
    ev = with_method(plan, "sequential", "gate").evaluation
    conf = ev.confidence.model_copy(update={"false_fail": false_fail})
    return plan.model_copy(update={"evaluation": ev.model_copy(update={"confidence": conf})})


@pytest.mark.slow
@pytest.mark.parametrize("times_ceiling", [0.8, 1.0])
def test_false_fail_stays_within_its_bound_over_a_whole_soak_on_thin_traffic(plan: Plan, times_ceiling: float) -> None:
    """A rollout tier at 0.8x and at exactly its 0.1 % error ceiling on thin traffic (5 requests a minute), judged
    after every pane through its one-week soak and a week after it, with false_fail 40 % per gate (the soak's test
    and every restarted test together): at most 40 % of 40 replicas fail, plus 3 standard errors."""
    replicas, false_fail = 40, 0.4
    report = verdict_rates(
        with_false_fail(plan, false_fail), "rollout-75", Regime(0.001 * times_ceiling, 35), 5, replicas, 2 * WEEK_MS
    )
    allowed = false_fail * replicas + 3 * math.sqrt(replicas * false_fail * (1 - false_fail))
    assert report.failed <= allowed


def test_wald_sprt_reference_fails_a_clear_breach() -> None:
    """The SPRT reference (ceiling 0.1 % against 0.2 %, alpha 1 %) on 20 % errors fails within the first
    hour, and never on error-free traffic over a day."""
    assert 0 < (sprt_fail_hours(Regime(0.2, 35), 40, WEEK_MS, 1, 0.001, 0.01, 0.002) or math.inf) <= 1
    assert sprt_fail_hours(Regime(0.0, 35), 40, WEEK_MS // 7, 1, 0.001, 0.01, 0.002) is None
