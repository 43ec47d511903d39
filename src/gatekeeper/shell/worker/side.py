"""The worker's side inputs: incidents, approvals and business metrics, where the gate state is (stage 2).

The three topics are read by the group like the telemetry (partition p by the member owning partition p of
everything). A record is decoded and checked against the plan (``core/side_inputs.SideRouter``); a bad one goes
to the DLQ with ``gk.reason`` / ``gk.message`` / ``gk.source`` headers, as bad telemetry does. A good one is
forwarded, wrapped with where it came from (``topic:partition`` and offset), to ``<app-id>-side`` on the home
partition of every gate it concerns (key ``region/tier``), so it reaches the member holding that gate's state.
There it goes into the gate's ledger, once: the ledger keeps, per source partition, the offset after the last
record applied, so a record forwarded again after a restart changes nothing. A side record takes effect at the
window closes after its own time (core/side_inputs.py), as in replay.

Each side-input partition is also a watermark source of the gates its records concern (core/side_watermarks.py):
after forwarding a poll's records of ``<topic>:<p>``, the forwarder sends p's watermark (newest event time minus
the lateness, when it enters a new pane) to every partition of ``<app-id>-side``, behind the records it forwarded
there (one idempotent producer keeps a partition's order), and the runtime reports p idle once it has been read to
its end for ``idle_after``. Where the gate is, the watermark goes to the gates homed there that the partition
concerns, which close no pane past it: even reading a backlog, no gate's event time passes a side record before
the record is applied, so the worker decides what replay decides. A member gaining a side partition in a
rebalance reports it active first (``SideStage.resumed``): its previous owner may have reported it idle.

Hook points in the worker (kept thin on purpose): ``Processor.flush_polled`` calls ``SideStage.flush`` with the
poll, and ``Processor`` asks ``SideStage.sources_of`` for a gate's side sources; the runtime subscribes to
``SideTopics.inputs`` and calls ``SideStage.mark_idle``, ``SideStage.forget`` and ``SideStage.resumed`` (on a
rebalance); ``topics.worker_topics`` creates ``side_topics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.core import partials, side_inputs, side_watermarks
from gatekeeper.core.gate import GateState
from gatekeeper.core.partials import Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.core.side_inputs import Kind, SideRecord, SideRouter
from gatekeeper.core.side_records import Refused
from gatekeeper.core.side_watermarks import SideClock
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker import outgoing
from gatekeeper.shell.worker.outgoing import Outgoing
from gatekeeper.shell.worker.records import Consumed


class Out(Protocol):
    """What a flush collects (``flush.Flush``)."""

    messages: list[Any]
    rejected: Counter[str]


class Gates(Protocol):
    """Stage 2's side of the hook, what only it knows (``gate_stage.GateStage``, ``faust_gate.state.FaustGateState``):
    where its gates are homed, their states, and how it keeps them."""

    def outgoing_to_gate(self, topic: str, key: str, value: bytes) -> Outgoing: ...
    def watermark_gate(self, key: str, watermark: Watermark, out: Any) -> None: ...
    def owns_gate(self, key: str, q: int) -> bool: ...
    def gate_state(self, key: str) -> GateState: ...
    def touched(self, key: str) -> None: ...


def side_topic(app_id: str) -> str:
    """Side records on their way to their gates' home partitions (key ``region/tier``)."""
    return f"{app_id}-side"


@dataclass(frozen=True, slots=True)
class SideTopics:
    kinds: dict[str, Kind]  # input topic -> what its records are
    forwarded: str  # <app-id>-side
    partitions: int  # of every topic (the worker's topics share one partition count)
    dlq: str  # where bad side records go (the worker's dead-letter topic)

    @staticmethod
    def of(settings: KafkaSettings, app_id: str) -> SideTopics:
        names = settings.topics
        kinds: dict[str, Kind] = {
            names.incidents: "incident",
            names.approvals: "approval",
            names.business_metrics: "business",
        }
        return SideTopics(kinds, side_topic(app_id), names.partitions, names.dlq)

    @property
    def inputs(self) -> list[str]:
        return [*self.kinds, self.forwarded]


def side_topics(settings: KafkaSettings, app_id: str) -> dict[str, dict[str, str]]:
    """The side topics with their creation configs (defaults: they are small)."""
    return {name: {} for name in SideTopics.of(settings, app_id).inputs}


