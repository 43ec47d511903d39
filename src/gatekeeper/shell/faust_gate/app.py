"""``gatekeeper worker --role gate --gate-engine faust``: stage 2 as a faust-streaming app.

One agent on ``<app-id>-panes`` (keyed ``region/tier``; watermarks to every partition), in its own consumer
group ``<app-id>-faust-gate`` (Faust's assignor cannot share the aiokafka group of ``--role aggregate``), over one
Faust table ``gate-state`` (changelog ``<app-id>-faust-gate-gate-state-changelog``, co-partitioned with the panes
topic) holding what ``state.FaustGateState`` writes. The agent runs the same core as replay and the aiokafka gate
role; panes close on the sources' watermarks (event time), never on Faust's window expiry (a wall-clock timer
that misses windows restored from a changelog: ``shared/notes/faust-pitfalls.md``), so the table is a plain,
non-windowed one.

At least once: Faust flushes the producer (decisions, breaches, dead letters, the table's changelog records)
before it commits the panes offsets, so a crash makes the next owner read again messages whose effects may be
in the changelog already; merging is idempotent and decision ids deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping
from functools import partial
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from gatekeeper.core.holdup import Stalls
from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.shell.faust_gate.credentials import broker_credentials
from gatekeeper.shell.faust_gate.idle import IdleWatch
from gatekeeper.shell.faust_gate.metrics import FaustMetrics
from gatekeeper.shell.faust_gate.restore_watch import RestoreStalledError, RestoreWatch
from gatekeeper.shell.faust_gate.skipped import SkipWatch, read_range
from gatekeeper.shell.faust_gate.stale import StaleIdle
from gatekeeper.shell.faust_gate.state import FaustGateState, Totals
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker.options import WorkerOptions
from gatekeeper.shell.worker.outgoing import Outgoing
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics
from gatekeeper.shell.worker.side import SideStage, SideTopics
from gatekeeper.shell.worker.state_entry import StateError
from gatekeeper.shell.worker.topics import panes_topic, read_offsets

HOOK_HEADER = "gk-closed-wall-ms"  # as the aiokafka worker: wall time (epoch ms) the closing message was read
TABLE = "gate-state"
RESTORE_READ_TIMEOUT_S = 30.0


def faust_app_id(app_id: str) -> str:
    return f"{app_id}-faust-gate"


def state_changelog_topic(app_id: str) -> str:
    """The Faust table's changelog (Faust names it ``<faust app id>-<table>-changelog``)."""
    return f"{faust_app_id(app_id)}-{TABLE}-changelog"


