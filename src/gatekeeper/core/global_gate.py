"""The all-regions gate: one ``global`` decision stream per tier that names its regions, folded from the
regional gates' decisions. Pure; time is event time in ms.

A tier naming two regions or more with ``regions: [...]`` in the plan (the expansion: seed L245-262,
"3 regions operational" L364) passes globally only once every region it names has passed, holds while any of
them is held, and otherwise is blocked (``pending``) by the regions that have not passed; its reasons and
per-region criteria name them. Its decisions have region ``global`` (key ``global/<tier>``).

Regional decisions reach the fold in a different interleaving in replay (one source, columns) and in the
worker (message by message, several partitions). So the fold is driven by event time, not arrival: decisions
are buffered and applied in (at, region, arrival within the region) order only up to the *progress*, the
oldest of the tier's regional gates' closed panes (``GateInbox.closed_until``). A gate only ever decides at
or before its own closed time and never later about an earlier time, so every regional decision at or before
the progress is in; the global decisions are thus the same, with the same ids, however the input was cut.

Region states, from its decisions: no decision yet -> ``waiting``; ``pass`` -> ``passed``; ``fail`` /
``hold`` -> ``held``; ``release`` -> ``soaking`` (again); ``pending`` (stalled, awaiting approval) changes
nothing. The global state is ``passed`` (all passed), ``held`` (any held) or ``blocked``; a global decision is
made whenever the state or the set of blocking regions changes, after all regional decisions at one instant:
``pass``, ``hold``, ``release`` (the last held region released) or ``pending`` (blocked, none held).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from gatekeeper.core.decision import CriterionResult, Decision, DecisionKind, Metrics, Verdict, decision_id
from gatekeeper.core.gate import Gate
from gatekeeper.core.plan import Plan, UptimeCriterion
from gatekeeper.core.timefmt import format_ms, parse_instant

REGION = "global"  # the region field (and key prefix ``global/<tier>``) of a global decision
RegionStatus = str  # waiting | soaking | passed | held


class Seen(msgspec.Struct, frozen=True, array_like=True):
    """What the fold keeps of a regional decision until the progress passes it; or of a region's closed panes:
    kind ``data`` (its first pane of a step starts at ``hold_until``) or ``down`` (a down pane starts there),
    ``at`` being that pane's end."""

    at: int
    region: str
    kind: str
    decision_id: str
    hold_until: int = 0

    @property
    def order(self) -> tuple[int, int, str]:
        """Event-time order: a pane before a decision at the same time (the pane closed first)."""
        return (self.at, self.kind not in ("data", "down"), self.region)


class RegionState(msgspec.Struct, array_like=True):
    status: RegionStatus = "waiting"
    since: int = 0  # event time of the decision that set the status
    hold_until: int = 0
    decision_id: str = ""  # that decision


class TierFold(msgspec.Struct):
    """One tier's global state: plain data, snapshotted with the worker's gate states."""

    regions: dict[str, RegionState] = msgspec.field(default_factory=dict)
    buffer: list[Seen] = msgspec.field(default_factory=list)  # regional decisions after the progress
    progress: int | None = None  # every regional decision at or before it has been applied
    start: int | None = None  # the first pane any region of the tier served (the multi-region uptime's start)
    down_ms: int = 0  # minutes in which a region serving traffic was down (each minute once)
    last_down: int = -1  # start of the last down pane counted
    last: str = ""  # the last global decision's state and blockers ("" before the first)
    held_before: bool = False  # the last global state was held (the next unblocking is a release)


@dataclass(frozen=True, slots=True)
class GlobalSpec:
    tier: str
    phase: str
    regions: tuple[str, ...]
    plan_version: str
    pane: int
    soak: int
    uptime_floor: float | None  # the tier's uptime criterion (at_least), judged on the multi-region uptime


def specs(plan: Plan) -> dict[str, GlobalSpec]:
    """The tiers with a global gate, by tier name: those naming two regions or more (a tier gated in one region
    has nothing to add up)."""
    out: dict[str, GlobalSpec] = {}
    for phase in plan.phases:
        for tier in phase.tiers:
            if tier.regions is not None and len(tier.regions) > 1:
                floor = next((float(c.at_least) for c in tier.criteria if isinstance(c, UptimeCriterion)), None)
                pane = plan.evaluation.pane
                out[tier.name] = GlobalSpec(
                    tier.name, phase.name, tier.regions, plan.plan_version, pane, tier.soak, floor
                )
    return out


def home_keys(plan: Plan) -> dict[str, str]:
    """``region/tier`` -> ``global/tier`` for the regional gates of a global tier: the worker homes them with
    their global gate (one panes partition, one owner), so the fold sees all of them and their progress."""
    return {f"{r}/{tier}": key(tier) for tier, spec in specs(plan).items() for r in spec.regions}


def key(tier: str) -> str:
    """The Kafka key of a tier's global decisions."""
    return f"{REGION}/{tier}"


