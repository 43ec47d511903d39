"""The worker's Kafka side: one aiokafka consumer group member running both stages, a producer, two changelogs.

Loop: ``getmany`` (up to ``--batch`` records of the owned partitions of the telemetry topic and of
``<app-id>-panes``; the telemetry records as their fetched batches' bytes, ``raw_fetch``) -> parse them and decode
the values (``decoding``: in a child process with ``--jobs 2``, while the previous poll is applied) ->
``Processor.flush_polled`` over the whole poll (stage 1 on the telemetry records, stage 2 on the partials and
watermarks) -> send the outgoing messages (``sending``: one record batch
per partition and poll, acknowledgements not awaited while the next polls are applied; a poll's offsets become
committable only once its deliveries and all earlier ones are acknowledged).
Every ``--checkpoint-interval`` s, on a revoke and at shutdown: write the stage-1 states and gate inboxes changed
since the last checkpoint to their compacted changelogs (each once, however many polls changed it), then, once
they are acknowledged, commit the offsets applied since (``checkpoints``: that order, and the loop's checkpoints
awaited in the background). A committed offset never passes what the changelogs hold (at least once;
decision ids are deterministic; stage 1 resumes exactly, stage 2 merges idempotently, so what is read again after
a crash changes nothing).

Assignment. The group uses the range assignor, so with equal partition counts one member owns partition p
of both input topics: stage 1 of telemetry partition p (its state restored from partition p of
``<app-id>-aggregate-changelog``, the consumer moved to the offset stored with it, so no record is folded
twice) and stage 2 of the gates homed at p (restored from partition p of ``<app-id>-gate-state-changelog``,
with the partials they refer to read back from partition p of ``<app-id>-panes``).
Kafka runs every member's revoke callback before any assign callback, and a member's revoke waits for its
poll in progress, so a restore sees the previous owner's last state. Records fetched but not applied (a
rebalance came in between, or a restore is in progress) are not committed, and the consumer is moved back.

Idleness. Every ``--clock-interval`` s the loop checks which owned telemetry and side-input partitions are read to
their end offset; one seen there (with no record in between) for ``--idle-after`` s of wall time is reported idle
to every gate (``Processor.mark_idle``, ``SideStage.mark_idle``), so a partition that gets no records does not
hold the gates' panes. A backlog
is never idle, and neither is a partition whose end cannot be seen (broker away).

Why the stages are not Faust agents: see ARCHITECTURE.md (stage 1: Faust's per-message pipeline; stage 2: what
was measured, and what a Faust stage 2 still needs); this loop keeps Faust's model: co-partitioned topics, state
in compacted changelogs, at least once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError, KafkaError

from gatekeeper.core.holdup import Stalls
from gatekeeper.core.otlp import SpanBatch
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker import metrics
from gatekeeper.shell.worker.checkpoints import Checkpoints
from gatekeeper.shell.worker.decoding import Decoding
from gatekeeper.shell.worker.exporter import WorkerExporter
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.options import WorkerOptions
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.raw_fetch import FALLBACK, RawFetch, attach
from gatekeeper.shell.worker.raw_records import ParsedPoll, RawPoll, RawRun
from gatekeeper.shell.worker.records import ParsedRun
from gatekeeper.shell.worker.routing import Topics
from gatekeeper.shell.worker.sending import PRODUCE_BATCH_BYTES, Sending
from gatekeeper.shell.worker.side import SideStage, SideTopics
from gatekeeper.shell.worker.topics import (
    MAX_STATE_BYTES,
    aggregate_changelog_topic,
    changelog_topic,
    panes_topic,
    read_changelog,
    read_offsets,
)

OTLP_FETCH_BYTES = 4 << 20  # per partition and fetch, reading trace batches
POLL_TIMEOUT_MS = 100  # an idle loop wakes this often (stop requests, clock checks)
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
    was fetched in, and its decoded values (possibly still decoding in the child process); with the raw fetch
    path, the telemetry runs as bytes (``raw``) and their records and values parsed (``parsed``)."""

    runs: list[tuple[str, int, Sequence[Any]]]
    wall_ms: int
    generation: int
    decoded: asyncio.Future[EventBatch] | None
    raw: RawPoll | None = None
    parsed: asyncio.Future[ParsedPoll] | None = None


