"""(d) of bench/kafka_bench.py: the decision delay of a worker, from a stream in which every gate breaches
its ceiling in the first hour, timed per closing event (produce -> decision readable, and the hook header).

The events go round-robin to the partitions (unkeyed, the harder case: every gate's records on every
partition), so a window closes only when the *last* partition's watermark passes its end; the closing event
is found offline with the same two stages (core/aggregate.py, core/merge.py), one source per partition. The
worker runs with a long ``--idle-after`` so that no partition is declared idle while the bench pauses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.kafka_measure import (
    HOOK_HEADER,
    PARTITIONS,
    PLAN,
    BenchError,
    Delays,
    Process,
    committed_on,
    find_group,
    known_groups,
    running,
)
from gatekeeper.core import decision as decisions
from gatekeeper.core.aggregate import Aggregator, SourceState
from gatekeeper.core.decision import Decision
from gatekeeper.core.merge import GateInbox, Merger
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import TelemetryDecoder
from gatekeeper.planfile import load_plan
from gatekeeper.shell.kafka_admin import admin_client, ensure_topics, gatekeeper_topics
from gatekeeper.shell.kafka_settings import KafkaSettings

START_S = 1_760_832_000.0  # 2025-10-19T00:00:00Z, as bench/telemetry_file.py


def breach_stream(plan: Plan, rate_per_min: float, seed: int) -> list[bytes]:
    """Every gate of the plan at ``rate_per_min`` for 68 min with 10 % errors: each fails (and holds) when
    its first hour closes, i.e. at its first event 5 min (the lateness) past the hour. Time order."""
    rng = np.random.default_rng(seed)
    encoder = msgspec.json.Encoder()
    span = 68 * 60.0
    records: list[tuple[float, bytes]] = []
    for region, _phase, tier in plan.gates():
        n = int(rng.poisson(rate_per_min * span / 60))
        ts = START_S + np.sort(rng.random(n)) * span
        status = np.where(rng.random(n) < 0.10, 503, 200).tolist()
        latency = np.round(rng.lognormal(np.log(18.0), 0.3, n), 3).tolist()
        for t, s, lat in zip(ts.tolist(), status, latency, strict=True):
            record = {"ts": round(t, 3), "region": region, "tier": tier.name, "latency_ms": lat, "status": s}
            records.append((t, encoder.encode(record)))
    records.sort(key=lambda item: item[0])
    return [line for _t, line in records]


def closing_events(plan: Plan, lines: list[bytes], block: int = 1000) -> list[tuple[int, list[Decision]]]:
    """(index, decisions) of every event after which the two stages decide, the events spread round-robin
    over the partitions as ``partition_of`` says (each partition a source of stage 1): the event that moves
    the *last* partition's watermark past a window's end. Found block by block (a block that decides is
    replayed one event at a time from a copy of the state taken before it)."""
    ev = plan.evaluation
    keys = [(region, tier.name) for region, _phase, tier in plan.gates()]
    aggregator = Aggregator([f"{r}/{t}" for r, t in keys], ev.pane, ev.lateness)
    sources = [f"p{p}" for p in range(PARTITIONS)]
    merger = Merger(plan, sources)
    decoder = TelemetryDecoder(keys)
    state = ([aggregator.start(s) for s in sources], merger.start_all())

    def step(state: tuple[list[SourceState], dict[str, GateInbox]], first: int, chunk: list[bytes]) -> list[Decision]:
        parts, inboxes = state
        out: list[Decision] = []
        for p in range(PARTITIONS):  # per partition, its records in order (the bench produces them in order)
            mine = [line for i, line in enumerate(chunk, first) if partition_of(i) == p]
            if mine:
                parts[p], partials, mark = aggregator.fold(parts[p], decoder.decode(mine))
                out += merger.apply(inboxes, [*partials, mark])
        return out

    found: list[tuple[int, list[Decision]]] = []
    for start in range(0, len(lines), block):
        chunk = lines[start : start + block]
        saved = copy.deepcopy(state)
        if not step(state, start, chunk):
            continue
        state = saved
        for i, line in enumerate(chunk, start):
            out = step(state, i, [line])
            if out:
                found.append((i, out))
    return found


def partition_of(index: int) -> int:
    """Where the bench puts the ``index``-th event: round-robin, as an unkeyed producer spreads records."""
    return index % PARTITIONS


def identity(d: Decision) -> tuple[str, str, str, str]:
    return d.region, d.tier, d.decision, d.at


class DecisionReader:
    """Reads the decisions topic from the beginning in the background; remembers when each arrived."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.seen: dict[tuple[str, str, str, str], tuple[float, float | None]] = {}  # read at, hook time
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(self.settings.topics.decisions, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                now_ms = time.time() * 1000
                for records in batches.values():
                    for r in records:
                        hook = dict(r.headers or ()).get(HOOK_HEADER)
                        d = decisions.decode(r.value)
                        self.seen.setdefault(identity(d), (now_ms, float(hook) if hook else None))
                if batches:
                    self.arrived.set()
        finally:
            await consumer.stop()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[DecisionReader]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, wanted: list[tuple[str, str, str, str]], seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while not all(w in self.seen for w in wanted) and time.perf_counter() < deadline:
            if self._task is not None and self._task.done():
                self._task.result()  # the reader died: raise its error
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.perf_counter()))