class _StrKeys(MutableMapping[str, bytes]):
    """The Faust table (bytes keys, raw) as the str-keyed mapping ``FaustGateState`` writes."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> bytes:
        value = self.table[key.encode()]
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.table.get(key.encode())
        return default if value is None else bytes(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.table.get(key.encode()) is not None

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (bytes(k).decode() for k in list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)


def _broker(settings: KafkaSettings) -> list[str]:
    return [f"kafka://{part.strip()}" for part in settings.bootstrap.split(",")]


def _app(options: WorkerOptions, settings: KafkaSettings, partitions: int) -> Any:
    """The Faust app: its own consumer group and memory-store table, raw bytes everywhere, at least once."""
    import faust

    session = max(6.0, options.session_timeout)
    return faust.App(
        faust_app_id(options.app_id),
        broker=_broker(settings),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        datadir=tempfile.mkdtemp(prefix=f"{options.app_id}-faust-gate-"),  # the memory store keeps nothing there
        web_enabled=False,
        broker_session_timeout=session,
        broker_heartbeat_interval=min(3.0, session / 3),
        broker_commit_interval=options.checkpoint_interval,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        key_serializer="raw",  # a Table takes no serializer arguments: raw bytes through the app's defaults
        value_serializer="raw",
    )


class FaustGate:
    """The agent, its table and the read-back of the partials restored gates refer to."""

    def __init__(self, plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any) -> None:
        names = settings.topics
        self.topics = Topics(
            names.telemetry, panes_topic(options.app_id), names.decisions, names.breaches, names.dlq, names.partitions
        )
        self.settings, self.log = settings, log
        self.app = app = _app(options, settings, names.partitions)
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.side_topics = side = SideTopics.of(settings, options.app_id)
        written = (names.decisions, names.breaches, names.dlq, side.forwarded)
        self.outputs = {name: app.topic(name, **raw) for name in written}
        from gatekeeper.shell.faust_gate.durable_table import DurableTable  # faust is an optional dependency

        self.table = table = DurableTable(
            app, name=TABLE, default=None, beacon=app.tables.beacon, partitions=names.partitions,
            key_type=bytes, value_type=bytes,
        )  # fmt: skip
        app.tables.add(table)  # what app.Table does, with the subclass
        self.stage = FaustGateState(plan, self.topics, _StrKeys(table), log.warning)
        self.stage.side = SideStage(plan, side, self.stage)
        self.idle = IdleWatch(options.idle_after)
        self.failed: list[BaseException] = []
        self.ready: set[int] = set()  # panes partitions whose restored gates have their partials read back
        self.skips = SkipWatch(settings.aiokafka_kwargs(), faust_app_id(options.app_id))
        self.stale = StaleIdle()  # idle reports of side partitions from before the assignment (stale.py)
        self.restore: RestoreWatch[Any] = RestoreWatch()
        self.stalls = Stalls()  # the gates that closed no pane between two progress reports (core/holdup.py)
        self.options = options
        self.metrics = FaustMetrics(self.stage.totals)  # --metrics-port
        app.agent(app.topic(self.topics.panes, *side.inputs, **raw), name="gates")(self.gates)
        app.on_partitions_revoked.connect(self._revoked)
        app.on_partitions_assigned.connect(self._assigned)
        app.on_before_shutdown.connect(self._shutdown)
        app.timer(options.report_interval)(self._report)
        if options.metrics_port is not None:
            app.task(self._serve_metrics)
            app.timer(options.clock_interval)(self._check_caught_up)
        app.timer(options.clock_interval)(self._side_clock)
        self._restore_task: asyncio.Task[None] | None = None  # started at the first assignment (_assigned)

    async def gates(self, stream: Any) -> None:
        """The agent: each panes message through ``FaustGateState``, what it makes sent before the event is acked."""
        async for event in stream.events():
            message = event.message
            topic, q, offset = message.topic, message.partition, message.offset
            wall_ms = round(time.time() * 1000)
            try:
                if q not in self.ready:
                    await self._read_back(q)
                out: list[Outgoing] = []
                skipped = await self.skips.before(topic, q, offset)  # what Faust's fetcher dropped (skipped.py)
                if skipped:
                    span = f"{skipped[0].offset}-{skipped[-1].offset}"
                    self.log.warning("messages the fetcher skipped, read back", topic=topic, partition=q,
                                     offsets=span, records=len(skipped))  # fmt: skip
                for r in skipped:
                    out += self._handle(r.topic, r.partition, r.offset, r.key, r.value)
                out += self._handle(topic, q, offset, event.key, event.value)
            except (StateError, TimeoutError) as exc:  # continuing would silently lose or redo state
                self._fail(exc)
                return
            hook = (HOOK_HEADER, str(wall_ms).encode())
            for m in out:
                headers = [*m.headers, hook] if m.topic != self.topics.dlq else list(m.headers)
                acked = partial(self.metrics.acked, wall_ms=wall_ms) if m.topic == self.topics.decisions else None
                await self.outputs[m.topic].send(
                    key=m.key, value=m.value, partition=m.partition, headers=headers, callback=acked
                )
            try:  # Faust acks this message when the loop takes the next one: its state must be on the broker first
                await self.table.confirmed()
            except KafkaError as exc:
                self._fail(exc, "gate state not written: ")
                return
            self.skips.handled(topic, q, offset)  # after its state is written: /readyz's lag counts from here
            self.metrics.read()

    def _handle(self, topic: str, q: int, offset: int, key: bytes | None, value: bytes | None) -> list[Outgoing]:
        """A panes message through ``FaustGateState``, a side-input or forwarded side message through ``SideStage``."""
        if topic == self.topics.panes:
            return self.stage.on_message(q, offset, key, value)
        out = _Out(self.stage.totals.rejected)
        assert self.stage.side is not None
        if topic == self.side_topics.forwarded and self.stale.drop(q, offset, value):
            return out.messages
        self.stage.side.flush([(topic, q, [Record(topic, q, offset, key, value)])], out)
        if topic == self.side_topics.forwarded:  # a side watermark may have closed regional panes of a global gate
            self.stage.fold_globals(q, out.messages)
        return out.messages

    async def _side_clock(self) -> None:
        """Report the side-input partitions read to their end for ``idle_after`` s as idle to their gates (only
        those of kinds some gate waits for: the others' watermarks reach no gate)."""
        assert self.stage.side is not None
        kinds, concerned = self.side_topics.kinds, self.stage.side.concerned
        owned = [tp for tp in self.app.consumer.assignment() if tp.topic in kinds and concerned[kinds[tp.topic]]]
        if not owned:
            return
        behind = await self._behind(owned)
        at_end = {part for part, lag in behind.items() if lag == 0}
        due = self.idle.due(list(behind), at_end, time.monotonic())
        if due:
            out = _Out(self.stage.totals.rejected)
            self.stage.side.mark_idle(due, out)
            for m in out.messages:
                await self.outputs[m.topic].send(key=m.key, value=m.value, partition=m.partition)

    async def _watch_restore(self) -> None:
        """Seek a stalled restore of the gate-state table again, or stop the process (restore_watch.py)."""
        recovery, consumer = self.app.tables.recovery, self.app.consumer
        started = recovery._recovery_started_at if recovery.in_recovery else None
        try:
            stalled = self.restore.check(
                time.monotonic(), started, recovery.active_remaining(), recovery._active_events_received_at
            )
        except RestoreStalledError as exc:
            self._fail(exc)
            return
        if not stalled:
            return
        left = await self._records_left(stalled)
        done = [tp for tp in stalled if left.get(tp) == 0]
        for tp in done:  # only offsets without a record are left (transaction markers): nothing more will come
            recovery.active_offsets[tp] = recovery.active_highwaters[tp]
        if done:
            self.log.warning(
                "gate state restore: no record left to read, the rest are offsets without one; restored",
                partitions=[tp.partition for tp in done],
                offsets=[recovery.active_offsets[tp] for tp in done],
            )
        offsets = {tp: max(0, recovery.active_offsets.get(tp) or 0) for tp in stalled if tp not in done}
        if not offsets:
            return
        self.log.warning(
            "gate state restore stalled; seeking again",
            partitions=[tp.partition for tp in offsets],
            offsets=list(offsets.values()),
            records_left=[left.get(tp) for tp in offsets],
            attempt=self.restore.seeks,
            flow_active=consumer.flow_active,
            flow_control_active=self.app.flow_control.is_active(),
        )
        await consumer.seek_wait(offsets)  # as Faust's restore seeks: in the consumer's thread, read offsets reset

    async def _records_left(self, stalled: list[Any]) -> dict[Any, int]:
        """How many records each stalled partition holds after the last one the restore applied, up to the
        highwater it waits for (read with the agent's group-less reader, idle while Faust restores; a partition
        that could not be read is absent)."""
        recovery = self.app.tables.recovery
        left: dict[Any, int] = {}
        try:
            reader = await self.skips.reader()
            for tp in stalled:
                applied = recovery.active_offsets.get(tp)
                start = 0 if applied is None else max(0, applied + 1)
                end = recovery.active_highwaters[tp] + 1
                part = TopicPartition(tp.topic, tp.partition)
                left[tp] = len(await read_range(reader, part, start, end, RESTORE_READ_TIMEOUT_S))
        except (KafkaError, TimeoutError) as exc:  # then only seeking again can help
            self.log.warning("gate state restore: could not read what is left", error=f"{type(exc).__name__}: {exc}")
        return left

    def _fail(self, exc: BaseException, what: str = "") -> None:
        """Stop the process with exit 1: the shutdown a supervisor's SIGTERM starts (the one every test stops a gate
        process with), from outside the task that failed; ``run_faust_gate`` then sees ``failed``."""
        self.failed.append(exc)
        self.log.error("worker failed; stopping", error=f"{what}{type(exc).__name__}: {exc}")
        os.kill(os.getpid(), signal.SIGTERM)

    async def _restore_watch_loop(self) -> None:
        """``_watch_restore`` every second for the process's life: Faust starts its timers only after the first
        restore, which is the one a stall would keep them from."""
        while not self.failed:
            await asyncio.sleep(1.0)
            try:
                await self._watch_restore()
            except Exception as exc:  # a watch that fails must not take the process down; say so and go on
                self.log.warning("gate state restore watch failed", error=f"{type(exc).__name__}: {exc}")

    async def _read_back(self, q: int) -> None:
        wanted = self.stage.wanted(q)
        if wanted:
            began = time.monotonic()
            self.stage.supply(q, await read_offsets(await self.skips.reader(), self.topics.panes, {q: wanted}))
            seconds = round(time.monotonic() - began, 3)
            self.log.info("partials read back", partition=q, partials=len(wanted), seconds=seconds)
        self.ready.add(q)

    async def _revoked(self, sender: Any, revoked: Any, **_kwargs: Any) -> None:
        self._forget()  # the table is the state; the next owner (maybe this one) rebuilds from it

    async def _assigned(self, sender: Any, assigned: Any, **_kwargs: Any) -> None:
        self._forget()
        if self._restore_task is None:
            self._restore_task = asyncio.ensure_future(self._restore_watch_loop())
        forwarded = sorted(tp.partition for tp in assigned if tp.topic == self.side_topics.forwarded)
        await self.stale.assigned(await self.skips.reader(), self.side_topics.forwarded, forwarded)
        owned = sorted(tp.partition for tp in assigned if tp.topic == self.topics.panes)
        self.log.info("partitions assigned", partitions=owned, panes=owned, engine="faust")

    def _forget(self) -> None:
        self.stage.forget()
        self.ready.clear()
        self.idle.forget()
        self.skips.forget()
        if self.stage.side is not None:  # what was said of every side partition starts afresh
            parts = range(self.topics.partitions)
            self.stage.side.forget([(topic, p) for topic in self.side_topics.kinds for p in parts])

    async def _shutdown(self, sender: Any, **_kwargs: Any) -> None:
        if self._restore_task is not None:
            self._restore_task.cancel()
        await self.metrics.exporter.stop()
        await self.skips.stop()

    async def _serve_metrics(self) -> None:
        host, port = self.options.metrics_host, self.options.metrics_port
        assert port is not None  # only started with --metrics-port
        bound = await self.metrics.exporter.start(host, port, self.metrics.readiness)
        self.log.info("metrics listening", host=host, port=bound, engine="faust")

    async def _behind(self, owned: list[Any]) -> dict[tuple[str, int], int | None]:
        """How many messages each of the ``owned`` partitions holds after the last one the agent handled (before
        it handled any: after the consumer's position; None: not known yet)."""
        ends = await self.app.consumer.highwaters(*owned) if owned else {}
        out: dict[tuple[str, int], int | None] = {}
        for tp in owned:
            at = self.skips.expected.get((tp.topic, tp.partition))
            if at is None:
                at = await self.app.consumer.position(tp)
            out[tp.topic, tp.partition] = None if at is None else max(0, ends[tp] - at)
        return out

    async def _check_caught_up(self) -> None:
        """--metrics-port: each partition's lag, and whether all are read to their end (/readyz)."""
        read = (self.topics.panes, *self.side_topics.inputs)
        self.metrics.behind(await self._behind([tp for tp in self.app.consumer.assignment() if tp.topic in read]))

    async def _report(self) -> None:
        _log_totals(self.log, self.stage.totals, final=False, waiting=self.stalls.check(self.stage.inboxes()))


@dataclasses.dataclass(slots=True)
class _Out:
    """What ``SideStage`` collects (``worker/side.py``'s ``Out``)."""

    rejected: Counter[str]
    messages: list[Outgoing] = dataclasses.field(default_factory=list)


def run_faust_gate(plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any) -> int:
    """Run the Faust gate worker until SIGTERM / SIGINT (exit 0) or a failure (exit 1)."""
    try:
        import faust
    except ImportError:
        raise UserError(
            "--gate-engine faust needs faust-streaming (installed with the dev extra: pip install 'gatekeeper[dev]'); "
            "or use the default engine"
        ) from None

    gate = FaustGate(plan, settings, options, log)
    log.info(
        "worker starting",
        app_id=options.app_id,
        engine="faust",
        faust_app_id=gate.app.conf.id,
        plan_version=plan.plan_version,
        gates=len(gate.stage.keys),
        changelog=state_changelog_topic(options.app_id),
    )
    worker = faust.Worker(gate.app, loglevel=options.log_level.upper(), quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        _log_totals(log, gate.stage.totals, final=True)
    return 1 if gate.failed else 0


def _log_totals(log: Any, totals: Totals, *, final: bool, waiting: dict[str, Any] | None = None) -> None:
    log.info(
        "worker totals" if final else "worker progress",
        engine="faust",
        records=0,
        applied=0,
        late=0,
        messages=totals.messages,
        partials=totals.partials,
        watermarks=totals.watermarks,
        duplicates=totals.duplicates,
        conflicts=totals.conflicts,
        late_partials=totals.late_partials,
        state_writes=totals.writes,
        state_bytes=totals.write_bytes,
        decisions=dict(sorted(totals.decided.items())),
        rejected=dict(sorted(totals.rejected.items())),
        **({} if final else {"waiting": waiting or {}}),
    )
