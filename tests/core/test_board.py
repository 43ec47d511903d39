"""The board: a gate's state folded from its decisions (golden decisions of the rollout plan's scenarios)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gatekeeper.core.board import Board, GateView, hold_seconds_left, step
from gatekeeper.core.decision import Decision, decode
from gatekeeper.core.plan import Plan

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PLAN_FILE = Path(__file__).resolve().parents[2] / "config" / "rollout-plan.yaml"


@pytest.fixture(scope="module")
def rollout_plan() -> Plan:
    """config/rollout-plan.yaml, the plan the golden decisions were made with."""
    return Plan.model_validate(json.loads(json.dumps(yaml.safe_load(PLAN_FILE.read_text()))))


def golden(name: str) -> list[Decision]:
    return [decode(line) for line in (GOLDEN / f"{name}.decisions.jsonl").read_bytes().splitlines() if line]


def states(decisions: list[Decision]) -> list[tuple[str, str, str | None]]:
    """(state, verdict, hold_until) after each decision of one gate."""
    view = GateView(decisions[0].region, decisions[0].tier, decisions[0].phase)
    out: list[tuple[str, str, str | None]] = []
    for d in decisions:
        view = step(view, d)
        out.append((view.state, view.verdict, view.hold_until))
    return out


def test_breach_holds_then_release_soaks_then_pass() -> None:
    """fail -> held (verdict fail), hold -> held until hold_until, release -> soaking, pass -> passed."""
    expected = [
        ("held", "fail", None),
        ("held", "hold", "2025-11-04T01:00:00Z"),
        ("soaking", "pending", None),
        ("passed", "pass", None),
    ]
    assert expected == states(golden("error-breach"))


def test_stall_is_pending_with_why() -> None:
    """A stalled gate is pending and says why (no telemetry since ...)."""
    view = GateView("us-east", "ramp-25", "ramp")
    view = step(view, golden("stall")[0])
    assert ("pending", False) == (view.state, view.may_advance)
    assert view.why.startswith("no telemetry since ")


def test_board_lists_every_plan_gate_waiting(rollout_plan: Plan) -> None:
    """Before any decision every gate of the plan is waiting, in plan order, and none may advance."""
    board = Board.of(rollout_plan)
    assert 27 == len(board.views())
    assert {"waiting"} == {v.state for v in board.views()}
    assert "us-east/canary" == board.order[0]
    assert not any(v.may_advance for v in board.views())


def test_redelivered_decisions_apply_once(rollout_plan: Plan) -> None:
    """At-least-once delivery: the same decision ids again (after newer ones) change nothing."""
    decisions = golden("error-breach")
    board = Board.of(rollout_plan).apply_all(decisions)
    before = board.get("us-east", "ramp-10")
    board.apply_all(decisions[:3])
    assert (before, 3) == (board.get("us-east", "ramp-10"), board.duplicates)
    assert "passed" == board.gates["us-east/ramp-10"].state


def test_regions_are_independent(rollout_plan: Plan) -> None:
    """A breach in eu-west holds eu-west only; the other regions' rollout-75 passed."""
    decisions = [d for d in golden("latency-breach-one-region") if d.decision != "release"]
    board = Board.of(rollout_plan).apply_all(decisions)
    actual = {r: board.gates[f"{r}/rollout-75"].state for r in ("us-east", "us-west", "eu-west")}
    assert {"us-east": "passed", "us-west": "passed", "eu-west": "held"} == actual


def test_hold_seconds_left_at_board_clock(rollout_plan: Plan) -> None:
    """Hold time left is measured at the newest decision's event time: right after the hold, 2 weeks from the
    end of the hour the fail fell in (the fail at 00:36, so 2 weeks and 24 minutes)."""
    board = Board.of(rollout_plan).apply_all(golden("error-breach")[:2])
    assert "2025-10-21T00:36:00Z" == board.clock
    assert 14 * 86400.0 + 24 * 60 == hold_seconds_left(board.gates["us-east/ramp-10"], board.clock)


def test_decision_for_another_gate_is_refused() -> None:
    """step() refuses a decision of another gate, naming both."""
    with pytest.raises(ValueError, match="is for us-east/ramp-10, not for gate eu-west/canary"):
        step(GateView("eu-west", "canary", "canary"), golden("error-breach")[0])
