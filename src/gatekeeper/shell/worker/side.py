"""The worker's side inputs: incidents, approvals and business metrics, where the gate state is (stage 2).

The three topics are read by the group like the telemetry (partition p by the member owning partition p of
everything). A record is decoded and checked against the plan (``core/side_inputs.SideRouter``); a bad one goes
to the DLQ with ``gk.reason`` / ``gk.message`` / ``gk.source`` headers, as bad telemetry does. A good one is
forwarded, wrapped with where it came from (``topic:partition`` and offset), to ``<app-id>-side`` on the home
partition of every gate it concerns (key ``region/tier``), so it reaches the member holding that gate's state.
There it goes into the gate's ledger, once: the ledger keeps, per source partition, the offset after the last
record applied, so a record forwarded again after a restart changes nothing. A side record takes effect at the
window closes after its own time (core/side_inputs.py), as in replay.

Hook points in the worker (kept thin on purpose): ``Processor.flush_polled`` calls ``SideStage.flush`` with the
poll; the runtime subscribes to ``SideStage.inputs``; ``topics.worker_topics`` creates ``side_topics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.core import side_inputs
from gatekeeper.core.gate import GateState
from gatekeeper.core.plan import Plan
from gatekeeper.core.side_inputs import Kind, SideRecord, SideRouter
from gatekeeper.core.side_records import Refused
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker.records import Consumed


class Out(Protocol):
    """What a flush collects (``processor.Flush``)."""

    messages: list[Any]
    rejected: Counter[str]


class Gates(Protocol):
    """The processor's side of the hook: its gates, their states and its message builders."""

    def outgoing_to_gate(self, topic: str, key: str, value: bytes) -> Any: ...
    def owns_gate(self, key: str, q: int) -> bool: ...
    def gate_state(self, key: str) -> GateState: ...
    def touched(self, key: str) -> None: ...
    def dead_letter(self, record: Any, code: str, message: str) -> Any: ...


def side_topic(app_id: str) -> str:
    """Side records on their way to their gates' home partitions (key ``region/tier``)."""
    return f"{app_id}-side"


@dataclass(frozen=True, slots=True)
class SideTopics:
    kinds: dict[str, Kind]  # input topic -> what its records are
    forwarded: str  # <app-id>-side

    @staticmethod
    def of(settings: KafkaSettings, app_id: str) -> SideTopics:
        names = settings.topics
        kinds: dict[str, Kind] = {
            names.incidents: "incident",
            names.approvals: "approval",
            names.business_metrics: "business",
        }
        return SideTopics(kinds, side_topic(app_id))

    @property
    def inputs(self) -> list[str]:
        return [*self.kinds, self.forwarded]


def side_topics(settings: KafkaSettings, app_id: str) -> dict[str, dict[str, str]]:
    """The side topics with their creation configs (defaults: they are small)."""
    return {name: {} for name in SideTopics.of(settings, app_id).inputs}


class SideStage:
    """Forwards valid side records to their gates and applies forwarded ones to the owned gates' ledgers."""

    def __init__(self, plan: Plan, topics: SideTopics, processor: Gates) -> None:
        self.topics = topics
        self.router = SideRouter(plan)
        self.window = plan.evaluation.window
        self.processor = processor
        self.applied = 0

    def flush(self, polled: Sequence[tuple[str, int, Sequence[Consumed]]], out: Out) -> None:
        for topic, partition, records in polled:
            kind = self.topics.kinds.get(topic)
            if kind is not None:
                for r in records:
                    self._forward(kind, r, out)
            elif topic == self.topics.forwarded:
                for r in records:
                    self._apply(partition, r, out)

    def _forward(self, kind: Kind, r: Consumed, out: Out) -> None:
        routed = self.router.route(kind, r.value or b"")
        if isinstance(routed, Refused):
            out.messages.append(self.processor.dead_letter(r, routed.code, routed.message))
            out.rejected[routed.code] += 1
            return
        record = SideRecord(f"{r.topic}:{r.partition}", r.offset, kind, r.value or b"")
        value = side_inputs.encode_record(record)
        for key in routed.gates:
            out.messages.append(self.processor.outgoing_to_gate(self.topics.forwarded, key, value))

    def _apply(self, q: int, r: Consumed, out: Out) -> None:
        try:
            record = side_inputs.decode_record(r.value or b"")
        except ValueError as exc:
            out.messages.append(self.processor.dead_letter(r, "invalid_side_record", str(exc)))
            out.rejected["invalid_side_record"] += 1
            return
        key = (r.key or b"").decode("utf-8", "replace")
        routed = self.router.route(record.kind, record.value)
        if isinstance(routed, Refused) or key not in routed.gates or not self.processor.owns_gate(key, q):
            why = routed.message if isinstance(routed, Refused) else f"not for gate {key!r} at partition {q}"
            out.messages.append(self.processor.dead_letter(r, "invalid_side_record", why))
            out.rejected["invalid_side_record"] += 1
            return
        ledger = self.processor.gate_state(key).side
        if side_inputs.apply(ledger, routed.value, record.source, record.position, self.window):
            self.applied += 1
            self.processor.touched(key)