class GlobalGate:
    """The fold for one tier; ``state`` is swapped in by the caller (one ``TierFold`` per tier)."""

    def __init__(self, spec: GlobalSpec, state: TierFold | None = None) -> None:
        self.spec = spec
        self.state = state or TierFold()

    def observe(self, decisions: Iterable[Decision]) -> None:
        """Regional decisions of this tier, in the order their gates made them (any interleaving of regions)."""
        for d in decisions:
            if d.tier != self.spec.tier or d.region not in self.spec.regions:
                continue
            until = parse_instant(d.hold_until) if d.hold_until else 0
            self.state.buffer.append(Seen(parse_instant(d.at), d.region, d.decision, d.decision_id, until))

    def observe_panes(self, region: str, panes: Iterable[tuple[int, list[int]]]) -> None:
        """A region's closed panes, as its gate collected them (``Gate.down_sink``): per call, the first pane's
        start and the starts of the down panes (>= ``min_requests`` requests, too many failing: it served
        traffic and was down)."""
        pane = self.spec.pane
        for first, downs in panes:
            self.state.buffer.append(Seen(first + pane, region, "data", "", first))
            self.state.buffer += [Seen(start + pane, region, "down", "", start) for start in downs]

    def advance(self, progress: int | None, out: list[Decision]) -> None:
        """Apply the buffered decisions at or before ``progress`` in event-time order; global decisions to
        ``out``."""
        st = self.state
        if progress is not None and (st.progress is None or progress > st.progress):
            st.progress = progress
        if st.progress is None:
            return
        until = st.progress
        due = sorted((s for s in st.buffer if s.at <= until), key=lambda s: s.order)  # stable
        st.buffer = [s for s in st.buffer if s.at > until]
        decided = False
        for i, seen in enumerate(due):
            self._apply(seen)
            decided |= seen.kind not in ("data", "down")
            if i + 1 == len(due) or due[i + 1].at != seen.at:
                if decided or st.last:  # panes alone change the uptime, never open the global stream
                    self._judge(seen.at, out)
                decided = False

    def _apply(self, seen: Seen) -> None:
        st = self.state
        if seen.kind == "data":
            st.start = seen.hold_until if st.start is None else min(st.start, seen.hold_until)
            return
        if seen.kind == "down":
            # A minute is down when a region serving traffic in it was down: counted once, however many were.
            if seen.hold_until > st.last_down:
                st.down_ms += self.spec.pane
                st.last_down = seen.hold_until
            return
        region = self.state.regions.setdefault(seen.region, RegionState())
        status = {"pass": "passed", "fail": "held", "hold": "held", "release": "soaking"}.get(seen.kind)
        if status is None:
            return  # pending: stalled or awaiting approval, the region's state is unchanged
        region.status, region.since, region.decision_id = status, seen.at, seen.decision_id
        if seen.kind == "hold":
            region.hold_until = seen.hold_until

    def _judge(self, at: int, out: list[Decision]) -> None:
        st, spec = self.state, self.spec
        states = {r: st.regions.get(r, RegionState()) for r in spec.regions}
        held = [r for r, s in states.items() if s.status == "held"]
        blockers = [r for r, s in states.items() if s.status != "passed"]
        uptime = self._uptime(at)
        down = uptime is not None and uptime.verdict == "fail"
        state = "passed" if not blockers and not down else "held" if held else "blocked"
        summary = f"{state}:{','.join(f'{r}={states[r].status}' for r in blockers)}" + ":uptime" * down
        if summary == st.last:
            return
        kind: DecisionKind
        if state == "passed":
            kind, code = "pass", "all_regions_passed"
        elif state == "held":
            kind, code = "hold", "regions_held"
        elif st.held_before:
            kind, code = "release", "regions_released"
        else:
            kind, code = "pending", "regions_pending"
        st.last, st.held_before = summary, state == "held"
        out.append(self._decision(kind, code, at, states, summary, uptime))

    def _uptime(self, at: int) -> CriterionResult | None:
        """The multi-region uptime criterion at ``at``: the tier's ``uptime.at_least`` over the minutes since the
        tier's first pane in any region, a minute down only when a region serving traffic was down in it."""
        st, floor = self.state, self.spec.uptime_floor
        if floor is None or st.start is None or at <= st.start:
            return None
        elapsed = at - st.start
        allowed = round((1 - floor) * max(self.spec.soak, elapsed))
        observed = 1 - st.down_ms / elapsed
        minutes = f"{st.down_ms / 60_000:g} min down (a region serving traffic down)"
        if st.down_ms > allowed:
            why = f"{minutes}: more than the {allowed / 60_000:.3g} min that {floor * 100:.4g}% uptime allows"
            return CriterionResult("uptime:multi-region", "soak", "fail", floor, observed, reason=why)
        why = f"{minutes} of {allowed / 60_000:.3g} allowed by {floor * 100:.4g}% uptime"
        return CriterionResult("uptime:multi-region", "soak", "pass", floor, observed, reason=why)

    def _decision(
        self,
        kind: DecisionKind,
        code: str,
        at: int,
        states: dict[str, RegionState],
        why: str,
        uptime: CriterionResult | None,
    ) -> Decision:
        spec, st = self.spec, self.state
        when = format_ms(at)
        held = [r for r, s in states.items() if s.status == "held"]
        waiting = [r for r, s in states.items() if s.status in ("waiting", "soaking")]
        if kind == "pass":
            reasons: tuple[str, ...] = (
                f"every region of tier {spec.tier} passed: "
                + ", ".join(f"{r} at {format_ms(s.since)}" for r, s in states.items()),
            )
        else:
            reasons = tuple(
                [f"held by {_listing(held, states)}"] * bool(held)
                + [f"not passed yet: {_listing(waiting, states)}"] * bool(waiting)
                + ([f"multi-region uptime: {uptime.reason}"] if uptime is not None and uptime.verdict == "fail" else [])
            )
        until = max((states[r].hold_until for r in held), default=0)
        return Decision(
            decision_id=decision_id(spec.plan_version, REGION, spec.tier, kind, when, "regions", f"{code}:{why}"),
            decision=kind,
            region=REGION,
            tier=spec.tier,
            phase=spec.phase,
            window_start=when,
            window_end=when,
            at=when,
            metrics=_metrics(None if uptime is None else uptime.observed, st.down_ms if uptime else None),
            criteria=tuple(_criterion(r, s) for r, s in states.items()) + ((uptime,) if uptime else ()),
            reasons=reasons,
            plan_version=spec.plan_version,
            hold_until=format_ms(until) if kind == "hold" and until else None,
            reason_code=code,
        )