class SideStage:
    """Forwards valid side records to their gates and applies forwarded ones to the owned gates' ledgers."""

    def __init__(self, plan: Plan, topics: SideTopics, gates: Gates) -> None:
        self.topics = topics
        self.router = SideRouter(plan)
        self.window = plan.evaluation.window
        self.gates = gates
        self.applied = 0
        ev = plan.evaluation
        self.clock = SideClock(ev.lateness, ev.pane)
        self.concerned = side_watermarks.concerned(plan)
        self._sources: dict[str, tuple[str, ...]] = {}  # gate -> the side partitions it waits for

    def sources_of(self, key: str) -> tuple[str, ...]:
        """The side partitions (``<topic>:<p>``) gate ``key`` takes as holding watermark sources."""
        found = self._sources.get(key)
        if found is None:
            topics = [topic for topic, kind in self.topics.kinds.items() if key in self.concerned[kind]]
            found = self._sources[key] = tuple(f"{t}:{p}" for t in topics for p in range(self.topics.partitions))
        return found

    def mark_idle(self, partitions: Sequence[tuple[str, int]], out: Out) -> None:
        """Side partitions read to their end and silent for ``idle_after``: say so to their gates, again each
        time (a gate stops counting a partition idle when it wakes up, or when a telemetry partition does)."""
        for topic, p in partitions:
            self._broadcast(self.clock.publish(f"{topic}:{p}", idle=True, again=True), out)

    def forget(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Side partitions lost or gained in a rebalance: what was said of them starts afresh."""
        self.clock.forget(f"{topic}:{p}" for topic, p in partitions)

    def resumed(self, partitions: Sequence[tuple[str, int]], out: Out) -> None:
        """Side partitions just gained in a rebalance (forgotten first): report each active to its gates before
        anything is read from it, so they hold until it is read and idle again (core/side_watermarks.py)."""
        for topic, p in sorted(partitions):
            self._broadcast(self.clock.resumed(f"{topic}:{p}"), out)

    def flush(self, polled: Sequence[tuple[str, int, Sequence[Consumed]]], out: Out) -> None:
        for topic, partition, records in polled:
            kind = self.topics.kinds.get(topic)
            if kind is not None:
                for r in records:
                    self._forward(kind, r, out)
                if records:  # behind the records forwarded, on every partition they may have gone to
                    self._broadcast(self.clock.publish(f"{topic}:{partition}"), out)
            elif topic == self.topics.forwarded:
                for r in records:
                    if (r.value or b"")[:1] == b"{":  # a side partition's watermark (partials contract, JSON)
                        self._watermark(partition, r, out)
                    else:
                        self._apply(partition, r, out)

    def _broadcast(self, watermark: Watermark | None, out: Out) -> None:
        if watermark is None:
            return
        value, key = partials.encode(watermark), watermark.source.encode()
        for q in range(self.topics.partitions):
            out.messages.append(Outgoing(self.topics.forwarded, q, key, value))

    def _watermark(self, q: int, r: Consumed, out: Out) -> None:
        """A side partition's watermark: to the gates homed at ``q`` that the partition concerns."""
        try:
            message = partials.decode(r.value or b"")
        except partials.PartialError as exc:
            self._refuse(r, str(exc), out)
            return
        kind = self.topics.kinds.get(message.source.rpartition(":")[0]) if isinstance(message, Watermark) else None
        if kind is None or not isinstance(message, Watermark):
            self._refuse(r, f"not the watermark of a side partition: {(r.value or b'')[:200]!r}", out)
            return
        for key in self.concerned[kind]:
            if self.gates.owns_gate(key, q):
                self.gates.watermark_gate(key, message, out)

    def _refuse(self, r: Consumed, why: str, out: Out) -> None:
        out.messages.append(self._dead_letter(r, "invalid_side_record", why))
        out.rejected["invalid_side_record"] += 1

    def _dead_letter(self, r: Consumed, code: str, why: str) -> Outgoing:
        return outgoing.rejected(self.topics.dlq, self.topics.partitions, r, code, why)

    def _forward(self, kind: Kind, r: Consumed, out: Out) -> None:
        routed = self.router.route(kind, r.value or b"")
        if isinstance(routed, Refused):
            out.messages.append(self._dead_letter(r, routed.code, routed.message))
            out.rejected[routed.code] += 1
            return
        self.clock.saw(f"{r.topic}:{r.partition}", side_watermarks.record_ms(routed.value))
        record = SideRecord(f"{r.topic}:{r.partition}", r.offset, kind, r.value or b"")
        value = side_inputs.encode_record(record)
        for key in routed.gates:
            out.messages.append(self.gates.outgoing_to_gate(self.topics.forwarded, key, value))

    def _apply(self, q: int, r: Consumed, out: Out) -> None:
        try:
            record = side_inputs.decode_record(r.value or b"")
        except ValueError as exc:
            self._refuse(r, str(exc), out)
            return
        key = (r.key or b"").decode("utf-8", "replace")
        routed = self.router.route(record.kind, record.value)
        if isinstance(routed, Refused) or key not in routed.gates or not self.gates.owns_gate(key, q):
            why = routed.message if isinstance(routed, Refused) else f"not for gate {key!r} at partition {q}"
            self._refuse(r, why, out)
            return
        ledger = self.gates.gate_state(key).side
        if side_inputs.apply(ledger, routed.value, record.source, record.position, self.window):
            self.applied += 1
            self.gates.touched(key)
