"""Side-input partitions as watermark sources in the worker's processor, without Kafka: a small in-memory bus
carries ``<app-id>-panes`` and ``<app-id>-side`` back into the processor. Read as a backlog (all the telemetry
first, the incidents after), the gates wait for the incidents' partitions, and decide what replay decides."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from gatekeeper.core import decision as decisions
from gatekeeper.core import inbox_snapshot
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_ms
from gatekeeper.shell.replay import replay
from gatekeeper.shell.side_files import SideFile
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics
from gatekeeper.shell.worker.side import SideStage, SideTopics
from gatekeeper.shell.worker.state_entry import decode_entry
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000  # 2025-10-19T00:00:00Z
PLAN = Plan.model_validate(
    small_plan("side-watermarks", "1", [
        small_tier("canary", 5, more_criteria=[{"kind": "no_incidents", "severities": ["critical"]}]),
        small_tier("plain", 20),
    ])
)  # fmt: skip
TOPICS = Topics("telemetry", "app-panes", "decisions", "breaches", "dlq", partitions=8)
SIDE = SideTopics(
    {"incidents": "incident", "approvals": "approval", "business-metrics": "business"}, "app-side", 8, "dlq"
)
INTERNAL = (TOPICS.panes, SIDE.forwarded)
NONE: dict[bytes, bytes] = {}  # no stored state


def at(minutes: int) -> str:
    return format_ms((T0_S + minutes * 60) * 1000)


INCIDENTS = [
    json.dumps({"id": "INC-1", "severity": "critical", "kind": "outage", "region": "us-east", "tier": "canary",
                "opened_at": at(25), **extra}).encode()
    for extra in ({}, {"resolved_at": at(28)})
]  # fmt: skip


def telemetry(minutes: int = 150) -> dict[int, list[Record]]:
    """Healthy canary and plain tiers in both regions, 30 requests a minute each, in time order, unkeyed over the
    8 partitions."""
    rng = np.random.default_rng(7)
    rows: list[tuple[int, bytes]] = []
    for region in ("us-east", "eu-west"):
        for tier in ("canary", "plain"):
            ts = np.sort(rng.integers(0, minutes * 60_000, 30 * minutes))
            for t in ts.tolist():
                fields = f'"region": "{region}", "tier": "{tier}", "latency_ms": 50, "status": 200'
                rows.append((t, f'{{"ts": {T0_S + t / 1000:.3f}, {fields}}}'.encode()))
    rows.sort()
    owner = rng.integers(0, TOPICS.partitions, len(rows)).tolist()
    parts = {p: [v for (_t, v), o in zip(rows, owner, strict=True) if o == p] for p in range(TOPICS.partitions)}
    return {p: [Record(TOPICS.telemetry, p, i, None, v) for i, v in enumerate(vs)] for p, vs in parts.items()}


@dataclass
class Bus:
    """The internal topics the processor writes and reads back, and everything else it produced."""

    internal: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = field(default_factory=dict)
    read: dict[tuple[str, int], int] = field(default_factory=dict)
    out: list[tuple[str, bytes]] = field(default_factory=list)

    def apply(self, flush: Flush) -> None:
        for m in flush.messages:
            assert m.value is not None
            if m.topic in INTERNAL:
                self.internal.setdefault((m.topic, m.partition), []).append((m.key, m.value))
            else:
                self.out.append((m.topic, m.value))

    def drain(self, processor: Processor) -> None:
        while any(len(v) > self.read.get(at, 0) for at, v in self.internal.items()):
            runs = []
            for (topic, q), values in sorted(self.internal.items()):
                first = self.read.get((topic, q), 0)
                runs.append((topic, q, [Record(topic, q, first + i, k, v) for i, (k, v) in enumerate(values[first:])]))
                self.read[topic, q] = len(values)
            self.apply(processor.flush_polled(runs))

    def decisions(self) -> list[bytes]:
        return [v for topic, v in self.out if topic == TOPICS.decisions]


def expected(parts: dict[int, list[Record]], incidents: list[bytes] = INCIDENTS) -> dict[str, list[bytes]]:
    # every line starts with its ts, all of one width: sorted, they are in time order
    source = b"\n".join(sorted(r.value or b"" for rs in parts.values() for r in rs))
    sink = io.BytesIO()
    side = [SideFile("incident", "incidents", io.BytesIO(b"\n".join(incidents)))]
    replay(PLAN, io.BytesIO(source + b"\n"), sink, side=side)
    return by_key([line for line in sink.getvalue().splitlines() if line])


def by_key(values: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for value in values:
        out.setdefault(decisions.decode(value).key, []).append(value)
    return out


def test_a_backlog_read_telemetry_first_decides_as_replay() -> None:
    """All the telemetry read and merged before the incidents' partition: the canary gates (no_incidents) decide
    nothing while the incident partitions have not reported; the plain tier (no side criterion) decides at once.
    With incidents:3 read (its watermark: the records' opened_at, 00:25, minus the lateness 2m) and the other side
    partitions idle, the canary gates close their panes up to 00:23 only, the plain ones to the end; once
    incidents:3 is idle too, every decision equals replay's with the incidents as a side file, the incident
    failing us-east/canary at 00:30."""
    parts = telemetry()
    bus = Bus()
    processor = Processor(PLAN, TOPICS, NONE.get, NONE.get)
    processor.side = SideStage(PLAN, SIDE, processor.gates)
    bus.apply(processor.flush_polled([(TOPICS.telemetry, p, rs) for p, rs in parts.items()]))
    bus.apply(processor.mark_idle(range(TOPICS.partitions)))
    bus.drain(processor)
    assert {"us-east/plain", "eu-west/plain"} == set(by_key(bus.decisions()))

    incidents = [Record("incidents", 3, i, b"INC-1", v) for i, v in enumerate(INCIDENTS)]
    bus.apply(processor.flush_polled([("incidents", 3, incidents)]))
    others = [(t, p) for t in SIDE.kinds for p in range(SIDE.partitions) if (t, p) != ("incidents", 3)]
    idle = Flush()
    processor.side.mark_idle(others, idle)
    bus.apply(idle)
    bus.drain(processor)
    closed = {key.decode(): inbox_snapshot.load_inbox(decode_entry(raw)[1])[0].closed_until
              for key, raw in processor.checkpoint().gates.items()}  # fmt: skip
    assert (T0_S + 23 * 60) * 1000 == closed["us-east/canary"] == closed["eu-west/canary"]
    assert (T0_S + 147 * 60) * 1000 <= (closed["us-east/plain"] or 0)  # the newest record (~02:30) - 2m

    idle = Flush()
    processor.side.mark_idle([("incidents", 3)], idle)
    bus.apply(idle)
    bus.drain(processor)
    want = expected(parts)
    assert want == by_key(bus.decisions())
    assert ("fail", at(30)) in [(d.decision, d.at) for d in map(decisions.decode, want["us-east/canary"])]


def test_side_watermarks_go_to_every_side_partition_behind_the_records() -> None:
    """Forwarding a poll's incident sends it to its gate's home partition of ``<app-id>-side``, then the
    partition's watermark (opened_at - 2m) to all 8 partitions, after the record; a poll in the same pane of the
    watermark sends none; a message on the side topic that is neither a side record nor a side partition's
    watermark goes to the DLQ."""
    processor = Processor(PLAN, TOPICS, NONE.get, NONE.get)
    processor.side = SideStage(PLAN, SIDE, processor.gates)
    flush = processor.flush_polled([("incidents", 3, [Record("incidents", 3, 0, None, INCIDENTS[0])])])
    home = processor.home[processor.keys.index(b"us-east/canary")]
    mark = b'{"kind":"watermark","v":1,"source":"incidents:3","watermark":%d,"idle":false}' % ((T0_S + 23 * 60) * 1000)
    assert [(SIDE.forwarded, home, b"us-east/canary")] + [(SIDE.forwarded, q, b"incidents:3") for q in range(8)] == [
        (m.topic, m.partition, m.key) for m in flush.messages
    ]
    assert [mark] * 8 == [m.value for m in flush.messages[1:]]
    again = processor.flush_polled([("incidents", 3, [Record("incidents", 3, 1, None, INCIDENTS[1])])])
    assert [(SIDE.forwarded, home)] == [(m.topic, m.partition) for m in again.messages]
    bad = b'{"kind":"watermark","v":1,"source":"telemetry:3","watermark":0,"idle":false}'
    dead = processor.flush_polled([(SIDE.forwarded, home, [Record(SIDE.forwarded, home, 0, None, bad)])])
    assert ["invalid_side_record"] == [dict(m.headers)["gk.reason"].decode() for m in dead.messages]


def test_a_side_partition_gained_in_a_rebalance_holds_the_gates_until_idle_again() -> None:
    """Worker A reads the first 30 minutes of telemetry with every side partition idle: the canary gates close
    their panes to ~00:28. Then incidents:3 moves to worker B (a rebalance), which reports it active before
    reading it (``SideStage.resumed``, as the runtime does on assignment). A reads the rest of the telemetry (to
    02:30) before B reads the incident opened at 00:40 that came meanwhile: the canary gates wait for incidents:3
    rather than pass us-east/canary at 01:00; once B forwarded the incident and reports incidents:3 idle, every
    decision equals replay's, the incident failing us-east/canary at 00:50."""
    parts = telemetry()
    cut = T0_S + 30 * 60
    first = {p: [r for r in rs if json.loads(r.value or b"")["ts"] < cut] for p, rs in parts.items()}
    rest = {p: [r for r in rs if json.loads(r.value or b"")["ts"] >= cut] for p, rs in parts.items()}
    incident = json.dumps({"id": "INC-2", "severity": "critical", "kind": "outage", "region": "us-east",
                           "tier": "canary", "opened_at": at(40)}).encode()  # fmt: skip
    bus = Bus()
    a = Processor(PLAN, TOPICS, NONE.get, NONE.get)
    a.side = SideStage(PLAN, SIDE, a.gates)
    bus.apply(a.flush_polled([(TOPICS.telemetry, p, rs) for p, rs in first.items()]))
    idle = Flush()
    a.side.mark_idle([(t, p) for t in SIDE.kinds for p in range(SIDE.partitions)], idle)
    bus.apply(idle)
    bus.drain(a)

    b = Processor(PLAN, TOPICS, NONE.get, NONE.get)
    b.side = SideStage(PLAN, SIDE, b.gates)
    a.side.forget([("incidents", 3)])
    gained = Flush()
    b.side.resumed([("incidents", 3)], gained)
    bus.apply(gained)
    bus.drain(a)  # B reports it on assignment, before A has read and sent anything more (see docs/reliability.md)
    bus.apply(a.flush_polled([(TOPICS.telemetry, p, rs) for p, rs in rest.items()]))
    bus.apply(a.mark_idle(range(TOPICS.partitions)))
    bus.drain(a)
    assert [] == by_key(bus.decisions()).get("us-east/canary", [])

    bus.apply(b.flush_polled([("incidents", 3, [Record("incidents", 3, 0, b"INC-2", incident)])]))
    idle = Flush()
    b.side.mark_idle([("incidents", 3)], idle)
    bus.apply(idle)
    bus.drain(a)
    want = expected(parts, [incident])
    assert want == by_key(bus.decisions())
    assert ("fail", at(50)) in [(d.decision, d.at) for d in map(decisions.decode, want["us-east/canary"])]