def _metrics(uptime: float | None, down_ms: int | None) -> Metrics:
    """A global decision judges decisions, not requests: only the multi-region uptime is measured."""
    down = None if down_ms is None else down_ms / 60_000
    return Metrics(0, 0, None, None, None, None, None, None, None, None, uptime=uptime, down_minutes=down)


def _listing(regions: Sequence[str], states: dict[str, RegionState]) -> str:
    return ", ".join(f"{r} ({_describe(states[r])})" for r in regions)


def _describe(s: RegionState) -> str:
    if s.status == "waiting":
        return "no decision yet"
    if s.status == "held":
        until = f" until {format_ms(s.hold_until)}" if s.hold_until else ""
        return f"held since {format_ms(s.since)}{until}"
    if s.status == "soaking":
        return f"released at {format_ms(s.since)}, soaking again"
    return f"passed at {format_ms(s.since)}"


def _criterion(region: str, s: RegionState) -> CriterionResult:
    verdict: Verdict = "pass" if s.status == "passed" else "fail" if s.status == "held" else "inconclusive"
    reason = f"{region}: {_describe(s)}" + (f" (decision {s.decision_id})" if s.decision_id else "")
    return CriterionResult(f"region:{region}", "soak", verdict, 1.0, None, reason=reason)


class GlobalGates:
    """Every global gate of a plan, over the regional gates' decisions and progress (replay and the worker)."""

    def __init__(self, plan: Plan) -> None:
        self.specs = specs(plan)
        self.gates = {tier: GlobalGate(spec) for tier, spec in self.specs.items()}

    def region_keys(self, tier: str) -> list[str]:
        """The regional gate keys (``region/tier``) a tier's global gate waits for."""
        return [f"{r}/{tier}" for r in self.specs[tier].regions]

    def region_keys_all(self) -> list[str]:
        """Every regional gate key of every global gate: the gates whose panes are collected (``drain``)."""
        return [k for tier in self.specs for k in self.region_keys(tier)]

    def fold(
        self,
        tier: str,
        state: TierFold,
        decisions: Iterable[Decision],
        progress: int | None,
        panes: Mapping[str, list[tuple[int, list[int]]]] | None = None,
    ) -> list[Decision]:
        """One tier's regional ``decisions`` (its gates' order), closed ``panes`` by region (``Gate.down_sink``)
        and their ``progress``: the global decisions."""
        gate = self.gates[tier]
        gate.state = state
        gate.observe(decisions)
        for region, made in (panes or {}).items():
            gate.observe_panes(region, made)
        out: list[Decision] = []
        gate.advance(progress, out)
        return out


def drain(gate: Gate) -> list[tuple[int, list[int]]]:
    """The panes ``gate`` collected for the multi-region uptime since the last drain (``Gate.down_sink``)."""
    sink = gate.down_sink
    if sink is None:
        return []
    made = list(sink)
    sink.clear()
    return made


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(TierFold)


def dump(state: TierFold) -> bytes:
    return _ENCODER.encode(state)


def load(raw: bytes) -> TierFold:
    """A snapshot of ``dump``; ``ValueError`` when it is not one."""
    try:
        return _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a global gate state: {exc}") from None
