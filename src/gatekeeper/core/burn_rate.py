"""Multi-window, multi-burn-rate breach alerts (the SRE workbook's, as Sloth and Pyrra generate for Prometheus),
computed in event time from a gate's closed panes. Pure: state in, state and breach events out.

Per (region, tier) and objective (SLO) of the tier: the error budget is the share of requests the objective allows
to be bad (error rate: the ceiling; latency: 1 - q of the requests may be slower than the P_q ceiling). The burn
rate over a window is the bad share in it divided by the budget. A rule fires when both its long and its short
window burn at least its rate, and its long window holds at least ``min_requests`` requests.

A breach **opens** once when any rule fires (severity ``page`` if a page rule fires, else ``ticket``), **escalates**
to ``page`` as soon as a page rule fires, and drops to ``ticket`` or **resolves** only once the rules of its
severity have been silent for ``resolve_after`` (hysteresis: a flapping rate keeps one breach open instead of
opening a storm of them). Windows up to 6 hours are summed pane by pane; longer ones (the 3-day ticket window) in
whole hours: the hour so far plus the whole hours before it, so they cover between their length minus one hour and
their length. That keeps a gate's state small (6 h of panes and 3 days of hours) at no cost to the alert's meaning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core.plan import Alerting, BurnRule, Tier
from gatekeeper.core.timefmt import format_duration, format_ms

HOUR_MS = 3_600_000
FINE_SPAN_MS = 6 * HOUR_MS  # windows up to this long are summed pane by pane
Severity = Literal["page", "ticket"]
Change = Literal["opened", "escalated", "deescalated", "resolved"]
_RANK = {"ticket": 1, "page": 2}
_SEVERITY_OF = {1: "ticket", 2: "page"}


@dataclass(frozen=True, slots=True)
class Slo:
    """One objective of a tier, as a share of requests allowed to be bad."""

    name: str  # "error_rate" or "latency"
    budget: float  # allowed bad share per request
    text: str  # "error rate <= 0.2%", "P99 <= 100 ms (1% may be slower)"


def slos_of(tier: Tier) -> tuple[Slo, ...]:
    """The tier's objectives with an error budget: its error-rate ceiling, and the share of requests its latency
    criterion allows above the ceiling."""
    out: list[Slo] = []
    for c in tier.criteria:
        if c.kind == "error_rate":
            out.append(Slo("error_rate", c.fail_above, f"error rate <= {c.fail_above:.4g}"))
        elif c.kind == "latency":
            out.append(Slo("latency", 1 - c.quantile, f"{c.name} <= {c.fail_above_ms:g} ms"))
    return tuple(out)


class FiredWindow(msgspec.Struct, frozen=True):
    """A rule that fired: its windows and the burn rates measured over them."""

    severity: Severity
    long: str
    short: str
    burn_rate: float  # the rule's threshold
    long_burn: float
    short_burn: float


class Breach(msgspec.Struct, frozen=True, omit_defaults=True):
    """A breach event (contract v2 of the ``breaches`` topic; streams/breach.v2.schema.json). One breach is
    one ``breach_id``: opened once, updated when its severity changes (``revision`` counts the events), resolved
    once. ``event_id`` identifies each event, so consumers deduplicate by it."""

    breach_id: str
    event_id: str
    revision: int
    state: Literal["open", "resolved"]
    change: Change
    severity: Severity
    region: str
    tier: str
    slo: str
    objective: str
    windows: tuple[FiredWindow, ...]  # the rules that fired at this event (none when resolving)
    budget_consumed: float  # bad requests / budgeted bad requests over everything the gate watched so far
    opened_at: str
    at: str
    plan_version: str
    resolved_at: str | None = None
    decision_id: str | None = None  # the gate's latest fail decision, when there is one

    @property
    def key(self) -> str:
        return f"{self.region}/{self.tier}"


@dataclass(slots=True)
class OpenBreach:
    opened_at: int
    severity: int  # 1 ticket, 2 page
    revision: int
    quiet_since: int  # end of the last pane at which a rule of the current severity fired


@dataclass(slots=True)
class BurnState:
    """One gate's burn-rate state for one objective: plain data, snapshotted with the gate."""

    start: int | None = None  # the first pane ever seen (pane index): windows are not full before it
    end: int | None = None  # one past the last pane processed (pane index)
    fine: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((2, 0), dtype=np.int64))
    hours: dict[int, list[int]] = field(default_factory=dict)  # hour index -> [requests, bad]
    total_requests: int = 0
    total_bad: int = 0
    open: OpenBreach | None = None


