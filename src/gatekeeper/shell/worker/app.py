"""The Faust app of ``gatekeeper worker``: two agents, a flush timer and the ``gate-state`` table.

- ``route`` reads the telemetry topic; ``gates`` reads ``<app-id>-gates`` (telemetry re-keyed by
  ``region/tier``). Both iterate ``stream.noack().events()`` and hand every record to
  ``runtime.Runtime``, which buffers it per topic partition (``processor.Processor``) and keeps each
  partition's sequence whole (Faust can skip records right after an assignment; see ``runtime``). A
  partition whose buffer reaches ``--batch`` records is flushed at once; the timer (every
  ``--flush-interval`` s) flushes the others.
- A flush, under one ``asyncio.Lock`` shared by the agents and the timer: route / dead-letter / apply
  (``Processor.flush``), send every outgoing message (forwards, dead letters, decisions, breaches) and
  await each delivery, write the touched gates to the table, then ack the records. An offset is therefore
  committed only after the decisions and the gate states that include it are in Kafka.
- The table is created with ``use_partitioner=True``: its changelog partition is the key's murmur2
  partition, which is the gate's home partition. Faust otherwise takes the partition from the *current
  event* and refuses writes outside one (``faust/tables/base.py``, ``Collection.partition_for_key`` /
  ``_send_changelog``); with the partitioner the timer can persist state and ack like the agents do, so
  there is no "applied but not persisted" window.
- Messages go out through ``app.producer.send`` (aiokafka's accumulator, ~30 us each) rather than
  ``Topic.send``, whose per-message overhead (FutureMessage, sensors, ``faust/topics.py``
  ``publish_message``) measured ~0.7 ms: 1.4 s per flush of 2000 forwards.
- Delivery is at least once, with deterministic decision ids: a crash re-delivers the records after the
  last commit; the per-gate applied offsets skip those already in the table, and those not yet there are
  applied again to the same state, giving the same decisions with the same ids (consumers dedupe by id).
- Store: ``memory://`` (default) rebuilds the table from its changelog at every start; ``rocksdb://``
  (``--store``, needs ``faust-streaming[rocksdict]``) keeps it on disk with its changelog offsets, for
  faster restarts with many gates. The changelog is the source of truth either way.
- Stream clock: per gate engines, plus the worker's newest event time applied only when caught up
  (see ``processor``). Unlike replay, whose clock is the newest event time of the whole input, a worker
  sees its own partitions only; the two differ only for gates that stop sending while others go on, at
  the very end of the input (a stall or release replay reports and a worker owning fewer gates may not).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from typing import Any

import structlog

from gatekeeper.core.plan import Plan
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker.cli import WorkerOptions
from gatekeeper.shell.worker.processor import Processor, Topics
from gatekeeper.shell.worker.runtime import Runtime
from gatekeeper.shell.worker.topics import TABLE_NAME, gates_topic


def configure_logging(options: WorkerOptions) -> Any:
    """structlog to stderr (console or JSON lines); returns the worker's logger."""
    level = getattr(logging, options.log_level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if options.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("gatekeeper.worker")


class RepeatFilter(logging.Filter):
    """Lets a log message (same logger, level and format string) through at most once per ``interval`` s,
    noting how many were held back. aiokafka logs a failed connection about every millisecond while a broker
    is down (160,000 lines for a 30 s outage); this keeps one line per kind and interval."""

    def __init__(self, interval: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval, self._clock = interval, clock
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: Counter[tuple[str, int, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] += 1
            return False
        self._last[key] = now
        if held := self._held.pop(key, 0):
            record.msg = f"{record.msg} [{held} more like it in the last {self.interval:g} s not logged]"
        return True


def throttle_client_logs(interval: float = 10.0) -> RepeatFilter:
    """Attach one ``RepeatFilter`` to aiokafka's loggers (each module logs on its own logger)."""
    repeat = RepeatFilter(interval)
    names = [n for n in list(logging.root.manager.loggerDict) if n == "aiokafka" or n.startswith("aiokafka.")]
    for name in {"aiokafka", *names}:
        logging.getLogger(name).addFilter(repeat)
    return repeat


def _credentials(settings: KafkaSettings) -> Any:
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = settings.aiokafka_kwargs().get("ssl_context")
    if protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # the settings validator requires it
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def build_app(plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any) -> tuple[Any, Runtime]:
    """The Faust app and its runtime (call with the event loop the worker will run set as current)."""
    import faust

    names = settings.topics
    app = faust.App(
        options.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=names.partitions,
        topic_replication_factor=names.replication,
        store=options.store,
        processing_guarantee="at_least_once",
        web_enabled=False,
        datadir=options.data_dir,
        autodiscover=False,
        stream_wait_empty=False,  # buffered records stay unacked at shutdown: they are read again next time
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout,
    )
    table = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=names.partitions, use_partitioner=True)
    topics = Topics(
        names.telemetry,
        gates_topic(options.app_id),
        names.decisions,
        names.breaches,
        names.dlq,
        names.partitions,
    )

    def warn(message: str) -> None:
        log.warning(message)

    processor = Processor(plan, topics, table.get, batch=options.batch, warn=warn)
    runtime = Runtime(app, processor, table, settings, options, log)
    telemetry = app.topic(topics.telemetry, key_type=bytes, value_type=bytes)
    forwarded = app.topic(topics.gates, key_type=bytes, value_type=bytes)

    async def consume(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await runtime.on_event(manual, event)

    async def route(stream: Any) -> None:
        await consume(stream)

    async def gates(stream: Any) -> None:
        await consume(stream)

    app.agent(telemetry, name="route")(route)
    app.agent(forwarded, name="gates")(gates)

    async def tick() -> None:
        await runtime.tick()

    async def clock() -> None:
        await runtime.clock_tick()

    app.timer(options.flush_interval, name="flush")(tick)
    app.timer(options.clock_interval, name="clock")(clock)

    async def assigned(_sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        await runtime.on_assigned(args[0])

    async def revoked(_sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        await runtime.on_revoked(args[0])

    app.on_partitions_assigned.connect(assigned, weak=False)
    app.on_partitions_revoked.connect(revoked, weak=False)
    return app, runtime


def run_worker(plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any) -> int:
    """Run until SIGTERM / SIGINT (exit 0) or a failure (exit 1)."""
    import faust

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, runtime = build_app(plan, settings, options, log)
    throttle_client_logs()
    faust_level = "debug" if options.log_level == "debug" else "warning"
    worker = faust.Worker(app, loop=loop, loglevel=faust_level, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # it writes cursor escapes to stdout even when that is not a terminal
    log.info(
        "worker starting",
        app_id=options.app_id,
        plan_version=plan.plan_version,
        gates=len(runtime.processor.keys),
        telemetry=settings.topics.telemetry,
        decisions=settings.topics.decisions,
        batch=options.batch,
        store=options.store,
    )
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    runtime.report(final=True)
    return 1 if runtime.failed is not None else code
