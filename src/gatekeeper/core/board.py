"""Where each gate stands, folded from its decisions (pure: the same decisions give the same board).

The decisions topic is the source of truth: ``gatekeeper serve`` and the client fold it with ``step`` and
``Board``; nothing here reads Kafka or a clock. A gate's state:

- ``waiting``: no decision yet (the worker emits none before a checkpoint, the soak's end or a breach);
- ``soaking``: released from a hold, soaking again on fresh evidence;
- ``passed``: GO, the tier passed (``may_advance``);
- ``held``: failed, held until ``hold_until`` (event time);
- ``pending``: a checkpoint without enough evidence, or stalled telemetry; ``why`` says which.

Re-delivered decisions (at-least-once, same ``decision_id``) are applied once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from gatekeeper.core.decision import Decision
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_ms, parse_instant

GateState = Literal["waiting", "soaking", "passed", "held", "pending"]
Verdict = Literal["pass", "fail", "hold", "pending"]  # what a rollout controller acts on
STATES: tuple[GateState, ...] = ("waiting", "soaking", "pending", "passed", "held")
HISTORY = 48  # decisions kept per gate for the status page's charts and the API's `recent`


@dataclass(frozen=True, slots=True)
class GateView:
    """One (region, tier) gate as its decisions so far describe it."""

    region: str
    tier: str
    phase: str
    state: GateState = "waiting"
    why: str = "no decision yet"
    hold_until: str | None = None
    failed_at: str | None = None  # event time of the fail that started the current hold
    latest: Decision | None = None
    latest_wall_ms: int | None = None  # when the latest decision was written (the Kafka record's timestamp)
    recent: tuple[Decision, ...] = ()
    holds: int = 0  # how many times this gate was held
    passed_at: str | None = None

    @property
    def key(self) -> str:
        return f"{self.region}/{self.tier}"

    @property
    def may_advance(self) -> bool:
        """True only when the tier passed: a controller may move past it."""
        return self.state == "passed"

    @property
    def verdict(self) -> Verdict:
        """pass (GO), fail (the latest decision is the breach), hold (held), pending (anything else)."""
        if self.state == "passed":
            return "pass"
        if self.state == "held":
            return "fail" if self.latest is not None and self.latest.decision == "fail" else "hold"
        return "pending"


def step(view: GateView, decision: Decision, wall_ms: int | None = None) -> GateView:
    """The gate after ``decision`` (which must be this gate's); ``wall_ms``: the record's write time."""
    if decision.key != view.key:
        raise ValueError(f"decision {decision.decision_id} is for {decision.key}, not for gate {view.key}")
    recent = (*view.recent, decision)[-HISTORY:]
    base = replace(view, latest=decision, latest_wall_ms=wall_ms, recent=recent, phase=decision.phase or view.phase)
    reason = decision.reasons[0] if decision.reasons else decision.reason_code
    match decision.decision:
        case "pass":
            return replace(base, state="passed", why=reason, hold_until=None, failed_at=None, passed_at=decision.at)
        case "fail":  # the hold with its hold_until follows at once, from the same look
            return replace(base, state="held", why=reason, hold_until=None, failed_at=decision.at, passed_at=None)
        case "hold":
            failed = view.failed_at if view.state == "held" else decision.at
            return replace(
                base, state="held", why=reason, hold_until=decision.hold_until, failed_at=failed, holds=view.holds + 1
            )
        case "release":
            return replace(base, state="soaking", why=reason, hold_until=None, failed_at=None)
        case _:  # pending: a checkpoint without enough evidence, or stalled telemetry
            if view.state == "held":  # the worker reports no stall while held; keep the hold if one comes
                return replace(base, why=view.why)
            return replace(base, state="pending", why=reason)


@dataclass(slots=True)
class Board:
    """Every gate of a plan (plus any gate a decision names that the plan does not), folded from decisions."""

    plan_name: str
    plan_version: str
    gates: dict[str, GateView] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # plan order: regions within tiers
    seen: set[str] = field(default_factory=set)  # decision ids applied
    applied: int = 0
    duplicates: int = 0
    clock: str | None = None  # newest decision event time: the board's event-time "now"
    latest_wall_ms: int | None = None

    @staticmethod
    def of(plan: Plan) -> Board:
        board = Board(plan.plan, plan.plan_version)
        for region, phase, tier in plan.gates():
            board.add(GateView(region, tier.name, phase.name))
        return board

    def add(self, view: GateView) -> None:
        if view.key not in self.gates:
            self.order.append(view.key)
        self.gates[view.key] = view

    def apply(self, decision: Decision, wall_ms: int | None = None) -> bool:
        """Fold one decision in; False when its id was applied before (a re-delivery)."""
        if decision.decision_id in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(decision.decision_id)
        view = self.gates.get(decision.key)
        if view is None:
            self.add(view := GateView(decision.region, decision.tier, decision.phase))
        self.gates[decision.key] = step(view, decision, wall_ms)
        self.applied += 1
        if self.clock is None or parse_instant(decision.at) > parse_instant(self.clock):
            self.clock = decision.at
        if wall_ms is not None and (self.latest_wall_ms is None or wall_ms > self.latest_wall_ms):
            self.latest_wall_ms = wall_ms
        return True

    def apply_all(self, decisions: Iterable[Decision]) -> Board:
        for d in decisions:
            self.apply(d)
        return self

    def get(self, region: str, tier: str) -> GateView | None:
        return self.gates.get(f"{region}/{tier}")

    def views(self) -> list[GateView]:
        return [self.gates[k] for k in self.order]

    def regions(self) -> list[str]:
        return list(dict.fromkeys(v.region for v in self.views()))

    def tiers(self) -> list[str]:
        return list(dict.fromkeys(v.tier for v in self.views()))


def hold_seconds_left(view: GateView, clock: str | None) -> float:
    """Seconds of hold left at event time ``clock`` (0 when not held or without a clock)."""
    if view.state != "held" or view.hold_until is None or clock is None:
        return 0.0
    return max(0.0, (parse_instant(view.hold_until) - parse_instant(clock)) / 1000)


def wall_text(wall_ms: int | None) -> str | None:
    return None if wall_ms is None else format_ms(wall_ms)
