"""The worker's Kafka side: one aiokafka consumer group member, a producer, and the gate-state changelog.

Loop: ``getmany`` (up to ``--batch`` records of the owned partitions of the telemetry topic and of
``<app-id>-gates``) -> decode its values (``decoding``: in a child process with ``--jobs 2``, while the
previous poll is applied) -> ``Processor.flush_polled`` over the whole poll -> send the outgoing messages
(forwards, dead letters, decisions, breaches) and await every delivery -> write the touched gate states to
the compacted changelog -> once they are acknowledged, commit the poll's offsets. An offset is committed only after the
decisions and the gate states that include it are in Kafka (at least once; decision ids are deterministic).
The last two steps (the "tail") run while the next poll is fetched and processed; the next poll's sends, a
rebalance and the shutdown wait for the tail first, so the steps never overlap.

Assignment. The group uses the range assignor, so with equal partition counts one member owns partition p
of both input topics and keeps the gates homed at p, restored from partition p of the changelog when it
gains p (``read_changelog``; Kafka runs every member's revoke callback before any assign callback, and a
member's revoke waits for its poll in progress, so the restore sees the previous owner's last state).
Partitions kept across a rebalance keep their in-memory gates. Records fetched but not applied -- a
rebalance came in between, or their partition's gates are still being restored (aiokafka may fetch before
the assign callback returns) -- are not committed, and the consumer is moved back to them (``_read_again``).

Stream clock. Every ``--clock-interval`` s, when every owned partition has been read to its end offset, the
newest event time of the owned gates is applied to all of them (``Processor.observe_clock``).

Why not Faust: its per-message stream pipeline carried at most ~8k records/s here even for an agent that
only counts (docs/benchmarks.md); this loop hands whole polls to the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError

from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker import metrics
from gatekeeper.shell.worker.decoding import Decoding
from gatekeeper.shell.worker.options import WorkerOptions
from gatekeeper.shell.worker.processor import Flush, Processor, Topics, home_partition
from gatekeeper.shell.worker.topics import changelog_topic, gates_topic, read_changelog

HOOK_HEADER = "gk-closed-wall-ms"  # on decisions: wall time (epoch ms) the worker got the record that closed it
POLL_TIMEOUT_MS = 100  # an idle loop wakes this often (stop requests, clock checks)
REPORT_INTERVAL_S = 30.0
DELIVERY_TIMEOUT_MS = 120_000  # a send not acknowledged in this time fails the worker (broker gone too long)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped; subscribe() needs this base
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.runtime.on_revoked()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.runtime.on_assigned(assigned)


@dataclass(frozen=True, slots=True)
class _Poll:
    """A fetched poll on its way: the owned partitions' records, its wall time, the assignment generation it
    was fetched in, and its decoded values (possibly still decoding in the child process)."""

    runs: list[tuple[str, int, Sequence[Any]]]
    wall_ms: int
    generation: int
    decoded: asyncio.Future[EventBatch]


class Runtime:
    """Consumes, processes, delivers and commits; restores gate state on assignment; applies the clock."""

    def __init__(
        self, plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any, decoding: Decoding
    ) -> None:
        self.settings, self.options, self.log = settings, options, log
        names = settings.topics
        self.topics = Topics(
            names.telemetry, gates_topic(options.app_id), names.decisions, names.breaches, names.dlq, names.partitions
        )
        self.changelog = changelog_topic(options.app_id)
        self._entries: dict[bytes, bytes] = {}  # restored gate-state entries of the owned partitions
        self.processor = Processor(plan, self.topics, self._entries.get, warn=log.warning)
        self.lock = asyncio.Lock()  # one poll's processing, a clock step or a rebalance step at a time
        self.owned: set[tuple[str, int]] = set()  # empty while a rebalance is in progress
        self._generation = 0  # counts assignment changes: a poll fetched in an older one is not applied
        self.decoding = decoding
        self.restored: set[int] = set()  # partitions whose gates are restored (or being kept)
        self.failed: BaseException | None = None
        self.totals: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tail: asyncio.Future[None] | None = None  # the last poll's state acks and commit, in flight
        common = settings.aiokafka_kwargs()
        session_ms = round(options.session_timeout * 1000)
        self.consumer = AIOKafkaConsumer(
            **common,
            group_id=options.app_id,
            client_id=f"{options.app_id}-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=options.batch,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(3000, session_ms // 3),
        )
        self.producer = AIOKafkaProducer(
            **common, client_id=f"{options.app_id}-worker", acks="all", request_timeout_ms=DELIVERY_TIMEOUT_MS
        )
        self.restorer = AIOKafkaConsumer(**common, group_id=None, enable_auto_commit=False)

    def stop(self) -> None:
        """Ask the loop to finish its poll in progress and leave the group."""
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop`` or a failure (then ``failed`` is set). Connection errors at start propagate."""
        await self.producer.start()
        await self.restorer.start()
        await self.consumer.start()
        try:
            self.consumer.subscribe([self.topics.telemetry, self.topics.gates], listener=_Rebalance(self))
            await self._loop()
            await self._guarded(self._settle())
        finally:
            await self.consumer.stop()  # leaves the group: the others take over at once
            await self.restorer.stop()
            await self.producer.stop()

    async def _loop(self) -> None:
        """Poll N+1 is fetched and handed to the decoder before poll N is applied (``decoding``); the clock
        runs only when no fetched poll waits, so "read to the end" means "applied to the end"."""
        now = time.monotonic()
        clock_at, report_at = now + self.options.clock_interval, now + REPORT_INTERVAL_S
        pending: _Poll | None = None
        while not self._stop.is_set() and self.failed is None:
            polled = await self.consumer.getmany(timeout_ms=0 if pending else POLL_TIMEOUT_MS)
            fresh = self._start(polled) if polled else None
            if pending is not None:
                await self._guarded(self._finish(pending))
            pending = fresh
            now = time.monotonic()
            if pending is None and now >= clock_at and self.failed is None:
                await self._guarded(self._clock())
                clock_at = time.monotonic() + self.options.clock_interval
            if now >= report_at:
                self.report()
                report_at = now + REPORT_INTERVAL_S
        if pending is not None and self.failed is None:
            await self._guarded(self._finish(pending))  # fetched already: apply and commit it rather than re-read

    # -- rebalance callbacks (run by aiokafka's coordinator; errors there are logged by it, so keep them) --
    async def on_revoked(self) -> None:
        """Wait for the poll in progress (its offsets and states get into Kafka), then stop processing."""
        async with self.lock:
            self.owned, self._generation = set(), self._generation + 1
            await self._guarded(self._settle())

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Forget the gates of partitions lost, restore those of partitions gained from the changelog."""
        tps = [tp for tp in assigned if tp.topic in (self.topics.telemetry, self.topics.gates)]
        partitions = {tp.partition for tp in tps}
        async with self.lock:
            lost, gained = self.restored - partitions, partitions - self.restored
            self.processor.revoke(lost)
            for key in [k for k in self._entries if home_partition(k, self.topics.partitions) in lost]:
                del self._entries[key]
            self.restored -= lost
            try:
                self._entries.update(await read_changelog(self.restorer, self.changelog, gained))
            except Exception as exc:  # without the state the gates would restart from nothing: stop
                self._fail(exc, "cannot restore gate state")
                return
            self.restored |= gained
            self.owned, self._generation = {(tp.topic, tp.partition) for tp in tps}, self._generation + 1
        self.log.info("partitions assigned", partitions=sorted(partitions), restored=sorted(gained))

    # -- processing --------------------------------------------------------------------------------------
    def _start(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> _Poll | None:
        """Keep the owned partitions' records of a poll and hand their values to the decoder."""
        runs = [(tp.topic, tp.partition, batch) for tp, batch in polled.items() if batch]
        self._read_again([run for run in runs if run[:2] not in self.owned])  # restore still in progress
        runs = [run for run in runs if run[:2] in self.owned]
        if not runs:
            return None
        wall_ms = round(time.time() * 1000)
        values = [r.value or b"" for _topic, _p, batch in runs for r in batch]
        decoded = self.decoding.submit(values, self.processor.not_after(wall_ms))
        return _Poll(runs, wall_ms, self._generation, decoded)

    async def _finish(self, poll: _Poll) -> None:
        """Apply a decoded poll, send and await its messages, write its states, commit it (in the tail)."""
        async with self.lock:
            if poll.generation != self._generation:  # a rebalance came between fetching and applying
                poll.decoded.cancel()
                self._read_again(poll.runs)
                return
            decoded = await poll.decoded
            offsets = {TopicPartition(topic, p): batch[-1].offset + 1 for topic, p, batch in poll.runs}
            self.totals["records"] += sum(len(batch) for _topic, _p, batch in poll.runs)
            await self._deliver(self.processor.flush_polled(poll.runs, decoded=decoded), poll.wall_ms, offsets)

    def _read_again(self, runs: Sequence[tuple[str, int, Sequence[Any]]]) -> None:
        """Records fetched but not applied (their partition's assignment changed or its gates are still being
        restored): move the consumer back to them if it still has their partition."""
        assigned = self.consumer.assignment()
        for topic, partition, batch in runs:
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self.consumer.seek(tp, batch[0].offset)

    async def _clock(self) -> None:
        """When every owned partition is read to its end, apply the owned gates' newest event time."""
        owned = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) in self.owned]
        if not owned:
            return
        try:
            ends = await self.consumer.end_offsets(owned)
            for tp in owned:
                if await self.consumer.position(tp) < ends[tp]:
                    return
        except IllegalStateError:
            return  # a partition was revoked meanwhile
        async with self.lock:
            if {(tp.topic, tp.partition) for tp in owned} != self.owned:
                return  # a rebalance in between: check again next time
            flush = self.processor.observe_clock(self.restored)
            if flush.messages or flush.state:
                await self._deliver(flush, round(time.time() * 1000), {})

    async def _settle(self) -> None:
        """Wait for the previous poll's tail (its exception, if any, is raised here)."""
        tail, self._tail = self._tail, None
        if tail is not None:
            await tail

    async def _persist(self, states: list[asyncio.Future[Any]], offsets: dict[TopicPartition, int]) -> None:
        """The tail of a poll: its gate states acknowledged, then its offsets committed."""
        await asyncio.gather(*states)
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:  # the group moved on: the next owner re-reads and skips them
                self.log.warning("commit failed; the partitions' next owner reads these records again", error=str(exc))

    async def _deliver(self, flush: Flush, wall_ms: int, offsets: dict[TopicPartition, int]) -> None:
        """After the previous tail: send the messages and await them all, then send the gate states and leave
        their acknowledgement and the commit of ``offsets`` to the new tail (the caller holds the lock)."""
        await self._settle()
        hook = (HOOK_HEADER, str(wall_ms).encode())
        send = self.producer.send
        pending = []
        for m in flush.messages:
            headers = [*m.headers, hook] if m.topic in (self.topics.decisions, self.topics.breaches) else m.headers
            pending.append(
                await send(m.topic, m.value, key=m.key, partition=m.partition, headers=list(headers) or None)
            )
        await asyncio.gather(*pending)
        states = [
            await send(self.changelog, value, key=key, partition=home_partition(key, self.topics.partitions))
            for key, value in flush.state.items()
        ]
        self.totals.update(
            applied=flush.applied, forwarded=flush.forwarded, duplicates=flush.duplicates, late=flush.late
        )
        for d in flush.decisions:
            self.log.debug("decision", key=d.key, decision=d.decision, at=d.at, id=d.decision_id)
        self._tail = asyncio.ensure_future(self._persist(states, offsets))

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except Exception as exc:  # a failed send or an unreadable state: stop rather than go on wrongly
            self._fail(exc, "worker failed; stopping")

    def _fail(self, exc: BaseException, message: str) -> None:
        self.failed = exc
        self.log.error(message, error=f"{type(exc).__name__}: {exc}")
        self._stop.set()

    def report(self, *, final: bool = False) -> None:
        self.log.info(
            "worker totals" if final else "worker progress",
            records=self.totals["records"],
            applied=self.totals["applied"],
            forwarded=self.totals["forwarded"],
            duplicates=self.totals["duplicates"],
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
