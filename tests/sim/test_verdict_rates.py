"""Statistical guarantees of the verdicts, measured on the real Gate by Monte-Carlo (slow)."""

from __future__ import annotations

import pytest

from gatekeeper.core.plan import Plan
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.sim.verdicts import Regime, verdict_rates

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
