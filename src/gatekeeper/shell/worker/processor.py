"""The worker's per-poll processing, without any Kafka client (unit-testable): both stages of the pipeline.

Stage 1 (``core/aggregate.py``), per owned partition p of the telemetry topic (source ``<topic>:<p>``): the
poll's valid records of p, in p's order, are folded into p's source state; the partials it closes go to
``<app-id>-panes`` on their gate's home partition (Java murmur2 of ``b"region/tier"``, key ``region/tier``),
followed by p's watermark to *every* partition of that topic (whenever it enters a new pane or its idleness
changes), so every gate hears how far p has come even when p holds none of its records. Nothing is forwarded
and no record needs re-keying. Invalid records go to the DLQ with their original key and bytes and
``gk.reason`` / ``gk.message`` / ``gk.source`` headers. p's state, with the offset of the next record to fold,
goes to ``<app-id>-aggregate-changelog`` (partition p): whole under key ``<topic>:<p>``, and between two whole
ones only what changed, under ``<topic>:<p>/<seq>`` (``stage_snapshot.SourceWriter``); the runtime seeks p to
that offset when it gains p, so no record is ever folded twice and a re-emitted partial is identical.

Stage 2 (``core/merge.py``), per owned partition q of ``<app-id>-panes``: partials go to their gate's inbox,
watermarks to the inbox of every gate homed at q; decisions go to ``decisions`` and burn-rate breach alert events
(contract v2, ``core/breach_watch.py``) to ``breaches``, both key ``region/tier``; each touched inbox goes to
``<app-id>-gate-state-changelog`` (key ``region/tier``, partition q), the partials it holds as their offsets in
partition q of the panes topic (``stage_snapshot``), read back from there on restore (``pane_records``). Merging
is idempotent, so partials and watermarks read again after a crash change nothing.

Order of I/O (``runtime.py``): the messages are sent and acknowledged before the states are written, and the
offsets are committed only once the states are acknowledged. The producer is idempotent, so a partition's
partials stay ahead of the watermark sent after them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
from aiokafka.partitioner import murmur2

from gatekeeper.core import breach, global_gate, panes_batch, regression, side_watermarks, stage_snapshot
from gatekeeper.core import partials as contract
from gatekeeper.core.aggregate import Aggregator, SourceState
from gatekeeper.core.cross_region import copy_mask
from gatekeeper.core.decision import Decision, encode
from gatekeeper.core.gate import GateState
from gatekeeper.core.merge import GateInbox, Merger
from gatekeeper.core.otlp import SpanBatch
from gatekeeper.core.partials import Partial, Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder
from gatekeeper.shell.cloudevents import headers_of
from gatekeeper.shell.worker.outgoing import Headers, Outgoing, dead_letter, verdicts
from gatekeeper.shell.worker.records import Consumed
from gatekeeper.shell.worker.side import SideStage


class StateError(RuntimeError):
    """A state table entry that cannot be read: continuing would silently lose or redo state."""


def home_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner (Java murmur2, as aiokafka's) puts ``key`` among ``partitions``."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names the worker reads and writes, and their (common) partition count."""

    telemetry: str
    panes: str
    decisions: str
    breaches: str
    dlq: str
    partitions: int


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record built by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(slots=True)
class Flush:
    """What one flush produced: the caller sends ``messages`` and awaits them; the states it changed are
    written at the next ``Processor.checkpoint``."""

    messages: list[Outgoing] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    breaches: list[breach.Breach] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    applied: int = 0  # valid telemetry records folded by stage 1
    skipped: int = 0  # telemetry records below their partition's next offset (folded before)
    partials: int = 0  # partials emitted by stage 1
    late: int = 0  # records stage 1 counted late (their pane had passed their partition's watermark)
    duplicates: int = 0  # partials merged before, ignored
    conflicts: int = 0  # partials re-emitted with other content: never merged (a bug upstream)
    late_partials: int = 0  # partials for panes already closed (an idle partition woke up)


class _Entry(msgspec.Struct):
    """A state table value: plan version, snapshot, and a field kept for the format of earlier versions."""

    v: str
    s: bytes
    o: dict[str, int] = {}


_ENTRY_ENCODER = msgspec.msgpack.Encoder()
_ENTRY_DECODER = msgspec.msgpack.Decoder(_Entry)


def encode_entry(plan_version: str, state: bytes) -> bytes:
    return _ENTRY_ENCODER.encode(_Entry(plan_version, state))


