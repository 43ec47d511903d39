"""The board folds in the worker's gate state between decisions (``Board.observe``): a soaking gate shows
``soaking`` with its progress before its first decision; decisions keep precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gatekeeper.core.board import Board
from gatekeeper.core.decision import Decision, decode
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import parse_instant

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PLAN_FILE = Path(__file__).resolve().parents[2] / "config" / "rollout-plan.yaml"
HOUR = 3_600_000
DAY = 24 * HOUR
WEEK = 7 * DAY
OCT_19 = parse_instant("2025-10-19T00:00:00Z")


@pytest.fixture
def board() -> Board:
    """The rollout plan's board, no decision yet (us-east/canary soaks 3 weeks)."""
    plan = Plan.model_validate(json.loads(json.dumps(yaml.safe_load(PLAN_FILE.read_text()))))
    return Board.of(plan)


def golden(name: str) -> list[Decision]:
    return [decode(line) for line in (GOLDEN / f"{name}.decisions.jsonl").read_bytes().splitlines() if line]


def test_soaking_gate_without_decision_shows_progress(board: Board) -> None:
    """A gate whose worker state is soaking, with no decision yet, is soaking with since, requests and the
    share of its 3-week soak elapsed, and may not advance."""
    assert board.observe("us-east/canary", "soaking", OCT_19, 12_345, OCT_19 + WEEK, soak_elapsed_ms=WEEK)
    view = board.gates["us-east/canary"]
    assert ("soaking", False, "pending") == (view.state, view.may_advance, view.verdict)
    assert "soaking since 2025-10-19T00:00:00Z: 12345 requests, 33% of the 3w soak elapsed" == view.why
    assert view.soak is not None
    assert (12_345, WEEK, 3 * WEEK, "2025-10-26T00:00:00Z") == (
        view.soak.requests,
        view.soak.elapsed_ms,
        view.soak.length_ms,
        view.soak.observed_at,
    )
    assert pytest.approx(1 / 3) == view.soak.fraction
    assert (1, 0) == (board.observed, board.stale)


def test_waiting_worker_state_leaves_the_gate_waiting(board: Board) -> None:
    """A gate state that is not soaking (no data yet) changes nothing visible."""
    board.observe("us-east/canary", "waiting", 0, 0, 0)
    view = board.gates["us-east/canary"]
    assert ("waiting", "no decision yet", None) == (view.state, view.why, view.soak)


def test_newer_observation_replaces_older_and_older_is_ignored(board: Board) -> None:
    """Observations only move forward in event time: a newer one updates the progress, an older one (a
    re-read or out-of-order entry) is ignored and counted stale."""
    board.observe("us-east/canary", "soaking", OCT_19, 100, OCT_19 + DAY, soak_elapsed_ms=DAY)
    board.observe("us-east/canary", "soaking", OCT_19, 900, OCT_19 + 2 * WEEK, soak_elapsed_ms=2 * WEEK)
    assert not board.observe("us-east/canary", "soaking", OCT_19, 500, OCT_19 + WEEK, soak_elapsed_ms=WEEK)
    soak = board.gates["us-east/canary"].soak
    assert soak is not None
    assert (900, 2 * WEEK, 1) == (soak.requests, soak.elapsed_ms, board.stale)


def test_decision_decides_and_stale_state_never_downgrades_it(board: Board) -> None:
    """After a fail and hold the gate is held; a gate state older than the hold (soaking, from before the
    breach) is ignored; a newer soaking state does not undo the hold either (decisions keep precedence)."""
    fail, hold = golden("error-breach")[:2]
    board.apply(fail)
    board.apply(hold)
    at = parse_instant(hold.at)
    assert not board.observe(hold.key, "soaking", at - DAY, 50, at - HOUR, soak_elapsed_ms=DAY)
    assert board.observe(hold.key, "soaking", at - DAY, 50, at + HOUR, soak_elapsed_ms=DAY)
    view = board.gates[hold.key]
    assert ("held", "hold", None) == (view.state, view.verdict, view.soak)


def test_release_then_soak_progress_then_pass(board: Board) -> None:
    """After a release the gate soaks again: a newer gate state adds its progress; the pass decides and
    drops the observed soak."""
    fail, hold, release, passed = golden("error-breach")
    for d in (fail, hold, release):
        board.apply(d)
    at = parse_instant(release.at)
    board.observe(release.key, "soaking", at, 4_000, at + DAY, soak_elapsed_ms=DAY)
    view = board.gates[release.key]
    assert "soaking" == view.state
    assert view.why.startswith(f"soaking since {release.at}: 4000 requests, ")
    board.apply(passed)
    view = board.gates[release.key]
    assert ("passed", None) == (view.state, view.soak)


def test_pending_keeps_its_why_and_gains_progress(board: Board) -> None:
    """A pending gate (a checkpoint without enough evidence) stays pending with its reason; the soak
    observed after it is attached as progress."""
    pending = next(d for d in golden("thin-traffic") if d.decision == "pending")
    board.apply(pending)
    at = parse_instant(pending.at)
    board.observe(pending.key, "soaking", at - WEEK, 77, at + HOUR, soak_elapsed_ms=WEEK)
    view = board.gates[pending.key]
    assert ("pending", pending.reasons[0]) == (view.state, view.why)
    assert view.soak is not None
    assert 77 == view.soak.requests


def test_soak_observed_then_worker_no_longer_soaking_falls_back(board: Board) -> None:
    """A gate shown soaking only from its worker state goes back to what its decisions say (waiting) when a
    newer worker state is no longer soaking and no decision has come yet."""
    board.observe("us-east/canary", "soaking", OCT_19, 10, OCT_19 + DAY, soak_elapsed_ms=DAY)
    board.observe("us-east/canary", "held", OCT_19, 10, OCT_19 + 2 * DAY)
    view = board.gates["us-east/canary"]
    assert ("waiting", "no decision yet", None) == (view.state, view.why, view.soak)


def test_unknown_gate_is_ignored(board: Board) -> None:
    """A gate state for a gate the board does not list (another plan's) is counted stale, not added."""
    assert not board.observe("mars/canary", "soaking", 0, 1, 1)
    assert (None, 1) == (board.gates.get("mars/canary"), board.stale)
