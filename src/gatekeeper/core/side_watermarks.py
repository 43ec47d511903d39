"""Side-input partitions as sources of the merge watermark (the worker's incidents, approvals, business metrics).

In the worker, a side record travels apart from the telemetry (its own topic, then ``<app-id>-side``), so in a
backlog the telemetry could carry a gate's event time past a side record before the record reached the gate,
and the record would count a window later than in replay (which reads its side files first). So each side-input
partition is a source of the gates its records concern (``concerned``), as telemetry partitions are: its
watermark is the newest of its records' times (``record_ms``: an incident's opened_at, an approval's at, a
business metric's ts) minus the plan's lateness, and stage 2 closes no pane of such a gate past it while the
partition is not idle. Unlike a telemetry partition it only *holds* (``SourceMark.holds``): it never carries a
gate's clock forward. A side partition read to its end and silent for ``idle_after`` is reported idle and holds
nothing, so mostly-idle side topics delay nothing for longer than that. A side partition gained in a rebalance is
reported active again by its new owner (``SideClock.resumed``), as a telemetry partition is, so it holds its
gates as at start-up until it is read and idle again.

Pure: the worker (shell/worker/side.py) feeds it the records' times and sends the watermarks it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gatekeeper.core.incidents import Incident
from gatekeeper.core.merge import GateInbox, SourceMark
from gatekeeper.core.partials import Watermark
from gatekeeper.core.plan import LiftCriterion, NoIncidentsCriterion, Plan
from gatekeeper.core.side_inputs import Kind, SideValue, event_ms
from gatekeeper.core.side_records import instant_ms


def concerned(plan: Plan) -> dict[Kind, tuple[str, ...]]:
    """Per kind of side record, the gates ("region/tier") whose decisions such records can change: incidents
    those with a ``no_incidents`` criterion, approvals those with a checkpoint that requires approval, business
    metrics those with a ``lift`` criterion. Other gates wait for no side partition."""
    out: dict[Kind, list[str]] = {"incident": [], "approval": [], "business": []}
    for region, _phase, tier in plan.gates():
        key = f"{region}/{tier.name}"
        if any(isinstance(c, NoIncidentsCriterion) for c in tier.criteria):
            out["incident"].append(key)
        if any(c.approval for c in tier.checkpoints):
            out["approval"].append(key)
        if any(isinstance(c, LiftCriterion) for c in tier.criteria):
            out["business"].append(key)
    return {kind: tuple(keys) for kind, keys in out.items()}


def record_ms(value: SideValue) -> int:
    """The time a side record advances its partition's watermark by: the earliest time it speaks of (an incident's
    opening, also in the record that resolves it, since a judge as of a time before the resolution sees it open)."""
    return instant_ms(value.opened_at) if isinstance(value, Incident) else event_ms(value)


def hold(inbox: GateInbox, sources: Iterable[str]) -> None:
    """Make ``sources`` (side partitions) holding sources of ``inbox``: added, not reported yet, if new (they
    hold the gate until they report or are idle); flagged if restored from a snapshot (which keeps no flag)."""
    for source in sources:
        inbox.sources.setdefault(source, SourceMark()).holds = True


@dataclass(slots=True)
class _Partition:
    newest: int | None = None  # newest event time of a valid record read
    published: tuple[int | None, bool] | None = None  # (pane of the watermark, idle) last sent


class SideClock:
    """The watermark of each side partition this worker reads, and when to send it."""

    def __init__(self, lateness: int, pane: int) -> None:
        self.lateness, self.pane = lateness, pane
        self._parts: dict[str, _Partition] = {}

    def saw(self, source: str, event_ms: int) -> None:
        """A valid record of ``source`` with this event time was forwarded."""
        part = self._parts.setdefault(source, _Partition())
        part.newest = event_ms if part.newest is None else max(part.newest, event_ms)

    def publish(self, source: str, *, idle: bool = False, again: bool = False) -> Watermark | None:
        """The watermark to send for ``source`` now: when it entered a new pane or its idleness changed (stage 2
        acts on pane boundaries only), or ``again`` (idle said again: a gate may have stopped counting it idle).
        None: nothing new to say (or nothing known yet, while not idle)."""
        part = self._parts.setdefault(source, _Partition())
        watermark = None if part.newest is None else part.newest - self.lateness
        if watermark is None and not idle:
            return None
        published = (None if watermark is None else watermark // self.pane, idle)
        if published == part.published and not again:
            return None
        part.published = published
        return Watermark(source=source, watermark=watermark, idle=idle)

    def forget(self, sources: Iterable[str]) -> None:
        """Partitions lost or gained in a rebalance: their next reports start afresh."""
        for source in sources:
            self._parts.pop(source, None)

    def resumed(self, source: str) -> Watermark:
        """A partition gained in a rebalance: reported active again, as at start-up, before anything is read from
        it. Its previous owner may have reported it idle, and records produced since (or not yet forwarded) must
        not be overtaken by the telemetry: the gates it concerns hold at its last watermark they heard (this one
        is None before this owner has read a record) until this owner reports a newer one, or idle again."""
        part = self._parts.setdefault(source, _Partition())
        watermark = None if part.newest is None else part.newest - self.lateness
        part.published = (None if watermark is None else watermark // self.pane, False)
        return Watermark(source=source, watermark=watermark, idle=False)