def decode_entry(raw: bytes) -> tuple[str, bytes]:
    """(plan version, snapshot bytes); StateError when ``raw`` is not an entry."""
    try:
        entry = _ENTRY_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"not a state entry: {exc}") from None
    return entry.v, entry.s


@dataclass(slots=True)
class Checkpoint:
    """The states changed since the last checkpoint, encoded: gate inboxes by key (their partition is the key's
    home), stage-1 states by telemetry partition."""

    gates: dict[bytes, bytes] = field(default_factory=dict)
    sources: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # partition -> (key, value)


@dataclass(slots=True)
class _Source:
    state: SourceState
    next_offset: int
    published: tuple[int | None, bool] | None = None  # (pane of the watermark, idle) last sent
    writer: stage_snapshot.SourceWriter = field(default_factory=stage_snapshot.SourceWriter)


class Processor:
    """Both stages for the owned partitions; ``gates`` / ``sources``: the restored table entries."""

    def __init__(
        self,
        plan: Plan,
        topics: Topics,
        gates: Callable[[bytes], bytes | None],
        sources: Callable[[bytes], bytes | None],
        *,
        warn: Callable[[str], None] | None = None,
        pane_records: Callable[[int, int], bytes | None] | None = None,
    ) -> None:
        """``pane_records(q, offset)``: the value of a record of the panes topic read back for a restore."""
        self.plan, self.topics = plan, topics
        self._gate_entries, self._source_entries, self._warn = gates, sources, warn
        self._pane_records = pane_records or (lambda _q, _offset: None)
        self._refs: Counter[tuple[int, int]] = Counter()  # panes records to read back: references still to come
        self._held: dict[tuple[int, int], bytes] = {}  # ... a batch's, kept for the other references to it
        self.version = plan.plan_version
        ev = plan.evaluation
        self._pane = ev.pane
        self.keys = [f"{region}/{tier.name}".encode() for region, _phase, tier in plan.gates()]
        layout = regression.layout(plan)  # the gates' keys, then baseline slots (no_regression)
        self._decoder = TelemetryDecoder(layout.gates, None, layout.baselines, layout.cross)
        self._max_future_skew = ev.max_future_skew
        homes = global_gate.home_keys(plan)  # a global tier's regional gates live with its global gate
        self.home = [home_partition(homes.get(k, k).encode(), topics.partitions) for k in map(bytes.decode, self.keys)]
        self.globals = GlobalStage(plan, topics.partitions, gates)
        self._gates_of = {q: [g for g, home in enumerate(self.home) if home == q] for q in range(topics.partitions)}
        self._index = {key.decode(): g for g, key in enumerate(self.keys)}
        self.aggregator = Aggregator(layout.keys, ev.pane, ev.lateness, layout.fan())
        self.merger = Merger(plan, [self.source_id(p) for p in range(topics.partitions)])
        for key in self.globals.gates.region_keys_all():
            self.merger.gate(key, self.merger.start()).down_sink = []  # their panes, for the multi-region uptime
        self._sources: dict[int, _Source] = {}
        self._inboxes: dict[int, GateInbox] = {}
        self._located: dict[int, stage_snapshot.Located] = {}  # gate -> panes-topic offsets of its partials
        self._dirty_sources: set[int] = set()
        self._dirty_gates: set[int] = set()
        self.rejected: Counter[str] = Counter()
        self.decided: Counter[str] = Counter()
        self.side: SideStage | None = None  # incidents, approvals, business metrics (worker/side.py), if read

    def source_id(self, partition: int) -> str:
        return f"{self.topics.telemetry}:{partition}"

    def open_panes(self) -> int:
        """How many (gate, pane) partials stage 1 holds open over the owned partitions (its memory)."""
        return sum(len(source.state.panes) for source in self._sources.values())

    def not_after(self, now_ms: int) -> int:
        """The newest event time accepted when the wall clock reads ``now_ms``."""
        return now_ms + self._max_future_skew

    # -- assignment --------------------------------------------------------------------------------------
    def resume(self, partition: int) -> int | None:
        """Restore telemetry partition ``partition``'s stage-1 state; the offset to read it from (None: from
        the committed offset, there being no state)."""
        source = self._source(partition)
        return source.next_offset if source.next_offset >= 0 else None

    def resumed(self, partitions: Iterable[int]) -> Flush:
        """Telemetry partitions just gained: report each as not idle, at its restored watermark, before anything
        else is read from them. Otherwise a partition that was idle before the move would stay excluded while the
        first of the others to report closes panes ahead of it."""
        out = Flush()
        for p in sorted(set(partitions)):
            source = self._source(p)
            source.published = None
            self._publish(p, source, False, out)
        return out

    def checkpoint(self) -> Checkpoint:
        """Encode the states changed since the last checkpoint (each once, however many polls changed it)."""
        out = Checkpoint()
        for g in sorted(self._dirty_gates & set(self._inboxes)):
            located = self._located_in(g)
            out.gates[self.keys[g]] = encode_entry(self.version, stage_snapshot.dump_inbox(self._inboxes[g], located))
        for p in sorted(self._dirty_sources & set(self._sources)):
            out.sources[p] = self._source_entry(p, self._sources[p])
        self._dirty_gates.clear()
        self._dirty_sources.clear()
        out.gates |= self.globals.checkpoint()
        return out

    def revoke(self, sources: Iterable[int], gates: Iterable[int]) -> None:
        """Forget the stage-1 state of telemetry partitions ``sources`` and the inboxes of the gates homed at
        panes partitions ``gates`` (their next owner restores them from the tables)."""
        for p in set(sources) & set(self._sources):
            del self._sources[p]
        gone = set(gates)
        for g in [g for g in self._inboxes if self.home[g] in gone]:
            del self._inboxes[g]
            self._located.pop(g, None)
        for at in [at for at in self._refs if at[0] in gone]:
            del self._refs[at]
            self._held.pop(at, None)
        self.globals.revoke(gone)

    def state_partition(self, key: bytes) -> int:
        """The gate-state changelog partition of ``key`` (a gate's or a global gate's): its home."""
        g = self._index.get(key.decode(errors="replace"))
        return self.home[g] if g is not None else home_partition(key, self.topics.partitions)

    def located_partials(self, entries: Mapping[bytes, bytes]) -> dict[int, set[int]]:
        """The panes-topic offsets, by partition, of the partials the restored gate entries ``entries`` hold by
        reference: what to read back before their gates can be restored."""
        wanted: dict[int, set[int]] = {}
        for key, raw in entries.items():
            g = self._index.get(key.decode(errors="replace"))
            if g is None:
                continue
            version, snap = decode_entry(raw)
            if version != self.version:
                continue
            try:
                _inbox, buffered, merged = stage_snapshot.load_inbox(snap)
            except ValueError as exc:
                raise StateError(f"gate {key.decode(errors='replace')}: {exc}") from None
            wanted.setdefault(self.home[g], set()).update([*buffered.values(), *merged.values()])
            self._refs.update((self.home[g], offset) for offset in [*buffered.values(), *merged.values()])
        return wanted

    # -- flushing ----------------------------------------------------------------------------------------
    def flush_polled(
        self,
        polled: Sequence[tuple[str, int, Sequence[Consumed]]],
        now_ms: int | None = None,
        decoded: EventBatch | None = None,
    ) -> Flush:
        """One poll's records, as (topic, partition, records) runs in fetch order: stage 1 over the telemetry
        runs (``decoded``: their values decoded already, in run order), then stage 2 over the panes runs."""
        out = Flush()
        telemetry = [run for run in polled if run[0] == self.topics.telemetry]
        if telemetry:
            self._stage1(telemetry, now_ms, decoded, out)
        for _topic, partition, records in polled:
            if _topic == self.topics.panes and records:
                self._stage2(partition, records, out)
        if self.side is not None:
            self.side.flush(polled, out)
        self.rejected.update(out.rejected)
        self.decided.update(d.decision for d in out.decisions)
        return out

    def mark_idle(self, partitions: Iterable[int], *, again: bool = False) -> Flush:
        """Telemetry partitions read to their end and silent for ``idle_after``: seal their open panes (emit them
        now: a record for one of them that comes later is late) and say so to every gate, once."""
        out = Flush()
        for p in partitions:
            source = self._source(p)
            if source.published is not None and source.published[1]:
                if again:  # a gate may have stopped counting it idle (another partition woke up): say it again
                    source.published = None
                    self._publish(p, source, True, out)
                continue
            source.state, partials = self.aggregator.seal(source.state, max(0, source.next_offset))
            self._send(partials, out)
            self._publish(p, source, True, out)
            if source.state.newest is not None and source.next_offset >= 0:
                self._dirty_sources.add(p)
        return out

    # -- stage 1 -----------------------------------------------------------------------------------------
    def _stage1(
        self,
        runs: Sequence[tuple[str, int, Sequence[Consumed]]],
        now_ms: int | None,
        decoded: EventBatch | None,
        out: Flush,
    ) -> None:
        records = [r for _t, _p, run in runs for r in run]
        batch = decoded
        if batch is None:
            if now_ms is not None:
                self._decoder.not_after_ms = self.not_after(now_ms)
            batch = self._decoder.decode([r.value or b"" for r in records], first_position=0)
        sizes = [len(run) for _t, _p, run in runs]
        partition = np.repeat(np.asarray([p for _t, p, _r in runs], dtype=np.int64), sizes)
        offset = np.fromiter((r.offset for r in records), np.int64, len(records))
        first = {p: self._source(p).next_offset for p in set(partition.tolist())}
        fresh = offset >= np.asarray([first[p] for p in partition.tolist()], dtype=np.int64)
        out.skipped += int(fresh.size - fresh.sum())
        ok = np.ones(len(records), dtype=np.bool_)
        for rej in batch.rejections:
            ok[rej.position] = False
            if fresh[rej.position]:
                out.messages.append(self._dead_letter(records[rej.position], rej.code, rej.message))
                out.rejected[rej.code] += 1
        # The record of each event: one event per valid record, or (OTLP trace batches) many per record.
        record_of = batch.record if isinstance(batch, SpanBatch) else np.flatnonzero(ok)
        copied = copy_mask(batch.key, self.aggregator.copies) if batch.copies else np.zeros(len(batch), np.bool_)
        if batch.copies:  # a cross-region copy is of the record before it (core/cross_region.py)
            record_of = record_of[np.cumsum(~copied) - 1]
        valid_partition, valid_fresh = partition[record_of], fresh[record_of]
        folded = list(dict.fromkeys(partition.tolist()))
        for p in folded:
            source = self._source(p)
            rows = np.flatnonzero((valid_partition == p) & valid_fresh)
            copies = int(copied[rows].sum())
            part = EventBatch(batch.ts_ms[rows], batch.key[rows], batch.latency_ms[rows], batch.error[rows], [], copies)
            late_before = source.state.late
            reached = max(source.next_offset, int(offset[partition == p].max()) + 1)
            source.state, partials, _mark = self.aggregator.fold(source.state, part, reached)
            out.applied += int(rows.size) - copies
            out.late += source.state.late - late_before
            self._send(partials, out)
            source.next_offset = max(source.next_offset, int(offset[partition == p].max()) + 1)
            self._dirty_sources.add(p)
        # Every partial of the poll before any of its watermarks: a partition that wakes up from idleness in
        # this poll then has its partials in before another partition's watermark can close their panes.
        for p in folded:
            self._publish(p, self._sources[p], False, out)

    def _send(self, partials: list[Partial], out: Flush) -> None:
        """The partials (of one source) as one batch message per panes partition their gates are homed on, keyed
        by the source (core/panes_batch.py; edge publishers send the one-partial JSON message instead)."""
        out.partials += len(partials)
        by_home: dict[tuple[str, int], list[Partial]] = {}
        for partial in partials:
            by_home.setdefault((partial.source, self.home[self._index[partial.gate]]), []).append(partial)
        for (source, q), group in by_home.items():
            out.messages += [Outgoing(self.topics.panes, q, source.encode(), v) for v in panes_batch.encode(group)]

    def _publish(self, p: int, source: _Source, idle: bool, out: Flush) -> None:
        """Send p's watermark to every partition of the panes topic when it entered a new pane or its idleness
        changed (stage 2 only acts on pane boundaries; fewer messages)."""
        newest = source.state.newest
        watermark = None if newest is None else newest - self.aggregator.lateness
        published = (None if watermark is None else watermark // self._pane, idle)
        if published == source.published:
            return
        source.published = published
        value = contract.encode(Watermark(source=self.source_id(p), watermark=watermark, idle=idle))
        key = self.source_id(p).encode()
        out.messages += [Outgoing(self.topics.panes, q, key, value) for q in range(self.topics.partitions)]

    def _source(self, p: int) -> _Source:
        source = self._sources.get(p)
        if source is not None:
            return source
        source = _Source(self.aggregator.start(self.source_id(p)), -1)
        key = self.source_id(p).encode()
        raw = self._source_entries(key)
        if raw is not None:
            version, snap = decode_entry(raw)
            if version == self.version:

                def change(seq: int) -> bytes | None:
                    entry = self._source_entries(_change_key(key, seq))
                    return None if entry is None or (found := decode_entry(entry))[0] != version else found[1]

                try:
                    state, next_offset, epoch = stage_snapshot.load_source_chain(snap, change)
                except ValueError as exc:
                    raise StateError(f"telemetry partition {p}: {exc}") from None
                source = _Source(state, next_offset, writer=stage_snapshot.SourceWriter(epoch))
            elif self._warn is not None:
                self._warn(
                    f"telemetry partition {p}: stored stage-1 state is from plan version {version}, this is "
                    f"{self.version}; it starts afresh from the committed offset"
                )
        self._sources[p] = source
        return source

    def _source_entry(self, p: int, source: _Source) -> tuple[bytes, bytes]:
        """(key, value) of partition ``p``'s state as it goes to the changelog: whole, or what changed."""
        seq, raw = source.writer.write(source.state, source.next_offset)
        key = self.source_id(p).encode()
        return (_change_key(key, seq) if seq else key), encode_entry(self.version, raw)

    # -- stage 2 -----------------------------------------------------------------------------------------
    def _stage2(self, q: int, records: Sequence[Consumed], out: Flush) -> None:
        made_from = len(out.decisions)
        touched: set[int] = set()
        for r in records:
            try:
                messages = panes_batch.read(r.value or b"")  # a one-partial message, a watermark, or a batch
            except contract.PartialError as exc:
                out.messages.append(self._dead_letter(r, "invalid_partial", str(exc)))
                out.rejected["invalid_partial"] += 1
                continue
            refused: list[tuple[str, str]] = []  # (code, why) of partials not merged: one dead letter for the record
            for message in messages:
                if isinstance(message, Partial):
                    refusal = self._partial(q, message, r.offset, out)
                    if refusal is None:
                        touched.add(self._index[message.gate])
                    else:
                        refused.append(refusal)
                else:
                    touched.update(g for g in self._gates_of[q] if self._watermark(g, message, out))
            if refused:
                code = refused[0][0]
                why = "; ".join(w for _c, w in refused)
                if len(messages) > 1:
                    why = f"{len(refused)} of its {len(messages)} partials not merged: {why}"
                out.messages.append(self._dead_letter(r, code, why))
                out.rejected[code] += 1
        self._dirty_gates |= touched
        made = out.decisions[made_from:]
        for tier_key, decided in self.globals.fold(q, made, self._closed_until, self._panes).items():
            for d in decided:
                out.messages.append(Outgoing(self.topics.decisions, q, tier_key, encode(d), headers_of(d)))
            out.decisions += decided

    def _partial(self, q: int, message: Partial, offset: int, out: Flush) -> tuple[str, str] | None:
        """Merge a partial read at ``offset`` of panes partition ``q``; (dead-letter code, why) when refused."""
        g = self._index.get(message.gate)
        if g is None or self.home[g] != q:
            why = "not a gate of the plan" if g is None else f"its home partition is {self.home[g]}"
            return "partial_elsewhere", f"gate {message.gate}: {why}"
        inbox = self._inbox(g)
        before = _counts(inbox)
        try:
            self.merger.on_partial(inbox, message)
        except ValueError as exc:
            return "invalid_partial", str(exc)
        self._count(before, inbox, out)
        self._locate(g, inbox, message, offset)
        return None

    def _closed_until(self, key: str) -> int | None:
        return self._inbox(self._index[key]).closed_until

    def _panes(self, key: str) -> list[tuple[int, list[int]]]:
        return global_gate.drain(self.merger.gate(key, self._inbox(self._index[key])))

    def _watermark(self, g: int, message: Watermark, out: Flush) -> bool:
        """A source's watermark to gate ``g``; False when it is a re-delivery (nothing to do, nothing to write)."""
        inbox = self._inbox(g)
        mark = inbox.sources.get(message.source)
        if mark is not None and (mark.watermark, mark.idle) == (message.watermark, message.idle):
            return False
        made: list[Decision] = []
        alerts: list[breach.Breach] = []
        self.merger.on_watermark(self.keys[g].decode(), inbox, message, made, alerts)
        self._emit(g, made, alerts, out)
        return True

    def _count(self, before: tuple[int, int, int], inbox: GateInbox, out: Flush) -> None:
        duplicates, conflicts, late = (a - b for a, b in zip(_counts(inbox), before, strict=True))
        out.duplicates += duplicates
        out.conflicts += conflicts
        out.late_partials += late

    def _inbox(self, g: int) -> GateInbox:
        """Gate ``g``'s inbox, restored from the table the first time it is needed after a (re)start."""
        inbox = self._inboxes.get(g)
        if inbox is not None:
            return inbox
        inbox = self.merger.start()
        raw = self._gate_entries(self.keys[g])
        if raw is not None:
            version, snap = decode_entry(raw)
            if version != self.version:
                if self._warn is not None:
                    self._warn(
                        f"gate {self.keys[g].decode()}: stored state is from plan version {version}, this is "
                        f"{self.version}; the gate starts afresh"
                    )
            else:
                try:
                    inbox, buffered, merged = stage_snapshot.load_inbox(snap)
                except ValueError as exc:
                    raise StateError(f"gate {self.keys[g].decode()}: {exc}") from None
                self._read_back(g, inbox, buffered, merged=False)
                self._read_back(g, inbox, merged, merged=True)
        if self.side is not None:  # its side-input partitions hold its panes too (core/side_watermarks.py)
            side_watermarks.hold(inbox, self.side.sources_of(self.keys[g].decode()))
        self._inboxes[g] = inbox
        return inbox

    def _read_back(self, g: int, inbox: GateInbox, located: stage_snapshot.Located, *, merged: bool) -> None:
        """Put the partials a restored inbox holds by reference back in, from the panes records read for it."""
        key, q = self.keys[g].decode(), self.home[g]
        for (pane, source), offset in located.items():
            raw = self._record(q, offset)
            try:
                partial = stage_snapshot.read_back((key, pane, source), raw, (self.topics.panes, q, offset))
            except ValueError as exc:
                raise StateError(str(exc)) from None
            stage_snapshot.place(inbox, partial, merged)
            self._located.setdefault(g, {})[pane, source] = offset

    def _record(self, q: int, offset: int) -> bytes | None:
        """A panes record read back for a restore. ``pane_records`` gives each record once, and a batch is
        referred to by several partials, of several gates: kept until its last reference counted by
        ``located_partials`` is read."""
        at = (q, offset)
        raw = self._held.get(at)
        if raw is None:
            raw = self._pane_records(q, offset)
        left = self._refs[at] - 1
        if left > 0 and raw is not None:
            self._refs[at], self._held[at] = left, raw
        else:
            self._refs.pop(at, None)
            self._held.pop(at, None)
        return raw

    def _locate(self, g: int, inbox: GateInbox, partial: Partial, offset: int) -> None:
        """Remember where a partial the inbox now holds (buffered, or merged: a newer version of a closed pane)
        is in the panes topic, so checkpoints write that instead of the partial."""
        buffered = inbox.buffered.get(partial.pane, {}).get(partial.source)
        if buffered is partial or inbox.merged.get(partial.pane, {}).get(partial.source) is partial:
            self._located.setdefault(g, {})[partial.pane, partial.source] = offset

    def _located_in(self, g: int) -> stage_snapshot.Located:
        """The offsets of the partials gate ``g``'s inbox still holds (the others are forgotten)."""
        inbox, located = self._inboxes[g], self._located.get(g, {})
        held = {(pane, s) for parts in (inbox.buffered, inbox.merged) for pane, ss in parts.items() for s in ss}
        self._located[g] = {k: v for k, v in located.items() if k in held}
        return self._located[g]

    def _emit(self, g: int, decisions: list[Decision], breaches: list[breach.Breach], out: Flush) -> None:
        out.messages += verdicts(self.topics, self.home[g], self.keys[g], decisions, breaches)
        out.decisions += decisions
        out.breaches += breaches

    # -- for the side inputs' stage (worker/side.py) -------------------------------------------------------
    def outgoing_to_gate(self, topic: str, key: str, value: bytes) -> Outgoing:
        """A message keyed ``key`` (a gate) on the gate's home partition of ``topic``."""
        g = self._index[key]
        return Outgoing(topic, self.home[g], self.keys[g], value)

    def outgoing_to_partition(self, topic: str, partition: int, key: bytes, value: bytes) -> Outgoing:
        return Outgoing(topic, partition, key, value)

    def watermark_gate(self, key: str, watermark: Watermark, out: Flush) -> None:
        """A side partition's watermark to gate ``key`` (owned here)."""
        g = self._index[key]
        if self._watermark(g, watermark, out):
            self._dirty_gates.add(g)

    def owns_gate(self, key: str, q: int) -> bool:
        g = self._index.get(key)
        return g is not None and self.home[g] == q

    def gate_state(self, key: str) -> GateState:
        return self._inbox(self._index[key]).gate

    def touched(self, key: str) -> None:
        """The gate's state changed: it is written at the next checkpoint."""
        self._dirty_gates.add(self._index[key])

    def dead_letter(self, record: Consumed, code: str, message: str) -> Outgoing:
        return self._dead_letter(record, code, message)

    def _dead_letter(self, record: Consumed, code: str, message: str) -> Outgoing:
        dlq = (self.topics.dlq, record.partition % self.topics.partitions)
        where = (record.topic, record.partition, record.offset)
        return dead_letter(dlq, where, record.key, record.value, (code, message))


def _change_key(key: bytes, seq: int) -> bytes:
    """The changelog key of a stage-1 change (``<topic>:<p>/<seq>``; the whole state is under ``<topic>:<p>``)."""
    return b"%s/%d" % (key, seq)


def _counts(inbox: GateInbox) -> tuple[int, int, int]:
    c = inbox.counts
    return c.duplicates, c.conflicts, c.late_partials


class GlobalStage:
    """The global gates (``core/global_gate.py``) of the panes partitions owned: fed in-process with the
    decisions of their regional gates, which are homed on the same partition, after each run of that partition's
    records; their states go to the gate-state changelog under ``global/<tier>`` with the gates'."""

    def __init__(self, plan: Plan, partitions: int, entries: Callable[[bytes], bytes | None]) -> None:
        self.gates = global_gate.GlobalGates(plan)
        self.version = plan.plan_version
        self.home = {tier: home_partition(global_gate.key(tier).encode(), partitions) for tier in self.gates.specs}
        self._entries = entries
        self._states: dict[str, global_gate.TierFold] = {}
        self._dirty: set[str] = set()

    def fold(
        self,
        q: int,
        decisions: Sequence[Decision],
        closed_until: Callable[[str], int | None],
        panes: Callable[[str], list[tuple[int, list[int]]]],
    ) -> dict[bytes, list[Decision]]:
        """The global decisions of the tiers homed at ``q``, by key, after ``decisions`` and the panes the
        regional gates closed (this run's)."""
        out: dict[bytes, list[Decision]] = {}
        for tier, home in self.home.items():
            if home != q:
                continue
            keys = self.gates.region_keys(tier)
            closed = [closed_until(k) for k in keys]
            progress = None if None in closed else min(c for c in closed if c is not None)
            state = self._state(tier)
            before = (len(state.buffer), state.progress)
            closed_panes = {k.split("/")[0]: panes(k) for k in keys}
            made = self.gates.fold(tier, state, [d for d in decisions if d.tier == tier], progress, closed_panes)
            if made:
                out[global_gate.key(tier).encode()] = made
            if made or before != (len(state.buffer), state.progress):
                self._dirty.add(tier)
        return out

    def checkpoint(self) -> dict[bytes, bytes]:
        out = {
            global_gate.key(t).encode(): encode_entry(self.version, global_gate.dump(self._states[t]))
            for t in sorted(self._dirty & set(self._states))
        }
        self._dirty.clear()
        return out

    def revoke(self, partitions: set[int]) -> None:
        for tier in [t for t in self._states if self.home[t] in partitions]:
            del self._states[tier]

    def _state(self, tier: str) -> global_gate.TierFold:
        """A tier's global state, restored from the changelog the first time it is needed after a (re)start."""
        state = self._states.get(tier)
        if state is not None:
            return state
        state = global_gate.TierFold()
        raw = self._entries(global_gate.key(tier).encode())
        if raw is not None:
            version, snap = decode_entry(raw)
            if version == self.version:  # another plan's: the gates start afresh too
                try:
                    state = global_gate.load(snap)
                except ValueError as exc:
                    raise StateError(f"{global_gate.key(tier)}: {exc}") from None
        self._states[tier] = state
        return state
