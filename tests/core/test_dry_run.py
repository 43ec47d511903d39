"""Dry-run criteria and tiers (core/dry_run.py): judged and reported in every decision, never failing, holding
or blocking a pass; no breach alerts; plan versions of plans without them unchanged."""

from __future__ import annotations

from typing import Any

from gatekeeper.core.decision import Decision
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan

from .helpers import EAST, breach_then_healthy, make_plan, plan_dict, tier_of


def decide(raw: dict[str, Any]) -> tuple[list[Decision], int]:
    """us-east: 10 minutes at 30 % errors, then healthy for 3 hours (soak 1 h); the decisions and breach events."""
    engine = Pipeline(make_plan(raw))
    out = engine.ingest(breach_then_healthy(EAST, end_min=180)) + engine.flush()
    return [d for d in out if d.region == "us-east"], len(engine.take_breaches())


def test_a_live_error_criterion_fails_the_burst() -> None:
    """The control: with every criterion live, the burst fails and holds us-east."""
    decisions, _ = decide(plan_dict())
    assert ["fail", "hold"] == [d.decision for d in decisions][:2]


def test_a_dry_run_criterion_is_reported_but_never_fails_nor_blocks() -> None:
    """The error-rate criterion in dry run: no fail or hold; the tier passes at the end of its soak on the live
    criteria, and the pass decision still reports the error-rate result, marked ``dry_run``."""
    raw = plan_dict()
    tier_of(raw)["criteria"][0]["dry_run"] = True
    decisions, _ = decide(raw)
    assert ["pass"] == [d.decision for d in decisions]
    marked = {c.name: c.dry_run for c in decisions[0].criteria}
    assert {"error_rate": True, "p99_latency_ms": False, "uptime": False} == marked


def test_a_dry_run_tier_never_fails_and_raises_no_alerts() -> None:
    """A whole tier in dry run: every criterion reported as dry run, no fail or hold, and no breach alert even
    though its error budget burns (alerts: a page rule over 10 m / 5 m at 2x)."""
    alerts = {"rules": [{"severity": "page", "long": "10m", "short": "5m", "burn_rate": 2}], "min_requests": 50}
    live, dry = plan_dict(alerts=alerts), plan_dict(alerts=alerts)
    tier_of(dry)["dry_run"] = True
    (_, live_breaches), (decisions, dry_breaches) = decide(live), decide(dry)
    assert (1, 0) == (min(live_breaches, 1), dry_breaches)
    assert "fail" not in [d.decision for d in decisions]
    assert all(c.dry_run for d in decisions for c in d.criteria)


def test_dry_run_false_keeps_the_plan_version() -> None:
    """``dry_run: false`` written out is the default: the same plan_version (and decision ids) as without it."""
    raw = plan_dict()
    tier_of(raw)["dry_run"] = False
    tier_of(raw)["criteria"][0]["dry_run"] = False
    assert make_plan(plan_dict()).plan_version == Plan.model_validate(raw).plan_version
