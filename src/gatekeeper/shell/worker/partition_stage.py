"""Stage 1 of the worker (``core/aggregate.py``), per owned partition p of the telemetry topic (source
``<topic>:<p>``): the poll's valid records of p, in p's order, are folded into p's source state; the partials it
closes go to ``<app-id>-panes`` on their gate's home partition (``routing.Homes``, key ``region/tier``), followed
by p's watermark to *every* partition of that topic (whenever it enters a new pane or its idleness changes), so
every gate hears how far p has come even when p holds none of its records. Nothing is forwarded and no record
needs re-keying. Invalid records go to the DLQ with their original key and bytes and ``gk.reason`` /
``gk.message`` / ``gk.source`` headers. p's state, with the offset of the next record to fold, goes to
``<app-id>-aggregate-changelog`` (partition p): whole under key ``<topic>:<p>``, and between two whole ones only
how far p was read, under ``<topic>:<p>/<seq>`` (``source_changelog.ReadWriter``); the runtime seeks p to the
snapshot's offset when it gains p, and the records read since are folded again without dead letters or counts, so no
record is ever counted twice and a re-emitted partial is identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from gatekeeper.core import panes_batch, slot_routing, source_changelog
from gatekeeper.core import partials as contract
from gatekeeper.core.aggregate import Aggregator, SourceState
from gatekeeper.core.cross_region import copy_mask
from gatekeeper.core.otlp import SpanBatch
from gatekeeper.core.partials import Partial, PartialBatch, Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.outgoing import Outgoing
from gatekeeper.shell.worker.records import Consumed, ParsedRun
from gatekeeper.shell.worker.routing import Homes, Topics
from gatekeeper.shell.worker.state_entry import Lookup, StateError, Warn, decode_entry, encode_entry


@dataclass(slots=True)
class _Source:
    state: SourceState
    next_offset: int
    published: tuple[int | None, bool] | None = None  # (pane of the watermark, idle) last sent
    writer: source_changelog.ReadWriter = field(default_factory=source_changelog.ReadWriter)
    read: int = -1  # records before this offset were read before a restart: folded again quietly
    whole: bool = False  # write the state whole at the next checkpoint (folding again cannot reproduce it)


class PartitionStage:
    """Stage 1 for the owned telemetry partitions; ``entries``: the restored stage-1 table entries."""

    def __init__(self, plan: Plan, topics: Topics, homes: Homes, entries: Lookup, warn: Warn) -> None:
        self.topics, self._homes, self._entries, self._warn = topics, homes, entries, warn
        self.version = plan.plan_version
        ev = plan.evaluation
        self._pane = ev.pane
        layout = slot_routing.layout(plan)  # the gates' keys, then baseline slots (no_regression)
        self.decoder = TelemetryDecoder(layout.gates, None, layout.baselines, layout.cross)
        self._max_future_skew = ev.max_future_skew
        self.aggregator = Aggregator(layout.keys, ev.pane, ev.lateness, layout.fan())
        # the panes partition of each gate index of stage 1's column batches (the fan's, or the plain keys)
        fan = self.aggregator.fan
        batch_keys = fan.keys if fan is not None else layout.keys
        self._home_of = np.asarray([homes.home[homes.index[k]] for k in batch_keys], dtype=np.int64)
        self._sources: dict[int, _Source] = {}
        self._dirty: set[int] = set()

    def open_panes(self) -> int:
        """How many (gate, pane) partials stage 1 holds open over the owned partitions (its memory)."""
        return sum(len(source.state.panes) for source in self._sources.values())

    def not_after(self, now_ms: int) -> int:
        """The newest event time accepted when the wall clock reads ``now_ms``."""
        return now_ms + self._max_future_skew

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

    def checkpoint(self) -> dict[int, tuple[bytes, bytes]]:
        """The changelog (key, value) of each partition's state changed since the last checkpoint."""
        out = {p: self._source_entry(p, self._sources[p]) for p in sorted(self._dirty & set(self._sources))}
        self._dirty.clear()
        return out

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the stage-1 state of ``partitions`` (their next owner restores it from the table)."""
        for p in set(partitions) & set(self._sources):
            del self._sources[p]

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
            source.whole = True
            self._send(partials, out)
            self._publish(p, source, True, out)
            if source.state.newest is not None and source.next_offset >= 0:
                self._dirty.add(p)
        return out

    def fold(
        self,
        runs: Sequence[tuple[str, int, Sequence[Consumed]]],
        now_ms: int | None,
        decoded: EventBatch | None,
        out: Flush,
    ) -> None:
        """A poll's telemetry runs (``decoded``: their values decoded already, in run order)."""
        batch = decoded
        if batch is None:
            if now_ms is not None:
                self.decoder.not_after_ms = self.not_after(now_ms)
            values = [r.value or b"" for _t, _p, run in runs for r in run]
            batch = self.decoder.decode(values, first_position=0)
        sizes = [len(run) for _t, _p, run in runs]
        starts = np.cumsum([0, *sizes])  # a poll position's run: the last start at or before it
        partition = np.repeat(np.asarray([p for _t, p, _r in runs], dtype=np.int64), sizes)
        offset = np.concatenate([_offsets(run) for _t, _p, run in runs] or [np.zeros(0, np.int64)])
        first = {p: self._source(p).next_offset for _t, p, _r in runs}
        fresh = offset >= np.repeat(np.asarray([first[p] for _t, p, _r in runs], dtype=np.int64), sizes)
        out.skipped += int(fresh.size - fresh.sum())
        ok = np.ones(int(starts[-1]), dtype=np.bool_)
        read = np.repeat(np.asarray([self._sources[p].read for _t, p, _r in runs], dtype=np.int64), sizes)
        loud = offset >= read  # not read before a restart (else its dead letter was sent, its counts counted)
        for rej in batch.rejections:
            ok[rej.position] = False
            if fresh[rej.position] and loud[rej.position]:
                i = int(np.searchsorted(starts, rej.position, side="right")) - 1
                record = runs[i][2][rej.position - int(starts[i])]
                out.messages.append(self.topics.rejected(record, rej.code, rej.message))
                out.rejected[rej.code] += 1
        # The record of each event: one event per valid record, or (OTLP trace batches) many per record.
        record_of = batch.record if isinstance(batch, SpanBatch) else np.flatnonzero(ok)
        copied = copy_mask(batch.key, self.aggregator.copies) if batch.copies else np.zeros(len(batch), np.bool_)
        if batch.copies:  # a cross-region copy is of the record before it (core/cross_region.py)
            record_of = record_of[np.cumsum(~copied) - 1]
        valid_partition, valid_fresh, valid_loud = partition[record_of], fresh[record_of], loud[record_of]
        folded = list(dict.fromkeys(partition.tolist()))
        self._clock_dropped(batch, partition)
        for p in folded:
            source = self._source(p)
            reached = max(source.next_offset, int(offset[partition == p].max()) + 1)
            for quiet in (True, False):  # those read before a restart first (their order), not counted
                rows = np.flatnonzero((valid_partition == p) & valid_fresh & (valid_loud != quiet))
                if quiet and not rows.size:
                    continue
                copies = int(copied[rows].sum())
                part = EventBatch(batch.ts_ms[rows], batch.key[rows], batch.latency_ms[rows], batch.error[rows], [],
                                  copies)  # fmt: skip
                late_before = source.state.late
                source.state, closed, _mark = self.aggregator.fold_columns(source.state, part, reached)
                if not quiet:
                    out.applied += int(rows.size) - copies
                    out.late += source.state.late - late_before
                self._send_columns(closed, out)
            source.next_offset = reached
            self._dirty.add(p)
        # Every partial of the poll before any of its watermarks: a partition that wakes up from idleness in
        # this poll then has its partials in before another partition's watermark can close their panes.
        for p in folded:
            self._publish(p, self._sources[p], False, out)

    def _clock_dropped(self, batch: EventBatch, partition: np.ndarray) -> None:
        """Write whole at the next checkpoint the partitions of records rejected for their time: the wall clock
        (``not_after``) may have dropped them, and folding them again later would not."""
        if isinstance(batch, SpanBatch):  # spans are dropped and counted, not rejected: which partition is not known
            dropped = set(partition.tolist()) if batch.ignored.get("invalid_time") else set()
        else:
            dropped = {int(partition[r.position]) for r in batch.rejections if r.code == "invalid_field:ts"}
        for p in dropped:
            self._sources[p].whole = True

    def _send(self, partials: list[Partial], out: Flush) -> None:
        """The partials (of one source) as one batch message per panes partition their gates are homed on, keyed
        by the source (core/panes_batch.py; edge publishers send the one-partial JSON message instead)."""
        out.partials += len(partials)
        by_home: dict[tuple[str, int], list[Partial]] = {}
        homes = self._homes
        for partial in partials:
            by_home.setdefault((partial.source, homes.home[homes.index[partial.gate]]), []).append(partial)
        for (source, q), group in by_home.items():
            out.messages += [Outgoing(self.topics.panes, q, source.encode(), v) for v in panes_batch.encode(group)]

    def _send_columns(self, closed: PartialBatch, out: Flush) -> None:
        """``_send`` of ``closed.rows()``, the same messages in the same order, straight from the columns."""
        n = len(closed)
        if not n:
            return
        out.partials += n
        key = closed.source.encode()
        for q, values in panes_batch.encode_groups(closed, self._home_of[closed.gate]):
            out.messages += [Outgoing(self.topics.panes, q, key, v) for v in values]

    def _publish(self, p: int, source: _Source, idle: bool, out: Flush) -> None:
        """Send p's watermark to every partition of the panes topic when it entered a new pane or its idleness
        changed (stage 2 only acts on pane boundaries; fewer messages)."""
        newest = source.state.newest
        watermark = None if newest is None else newest - self.aggregator.lateness
        published = (None if watermark is None else watermark // self._pane, idle)
        if published == source.published:
            return
        source.published = published
        value = contract.encode(Watermark(source=self.topics.source_id(p), watermark=watermark, idle=idle))
        key = self.topics.source_id(p).encode()
        out.messages += [Outgoing(self.topics.panes, q, key, value) for q in range(self.topics.partitions)]

    def _source(self, p: int) -> _Source:
        source = self._sources.get(p)
        if source is not None:
            return source
        source = _Source(self.aggregator.start(self.topics.source_id(p)), -1)
        key = self.topics.source_id(p).encode()
        raw = self._entries(key)
        if raw is not None:
            version, snap = decode_entry(raw)
            if version == self.version:

                def change(seq: int) -> bytes | None:
                    entry = self._entries(_change_key(key, seq))
                    return None if entry is None or (found := decode_entry(entry))[0] != version else found[1]

                try:
                    state, next_offset, epoch, read = source_changelog.restore_source(snap, change)
                except ValueError as exc:
                    raise StateError(f"telemetry partition {p} (changelog key {key.decode()}): {exc}") from None
                source = _Source(state, next_offset, writer=source_changelog.ReadWriter(epoch), read=read)
            elif self._warn is not None:
                self._warn(
                    f"telemetry partition {p}: stored stage-1 state is from plan version {version}, this is "
                    f"{self.version}; it starts afresh from the committed offset"
                )
        self._sources[p] = source
        return source

    def _source_entry(self, p: int, source: _Source) -> tuple[bytes, bytes]:
        """(key, value) of partition ``p``'s state as it goes to the changelog: whole, or how far p was read."""
        seq, raw = source.writer.write(source.state, source.next_offset, read=source.read, whole=source.whole)
        source.whole = False
        key = self.topics.source_id(p).encode()
        return (_change_key(key, seq) if seq else key), encode_entry(self.version, raw)


def _offsets(run: Sequence[Consumed]) -> np.ndarray:
    """A run's offsets: parsed already (``ParsedRun``), or, without gaps (offsets ascend in a partition, so first
    + length - 1 == last says so), a range, without reading every record's (compacted or transactional topics
    have gaps)."""
    if isinstance(run, ParsedRun):
        return run.offsets
    if not run or len(run) == run[-1].offset - run[0].offset + 1:
        return np.arange(run[0].offset, run[-1].offset + 1, dtype=np.int64) if run else np.zeros(0, np.int64)
    return np.fromiter(map(attrgetter("offset"), run), np.int64, len(run))


def _change_key(key: bytes, seq: int) -> bytes:
    """The changelog key of a stage-1 change (``<topic>:<p>/<seq>``; the whole state is under ``<topic>:<p>``)."""
    return b"%s/%d" % (key, seq)
