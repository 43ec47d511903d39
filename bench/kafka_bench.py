"""Throughput and decision delay through a real Kafka broker, all in one bounded run.

    python bench/kafka_bench.py                        # a local JVM broker via scripts/local_kafka.py
    python bench/kafka_bench.py --events 100000 --phase-seconds 60 --phases acd
    python bench/kafka_bench.py --bootstrap HOST:PORT  # an existing cluster (topics bench-<run>-*, deleted after)
    python bench/kafka_bench.py --worker stub          # (c)/(d) against the in-file reference worker

What it does:

0. Writes N telemetry events (default 500k) with bench/telemetry_file.py: the 24 gates of the plan over
   ``--days`` (default 2) of event time, in time order, and produces them keyed ``region/tier`` (aiokafka
   ``send()``, acks=all) to a fresh 8-partition telemetry topic. The backlog is complete before any
   consumer starts, so (a), (b) and (c) all read the same records at full speed.
1. (a) raw aiokafka: one consumer, no group, all partitions assigned, ``getmany`` until N records; events/s
   from the first ``getmany`` call to the last batch (only the loop: no decoding).
2. (b) naive Faust: bench/naive_faust_app.py as a subprocess (JSON decode, Table read-modify-write and
   ``numpy.percentile`` per event).
3. (c) the gatekeeper worker: ``python -m gatekeeper.shell.cli worker ... --app-id bench-<run>-worker`` as a
   subprocess (``--worker-cmd`` overrides the command line). ``--worker stub`` runs instead a reference
   built into this file: ``core.Engine`` behind one plain aiokafka consumer (batch in, decisions out, commit),
   without the worker's routing, state changelog or decoding child; it is one process with one engine for all
   partitions, so while catching up on a backlog it may report stalls a real worker would not.
   (b) and (c) are measured the same way, from outside the process: the consumer group's committed offsets
   on the telemetry topic, polled every 50 ms (the group is found as the one that commits offsets on this
   run's topic, so the worker's group id need not be known). Each *change* of the committed sum is a commit
   the process made after processing that many events; the rate is (events committed between the first
   and the last commit) / (time between them). Start-up, topic creation and rebalance happen before the
   first commit and are excluded; the error is about one poll interval at each end plus however long the
   process sits on processed events before committing them ((b), Faust: at most ``broker_commit_interval``,
   2.8 s by default, or every ``broker_commit_every`` = 10 000 events, whichever comes first; (c): after
   every poll, once its decisions and gate states are acknowledged), so each
   figure is reported with the number of commits and the seconds it spans, and with the CPU the process
   tree used over that span (psutil; near 100 % of a core: CPU-bound). A phase that does not finish within
   ``--phase-seconds`` is reported as a partial rate. The input is keyed, so the gatekeeper worker applies
   every record on the partition it reads it from (no forwarding through ``<app-id>-gates``), and its
   committed telemetry offsets are its processed events.
4. (d) decision delay, with a fresh worker (its own ``--app-id``, so no gate state from (c)) on fresh topics:
   a telemetry stream in which every gate breaches its error-rate ceiling in the first hour is replayed
   offline through ``core.Engine`` to find the *closing* events (the event after which the engine emits
   decisions). Everything before the first closing event is produced in bulk; once the worker has committed
   it, each closing event is produced on its own, about one per second, and the bench waits until the
   decisions it closes are readable on the decisions topic. Reported:
   * upper bound: wall time from just before producing the closing event to reading each of its decisions
     (includes the producer round trip, the worker's fetch, processing and produce, and the reader's fetch);
   * exact, when the worker provides the hook: each decision record carries the header
     ``gk-closed-wall-ms`` = the wall-clock time (epoch ms, decimal ASCII) at which the worker consumed the
     telemetry record that moved the gate's watermark past the window end (or hold end, or stall deadline)
     the decision is about; delay = time the decision was read - that header.

The run is bounded (``--time-limit``, default 900 s) and always stops its subprocesses and its broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gatekeeper.core import decision as decisions
from gatekeeper.core.decision import Decision
from gatekeeper.core.engine import Engine
from gatekeeper.core.plan import Plan
from gatekeeper.shell.kafka_admin import admin_client, ensure_topics, gatekeeper_topics
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics
from gatekeeper.shell.planfile import UserError, load_plan
from gatekeeper.shell.simulate import produce_chunks, record_key

REPO = Path(__file__).resolve().parent.parent
PLAN = REPO / "config" / "rollout-plan.yaml"
PYTHON = sys.executable
HOOK_HEADER = "gk-closed-wall-ms"
POLL_S = 0.05
PARTITIONS = 8
START_S = 1_760_832_000.0  # 2025-10-19T00:00:00Z, as bench/telemetry_file.py
WORKER_CMD = (
    "{python} -m gatekeeper.shell.cli worker --plan {plan} --bootstrap {bootstrap} "
    "--telemetry-topic {telemetry} "
    "--decisions-topic {decisions} --dlq-topic {dlq} --breaches-topic {breaches} --app-id {app_id}"
)
STUB_CMD = (
    "{python} {bench} --stub-worker --plan {plan} --bootstrap {bootstrap} --telemetry-topic {telemetry} "
    "--decisions-topic {decisions} --group {app_id}"
)


class BenchError(RuntimeError):
    """A phase could not run (its process died, a topic could not be read, ...)."""


# -- results -------------------------------------------------------------------------------------------------
@dataclass
class Rate:
    """Events over seconds, from ``commits`` observations (0: measured in-process)."""

    events: int
    seconds: float
    done: int  # events processed in all (of ``total``)
    total: int
    commits: int = 0
    startup_s: float | None = None  # process start to first commit
    peak_rss_mb: float | None = None
    cpu_share: float | None = None  # CPU seconds of the process tree per wall second, between the commits
    with_startup: bool = False  # a single commit: measured from the process start (a lower bound)

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    def text(self) -> str:
        parts = [f"{self.per_s:>12,.0f} events/s"]
        if self.with_startup:
            parts.append(
                f"(LOWER BOUND: {self.events:,} events in {self.seconds:.1f} s from the process start, one commit)"
            )
        elif self.commits:
            parts.append(f"({self.events:,} events over {self.seconds:.1f} s between {self.commits} commits")
            parts[-1] += f", first commit {self.startup_s:.1f} s after start)" if self.startup_s is not None else ")"
        else:
            parts.append(f"({self.events:,} events in {self.seconds:.2f} s)")
        if self.done < self.total:
            parts.append(f"PARTIAL: {self.done:,} of {self.total:,} processed in the time allowed")
        if self.cpu_share is not None:
            parts.append(f"CPU {self.cpu_share:.0%} of a core")
        if self.peak_rss_mb is not None:
            parts.append(f"peak RSS {self.peak_rss_mb:,.0f} MB")
        return "  ".join(parts)


@dataclass
class Delays:
    upper_ms: list[float] = field(default_factory=list)
    exact_ms: list[float] = field(default_factory=list)
    expected: int = 0
    missing: int = 0
    unexpected: int = 0
    closing_events: int = 0
    others: list[str] = field(default_factory=list)  # a few of the unexpected decisions

    def text(self) -> str:
        lines = [
            f"{self.expected} decisions expected from {self.closing_events} closing events; "
            f"{self.missing} not seen in time, {self.unexpected} others"
            + (f" ({'; '.join(self.others)})" if self.others else "")
        ]
        for name, values in (
            ("upper bound (produce -> readable)", self.upper_ms),
            ("exact (hook)", self.exact_ms),
        ):
            if values:
                p50, p99 = np.percentile(values, [50, 99]).tolist()
                lines.append(
                    f"{name}: P50 {p50:,.1f} ms  P99 {p99:,.1f} ms  max {max(values):,.1f} ms  n={len(values)}"
                )
            else:
                lines.append(f"{name}: n/a" + (f" (the worker sets no {HOOK_HEADER} header)" if "hook" in name else ""))
        return "\n      ".join(lines)


@dataclass
class Results:
    events: int
    produce: Rate | None = None
    raw: Rate | None = None
    naive: Rate | str | None = None
    worker: Rate | str | None = None
    delay: Delays | str | None = None

    def render(self, worker_name: str) -> str:
        def show(value: Rate | Delays | str | None) -> str:
            return "not run" if value is None else value if isinstance(value, str) else value.text()

        out = [
            f"kafka_bench: {self.events:,} events, {PARTITIONS} partitions",
            f"  produce (aiokafka send, acks=all, keyed)  {show(self.produce)}",
            f"  (a) raw aiokafka consume                  {show(self.raw)}",
            f"  (b) naive Faust agent                     {show(self.naive)}",
            f"  (c) {worker_name:<37} {show(self.worker)}",
        ]
        c = self.worker.per_s if isinstance(self.worker, Rate) else None
        for label, base in (("(c)/(a)", self.raw), ("(c)/(b)", self.naive)):
            ratio = f"{c / base.per_s:.3f}" if c is not None and isinstance(base, Rate) else "n/a"
            out.append(f"  {label} = {ratio}")
        out.append(f"  (d) decision delay: {show(self.delay)}")
        return "\n".join(out)


# -- Kafka helpers -------------------------------------------------------------------------------------------
def settings_for(bootstrap: str, run: str, phase: str) -> KafkaSettings:
    prefix = f"bench-{run}-{phase}"
    topics = Topics(
        telemetry=f"{prefix}-telemetry",
        decisions=f"{prefix}-decisions",
        breaches=f"{prefix}-breaches",
        dlq=f"{prefix}-telemetry.dlq",
        partitions=PARTITIONS,
    )
    return KafkaSettings(bootstrap=bootstrap, topics=topics)


async def produce_file(settings: KafkaSettings, path: Path) -> Rate:
    """Produce every line of ``path`` keyed region/tier to the telemetry topic; returns the produce rate."""
    with path.open("rb") as source:

        async def next_chunk() -> bytes | None:
            return b"".join(source.readlines(4 << 20)) or None

        began = time.perf_counter()
        sent = await produce_chunks(settings, settings.topics.telemetry, next_chunk, keyed=True)
    return Rate(sent, time.perf_counter() - began, sent, sent)


async def raw_consume(settings: KafkaSettings, total: int, seconds: float) -> Rate:
    """(a): a consume-only loop over every partition (touching each value); events/s from the first
    ``getmany`` call to the batch that completes ``total``. aiokafka prefetches in the background, so the
    clock starts before the first fetch; its round trip is noise against hundreds of thousands of events."""
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topics.telemetry, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve the start offsets before the clock starts
        count, size = 0, 0
        began = last = time.perf_counter()
        while count < total and last - began < seconds:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                count += len(records)
                size += sum(len(r.value) for r in records)
            last = time.perf_counter()
    finally:
        await consumer.stop()
    if not count:
        raise BenchError("the raw consumer read nothing")
    return Rate(count, last - began, count, total)


async def committed_on(admin: Any, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


async def find_group(admin: Any, topic: str, ignore: set[str]) -> str | None:
    """The consumer group that has committed offsets on ``topic`` (this run's topics are fresh)."""
    for group, *_rest in await admin.list_consumer_groups():
        if group not in ignore and await committed_on(admin, group, topic) > 0:
            return str(group)
    return None


def cpu_s(proc: subprocess.Popen[bytes]) -> float:
    """User + system CPU seconds of the process and its children so far."""
    try:
        parent = psutil.Process(proc.pid)
        times = [p.cpu_times() for p in [parent, *parent.children(recursive=True)]]
    except psutil.Error:
        return 0.0
    return float(sum(t.user + t.system for t in times))


def rss_mb(proc: subprocess.Popen[bytes]) -> float:
    try:
        parent = psutil.Process(proc.pid)
        return float(sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])) / 1e6
    except psutil.Error:
        return 0.0


