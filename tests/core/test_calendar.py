"""The rollout against the seed's calendar (core/calendar.py) and the plan's calendar block."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from pydantic import ValidationError

from gatekeeper.core.board import Board
from gatekeeper.core.calendar import progress
from gatekeeper.core.decision import Decision, decode
from gatekeeper.core.plan import Plan

REPO = Path(__file__).resolve().parents[2]
PLAN_FILE = REPO / "config" / "rollout-plan.yaml"


def raw_plan() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(PLAN_FILE.read_text())))
    return data


def golden(name: str) -> list[Decision]:
    path = REPO / "tests" / "golden" / f"{name}.decisions.jsonl"
    return [decode(line) for line in path.read_bytes().splitlines() if line]


def test_calendar_is_not_part_of_the_plan_version() -> None:
    """Moving a planned date changes no plan_version (so no decision id); the golden decisions' version holds."""
    data = raw_plan()
    moved = json.loads(json.dumps(data))
    moved["calendar"]["tiers"]["canary"]["end"] = "2025-12-01"
    expected = golden("healthy-canary")[0].plan_version
    assert (expected, expected) == (Plan.model_validate(data).plan_version, Plan.model_validate(moved).plan_version)


def test_calendar_rejects_unknown_tiers_and_reversed_dates() -> None:
    """A calendar naming a tier the plan lacks, or ending before it starts, is refused with the reason."""
    data = raw_plan()
    data["calendar"]["tiers"]["ramp-99"] = {"start": "2025-11-01", "end": "2025-11-02"}
    with pytest.raises(ValidationError, match=r"calendar\.tiers names tiers not in the plan: ramp-99"):
        Plan.model_validate(data)
    data = raw_plan()
    data["calendar"]["tiers"]["canary"]["end"] = "2025-10-01"
    with pytest.raises(ValidationError, match=r"end \(2025-10-01\) is before start \(2025-10-19\)"):
        Plan.model_validate(data)


def late(d: Decision) -> Decision:
    """The golden ramp-10 breach moved a month later (Nov 20), past its planned Nov 16-22 week."""
    shift = {"at": "2025-11-20T01:00:00Z", "window_start": "2025-11-20T00:00:00Z", "window_end": "2025-11-20T01:00:00Z"}
    until = "2025-12-04T01:00:00Z" if d.hold_until else None
    return msgspec.structs.replace(d, **shift, hold_until=until, decision_id=f"late-{d.decision_id}")


def test_progress_of_a_held_ramp_tier() -> None:
    """ramp-10 fails on Nov 20 and is held 2 weeks (until Dec 4 01:00): its GO can come at best a week after
    the release, Dec 11 01:00, i.e. 18 days 1 hour after its planned GO (by the end of Nov 22); the rollout's
    projected end moves by as much, which uses 18.04/7 weeks of the seed's 4-6 week buffer."""
    plan = Plan.model_validate(raw_plan())
    board = Board.of(plan).apply_all(late(d) for d in golden("error-breach")[:2])
    found = progress(plan, board)
    assert found is not None
    ramp = next(t for t in found.tiers if t.tier == "ramp-10")
    assert ("held", date(2025, 11, 20), None, 1) == (ramp.status, ramp.actual_start, ramp.actual_end, ramp.holds)
    slip = 18 + 1 / 24
    assert pytest.approx(slip) == found.slip_days
    assert date(2026, 4, 18) == found.projected_end  # the expansion's planned end (Mar 31) + the slip
    assert pytest.approx((slip / 7 / 6, slip / 7 / 4)) == found.buffer_used
    assert "upcoming" == next(t for t in found.tiers if t.tier == "canary").status


def test_a_tier_ahead_of_plan_uses_no_buffer() -> None:
    """The golden breach happened weeks before ramp-10's planned week: even held, it is ahead of plan."""
    plan = Plan.model_validate(raw_plan())
    found = progress(plan, Board.of(plan).apply_all(golden("error-breach")[:2]))
    assert found is not None
    assert (date(2026, 3, 31), (0.0, 0.0)) == (found.projected_end, found.buffer_used)
    assert found.slip_days < 0


def test_progress_after_the_pass() -> None:
    """Once ramp-10 passes (Nov 11, ahead of its planned Nov 22), the tier is done and nothing slips."""
    plan = Plan.model_validate(raw_plan())
    found = progress(plan, Board.of(plan).apply_all(golden("error-breach")))
    assert found is not None
    ramp = next(t for t in found.tiers if t.tier == "ramp-10")
    assert ("done", date(2025, 11, 11)) == (ramp.status, ramp.actual_end)
    assert (date(2026, 3, 31), (0.0, 0.0)) == (found.projected_end, found.buffer_used)


def test_no_calendar_no_progress() -> None:
    """A plan without a calendar has no progress to show."""
    data = raw_plan()
    del data["calendar"]
    plan = Plan.model_validate(data)
    assert progress(plan, Board.of(plan)) is None
