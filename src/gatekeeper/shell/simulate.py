"""``gatekeeper simulate``: a scenario's telemetry as JSON lines, to a file and/or to the telemetry topic.

The simulator (``gatekeeper.sim.write_scenario``) runs in a worker thread and hands chunks of lines through
a small bounded queue to an aiokafka producer (acks=all, idempotent, batched with a short linger), so
generation and producing overlap and memory stays bounded. With ``--keyed`` each record's key is its
``region/tier``, cut out of the JSON bytes with a regex (no full decode); records without both fields
(some of the injected malformed ones) go unkeyed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gatekeeper.core.timefmt import format_ms
from gatekeeper.errors import UserError
from gatekeeper.shell.files import open_out
from gatekeeper.shell.kafka_admin import describe_error, ensure_topics
from gatekeeper.shell.kafka_settings import KafkaSettings, kafka_settings
from gatekeeper.shell.side_files import OPTIONS
from gatekeeper.sim.scenario import Scenario, ScenarioError, load_scenario
from gatekeeper.sim.side_inputs import FILES, side_lines
from gatekeeper.sim.writer import SimSummary, write_scenario

LINGER_MS = 20
BATCH_BYTES = 512 * 1024
QUEUE_CHUNKS = 4  # chunks (about an hour of event time each) between the generator and the producer
POLL_S = 0.2

_REGION = re.compile(rb'"region"\s*:\s*"([^"\\]{1,64})"')
_TIER = re.compile(rb'"tier"\s*:\s*"([^"\\]{1,64})"')


def record_key(line: bytes) -> bytes | None:
    """``b"region/tier"`` of a JSON telemetry record, found without decoding it; None if either is absent."""
    region = _REGION.search(line)
    tier = _TIER.search(line) if region else None
    return region.group(1) + b"/" + tier.group(1) if region and tier else None


class _StoppedError(Exception):
    """The producer side gave up; the generator thread stops writing."""


class _Sink:
    """The file ``write_scenario`` writes into: the output file and/or a bounded queue the producer drains."""

    def __init__(self, out: BinaryIO | None, chunks: queue.Queue[bytes | None], stop: threading.Event) -> None:
        self.out, self.chunks, self.stop = out, chunks, stop

    def write(self, data: bytes) -> int:
        if self.out is not None:
            self.out.write(data)
        self.put(data)
        return len(data)

    def put(self, item: bytes | None) -> None:
        while not self.stop.is_set():
            try:
                self.chunks.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue
        raise _StoppedError


def _next_chunk(chunks: queue.Queue[bytes | None], stop: threading.Event) -> bytes | None:
    while not stop.is_set():
        try:
            return chunks.get(timeout=POLL_S)
        except queue.Empty:
            continue
    return None


async def produce_chunks(
    settings: KafkaSettings,
    topic: str,
    next_chunk: Callable[[], Awaitable[bytes | None]],
    *,
    keyed: bool,
    producer_kwargs: dict[str, Any] | None = None,
) -> int:
    """Produce every line of the newline-terminated chunks ``await next_chunk()`` returns (until None) to
    ``topic``; returns the number of records, all acknowledged by the in-sync replicas."""
    kwargs = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": LINGER_MS,
        "max_batch_size": BATCH_BYTES,
    }
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), **(kwargs | (producer_kwargs or {})))
    sent = 0
    try:
        await producer.start()
        in_flight: list[asyncio.Future[Any]] = []
        while (data := await next_chunk()) is not None:
            lines = data.split(b"\n")
            if not lines[-1]:
                lines.pop()
            futures = [await producer.send(topic, line, key=record_key(line) if keyed else None) for line in lines]
            await asyncio.gather(*in_flight)  # the previous chunk: errors surface, memory stays bounded
            in_flight = futures
            sent += len(lines)
        await asyncio.gather(*in_flight)
    except KafkaError as exc:
        raise UserError(f"producing to {topic} on {settings.bootstrap} failed: {describe_error(exc)}") from None
    finally:
        await producer.stop()
    return sent


async def _side_to_kafka(scenario: Scenario, settings: KafkaSettings) -> list[str]:
    """The scenario's side inputs to their topics, before its telemetry (so a worker reading both from the start
    is likelier to have them before its gates' event time passes them); one line per topic written."""
    names = settings.topics
    topics = {"incident": names.incidents, "approval": names.approvals, "business": names.business_metrics}
    written = []
    for kind, lines in side_lines(scenario).items():
        await ensure_topics(settings, {topics[kind]: {}})
        chunks: list[bytes | None] = [None, b"\n".join(lines) + b"\n"]
        count = await produce_chunks(settings, topics[kind], partial(_pop, chunks), keyed=False)
        written.append(f"{count} {kind} records to topic {topics[kind]}")
    return written