async def watch_commits(settings: KafkaSettings, proc: Process, total: int, seconds: float, ignore: set[str]) -> Rate:
    """Poll the committed offsets of the group reading the telemetry topic until ``total`` or the deadline."""
    topic = settings.topics.telemetry
    changes: list[tuple[float, int, float]] = []  # wall time, committed events, CPU seconds
    group, peak = None, 0.0
    deadline = time.perf_counter() + seconds
    async with admin_client(settings) as admin:
        while True:
            now = time.perf_counter()
            group = group or await find_group(admin, topic, ignore)
            committed = await committed_on(admin, group, topic) if group else 0
            if committed and (not changes or committed != changes[-1][1]):
                changes.append((now, committed, cpu_s(proc.popen)))
            peak = max(peak, rss_mb(proc.popen))
            if committed >= total or now > deadline:
                break
            proc.check_alive()
            await asyncio.sleep(POLL_S)
    if not changes:
        raise BenchError(f"{proc.name} committed nothing in {seconds:g} s{proc.log_tail()}")
    (t1, c1, cpu1), (tk, ck, cpuk) = changes[0], changes[-1]
    if len(changes) == 1:  # everything in one commit: too fast (or too few events) to time between commits
        return Rate(ck, tk - proc.started, ck, total, 1, None, peak, with_startup=True)
    share = (cpuk - cpu1) / (tk - t1) if tk > t1 else None
    return Rate(ck - c1, tk - t1, ck, total, len(changes), t1 - proc.started, peak, share)


