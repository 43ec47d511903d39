"""What a rollout report shows, computed from decisions alone: per gate (region, tier) its decisions in event
time, its soak and hold periods, and the rollout summary (tier reached per region, holds and their causes, time
lost to holds). No plotting here (``page.py`` draws it).

Decisions are sparse (a gate speaks when it fails, holds, releases, passes or is pending), so periods are read
off them: a gate soaks from the start of the window of its first decision (or from its release) until it
passes or fails; a hold lasts from its ``hold`` decision to its ``release`` (or ``hold_until`` when no release
was seen yet). With the plan, tiers are ordered as the plan orders them and each soak's length is known, so the
soak's progress at each decision is shown; without it, tiers are ordered by their first decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gatekeeper.core.decision import Decision
from gatekeeper.core.timefmt import parse_instant


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # "soak" | "hold"
    start_ms: int
    end_ms: int
    cause: str  # hold: the reason of the fail that started it; soak: how it ended (passed, failed, open)
    closed: bool = True  # False: still running at the last decision seen (a hold then ends at its hold_until)


@dataclass(slots=True)
class GateTimeline:
    region: str
    tier: str
    phase: str
    decisions: list[Decision] = field(default_factory=list)
    periods: list[Period] = field(default_factory=list)
    soak_ms: int | None = None  # from the plan

    @property
    def passed(self) -> bool:
        return any(d.decision == "pass" for d in self.decisions)


@dataclass(frozen=True, slots=True)
class Hold:
    region: str
    tier: str
    start_ms: int
    end_ms: int
    released: bool  # a release decision was seen (else the hold runs to hold_until as far as we know)
    cause: str


@dataclass(slots=True)
class Summary:
    regions: dict[str, str | None]  # region -> the last tier (plan order) that passed, None if none
    holds: list[Hold]
    lost_ms: dict[str, int]  # region -> time its tiers spent held
    first_ms: int
    last_ms: int


def at_ms(decision: Decision) -> int:
    return parse_instant(decision.at)


def timelines(
    decisions: Iterable[Decision],
    tier_order: list[str] | None = None,
    soaks: Mapping[tuple[str, str], int] | None = None,
) -> list[GateTimeline]:
    """One timeline per gate that decided anything, ordered by region, then tier (plan order when given)."""
    gates: dict[tuple[str, str], GateTimeline] = {}
    for d in sorted(decisions, key=at_ms):
        gate = gates.setdefault((d.region, d.tier), GateTimeline(d.region, d.tier, d.phase))
        gate.decisions.append(d)
    first_seen = {key: at_ms(g.decisions[0]) for key, g in gates.items()}
    order = {t: i for i, t in enumerate(tier_order or [])}
    for key, gate in gates.items():
        gate.soak_ms = (soaks or {}).get(key)
        gate.periods = _periods(gate.decisions)
    return sorted(
        gates.values(), key=lambda g: (g.region, order.get(g.tier, len(order)), first_seen[(g.region, g.tier)])
    )


def _periods(decisions: list[Decision]) -> list[Period]:
    out: list[Period] = []
    soak_start: int | None = parse_instant(decisions[0].window_start)
    hold: tuple[int, int, str] | None = None  # start, planned end, cause
    last_fail = ""
    for d in decisions:
        t = at_ms(d)
        if d.decision == "fail":
            last_fail = d.reasons[0] if d.reasons else d.reason_code
            if soak_start is not None:
                out.append(Period("soak", soak_start, t, "failed"))
                soak_start = None
        elif d.decision == "hold":
            planned = parse_instant(d.hold_until) if d.hold_until else t
            hold = (t, planned, last_fail or (d.reasons[0] if d.reasons else "hold"))
            soak_start = None
        elif d.decision == "release":
            if hold is not None:
                out.append(Period("hold", hold[0], t, hold[2]))
                hold = None
            soak_start = t
        elif d.decision == "pass" and soak_start is not None:
            out.append(Period("soak", soak_start, t, "passed"))
            soak_start = None
    end = at_ms(decisions[-1])
    if hold is not None:
        out.append(Period("hold", hold[0], hold[1], hold[2], closed=False))
    elif soak_start is not None and end > soak_start:
        out.append(Period("soak", soak_start, end, "open", closed=False))
    return out


def soak_progress(gate: GateTimeline, decision: Decision) -> float | None:
    """How far the soak running at ``decision`` had come (0..1), when the plan gives the soak's length."""
    if not gate.soak_ms:
        return None
    t = at_ms(decision)
    for period in gate.periods:
        if period.kind == "soak" and period.start_ms <= t <= period.end_ms:
            return min(1.0, (t - period.start_ms) / gate.soak_ms)
    return None


def summarize(gates: list[GateTimeline], tier_order: list[str] | None = None) -> Summary:
    """Tier reached per region (the last tier, in plan order or first-decision order, that passed), every hold
    with its cause, and the time each region's tiers spent held."""
    regions: dict[str, str | None] = {}
    holds: list[Hold] = []
    lost: dict[str, int] = {}
    for gate in gates:  # already in tier order within each region
        regions.setdefault(gate.region, None)
        lost.setdefault(gate.region, 0)
        if gate.passed and (tier_order is None or gate.tier in tier_order):
            regions[gate.region] = gate.tier
        for period in gate.periods:
            if period.kind == "hold":
                holds.append(Hold(gate.region, gate.tier, period.start_ms, period.end_ms, period.closed, period.cause))
                lost[gate.region] += period.end_ms - period.start_ms
    times = [at_ms(d) for g in gates for d in g.decisions]
    return Summary(regions, holds, lost, min(times, default=0), max(times, default=0))