class Runtime:
    """Consumes, processes, delivers and commits; restores gate state on assignment; applies the clock."""

    def __init__(
        self, plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any, decoding: Decoding
    ) -> None:
        self.settings, self.options, self.log = settings, options, log
        names = settings.topics
        self.topics = Topics(
            names.telemetry, panes_topic(options.app_id), names.decisions, names.breaches, names.dlq, names.partitions
        )
        self.changelog = changelog_topic(options.app_id)
        self.aggregate_changelog = aggregate_changelog_topic(options.app_id)
        self._entries: dict[bytes, bytes] = {}  # restored gate-inbox entries of the owned partitions
        self._source_entries: dict[bytes, bytes] = {}  # restored stage-1 entries of the owned partitions
        self._pane_values: dict[tuple[int, int], bytes] = {}  # panes records the restored gate entries refer to
        self.processor = Processor(
            plan,
            self.topics,
            self._entries.get,
            self._source_entries.get,
            warn=log.warning,
            pane_records=lambda q, offset: self._pane_values.pop((q, offset), None),
        )
        self.side_topics = SideTopics.of(settings, options.app_id)
        self.processor.side = SideStage(plan, self.side_topics, self.processor.gates)
        # telemetry and side-input partitions: since when each is seen read to its end, when last reported idle
        self._at_end_since: dict[tuple[str, int], float] = {}
        self._idle_said: dict[tuple[str, int], float] = {}
        self.lock = asyncio.Lock()  # one poll's processing, a clock step or a rebalance step at a time
        self.owned: set[tuple[str, int]] = set()  # empty while a rebalance is in progress
        self._generation = 0  # counts assignment changes: a poll fetched in an older one is not applied
        self.decoding = decoding
        self.raw: RawFetch | None = None  # the telemetry records' bytes out of aiokafka (None: getmany)
        self.restored: set[tuple[str, int]] = set()  # (topic, partition) whose state is restored (or being kept)
        self.failed: BaseException | None = None
        self.totals: Counter[str] = Counter()
        self.stalls = Stalls()  # the gates that closed no pane between two progress reports (core/holdup.py)
        self.exporter = WorkerExporter()  # --metrics-port: what happened is reported to it, it serves it
        self.caught_up = False  # every owned partition read to its end at the latest clock check
        self._stop = asyncio.Event()
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
            # OTLP: 1 MiB (the default) of 100-span batches is ~4k requests a partition per fetch, of JSON ~9k; a
            # worker waiting on fetches would read spans at half the rate for the bytes alone (docs/benchmarks.md)
            max_partition_fetch_bytes=OTLP_FETCH_BYTES if options.telemetry_format == "otlp" else 1 << 20,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(3000, session_ms // 3),
        )
        self.producer = AIOKafkaProducer(
            **common,
            client_id=f"{options.app_id}-worker",
            acks="all",
            enable_idempotence=True,  # retries never reorder a partition: partials stay ahead of their watermark
            request_timeout_ms=DELIVERY_TIMEOUT_MS,
            max_request_size=MAX_STATE_BYTES,
            max_batch_size=PRODUCE_BATCH_BYTES,
        )
        self.restorer = AIOKafkaConsumer(
            **common, group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=MAX_STATE_BYTES
        )
        changelogs = (self.changelog, self.aggregate_changelog)
        stopping = lambda: self.failed is not None  # noqa: E731
        self.checkpoints = Checkpoints(
            self.producer, self.consumer, self.processor, changelogs, log, self._fail, stopping
        )
        hooked = (self.topics.decisions, self.topics.breaches)
        self.sending = Sending(self.producer, hooked, self.checkpoints, self.processor, self.exporter, self.totals, log)

    def _inputs(self) -> list[str]:
        """The topics this process reads: both stages by default, one with ``--role``."""
        role = self.options.role
        both = [
            t for t, r in ((self.topics.telemetry, "aggregate"), (self.topics.panes, "gate")) if role in (r, "both")
        ]
        return both + (self.side_topics.inputs if role in ("gate", "both") else [])

    def stop(self) -> None:
        """Ask the loop to finish its poll in progress and leave the group."""
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop`` or a failure (then ``failed`` is set). Connection errors at start propagate."""
        await self.producer.start()
        await self.restorer.start()
        await self.consumer.start()
        self.raw, why = attach(self.consumer, self.topics.telemetry)
        if self.raw is None:
            self.log.info(FALLBACK, reason=why)
        if self.options.metrics_port is not None:
            ready = lambda: {"assigned": bool(self.owned), "caught_up": self.caught_up}  # noqa: E731
            port = await self.exporter.start(self.options.metrics_host, self.options.metrics_port, ready)
            self.log.info("metrics listening", host=self.options.metrics_host, port=port)
        try:
            self.consumer.subscribe(self._inputs(), listener=_Rebalance(self))
            await self._loop()
            if self.failed is None:
                async with self.lock:
                    await self._guarded(self.checkpoints.checkpoint())
        finally:
            await self.checkpoints.settled()  # a failure may have stopped the loop while a checkpoint was under way
            await self.exporter.stop()
            await self.consumer.stop()  # leaves the group: the others take over at once
            await self.restorer.stop()
            await self.producer.stop()

    async def _loop(self) -> None:
        """Poll N+1 is fetched and handed to the decoder before poll N is applied (``decoding``); the clock
        runs only when no fetched poll waits, so "read to the end" means "applied to the end"."""
        now = time.monotonic()
        clock_at, report_at = now + self.options.clock_interval, now + self.options.report_interval
        checkpoint_at = now + self.options.checkpoint_interval
        pending: _Poll | None = None
        while not self._stop.is_set() and self.failed is None:
            timeout_ms = 0 if pending else POLL_TIMEOUT_MS
            if self.raw is not None:
                polled, raw = await self.raw.getmany(timeout_ms)
            else:
                polled, raw = await self.consumer.getmany(timeout_ms=timeout_ms), []
            fresh = self._start(polled, raw) if polled or raw else None
            if pending is not None:
                await self._guarded(self._finish(pending))
            pending = fresh
            now = time.monotonic()
            if pending is None and now >= clock_at and self.failed is None:
                await self._guarded(self._clock())
                clock_at = time.monotonic() + self.options.clock_interval
            if now >= checkpoint_at and self.failed is None:
                async with self.lock:
                    await self._guarded(self.checkpoints.checkpoint(wait=False))
                checkpoint_at = time.monotonic() + self.options.checkpoint_interval
            if now >= report_at:
                self.report()
                report_at = now + self.options.report_interval
        if pending is not None and self.failed is None:
            await self._guarded(self._finish(pending))  # fetched already: apply and commit it rather than re-read

    # -- rebalance callbacks (run by aiokafka's coordinator; errors there are logged by it, so keep them) --
    async def on_revoked(self) -> None:
        """Wait for the poll in progress (its offsets and states get into Kafka), then stop processing."""
        async with self.lock:
            self.owned, self._generation = set(), self._generation + 1
            await self._guarded(self.checkpoints.checkpoint())  # the next owner restores what was applied here

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Forget the state of partitions lost; restore that of partitions gained from the changelogs (stage 1:
        telemetry partitions, stage 2: panes partitions) and move the consumer to the first telemetry record
        not folded yet."""
        inputs = (self.topics.telemetry, self.topics.panes, *self.side_topics.inputs)
        tps = {(tp.topic, tp.partition) for tp in assigned if tp.topic in inputs}
        telemetry, panes = self.topics.telemetry, self.topics.panes
        async with self.lock:
            lost, gained = self.restored - tps, tps - self.restored
            lost_sources = {p for t, p in lost if t == telemetry}
            lost_gates = {p for t, p in lost if t == panes}
            self.processor.revoke(lost_sources, lost_gates)
            for key in [k for k in self._entries if self.processor.state_partition(k) in lost_gates]:
                del self._entries[key]
            for at in [at for at in self._pane_values if at[0] in lost_gates]:
                del self._pane_values[at]
            for p in lost_sources:
                key = self.processor.source_id(p).encode()  # its whole state, and changes under key/<seq>
                for k in [k for k in self._source_entries if k == key or k.startswith(key + b"/")]:
                    del self._source_entries[k]
            for seen in [seen for seen in self._at_end_since if seen in lost]:
                del self._at_end_since[seen]
            if self.processor.side is not None:
                self.processor.side.forget([(t, p) for t, p in lost | gained if t in self.side_topics.kinds])
            self.restored -= lost
            gained_sources = {p for t, p in gained if t == telemetry}
            gained_gates = {p for t, p in gained if t == panes}
            try:
                restored = await read_changelog(self.restorer, self.changelog, gained_gates)
                self._entries.update(restored)
                located = self.processor.located_partials(restored)
                self._pane_values.update(await read_offsets(self.restorer, self.topics.panes, located))
                entries = await read_changelog(self.restorer, self.aggregate_changelog, gained_sources)
                self._source_entries.update(entries)
                for p in gained_sources:
                    resume = self.processor.resume(p)
                    if resume is not None:
                        self.consumer.seek(TopicPartition(telemetry, p), resume)
            except Exception as exc:  # without the state the stages would restart from nothing: stop
                self._fail(exc, "cannot restore state")
                return
            if gained_sources:
                await self._guarded(self.sending.deliver(self.processor.resumed(gained_sources), 0, {}))
            gained_side = [(t, p) for t, p in gained if t in self.side_topics.kinds]
            if gained_side and self.processor.side is not None:  # they hold their gates again, as at start-up
                side = Flush()
                self.processor.side.resumed(gained_side, side)
                await self._guarded(self.sending.deliver(side, 0, {}))
            self.restored |= gained
            self.owned, self._generation = set(tps), self._generation + 1
        self.log.info(
            "partitions assigned",
            partitions=sorted({p for _t, p in tps}),
            telemetry=sorted(p for t, p in tps if t == telemetry),
            panes=sorted(p for t, p in tps if t == panes),
            restored=sorted({p for _t, p in gained}),
        )

    # -- processing --------------------------------------------------------------------------------------
    def _start(self, polled: Mapping[TopicPartition, Sequence[Any]], raw: Sequence[RawRun]) -> _Poll | None:
        """Keep the owned partitions' records of a poll and hand their values (or the telemetry runs' bytes,
        ``raw``) to the decoder."""
        runs = [(tp.topic, tp.partition, batch) for tp, batch in polled.items() if batch]
        telemetry = self.topics.telemetry
        self._read_again([run for run in runs if run[:2] not in self.owned])  # restore still in progress
        self._read_raw_again([run for run in raw if (telemetry, run.partition) not in self.owned])
        runs = [run for run in runs if run[:2] in self.owned]
        raw = [run for run in raw if (telemetry, run.partition) in self.owned]
        if not runs and not raw:
            return None
        wall_ms = round(time.time() * 1000)
        not_after = self.processor.not_after(wall_ms)
        if self.raw is not None:
            raw_poll = RawPoll(telemetry, list(raw), self.raw.check_crcs) if raw else None
            parsed = self.decoding.parse(raw_poll, not_after) if raw_poll else None
            return _Poll(runs, wall_ms, self._generation, None, raw_poll, parsed)
        values = [r.value or b"" for topic, _p, batch in runs if topic == telemetry for r in batch]
        return _Poll(runs, wall_ms, self._generation, self.decoding.submit(values, not_after))

    async def _finish(self, poll: _Poll) -> None:
        """Apply a decoded poll, send and await its messages, write its states, commit it (in the tail)."""
        async with self.lock:
            if poll.generation != self._generation:  # a rebalance came between fetching and applying
                for future in (poll.decoded, poll.parsed):
                    if future is not None:
                        future.cancel()
                self._read_again(poll.runs)
                self._read_raw_again(poll.raw.runs if poll.raw else [])
                return
            runs, decoded = await self._decoded(poll)
            if not runs:
                return  # control batches only: nothing to apply or commit
            offsets = {TopicPartition(topic, p): batch[-1].offset + 1 for topic, p, batch in runs}
            for topic, p, batch in runs:
                if topic == self.topics.telemetry:
                    self.totals["records"] += len(batch)
                self._at_end_since.pop((topic, p), None)
            self.exporter.polled(runs, self.consumer.highwater)
            if isinstance(decoded, SpanBatch):  # OTLP trace batches: stage 1 maps each request to its record
                self.totals["ignored_spans"] += sum(decoded.ignored.values())
            await self.sending.deliver(self.processor.flush_polled(runs, decoded=decoded), poll.wall_ms, offsets)

    async def _decoded(self, poll: _Poll) -> tuple[list[tuple[str, int, Sequence[Any]]], EventBatch | None]:
        """A poll's runs (the parsed telemetry runs first, empty ones left out) and its decoded values."""
        if poll.decoded is not None:
            return poll.runs, await poll.decoded
        if poll.parsed is None or poll.raw is None:
            return poll.runs, None
        parsed = await poll.parsed
        runs: list[tuple[str, int, Sequence[Any]]] = []
        start = 0
        for run, size, kept in zip(poll.raw.runs, parsed.sizes, parsed.rejected_by_run(), strict=True):
            if size:
                offsets = parsed.offsets[start : start + size]
                runs.append((poll.raw.topic, run.partition, ParsedRun(poll.raw.topic, run.partition, offsets, kept)))
            start += size
        return runs + poll.runs, parsed.batch

    def _read_again(self, runs: Sequence[tuple[str, int, Sequence[Any]]]) -> None:
        """Records fetched but not applied (their partition's assignment changed or its gates are still being
        restored): move the consumer back to them if it still has their partition."""
        assigned = self.consumer.assignment()
        for topic, partition, batch in runs:
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self.consumer.seek(tp, batch[0].offset)

    def _read_raw_again(self, runs: Sequence[RawRun]) -> None:
        """Telemetry runs fetched but not applied: ``_read_again`` from where each was fetched."""
        assigned = self.consumer.assignment()
        for run in runs:
            tp = TopicPartition(self.topics.telemetry, run.partition)
            if tp in assigned:
                self.consumer.seek(tp, run.fetch_offset)

    async def _clock(self) -> None:
        """Report the owned telemetry and side-input partitions seen read to their end for ``idle_after`` s as
        idle. The time counts from the first check that saw the end (not from the last record): after a broker
        outage, a partition is idle only once it has been seen at its end for that long."""
        owned = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) in self.owned]
        watched = (self.topics.telemetry, *self.side_topics.kinds)
        inputs = [tp for tp in owned if tp.topic in watched]
        if not owned:
            return
        try:
            # /readyz: every owned input partition read to its end (a `--role gate` worker owns only panes and
            # side partitions, so this is not about telemetry alone)
            ends = await self.consumer.end_offsets(owned)
            reached = {tp for tp in owned if await self.consumer.position(tp) >= ends[tp]}
            self.caught_up = len(reached) == len(owned)
            at_end = {(tp.topic, tp.partition) for tp in inputs if tp in reached}
        except IllegalStateError:
            return  # a partition was revoked meanwhile
        except KafkaError as exc:  # the broker is away: no partition is known to be at its end
            self._at_end_since.clear()
            self.log.warning("cannot check whether partitions are idle", error=f"{type(exc).__name__}: {exc}")
            return
        now = time.monotonic()
        for tp in inputs:
            if (tp.topic, tp.partition) in at_end:
                self._at_end_since.setdefault((tp.topic, tp.partition), now)
            else:
                self._at_end_since.pop((tp.topic, tp.partition), None)
        idle = sorted(p for p in at_end if now - self._at_end_since[p] >= self.options.idle_after)
        for p in [p for p in self._idle_said if p not in idle]:
            del self._idle_said[p]
        # Say it again every idle_after: a gate stops counting a partition idle when another one wakes up.
        idle = [p for p in idle if now - self._idle_said.get(p, -math.inf) >= self.options.idle_after]
        if not idle:
            return
        async with self.lock:
            if {(tp.topic, tp.partition) for tp in owned} != self.owned:
                return  # a rebalance in between: check again next time
            flush = self.processor.mark_idle([p for t, p in idle if t == self.topics.telemetry], again=True)
            if self.processor.side is not None:
                self.processor.side.mark_idle([at for at in idle if at[0] != self.topics.telemetry], flush)
            self._idle_said.update(dict.fromkeys(idle, now))
            if flush.messages:
                await self.sending.deliver(flush, round(time.time() * 1000), {})

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
            skipped=self.totals["skipped"],
            partials=self.totals["partials"],
            duplicates=self.totals["duplicates"],
            conflicts=self.totals["conflicts"],
            late_partials=self.totals["late_partials"],
            decisions=dict(sorted(self.processor.decided.items())),
            rejected=dict(sorted(self.processor.rejected.items())),
            late=self.totals["late"],
            ignored_spans=self.totals["ignored_spans"],
            waiting=self.stalls.check(self.processor.gates.inboxes()),
        )
        if self.options.metrics_file is not None:
            try:
                text = metrics.render(self.totals, self.processor.rejected, self.processor.decided)
                metrics.write_atomically(self.options.metrics_file, text)
            except OSError as exc:  # metrics are not worth stopping the worker for
                self.log.warning("cannot write the metrics file", path=self.options.metrics_file, error=str(exc))
