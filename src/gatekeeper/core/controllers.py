"""What rollout controllers are told: the gate API's JSON documents and Flagger's webhook answers (pure).

Argo Rollouts' ``web`` provider reads the document of ``/v1/gates/{region}/{tier}`` as ``result``:
``result.decision`` is ``pass`` / ``fail`` / ``hold`` / ``pending`` (``GateView.verdict``), so the example
AnalysisTemplate's conditions (pass -> Successful, fail|hold -> Failed, neither -> Inconclusive) read one field.
Flagger's webhooks succeed on 200-202 only, so a "no" is a 4xx with a JSON body saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec

from gatekeeper.core.board import Board, GateView, hold_seconds_left, wall_text

API_VERSION = "v1"

FlaggerHook = Literal[
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]
FLAGGER_HOOKS: tuple[str, ...] = get_args(FlaggerHook)
REFUSED = 412  # Flagger counts anything above 202 as a failure; 412 says "the gate's precondition is not met"


@dataclass(frozen=True, slots=True)
class Freshness:
    """How fresh the served state is: the reader's progress and the serving clock (wall time)."""

    caught_up: bool  # the reader has read the decisions topic up to the end offsets it found at start
    served_at_ms: int


def _decision_json(view: GateView) -> Any:
    return None if view.latest is None else msgspec.to_builtins(view.latest)


def _soak_json(view: GateView) -> dict[str, Any] | None:
    """The soak in progress, as the worker's gate state shows it (None when none is observed)."""
    soak = view.soak
    if soak is None:
        return None
    return {
        "since": soak.since,
        "requests": soak.requests,
        "elapsed_seconds": soak.elapsed_ms / 1000,
        "length_seconds": soak.length_ms / 1000 if soak.length_ms else None,
        "fraction": soak.fraction,
        "observed_at": soak.observed_at,
    }


def gate_document(view: GateView, board: Board, fresh: Freshness) -> dict[str, Any]:
    """The JSON document of one gate (``/v1/gates/{region}/{tier}``)."""
    return {
        "api_version": API_VERSION,
        "region": view.region,
        "tier": view.tier,
        "phase": view.phase,
        "state": view.state,
        "why": view.why,
        "decision": view.verdict,
        "may_advance": view.may_advance,
        "hold_until": view.hold_until,
        "hold_seconds_left": hold_seconds_left(view, board.clock),
        "holds": view.holds,
        "passed_at": view.passed_at,
        "soak": _soak_json(view),
        "latest": _decision_json(view),
        "freshness": {
            "event_time": view.latest.at if view.latest else None,
            "decided_wall_time": wall_text(view.latest_wall_ms),
            "board_event_time": board.clock,
            "caught_up": fresh.caught_up,
            "served_at": wall_text(fresh.served_at_ms),
        },
    }


def board_document(board: Board, fresh: Freshness) -> dict[str, Any]:
    """The JSON document of every gate (``/v1/gates``), in plan order."""
    views = board.views()
    counts = {state: sum(v.state == state for v in views) for state in ("waiting", "soaking", "pending", "passed")}
    counts["held"] = sum(v.state == "held" for v in views)
    return {
        "api_version": API_VERSION,
        "plan": board.plan_name,
        "plan_version": board.plan_version,
        "regions": board.regions(),
        "tiers": board.tiers(),
        "counts": counts,
        "decisions_applied": board.applied,
        "gate_states_observed": board.observed,
        "duplicates_skipped": board.duplicates,
        "freshness": {
            "board_event_time": board.clock,
            "decided_wall_time": wall_text(board.latest_wall_ms),
            "caught_up": fresh.caught_up,
            "served_at": wall_text(fresh.served_at_ms),
        },
        "gates": [gate_document(v, board, fresh) for v in views],
    }


def error_document(status: int, error: str, message: str) -> dict[str, Any]:
    """Every error is JSON too (Argo Rollouts up to v1.10.0-rc1 counts a non-JSON body as Successful)."""
    return {"api_version": API_VERSION, "status": status, "error": error, "message": message}


def flagger_answer(hook: str, view: GateView) -> tuple[int, dict[str, Any]]:
    """Status (200 yes, 412 no) and body of a Flagger webhook ``hook`` about ``view``'s gate."""
    held = view.state == "held"
    if hook == "confirm-promotion":
        ok = view.state == "passed"
        why = "the tier passed" if ok else f"the tier has not passed: {view.state} ({view.why})"
    elif hook in ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase"):
        ok = not held
        why = f"the gate is held until {view.hold_until} ({view.why})" if held else f"the gate is {view.state}"
    elif hook == "rollback":  # a 2xx here means "roll back now"
        ok = held
        why = f"roll back: the gate failed and is held ({view.why})" if held else f"no rollback: {view.state}"
    else:  # post-rollout, event: acknowledged, nothing to decide
        ok, why = True, "acknowledged"
    body = {
        "api_version": API_VERSION,
        "hook": hook,
        "region": view.region,
        "tier": view.tier,
        "state": view.state,
        "decision": view.verdict,
        "hold_until": view.hold_until,
        "ok": ok,
        "message": why,
    }
    return (200 if ok else REFUSED), body


def flagger_gate(payload: object) -> tuple[str, str]:
    """(region, tier) from a Flagger webhook payload's ``metadata``; ValueError saying what is missing."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object (Flagger sends {name, namespace, phase, checksum, metadata})")
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict):
        raise ValueError("metadata is missing: set the webhook's metadata to {region: ..., tier: ...}")
    missing = [k for k in ("region", "tier") if not isinstance(metadata.get(k), str) or not metadata.get(k)]
    if missing:
        raise ValueError(f"metadata.{' and metadata.'.join(missing)} missing: set them in the webhook's metadata")
    return str(metadata["region"]), str(metadata["tier"])
