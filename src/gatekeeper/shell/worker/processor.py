"""The worker's per-partition processing, without any Kafka client (unit-testable).

``runtime.py`` hands each poll's records to ``flush_polled`` and then does the I/O in this order:
send every outgoing message and await its delivery, write the returned gate states to the gate-state
changelog and await that, commit the offsets. So an offset is committed only once the decisions and the
gate states that include it are in Kafka.

Routing. A valid telemetry record whose gate's *home* partition (Java murmur2 of ``b"region/tier"``, where
a keyed producer puts it) is the partition it was read from is applied here, directly; any other valid
record (unkeyed, keyed otherwise, partitioned otherwise) is forwarded with its original bytes to
``<app-id>-gates`` on its home partition, with its source coordinates in the ``gk.source`` header; an
invalid record goes to the DLQ with its original key and bytes and ``gk.reason`` / ``gk.message`` /
``gk.source`` headers. The consumer group's range assignor gives partition p of both input topics to one
worker, so a gate is only ever touched by the owner of its home partition, and its state is written to
the changelog partition of the same number.

Order. Kafka orders records within a partition only. Records of one gate that a producer spreads over
several partitions (no key and the default partitioner) reach the gate in whatever interleaving the
consumer fetches them; replay's file order is then kept only up to that disorder, and records beyond the
lateness are counted late where replay counted them on time. Keyed by ``region/tier`` (or by anything
that keeps a gate on one partition, e.g. its region), a gate's records keep their order.

Idempotence. Each gate keeps, per *source* (original telemetry topic and partition), the last source
offset applied to it. A gate's records from one source arrive in source order on one path (direct when
the source is the home partition, else through ``<app-id>-gates``), so a record at or below that offset is
a re-delivery (after a crash, a rebalance or a re-forward) and is skipped. Decisions are deterministic, so
a re-delivery after a crash re-emits the same decisions with the same ids (at-least-once delivery).

Stream clock. Each gate has an engine of its own, so one gate's events never move another gate's stall
clock: a backlog read partition by partition cannot make a gate look silent. The worker-wide clock
(``observe_clock``: the newest event time of the gates this worker owns) is applied only when the worker
has read every partition it owns to its end (the runtime checks), which is when a silent gate is really silent.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np
import numpy.typing as npt
from aiokafka.partitioner import murmur2

from gatekeeper.core import snapshot
from gatekeeper.core.decision import Decision, encode
from gatekeeper.core.engine import Engine
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch
from gatekeeper.shell.cloudevents import headers_of

Headers = tuple[tuple[str, bytes], ...]

SOURCE_HEADER = "gk.source"  # b"topic/partition/offset" of the original telemetry record
REASON_HEADER = "gk.reason"
MESSAGE_HEADER = "gk.message"
MAX_MESSAGE_BYTES = 1024


class StateError(RuntimeError):
    """A gate-state table entry that cannot be read: continuing would silently lose or redo gate state."""


def home_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner (Java murmur2, as aiokafka's) puts ``key`` among ``partitions``."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names the worker reads and writes, and their (common) partition count."""

    telemetry: str
    gates: str
    decisions: str
    breaches: str
    dlq: str
    partitions: int