@dataclass(frozen=True, slots=True)
class BurnSpec:
    """Everything the alert math needs for one gate and objective."""

    region: str
    tier: str
    plan_version: str
    pane: int
    slo: Slo
    alerts: Alerting

    @property
    def fine_panes(self) -> int:
        """Panes kept exactly: the longest window summed pane by pane."""
        spans = [span for r in self.alerts.rules for span in (r.long, r.short) if span <= FINE_SPAN_MS]
        return max(spans, default=0) // self.pane

    @property
    def hour_span(self) -> int:
        """Whole hours summed by the windows longer than FINE_SPAN_MS (0 when there are none)."""
        spans = [span for r in self.alerts.rules for span in (r.long, r.short) if span > FINE_SPAN_MS]
        return -(-max(spans) // HOUR_MS) if spans else 0


def advance(
    spec: BurnSpec,
    state: BurnState,
    starts: npt.NDArray[np.int64],
    requests: npt.NDArray[np.int64],
    bad: npt.NDArray[np.int64],
) -> list[Breach]:
    """Closed panes (start ms, requests, bad requests), ascending and after every pane seen before, in; the
    breach events they cause out. Panes without data need not be sent: time between them counts as empty."""
    if starts.size == 0:
        return []
    index = starts // spec.pane
    if state.end is not None and int(index[0]) < state.end:
        raise ValueError(f"pane {format_ms(int(starts[0]))} is not after the last pane already seen")
    first = int(index[0]) if state.end is None else state.end
    last = int(index[-1])
    if state.start is None:
        state.start = first
    new = np.zeros((2, last - first + 1), dtype=np.int64)  # every pane from ``first`` to ``last``, empty or not
    np.add.at(new[0], index - first, requests)
    np.add.at(new[1], index - first, bad)
    windows = _Windows(spec, state, new, first)
    fired = [_fires(spec, rule, windows) for rule in spec.alerts.rules]
    seen = np.cumsum(new, axis=1) + np.asarray([[state.total_requests], [state.total_bad]])
    state.total_requests, state.total_bad = int(seen[0, -1]), int(seen[1, -1])
    events = _transitions(spec, state, windows.ends, fired, seen)
    _keep(spec, state, new, first, last)
    return events


class _Windows:
    """Sums of (requests, bad) over windows ending with each new pane: windows up to FINE_SPAN_MS from the kept
    fine panes plus the new ones; longer ones from hourly totals plus the hour so far."""

    def __init__(self, spec: BurnSpec, state: BurnState, new: npt.NDArray[np.int64], first: int) -> None:
        assert state.start is not None
        self.pane, self.per_hour = spec.pane, HOUR_MS // spec.pane
        self.ends = np.arange(first, first + new.shape[1], dtype=np.int64)  # pane index of each new pane
        self.watched = self.ends - state.start + 1  # panes since the first pane ever
        kept = state.fine[:, -spec.fine_panes :] if spec.fine_panes else state.fine[:, :0]
        self.fine_lead = kept.shape[1]
        self.fine_cum = _cum(np.concatenate((kept, new), axis=1))
        self.hour_span = spec.hour_span
        if self.hour_span:
            ph = self.per_hour
            self.first_hour = first // ph - (self.hour_span - 1)
            hours = np.zeros((2, (first + new.shape[1] - 1) // ph - self.first_hour + 1), dtype=np.int64)
            for hour, (req, b) in state.hours.items():
                if hour >= self.first_hour:
                    hours[:, hour - self.first_hour] += (req, b)
            slot = self.ends // ph - self.first_hour
            np.add.at(hours[0], slot, new[0])
            np.add.at(hours[1], slot, new[1])
            self.hour_cum = _cum(hours)
            # The hour so far, up to each new pane: what came before ``first`` in its hour, then the new panes.
            before = state.hours.get(first // ph, [0, 0]) if first % ph else [0, 0]
            fresh = self.ends % ph == 0
            running = _cum(new)[:, 1:]
            base = np.maximum.accumulate(np.where(fresh, np.arange(self.ends.size), 0))
            self.partial = running - _cum(new)[:, base]
            self.partial += np.where(self.ends // ph == first // ph, np.asarray(before)[:, None], 0)

    def sums(self, span: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(requests, bad) over the window of ``span`` ms ending with each new pane, and its length in panes."""
        if span <= FINE_SPAN_MS:
            length = span // self.pane
            at = self.fine_lead + np.arange(1, self.ends.size + 1)
            return self.fine_cum[:, at] - self.fine_cum[:, np.maximum(at - length, 0)], np.full(self.ends.size, length)
        whole = -(-span // HOUR_MS) - 1  # whole hours before the hour so far
        hour = self.ends // self.per_hour - self.first_hour
        earlier = self.hour_cum[:, hour] - self.hour_cum[:, np.maximum(hour - whole, 0)]
        return earlier + self.partial, self.ends % self.per_hour + 1 + whole * self.per_hour


def _cum(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Cumulative sums along the panes with a leading zero: the sum of [i, j) is cum[:, j] - cum[:, i]."""
    return np.concatenate((np.zeros((values.shape[0], 1), dtype=np.int64), np.cumsum(values, axis=1)), axis=1)


def _fires(
    spec: BurnSpec, rule: BurnRule, windows: _Windows
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Whether ``rule`` fires after each new pane, with the long and short burn rates.

    A window the gate has not been watched for in full (a tier that just started) counts its unwatched time as
    without errors: its bad share is scaled by the watched part, so the budget of the whole window must be burnt
    by what was seen. Otherwise one error among the first few requests would be a huge "burn rate"."""
    budget = spec.slo.budget

    def burn(span: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        (requests, bad), length = windows.sums(span)
        seen = np.minimum(length, windows.watched) / length
        with np.errstate(divide="ignore", invalid="ignore"):
            return requests, np.where(requests > 0, bad * seen / (requests * budget), 0.0)

    long_requests, long_burn = burn(rule.long)
    _, short_burn = burn(rule.short)
    fires = (long_requests >= spec.alerts.min_requests) & (long_burn >= rule.burn_rate) & (short_burn >= rule.burn_rate)
    return fires, long_burn, short_burn


def _transitions(
    spec: BurnSpec,
    state: BurnState,
    ends: npt.NDArray[np.int64],
    fired: list[tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    seen: npt.NDArray[np.int64],
) -> list[Breach]:
    """The breach state machine, stepped pane by pane while a breach is open, else jumping to the next pane
    where a rule fires."""
    rules = spec.alerts.rules
    level = np.zeros(ends.size, dtype=np.int64)  # highest severity firing after each pane (0: none)
    for rule, (fires, _long, _short) in zip(rules, fired, strict=True):
        level = np.maximum(level, np.where(fires, _RANK[rule.severity], 0))
    firing = np.flatnonzero(level > 0)
    events: list[Breach] = []

    def emit(breach: OpenBreach, change: Change, end_ms: int, i: int) -> None:
        events.append(_event(spec, breach, change, end_ms, i, fired, seen))

    i = 0 if state.open is not None else int(firing[0]) if firing.size else ends.size
    while i < ends.size:
        end_ms, now, current = (int(ends[i]) + 1) * spec.pane, int(level[i]), state.open
        if current is None:
            state.open = OpenBreach(end_ms, now, 0, end_ms)
            emit(state.open, "opened", end_ms, i)
        elif now >= current.severity:
            current.quiet_since = end_ms
            if now > current.severity:
                current.severity, current.revision = now, current.revision + 1
                emit(current, "escalated", end_ms, i)
        elif end_ms - current.quiet_since >= spec.alerts.resolve_after:
            current.revision += 1
            if now:  # the page rules have been quiet long enough; the ticket rules still fire
                current.severity, current.quiet_since = now, end_ms
                emit(current, "deescalated", end_ms, i)
            else:
                emit(current, "resolved", end_ms, i)
                state.open = None
        if state.open is not None:
            i += 1
        else:
            later = firing[firing > i]
            i = int(later[0]) if later.size else ends.size
    return events


def _event(
    spec: BurnSpec,
    breach: OpenBreach,
    change: Change,
    end_ms: int,
    i: int,
    fired: list[tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    seen: npt.NDArray[np.int64],
) -> Breach:
    opened = format_ms(breach.opened_at)
    breach_id = _digest(spec.plan_version, spec.region, spec.tier, spec.slo.name, opened)
    windows = tuple(
        FiredWindow(
            rule.severity,
            format_duration(rule.long),
            format_duration(rule.short),
            rule.burn_rate,
            round(float(long_burn[i]), 4),
            round(float(short_burn[i]), 4),
        )
        for rule, (fires, long_burn, short_burn) in zip(spec.alerts.rules, fired, strict=True)
        if fires[i]
    )
    budgeted = int(seen[0, i]) * spec.slo.budget
    resolved = change == "resolved"
    return Breach(
        breach_id=breach_id,
        event_id=_digest(breach_id, str(breach.revision), change),
        revision=breach.revision,
        state="resolved" if resolved else "open",
        change=change,
        severity=_SEVERITY_OF[breach.severity],  # type: ignore[arg-type]
        region=spec.region,
        tier=spec.tier,
        slo=spec.slo.name,
        objective=spec.slo.text,
        windows=windows,
        budget_consumed=round(int(seen[1, i]) / budgeted, 4) if budgeted else 0.0,
        opened_at=opened,
        at=format_ms(end_ms),
        plan_version=spec.plan_version,
        resolved_at=format_ms(end_ms) if resolved else None,
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _keep(spec: BurnSpec, state: BurnState, new: npt.NDArray[np.int64], first: int, last: int) -> None:
    """Remember the last fine panes exactly and the recent hours' totals."""
    fine = spec.fine_panes
    state.fine = np.concatenate((state.fine, new), axis=1)[:, -fine:].copy() if fine else new[:, :0].copy()
    state.end = last + 1
    if not spec.hour_span:
        return  # no window is summed in hours
    per_hour = HOUR_MS // spec.pane
    hours = np.arange(first, last + 1, dtype=np.int64) // per_hour
    cuts = np.concatenate(([0], np.flatnonzero(np.diff(hours)) + 1))
    for hour, req, b in zip(hours[cuts].tolist(), *np.add.reduceat(new, cuts, axis=1).tolist(), strict=True):
        if req or b:
            slot = state.hours.setdefault(hour, [0, 0])
            slot[0] += req
            slot[1] += b
    oldest = last // per_hour - spec.hour_span  # what the next call can still need
    for hour in [h for h in state.hours if h < oldest]:
        del state.hours[hour]
