"""Where each gate stands, folded from its decisions (pure: the same decisions give the same board).

The decisions topic is the source of truth: ``gatekeeper serve`` and the client fold it with ``step`` and
``Board``; nothing here reads Kafka or a clock. A gate's state:

- ``waiting``: no decision yet (the worker emits none before a checkpoint, the soak's end or a breach);
- ``soaking``: soaking on evidence, before a decision says more (from the worker's gate state, ``observe``), or
  released from a hold and soaking again on fresh evidence;
- ``passed``: GO, the tier passed (``may_advance``);
- ``held``: failed, held until ``hold_until`` (event time);
- ``pending``: a checkpoint without enough evidence, or stalled telemetry; ``why`` says which.

Re-delivered decisions (at-least-once, same ``decision_id``) are applied once.

``Board.observe`` folds in what the worker's gate state says between decisions (``gatekeeper serve`` reads it
from the gate-state changelog), so a gate soaking for weeks before its first decision shows ``soaking`` with
its progress rather than ``waiting``. Decisions keep precedence: an observation never changes a decided state
(passed, held, pending), and one older (in event time) than the gate's latest decision is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from gatekeeper.core.decision import Decision
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_duration, format_ms, parse_instant

GateState = Literal["waiting", "soaking", "passed", "held", "pending"]
Verdict = Literal["pass", "fail", "hold", "pending"]  # what a rollout controller acts on
STATES: tuple[GateState, ...] = ("waiting", "soaking", "pending", "passed", "held")
NO_DECISION = "no decision yet"
HISTORY = 48  # decisions kept per gate for the status page's charts and the API's `recent`


@dataclass(frozen=True, slots=True)
class Soak:
    """A soak in progress as the worker's gate state shows it (event times, RFC 3339 text)."""

    since: str  # when the soak started
    requests: int  # requests counted in it so far (closed panes)
    elapsed_ms: int  # soak time observed so far (closed windows; stalled telemetry not counted)
    length_ms: int  # the tier's soak (0: unknown, a gate the plan does not name)
    observed_at: str  # the gate state's event time: its windows closed up to here

    @property
    def fraction(self) -> float | None:
        """How much of the soak has elapsed (0-1; None when the soak's length is unknown)."""
        return None if self.length_ms <= 0 else min(1.0, self.elapsed_ms / self.length_ms)

    @property
    def why(self) -> str:
        if self.fraction is None:
            elapsed = (
                f"{format_duration(self.elapsed_ms)} of soak elapsed" if self.elapsed_ms else "no window closed yet"
            )
        else:
            elapsed = f"{self.fraction:.0%} of the {format_duration(self.length_ms)} soak elapsed"
        return f"soaking since {self.since}: {self.requests} requests, {elapsed}"


@dataclass(frozen=True, slots=True)
class GateView:
    """One (region, tier) gate as its decisions so far describe it."""

    region: str
    tier: str
    phase: str
    state: GateState = "waiting"
    why: str = NO_DECISION
    hold_until: str | None = None
    failed_at: str | None = None  # event time of the fail that started the current hold
    latest: Decision | None = None
    latest_wall_ms: int | None = None  # when the latest decision was written (the Kafka record's timestamp)
    recent: tuple[Decision, ...] = ()
    holds: int = 0  # how many times this gate was held
    passed_at: str | None = None
    soak_length_ms: int = 0  # the tier's soak in the plan (0: not in the plan)
    soak: Soak | None = None  # the soak in progress, from the worker's gate state (``Board.observe``)

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
    if decision.decision != "pending":  # the soak observed before is over (or restarts, after a release)
        base = replace(base, soak=None)
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


def observe(view: GateView, status: str, soak: Soak) -> GateView:
    """The gate once its worker state says ``status`` with ``soak`` (already checked not to be stale).

    Only a soaking status shows: a gate with no decision yet, or released, becomes ``soaking`` with the soak's
    progress as ``why``; a pending gate keeps its decision's state and ``why`` and gains the progress. Any other
    status (the worker's passed or held comes with a decision) only withdraws an earlier observed soak."""
    if status == "soaking":
        if view.state in ("waiting", "soaking"):
            return replace(view, state="soaking", why=soak.why, soak=soak)
        return replace(view, soak=soak) if view.state == "pending" else view
    if view.soak is None or view.state != "soaking":
        return replace(view, soak=None)
    if view.latest is None:  # back to what the decisions alone say
        return replace(view, state="waiting", why=NO_DECISION, soak=None)
    latest = view.latest
    return replace(view, why=latest.reasons[0] if latest.reasons else latest.reason_code, soak=None)


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
    observed: int = 0  # gate states folded in (``observe``)
    stale: int = 0  # gate states ignored: older than the gate's latest decision or observation, or unknown gate

    @staticmethod
    def of(plan: Plan) -> Board:
        board = Board(plan.plan, plan.plan_version)
        for region, phase, tier in plan.gates():
            board.add(GateView(region, tier.name, phase.name, soak_length_ms=tier.soak))
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

    def observe(
        self,
        key: str,
        status: str,
        soak_start_ms: int,
        soak_requests: int,
        event_time_ms: int,
        soak_elapsed_ms: int = 0,
    ) -> bool:
        """Fold in the worker's state of gate ``key`` (``region/tier``) as of event time ``event_time_ms``;
        False when ignored: a gate not on the board, or a state older than the gate's latest decision or
        than the state observed before (decisions keep precedence)."""
        view = self.gates.get(key)
        if view is None or event_time_ms < _newest_ms(view):
            self.stale += 1
            return False
        soak = Soak(
            since=format_ms(soak_start_ms),
            requests=soak_requests,
            elapsed_ms=max(0, soak_elapsed_ms),
            length_ms=view.soak_length_ms,
            observed_at=format_ms(event_time_ms),
        )
        self.gates[key] = observe(view, status, soak)
        self.observed += 1
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


def _newest_ms(view: GateView) -> int:
    """Event time of the newest thing known about the gate: its latest decision, or the soak observed."""
    times = [parse_instant(view.latest.at)] if view.latest is not None else []
    times += [parse_instant(view.soak.observed_at)] if view.soak is not None else []
    return max(times, default=-(2**62))


def hold_seconds_left(view: GateView, clock: str | None) -> float:
    """Seconds of hold left at event time ``clock`` (0 when not held or without a clock)."""
    if view.state != "held" or view.hold_until is None or clock is None:
        return 0.0
    return max(0.0, (parse_instant(view.hold_until) - parse_instant(clock)) / 1000)


def wall_text(wall_ms: int | None) -> str | None:
    return None if wall_ms is None else format_ms(wall_ms)