# -- subprocesses --------------------------------------------------------------------------------------------
class Process:
    """A subprocess of this bench in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, cwd / f"{name.replace(' ', '-')}.log"
        self._log_file: IO[bytes] = self.log.open("wb")
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 15) -> str:
        self._log_file.flush()
        text = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        return f"; its log ({self.log}) ends:\n        " + "\n        ".join(text) if text else ""

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited with status {code}{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM its process group, SIGKILL after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        self._log_file.close()


@contextlib.contextmanager
def running(name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Iterator[Process]:
    proc = Process(name, argv, cwd, env)
    try:
        yield proc
    finally:
        proc.stop()


def worker_argv(template: str, settings: KafkaSettings, app_id: str, workdir: Path) -> list[str]:
    """The worker command line: ``template`` with {python} {bench} {plan} {bootstrap} {telemetry} {decisions}
    {dlq} {breaches} {app_id} {data_dir} filled in (each phase gets its own app id: no shared state)."""
    names = settings.topics
    fields = {
        "python": PYTHON,
        "bench": str(Path(__file__).resolve()),
        "plan": str(PLAN),
        "bootstrap": settings.bootstrap,
        "telemetry": names.telemetry,
        "decisions": names.decisions,
        "dlq": names.dlq,
        "breaches": names.breaches,
        "app_id": app_id,
        "data_dir": str(workdir / f"{app_id}-data"),
    }
    return [part.format(**fields) for part in template.split()]


async def known_groups(settings: KafkaSettings) -> set[str]:
    async with admin_client(settings) as admin:
        return {str(group) for group, *_rest in await admin.list_consumer_groups()}


# -- (d): decision delay -------------------------------------------------------------------------------------
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
    """(index, decisions) of every event after which the engine emits decisions, found block by block
    (a block that decides is replayed one event at a time from a copy of the engine taken before it)."""
    engine = Engine(plan)
    decoder = engine.decoder()
    found: list[tuple[int, list[Decision]]] = []
    for start in range(0, len(lines), block):
        chunk = lines[start : start + block]
        saved = copy.deepcopy(engine)
        if not engine.ingest(decoder.decode(chunk)):
            continue
        engine = saved
        for i, line in enumerate(chunk, start):
            out = engine.ingest(decoder.decode([line]))
            if out:
                found.append((i, out))
    return found


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


async def measure_delay(
    settings: KafkaSettings, template: str, workdir: Path, args: argparse.Namespace, run: str
) -> Delays:
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

    async def send(batch: list[bytes]) -> None:
        futures = [await producer.send(topic, line, key=record_key(line)) for line in batch]
        await asyncio.gather(*futures)

    try:
        with running("delay worker", worker_argv(template, settings, f"bench-{run}-delay", workdir), workdir) as proc:
            reader = DecisionReader(settings)
            async with reader.reading():
                first = closing[0][0]
                await send(lines[:first])
                if not await wait_committed(settings, proc, first, args.phase_seconds, ignore):
                    print(
                        f"  (d): the worker did not commit the first {first:,} events in time",
                        file=sys.stderr,
                    )
                done = first
                for index, out in closing:
                    await send(lines[done:index])
                    await asyncio.sleep(1.0)  # about one closing event per second, the worker idle
                    proc.check_alive()
                    began = time.time() * 1000
                    await send([lines[index]])
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


# -- the stub worker (reference for (c)/(d), and the hook) ---------------------------------------------------
async def stub_worker(args: argparse.Namespace) -> None:
    """core.Engine behind one plain aiokafka consumer (group ``--group``): decode a fetched batch, ingest it,
    produce its decisions (with the delay hook header), commit. One process, no Faust, no state store."""
    engine = Engine(load_plan(args.plan))
    decoder = engine.decoder()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        args.telemetry_topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=20_000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=20_000)
            consumed_ms = f"{time.time() * 1000:.3f}".encode()
            out: list[Decision] = []
            for records in batches.values():
                out += engine.ingest(decoder.decode([r.value for r in records]))
            headers = [(HOOK_HEADER, consumed_ms)]
            futures = [
                await producer.send(args.decisions_topic, decisions.encode(d), key=d.key.encode(), headers=headers)
                for d in out
            ]
            await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


# -- the run -------------------------------------------------------------------------------------------------
def load_module(path: Path) -> Any:
    """A module from a file outside the package (scripts/local_kafka.py, bench/telemetry_file.py)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def broker(args: argparse.Namespace) -> Iterator[str]:
    if args.bootstrap:
        yield args.bootstrap
        return
    local = load_module(REPO / "scripts" / "local_kafka.py").LocalKafka()
    began = time.perf_counter()
    try:
        bootstrap = str(local.start())
        print(f"  local broker {bootstrap} up in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        yield bootstrap
    finally:
        local.stop()


async def throughput(bootstrap: str, args: argparse.Namespace, results: Results, workdir: Path, run: str) -> None:
    plan = load_plan(PLAN)
    gates = [(region, tier.name) for region, _phase, tier in plan.gates()]
    data = workdir / "telemetry.jsonl"
    load_module(REPO / "bench" / "telemetry_file.py").write_file(data, args.events, int(args.days * 86_400), gates)
    settings = settings_for(bootstrap, run, "tp")
    await ensure_topics(settings, gatekeeper_topics(settings))
    results.produce = await produce_file(settings, data)
    note(f"produced {args.events:,} events: {results.produce.text()}")
    if "a" in args.phases:
        results.raw = await raw_consume(settings, args.events, args.phase_seconds)
        note(f"(a) {results.raw.text()}")
    if "b" in args.phases:
        ignore = await known_groups(settings)
        env = {
            "GK_NAIVE_BROKER": bootstrap,
            "GK_NAIVE_TOPIC": settings.topics.telemetry,
            "GK_NAIVE_APP_ID": f"bench-{run}-naive",
            "GK_NAIVE_PARTITIONS": str(PARTITIONS),
            "GK_NAIVE_DATADIR": str(workdir / "naive-data"),
        }
        argv = [PYTHON, str(REPO / "bench" / "naive_faust_app.py"), "worker", "-l", "warn", "--without-web"]
        try:
            with running("naive faust", argv, workdir, env) as proc:
                results.naive = await watch_commits(settings, proc, args.events, args.phase_seconds, ignore)
        except (BenchError, UserError) as exc:
            results.naive = f"n/a: {exc}"
        note(f"(b) {results.naive if isinstance(results.naive, str) else results.naive.text()}")
    if "c" in args.phases:
        ignore = await known_groups(settings)
        argv = worker_argv(args.worker_cmd, settings, f"bench-{run}-worker", workdir)
        try:
            with running(f"{args.worker} worker", argv, workdir) as proc:
                results.worker = await watch_commits(settings, proc, args.events, args.phase_seconds, ignore)
        except (BenchError, UserError) as exc:
            results.worker = f"n/a: {exc}"
        note(f"(c) {results.worker if isinstance(results.worker, str) else results.worker.text()}")


def note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


async def run_all(args: argparse.Namespace, results: Results, workdir: Path) -> None:
    run = uuid.uuid4().hex[:8]
    with broker(args) as bootstrap:
        try:
            if set(args.phases) & set("abc"):
                await throughput(bootstrap, args, results, workdir, run)
            if "d" in args.phases:
                settings = settings_for(bootstrap, run, "delay")
                try:
                    results.delay = await measure_delay(settings, args.worker_cmd, workdir, args, run)
                except (BenchError, UserError) as exc:
                    results.delay = f"n/a: {exc}"
                note(f"(d) {results.delay if isinstance(results.delay, str) else results.delay.text()}")
        finally:
            if args.bootstrap and not args.keep_topics:  # a local broker goes away with its topics
                await delete_run_topics(settings_for(bootstrap, run, "cleanup"), f"bench-{run}-")


async def delete_run_topics(settings: KafkaSettings, prefix: str) -> None:
    """Delete this run's topics (ours, the workers' internal ones: all named ``bench-<run>-...``)."""
    with contextlib.suppress(Exception):  # best effort: never hide the results behind a cleanup error
        async with admin_client(settings) as admin:
            names = [name for name in await admin.list_topics() if name.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
                note(f"deleted {len(names)} topics {prefix}*")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--days", type=float, default=2.0, help="event time the events span (default 2)")
    parser.add_argument("--bootstrap", help="use this cluster instead of starting local brokers")
    parser.add_argument("--phases", default="abcd", help="which of a, b, c, d to run (default abcd)")
    parser.add_argument("--worker", choices=["gatekeeper", "stub"], default="gatekeeper", help="(c)/(d) target")
    parser.add_argument("--worker-cmd", help=f"command template for (c)/(d) (default: {WORKER_CMD})")
    parser.add_argument("--phase-seconds", type=float, default=150.0, help="bound on each of (a)-(c)")
    parser.add_argument("--delay-rate", type=float, default=20.0, help="(d): requests/min per gate")
    parser.add_argument("--delay-timeout", type=float, default=15.0, help="(d): wait per closing event (s)")
    parser.add_argument("--time-limit", type=float, default=900.0, help="bound on the whole run (s)")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    parser.add_argument("--keep-topics", action="store_true", help="with --bootstrap: keep this run's topics")
    stub = parser.add_argument_group("internal: the reference worker (run by the bench itself)")
    stub.add_argument("--stub-worker", action="store_true", help=argparse.SUPPRESS)
    stub.add_argument("--plan", default=str(PLAN), help=argparse.SUPPRESS)
    stub.add_argument("--telemetry-topic", help=argparse.SUPPRESS)
    stub.add_argument("--decisions-topic", help=argparse.SUPPRESS)
    stub.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_cmd is None:
        args.worker_cmd = STUB_CMD if args.worker == "stub" else WORKER_CMD
    return args


def as_json(results: Results) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, Rate):
            return {"events_per_s": value.per_s, **value.__dict__}
        return value.__dict__ if isinstance(value, Delays) else value

    return json.dumps({k: plain(v) for k, v in results.__dict__.items()}, default=str)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retried NotLeaderForPartition etc. after creation
    if args.stub_worker:
        asyncio.run(stub_worker(args))
        return 0
    results = Results(events=args.events)
    status = 0
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        try:
            asyncio.run(asyncio.wait_for(run_all(args, results, Path(tmp)), args.time_limit))
        except TimeoutError:
            print(f"kafka_bench: stopped at the time limit ({args.time_limit:g} s)", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("kafka_bench: interrupted", file=sys.stderr)
            status = 130
        except UserError as exc:
            print(f"kafka_bench: error: {exc}", file=sys.stderr)
            status = 2
    print(results.render(f"{args.worker} worker"))
    if args.json:
        print(as_json(results))
    return status


if __name__ == "__main__":
    sys.exit(main())