async def wait_committed(settings: KafkaSettings, proc: Process, count: int, seconds: float, ignore: set[str]) -> bool:
    deadline = time.perf_counter() + seconds
    async with admin_client(settings) as admin:
        group = None
        while time.perf_counter() < deadline:
            proc.check_alive()
            group = group or await find_group(admin, settings.topics.telemetry, ignore)
            if group and await committed_on(admin, group, settings.topics.telemetry) >= count:
                return True
            await asyncio.sleep(0.2)
    return False


async def measure_delay(settings: KafkaSettings, worker: list[str], workdir: Path, args: argparse.Namespace) -> Delays:
    """(d) against a fresh worker run as ``worker`` (its command line) in ``workdir``."""
    plan = load_plan(PLAN)
    lines = breach_stream(plan, args.delay_rate, seed=7)
    closing = closing_events(plan, lines)
    if not closing:
        raise BenchError("the breach stream closes no window: nothing to time")
    await ensure_topics(settings, gatekeeper_topics(settings))
    ignore = await known_groups(settings)
    result = Delays(expected=sum(len(out) for _i, out in closing), closing_events=len(closing))
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), acks="all", linger_ms=0)
    await producer.start()
    topic = settings.topics.telemetry

    async def send(first: int, batch: list[bytes]) -> None:
        futures = [await producer.send(topic, line, partition=partition_of(i)) for i, line in enumerate(batch, first)]
        await asyncio.gather(*futures)

    try:
        with running("delay worker", worker, workdir) as proc:
            reader = DecisionReader(settings)
            async with reader.reading():
                first = closing[0][0]
                await send(0, lines[:first])
                if not await wait_committed(settings, proc, first, args.phase_seconds, ignore):
                    print(
                        f"  (d): the worker did not commit the first {first:,} events in time",
                        file=sys.stderr,
                    )
                done = first
                for index, out in closing:
                    await send(done, lines[done:index])
                    await asyncio.sleep(1.0)  # about one closing event per second, the worker idle
                    proc.check_alive()
                    began = time.time() * 1000
                    await send(index, [lines[index]])
                    done = index + 1
                    wanted = [identity(d) for d in out]
                    await reader.wait_for(wanted, args.delay_timeout)
                    for w in wanted:
                        if w not in reader.seen:
                            result.missing += 1
                            continue
                        read_ms, hook_ms = reader.seen[w]
                        result.upper_ms.append(read_ms - began)
                        if hook_ms is not None:
                            result.exact_ms.append(read_ms - hook_ms)
                expected = {identity(d) for _i, out in closing for d in out}
                others = sorted(set(reader.seen) - expected)
                result.unexpected, result.others = len(others), ["/".join(o) for o in others[:3]]
    finally:
        await producer.stop()
    return result
