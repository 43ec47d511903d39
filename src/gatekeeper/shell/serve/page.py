"""The status page's data (``/status.json``): the board, active holds, GO/NO-GO checkpoints, the last decisions,
chart series with their thresholds, and the calendar (planned vs actual). The page itself is static
(``static/index.html``, ``app.js``) and draws this with a vendored uPlot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatekeeper.core.approvals import PREFIX
from gatekeeper.core.board import Board, hold_seconds_left
from gatekeeper.core.calendar import progress
from gatekeeper.core.controllers import Freshness, board_document
from gatekeeper.core.decision import Decision
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_duration

RECENT = 25


def _thresholds(plan: Plan) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for phase in plan.phases:
        for tier in phase.tiers:
            limits: dict[str, float] = {}
            for c in tier.criteria:
                if c.kind == "error_rate":
                    limits |= {"error_pass_below": c.pass_below, "error_fail_above": c.fail_above}
                elif c.kind == "latency" and c.quantile == 0.99:
                    limits |= {"p99_pass_below_ms": c.pass_below_ms, "p99_fail_above_ms": c.fail_above_ms}
            out[tier.name] = limits
    return out


def _checkpoints(plan: Plan) -> dict[str, list[dict[str, str]]]:
    """Each tier's GO/NO-GO points: the named checkpoints, and GO at the soak's end."""
    out: dict[str, list[dict[str, str]]] = {}
    for phase in plan.phases:
        for tier in phase.tiers:
            points = [{"name": c.name, "after": format_duration(c.after)} for c in tier.checkpoints]
            points.append({"name": "GO (soak complete)", "after": format_duration(tier.soak)})
            out[tier.name] = sorted(points, key=lambda p: p["after"])
    return out


def _series(board: Board) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for view in board.views():
        points = []
        for d in view.recent:
            m = d.metrics
            if m.requests == 0:
                continue  # release / stall decisions carry no evidence
            points.append(
                {
                    "at": d.at,
                    "decision": d.decision,
                    "error_rate": m.error_rate,
                    "error_rate_lower": m.error_rate_lower,
                    "error_rate_upper": m.error_rate_upper,
                    "p99_ms": m.p99_ms,
                    "p99_lower_ms": m.p99_lower_ms,
                    "p99_upper_ms": m.p99_upper_ms,
                }
            )
        if points:
            out[view.key] = points
    return out


def _outcome_name(d: Decision) -> str | None:
    """The GO/NO-GO outcome a decision is, if any: a pass (GO), a checkpoint pending (not enough evidence), or the
    pending awaiting approval (which stands for the checkpoint it falls on: core/gate.py emits one pending)."""
    if d.reason_code == "go":
        return "GO"
    if d.reason_code.startswith("checkpoint:"):
        return d.reason_code.removeprefix("checkpoint:")
    if d.reason_code == "approval":
        awaited = [c.name.removeprefix(PREFIX) for c in d.criteria if c.name.startswith(PREFIX) and c.verdict != "pass"]
        return f"{', '.join(awaited)} (awaiting approval)"
    return None


def _outcomes(board: Board) -> list[dict[str, Any]]:
    """GO/NO-GO outcomes decided so far: passes (GO), checkpoint pendings and pendings awaiting approval."""
    out = []
    for view in board.views():
        for d in view.recent:
            name = _outcome_name(d)
            if name is not None:
                out.append({"region": d.region, "tier": d.tier, "name": name, "at": d.at, "decision": d.decision})
    return sorted(out, key=lambda o: str(o["at"]))


def _calendar(plan: Plan, board: Board) -> dict[str, Any] | None:
    found = progress(plan, board)
    if found is None:
        return None
    low, high = found.buffer_used
    return {
        "as_of": str(found.as_of) if found.as_of else None,
        "planned_end": str(found.planned_end),
        "projected_end": str(found.projected_end),
        "slip_days": round(found.slip_days, 2),
        "contingency_weeks": list(found.contingency_weeks),
        "buffer_used": [round(low, 4), round(high, 4)],
        "tiers": [
            {
                "tier": t.tier,
                "planned_start": str(t.planned_start),
                "planned_end": str(t.planned_end),
                "status": t.status,
                "actual_start": str(t.actual_start) if t.actual_start else None,
                "actual_end": str(t.actual_end) if t.actual_end else None,
                "slip_days": None if t.slip_days is None else round(t.slip_days, 2),
                "holds": t.holds,
            }
            for t in found.tiers
        ],
    }


def page_data_for(plan: Plan, plan_path: str) -> Callable[[Board, Freshness], dict[str, Any]]:
    """The ``/status.json`` builder for ``plan`` (read once: thresholds and checkpoints do not change)."""
    thresholds, checkpoints = _thresholds(plan), _checkpoints(plan)

    def data(board: Board, fresh: Freshness) -> dict[str, Any]:
        views = board.views()
        holds = [
            {
                "region": v.region,
                "tier": v.tier,
                "hold_until": v.hold_until,
                "seconds_left": hold_seconds_left(v, board.clock),
                "why": v.why,
            }
            for v in views
            if v.state == "held"
        ]
        decided = sorted((d for v in views for d in v.recent), key=lambda d: d.at, reverse=True)[:RECENT]
        return {
            "plan_file": plan_path,
            "board": board_document(board, fresh),
            "holds": holds,
            "checkpoints": checkpoints,
            "outcomes": _outcomes(board),
            "thresholds": thresholds,
            "series": _series(board),
            "decisions": [
                {
                    "at": d.at,
                    "region": d.region,
                    "tier": d.tier,
                    "decision": d.decision,
                    "reason_code": d.reason_code,
                    "reasons": list(d.reasons),
                }
                for d in decided
            ],
            "calendar": _calendar(plan, board),
        }

    return data
