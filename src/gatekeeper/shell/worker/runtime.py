"""The worker's mutable side: what the agents, the timers and the rebalance signals of ``app.py`` call.

Buffers live in the ``Processor``; this class owns the lock, the sends, the table writes and the acks,
and it keeps each partition's record sequence whole:

- Where the consumer group resumes each newly assigned partition is read from the broker
  (``start_offsets``). A record whose offset is beyond the next expected one means the records in between
  never reached the agent: Faust's stream iterator skips -- and acks -- records it dequeues while flow
  control is suspended or that carry an older consumer generation (``faust/_cython/streams.pyx``
  ``__next__``; ``faust/streams.py`` ``_py_aiter``: ``value = skipped_value``), which happens right after
  an assignment (seen after every restart under load, and once in two-worker start-ups). Such records are
  re-read with a consumer of our own (``read_range``) and buffered in order before the record that showed
  the gap; Faust acked them already. Skipped records at the *end* of a partition show no gap: the clock
  timer re-reads them when a partition stays short of its end offset although its records were fetched.
- A record delivered a second time (its offset is below the next expected one) is not applied again; it is
  acked once everything up to it is in the table.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker import metrics
from gatekeeper.shell.worker.cli import WorkerOptions
from gatekeeper.shell.worker.processor import TP, Flush, Processor, Record
from gatekeeper.shell.worker.topics import read_range, start_offsets

REPORT_INTERVAL_S = 30.0


def headers_of(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()
    items = raw.items() if hasattr(raw, "items") else raw
    return tuple((str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items)


class Runtime:
    """Buffers records, flushes them (send, await delivery, write the table, ack) and applies the clock."""

    def __init__(
        self,
        app: Any,
        processor: Processor,
        table: Any,
        settings: KafkaSettings,
        options: WorkerOptions,
        log: Any,
    ) -> None:
        self.app, self.processor, self.table, self.options, self.log = app, processor, table, options, log
        self.settings = settings
        self._mine = (processor.topics.telemetry, processor.topics.gates)
        self.lock = asyncio.Lock()
        self.owned: set[TP] = set()
        self._starts_known = asyncio.Event()  # set once the resume offsets of the assignment are known
        self._persisted: dict[TP, int] = {}  # per partition: every offset below is in the table (or routed)
        self._deferred: dict[TP, list[tuple[int, Any]]] = {}  # second deliveries to ack once persisted
        self._previous: dict[TP, int] = {}  # next expected offsets at the previous clock tick
        self.failed: BaseException | None = None
        self.totals: Counter[str] = Counter()
        self._report_at = time.monotonic()

    # -- agents, timers, rebalance signals ---------------------------------------------------------------
    async def on_event(self, stream: Any, event: Any) -> None:
        """One record from an agent's stream: buffer it; flush its partition when the buffer is full."""
        if self.failed is not None:
            return
        await self._starts_known.wait()  # not during a rebalance
        message = event.message
        tp = (message.topic, message.partition)
        if tp not in self.owned and not self._still_owned(tp):
            return  # a stale record of a revoked partition: its next owner reads it again
        headers = headers_of(message.headers)
        record = Record(tp[0], tp[1], message.offset, message.key, message.value or b"", headers, (stream, event))
        missing = self.processor.check(record)
        if missing < 0:
            await self._ack_later(tp, record.offset, record.handle)
            return
        if missing:
            await self._guarded(self._heal(tp, record.offset - missing, record.offset))
            if self.failed is not None or tp not in self.owned:
                return
        self.totals["records"] += 1
        if self.processor.add(record):
            await self._guarded(self._flush_partitions([tp]))

    async def tick(self) -> None:
        """Flush timer: flush every partition with buffered records; report now and then."""
        if self.failed is not None:
            return
        await self._guarded(self._flush_partitions(None))
        if time.monotonic() - self._report_at >= REPORT_INTERVAL_S:
            self.report()

    async def clock_tick(self) -> None:
        """Clock timer (separate: reading end offsets goes through the consumer thread and can take a
        fetch round): re-read skipped tails, then apply the stream clock when caught up."""
        if self.failed is not None:
            return
        await self._guarded(self._maybe_clock())

    async def on_assigned(self, assigned: Iterable[Any]) -> None:
        """Record the new assignment and where the group resumes each partition."""
        self.owned = {(tp.topic, tp.partition) for tp in assigned if tp.topic in self._mine}
        try:
            starts = await start_offsets(self.settings, self.options.app_id, self.owned)
        except Exception as exc:  # without them only gaps after the first record are noticed
            self.log.error("cannot read the group's offsets", error=f"{type(exc).__name__}: {exc}")
        else:
            self.processor.start(starts)
            self._persisted.update(starts)
        self._starts_known.set()
        self.log.info("partitions assigned", partitions=sorted({p for _, p in self.owned}))

    async def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Drop the revoked partitions' buffers (unacked: their next owner reads them again) and gates, after
        any flush in progress; then flush the producer so this worker's last table writes are in the
        changelog before the next owner recovers from it."""
        tps = [(tp.topic, tp.partition) for tp in revoked if tp.topic in self._mine]
        self._starts_known.clear()
        async with self.lock:
            self.owned.difference_update(tps)
            dropped = self.processor.revoke(tps)
            for tp in tps:
                self._persisted.pop(tp, None)
                self._deferred.pop(tp, None)
                self._previous.pop(tp, None)
            await self.app.producer.flush()
        self.log.info("partitions revoked", partitions=sorted({p for _, p in tps}), dropped=len(dropped))

    def report(self, *, final: bool = False) -> None:
        self._report_at = time.monotonic()
        self.log.info(
            "worker totals" if final else "worker progress",
            records=self.totals["records"],
            applied=self.totals["applied"],
            forwarded=self.totals["forwarded"],
            duplicates=self.totals["duplicates"],
            reread=self.totals["reread"],
            decisions=dict(sorted(self.processor.decided.items())),
            rejected=dict(sorted(self.processor.rejected.items())),
            late=self.totals["late"],
        )
        if self.options.metrics_file is not None:
            try:
                text = metrics.render(self.totals, self.processor.rejected, self.processor.decided)
                metrics.write_atomically(self.options.metrics_file, text)
            except OSError as exc:  # metrics are not worth stopping the worker for
                self.log.warning("cannot write the metrics file", path=self.options.metrics_file, error=str(exc))

    # -- internals ---------------------------------------------------------------------------------------
    def _still_owned(self, tp: TP) -> bool:
        """A record of a partition not (yet) in ``owned``: ask the consumer (rare: around a rebalance)."""
        if tp in {(t.topic, t.partition) for t in self.app.consumer.assignment()}:
            self.owned.add(tp)
            return True
        return False

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except Exception as exc:  # a failed send or an unreadable state: stop rather than go on wrongly
            self.failed = exc
            self.log.error("worker failed; stopping", error=f"{type(exc).__name__}: {exc}")
            await self.app.crash(exc)

    async def _heal(self, tp: TP, start: int, end: int) -> None:
        """Offsets ``start..end-1`` of ``tp`` never reached the agent: re-read and buffer them in order."""
        found = await read_range(self.settings, tp[0], tp[1], start, end)
        if tp not in self.owned:
            return  # revoked meanwhile: the next owner reads them
        for r in found:
            if r.offset >= self.processor.next_offset.get(tp, 0):
                self.processor.add(Record(tp[0], tp[1], r.offset, r.key, r.value or b"", headers_of(r.headers)))
        self.totals["reread"] += len(found)
        log = self.log.warning if found else self.log.info
        log(
            "re-read records the consumer skipped",
            topic=tp[0],
            partition=tp[1],
            start=start,
            end=end,
            found=len(found),
        )

    async def _ack_later(self, tp: TP, offset: int, handle: Any) -> None:
        """A second delivery: ack it once its offset is persisted (now, if it already is)."""
        if offset < self._persisted.get(tp, 0):
            stream, event = handle
            await stream.ack(event)
        else:
            self._deferred.setdefault(tp, []).append((offset, handle))

    async def _flush_partitions(self, tps: list[TP] | None) -> None:
        async with self.lock:
            for tp in self.processor.buffered() if tps is None else tps:
                records = self.processor.take(tp)
                if records:
                    await self._deliver(self.processor.flush(records, now_ms=round(time.time() * 1000)))

    async def _maybe_clock(self) -> None:
        """Re-read skipped tails; when caught up with every owned partition (end offsets read from the broker
        now), apply the newest event time of this worker's gates to all of them."""
        app = self.app
        owned = set(self.owned)
        if not owned or app.rebalancing or app.in_recovery:
            return
        seen = dict(self.processor.next_offset)
        assignment = [t for t in app.consumer.assignment() if (t.topic, t.partition) in owned]
        ends = {(t.topic, t.partition): int(end) for t, end in (await app.consumer.highwaters(*assignment)).items()}
        previous, self._previous = self._previous, seen
        if self.lock.locked():
            return  # a flush in progress may hold the agents back: no tail is stuck for sure
        buffered = set(self.processor.buffered())
        for t in assignment:
            tp = (t.topic, t.partition)
            start = seen.get(tp)
            if start is None or start >= ends.get(tp, 0) or tp in buffered or previous.get(tp) != start:
                continue  # caught up, or records still arriving
            if await app.consumer.position(t) >= ends[tp] and self.processor.next_offset.get(tp) == start:
                await self._heal(tp, start, ends[tp])  # fetched, yet never delivered since the last tick
        async with self.lock:
            if owned != self.owned or seen != self.processor.next_offset:
                return  # a rebalance or new records in between: check again next time
            if app.rebalancing or not self.processor.caught_up(ends):
                return
            await self._deliver(self.processor.observe_clock({p for _, p in owned}))

    async def _deliver(self, flush: Flush) -> None:
        """Send, await every delivery, write the table, ack (in this order; the caller holds the lock)."""
        pending = []
        producer = self.app.producer
        for m in flush.messages:
            pending.append(await producer.send(m.topic, m.key, m.value, m.partition, None, list(m.headers) or None))
        if pending:
            await asyncio.gather(*pending)
        for key, value in flush.state.items():
            self.table[key] = value
        persisted: dict[TP, int] = {}
        for record in flush.records:
            persisted[record.tp] = max(persisted.get(record.tp, 0), record.offset + 1)
            if record.handle is not None:  # re-read records have none: Faust acked them
                stream, event = cast(tuple[Any, Any], record.handle)
                await stream.ack(event)
        for tp, offset in persisted.items():
            self._persisted[tp] = max(self._persisted.get(tp, 0), offset)
            waiting = self._deferred.pop(tp, [])
            for late_offset, handle in waiting:
                if late_offset < self._persisted[tp]:
                    await handle[0].ack(handle[1])
                else:
                    self._deferred.setdefault(tp, []).append((late_offset, handle))
        self.totals.update(
            applied=flush.applied, forwarded=flush.forwarded, duplicates=flush.duplicates, late=flush.late
        )
        for d in flush.decisions:
            self.log.debug("decision", key=d.key, decision=d.decision, at=d.at, id=d.decision_id)