class Consumed(Protocol):
    """A consumed Kafka record: aiokafka's ``ConsumerRecord`` or a ``Record``."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record built by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to produce, on an explicit partition."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None  # None: a dead letter of a record without a value
    headers: Headers = ()


@dataclass(slots=True)
class Flush:
    """What one flush produced: the caller sends ``messages``, then writes ``state``, then commits."""

    messages: list[Outgoing] = field(default_factory=list)
    state: dict[bytes, bytes] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0
    applied: int = 0
    duplicates: int = 0
    late: int = 0  # events that came after their pane closed: counted in the gate's metrics, not used


class _Entry(msgspec.Struct):
    """A ``gate-state`` table value: plan version, gate snapshot, applied source offsets."""

    v: str
    s: bytes
    o: dict[str, int]


_ENTRY_ENCODER = msgspec.msgpack.Encoder()
_ENTRY_DECODER = msgspec.msgpack.Decoder(_Entry)


def encode_entry(plan_version: str, state: bytes, applied: Mapping[str, int]) -> bytes:
    return _ENTRY_ENCODER.encode(_Entry(plan_version, state, dict(applied)))


def decode_entry(raw: bytes) -> tuple[str, bytes, dict[str, int]]:
    """(plan version, snapshot bytes, applied offsets); StateError when ``raw`` is not an entry."""
    try:
        entry = _ENTRY_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"not a gate-state entry: {exc}") from None
    return entry.v, entry.s, entry.o


@dataclass(slots=True)
class _Gate:
    engine: Engine
    applied: dict[str, int]  # "topic:partition" of a source -> last source offset applied


def _source_of(record: Consumed, gates_topic: str) -> tuple[str, int, int]:
    """Original (topic, partition, offset) of a record: its own, or the ``gk.source`` header of a forward."""
    if record.topic == gates_topic:
        for name, value in record.headers:
            if name == SOURCE_HEADER:
                topic, _, rest = value.decode("ascii", "replace").partition("/")
                partition, _, offset = rest.partition("/")
                if topic and partition.isdigit() and offset.isdigit():
                    return topic, int(partition), int(offset)
    return record.topic, record.partition, record.offset


def _source_header(topic: str, partition: int, offset: int) -> tuple[str, bytes]:
    return (SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode())


class Processor:
    """Turns a partition's consumed records into messages and gate states; holds the owned gates' engines."""

    def __init__(
        self,
        plan: Plan,
        topics: Topics,
        lookup: Callable[[bytes], bytes | None],
        *,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.plan, self.topics = plan, topics
        self._lookup, self._warn = lookup, warn
        self.version = plan.plan_version
        prototype = Engine(plan)
        self._decoder = prototype.decoder()
        self._max_future_skew = plan.evaluation.max_future_skew
        self.keys = [f"{region}/{tier}".encode() for region, tier in prototype.keys]
        self.home = [home_partition(key, topics.partitions) for key in self.keys]
        self._home = np.asarray(self.home, dtype=np.int64)
        self._gates: dict[int, _Gate] = {}
        self.rejected: Counter[str] = Counter()
        self.decided: Counter[str] = Counter()

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the gates homed in revoked ``partitions`` (their next owner restores them from the table)."""
        gone = set(partitions)
        for index in [g for g in self._gates if self.home[g] in gone]:
            del self._gates[index]

    # -- flushing ----------------------------------------------------------------------------------------
    def flush(self, records: Sequence[Consumed], now_ms: int | None = None) -> Flush:
        """Route, dead-letter and apply ``records`` (in arrival order). With the wall clock ``now_ms``,
        records timestamped beyond it plus the plan's ``max_future_skew`` are dead-lettered (as in replay)."""
        n = len(records)
        partition = np.fromiter((r.partition for r in records), np.int64, n)
        direct = np.fromiter((r.topic == self.topics.telemetry for r in records), np.bool_, n)
        return self._flush(records, partition, direct, now_ms)

    def flush_polled(
        self,
        polled: Sequence[tuple[str, int, Sequence[Consumed]]],
        now_ms: int | None = None,
        decoded: EventBatch | None = None,
    ) -> Flush:
        """``flush`` of one poll's records given as (topic, partition, records) runs, which spares reading the
        topic and partition of every record. ``decoded``: the records' values already decoded (``decoding``),
        with the rejection clock ``now_ms`` + ``max_future_skew`` (see ``not_after``)."""
        records = [r for _topic, _partition, run in polled for r in run]
        sizes = [len(run) for _topic, _partition, run in polled]
        partition = np.repeat(np.asarray([p for _t, p, _r in polled], dtype=np.int64), sizes)
        direct = np.repeat(np.asarray([t == self.topics.telemetry for t, _p, _r in polled], dtype=np.bool_), sizes)
        return self._flush(records, partition, direct, now_ms, decoded)

    def not_after(self, now_ms: int) -> int:
        """The newest event time accepted when the wall clock reads ``now_ms``."""
        return now_ms + self._max_future_skew

    def _flush(
        self,
        records: Sequence[Consumed],
        partition: npt.NDArray[np.int64],
        direct: npt.NDArray[np.bool_],  # read from the telemetry topic (else: a forward from the gates topic)
        now_ms: int | None,
        decoded: EventBatch | None = None,
    ) -> Flush:
        out = Flush()
        if not records:
            return out
        batch = decoded
        if batch is None:
            if now_ms is not None:
                self._decoder.not_after_ms = self.not_after(now_ms)
            batch = self._decoder.decode([r.value or b"" for r in records], first_position=0)
        valid: Sequence[Consumed] = records
        if batch.rejections:
            for rej in batch.rejections:
                out.messages.append(self._dead_letter(records[rej.position], rej.code, rej.message))
                out.rejected[rej.code] += 1
            ok = np.ones(len(records), dtype=np.bool_)
            ok[[rej.position for rej in batch.rejections]] = False
            valid = [records[i] for i in np.flatnonzero(ok).tolist()]
            partition, direct = partition[ok], direct[ok]
        n, telemetry_topic = len(valid), self.topics.telemetry
        forward = direct & (partition != self._home[batch.key])
        for i in np.flatnonzero(forward).tolist():
            r, g = valid[i], int(batch.key[i])
            header = _source_header(r.topic, r.partition, r.offset)
            out.messages.append(Outgoing(self.topics.gates, self.home[g], self.keys[g], r.value or b"", (header,)))
        out.forwarded = int(forward.sum())
        # the source (original topic:partition, offset) of every record, as label ids and offsets
        labels: dict[str, int] = {}
        label = np.empty(n, np.int64)
        offset = np.fromiter((r.offset for r in valid), np.int64, n)
        own = np.flatnonzero(direct)
        if own.size:
            parts, inverse = np.unique(partition[own], return_inverse=True)
            ids = [labels.setdefault(f"{telemetry_topic}:{p}", len(labels)) for p in parts.tolist()]
            label[own] = np.asarray(ids, dtype=np.int64)[inverse]
        for i in np.flatnonzero(~direct).tolist():
            topic, source_partition, offset[i] = _source_of(valid[i], self.topics.gates)
            label[i] = labels.setdefault(f"{topic}:{source_partition}", len(labels))
        rows = np.flatnonzero(~forward)
        self._apply(batch, rows, label[rows], offset[rows], list(labels), out)
        self.rejected.update(out.rejected)
        return out

    def observe_clock(self, partitions: Iterable[int]) -> Flush:
        """Apply the worker's stream clock (newest event time of the gates homed in ``partitions``) to
        those gates: stalls and releases the gates' own events cannot report. Call only when caught up."""
        wanted = set(partitions)
        out = Flush()
        owned = [
            g
            for g in range(len(self.keys))
            if self.home[g] in wanted and (g in self._gates or self._lookup(self.keys[g]) is not None)
        ]
        gates = {g: self._gate(g) for g in owned}
        times = [t for g, gate in gates.items() if (t := gate.engine.state_of(g).max_ts) is not None]
        if not times:
            return out
        clock = max(times)
        for g, gate in gates.items():
            decisions = gate.engine.observe_stream_time(clock)
            if decisions:
                self._emit(g, decisions, out)
                out.state[self.keys[g]] = self._entry(g, gate)
        self.decided.update(d.decision for d in out.decisions)
        return out

    # -- internals ---------------------------------------------------------------------------------------
    def _apply(
        self,
        batch: EventBatch,
        rows: npt.NDArray[np.int64],
        labels: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        names: list[str],
        out: Flush,
    ) -> None:
        """Apply the not-yet-applied ``rows`` of ``batch`` to their gates, in arrival order per gate. A row is a
        duplicate when its source offset is not above every offset applied before from the same source."""
        group = batch.key[rows] * max(1, len(names)) + labels
        order = np.argsort(group, kind="stable")  # by (gate, source), arrival order within each
        ordered = group[order]
        cuts = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), ordered.size]
        keep: dict[int, list[npt.NDArray[np.int64]]] = {}
        for start, end in itertools.pairwise(cuts):
            if start == end:
                continue
            g, source = divmod(int(ordered[start]), max(1, len(names)))
            gate, name, at = self._gate(g), names[source], order[start:end]
            last = gate.applied.get(name, -1)
            seen = offsets[at]
            fresh = seen > np.maximum.accumulate(np.concatenate(([last], seen[:-1])))
            out.duplicates += int(at.size - fresh.sum())
            if fresh.any():
                gate.applied[name] = max(last, int(seen.max()))
                keep.setdefault(g, []).append(rows[at[fresh]])
        for g, picked in keep.items():
            index = np.sort(np.concatenate(picked))
            part = EventBatch(batch.ts_ms[index], batch.key[index], batch.latency_ms[index], batch.error[index])
            gate = self._gates[g]
            late_before = gate.engine.stats.late
            self._emit(g, gate.engine.ingest(part), out)
            out.late += gate.engine.stats.late - late_before
            out.state[self.keys[g]] = self._entry(g, gate)
            out.applied += int(index.size)
        self.decided.update(d.decision for d in out.decisions)

    def _emit(self, g: int, decisions: list[Decision], out: Flush) -> None:
        key, home = self.keys[g], self.home[g]
        for d in decisions:
            value = encode(d)
            out.messages.append(Outgoing(self.topics.decisions, home, key, value, headers_of(d, "decision")))
            if d.decision == "fail":
                out.messages.append(Outgoing(self.topics.breaches, home, key, value, headers_of(d, "breach")))
        out.decisions += decisions

    def _entry(self, g: int, gate: _Gate) -> bytes:
        return encode_entry(self.version, snapshot.dump(gate.engine.state_of(g)), gate.applied)

    def _gate(self, g: int) -> _Gate:
        """Gate ``g``'s engine, restored from the table the first time it is needed after a (re)start."""
        gate = self._gates.get(g)
        if gate is not None:
            return gate
        engine = Engine(self.plan)
        applied: dict[str, int] = {}
        raw = self._lookup(self.keys[g])
        if raw is not None:
            version, state, offsets = decode_entry(raw)
            if version != self.version:
                if self._warn is not None:
                    self._warn(
                        f"gate {self.keys[g].decode()}: stored state is from plan version {version}, this is "
                        f"{self.version}; the gate starts afresh"
                    )
            else:
                try:
                    engine.restore(g, snapshot.load(state))
                except ValueError as exc:
                    raise StateError(f"gate {self.keys[g].decode()}: {exc}") from None
                applied = offsets
        gate = self._gates[g] = _Gate(engine, applied)
        return gate

    def _dead_letter(self, record: Consumed, code: str, message: str) -> Outgoing:
        topic, partition, offset = _source_of(record, self.topics.gates)
        headers = (
            (REASON_HEADER, code.encode()),
            (MESSAGE_HEADER, message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]),
            _source_header(topic, partition, offset),
        )
        return Outgoing(self.topics.dlq, record.partition % self.topics.partitions, record.key, record.value, headers)