async def _pop(chunks: list[bytes | None]) -> bytes | None:
    return chunks.pop()


async def _to_kafka(scenario: Scenario, settings: KafkaSettings, out: BinaryIO | None, keyed: bool) -> SimSummary:
    for line in await _side_to_kafka(scenario, settings):
        print(line, file=sys.stderr)
    topic = settings.topics.telemetry
    await ensure_topics(settings, {topic: {}})
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()
    sink = _Sink(out, chunks, stop)

    def generate() -> SimSummary:
        try:
            return write_scenario(scenario, cast(BinaryIO, sink))
        finally:
            if not stop.is_set():
                sink.put(None)

    generator = asyncio.ensure_future(asyncio.to_thread(generate))
    try:
        await produce_chunks(settings, topic, lambda: asyncio.to_thread(_next_chunk, chunks, stop), keyed=keyed)
        return await generator
    finally:
        stop.set()  # on any failure the generator thread stops at its next write
        await asyncio.wait([generator])
        if not generator.cancelled():
            generator.exception()  # retrieved: on failure, the producer's error is the one to report


def _report(scenario: Scenario, summary: SimSummary, seconds: float, where: str) -> str:
    rate = summary.total / seconds if seconds > 0 else float("inf")
    lines = [
        f"scenario {scenario.name}: {summary.total:,} records ({summary.valid:,} events, "
        f"{summary.malformed:,} malformed injected, {summary.late:,} delivered late) in {seconds:.1f} s, "
        f"{rate:,.0f} records/s -> {where}"
    ]
    if summary.first_ts_ms is not None and summary.last_ts_ms is not None:
        lines.append(f"  event time {format_ms(summary.first_ts_ms)} .. {format_ms(summary.last_ts_ms)}")
    width = max((len(f"{r}/{t}") for r, t in summary.events), default=0)
    for (region, tier), count in sorted(summary.events.items()):
        lines.append(f"  {f'{region}/{tier}':<{width}}  {count:>12,}")
    return "\n".join(lines)


def run_simulate(args: argparse.Namespace) -> int:
    """Entry point of ``gatekeeper simulate`` (flags defined in gatekeeper.shell.cli)."""
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise UserError(str(exc)) from None
    use_kafka = bool(getattr(args, "bootstrap", None))
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retried warnings are noise; failures raise
    if args.keyed and not use_kafka:
        raise UserError("--keyed only applies when producing to Kafka (--bootstrap)")
    settings = kafka_settings(args) if use_kafka else None
    output = args.output if args.output is not None or use_kafka else "-"
    began = time.perf_counter()
    with open_out(output) as out:
        if settings is None:
            assert out is not None
            summary = write_scenario(scenario, out)
        else:
            summary = asyncio.run(_to_kafka(scenario, settings, out, args.keyed))
    targets = [] if output is None else ["stdout" if output == "-" else output]
    if settings is not None:
        keyed = "keyed by region/tier" if args.keyed else "unkeyed"
        targets.append(f"topic {settings.topics.telemetry} on {settings.bootstrap} ({keyed})")
    print(_report(scenario, summary, time.perf_counter() - began, " and ".join(targets)), file=sys.stderr)
    if getattr(args, "side_dir", None):
        for line in write_side_files(scenario, Path(args.side_dir)):
            print(line, file=sys.stderr)
    return 0


def write_side_files(scenario: Scenario, directory: Path) -> list[str]:
    """The scenario's incidents, approvals and business metrics as replay's side files in ``directory``; one
    line per file written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for kind, lines in side_lines(scenario).items():
            path = directory / FILES[kind]
            path.write_bytes(b"".join(line + b"\n" for line in lines))
            written.append(f"{len(lines)} {kind} records to {path} (replay --{OPTIONS[kind]} {path})")
    except OSError as exc:
        raise UserError(f"--side-dir {directory}: cannot write: {exc.strerror or exc}") from None
    return written
