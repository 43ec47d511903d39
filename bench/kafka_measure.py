"""What bench/kafka_bench.py measures and reports: the result types and their rendering, the produce and
raw-consume loops, the committed-offset watch of a worker subprocess (rate, CPU, RSS) and the subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import GroupLoadInProgressError
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as ConfluentPartition

from gatekeeper.core.telemetry import Telemetry
from gatekeeper.shell.kafka_admin import admin_client
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics
from gatekeeper.shell.simulate import produce_chunks

REPO = Path(__file__).resolve().parent.parent
PLAN = REPO / "config" / "rollout-plan.yaml"
HOOK_HEADER = "gk-closed-wall-ms"
POLL_S = 0.05
PARTITIONS = 8


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
    """Per keying ("keyed", "unkeyed"): its produce rate and each phase's rate (or why it is missing)."""

    events: int
    rates: dict[str, dict[str, Rate | str]] = field(default_factory=dict)
    delay: Delays | str | None = None

    def render(self, worker_name: str) -> str:
        def show(value: Rate | Delays | str | None) -> str:
            return "not run" if value is None else value if isinstance(value, str) else value.text()

        out = [f"kafka_bench: {self.events:,} events, {PARTITIONS} partitions"]
        for keying, rates in self.rates.items():
            out.append(f"  {keying}:")
            for phase, label in PHASES.items():
                if phase in rates:
                    name = worker_name if phase == "c" else label
                    out.append(f"    ({phase}) {name:<44} {show(rates[phase])}")
            worker = rates.get("c")
            for base in ("a", "f", "q", "b"):
                if base in rates and isinstance(worker, Rate) and isinstance(rates[base], Rate):
                    other = rates[base]
                    assert isinstance(other, Rate)
                    out.append(f"    (c)/({base}) = {worker.per_s / other.per_s:.3f}")
        out.append(f"  (d) decision delay: {show(self.delay)}")
        return "\n".join(out)


PHASES = {
    "p": "produce (aiokafka send, acks=all)",
    "a": "raw aiokafka consume",
    "f": "confluent-kafka consume + msgspec decode",
    "q": "quixstreams app (per-minute counts, P99)",
    "b": "naive Faust agent (not a headline baseline)",
    "c": "gatekeeper worker",
}


def as_json(results: Results) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, Rate):
            return {"events_per_s": value.per_s, **value.__dict__}
        return value.__dict__ if isinstance(value, Delays) else value

    return json.dumps({k: plain(v) for k, v in results.__dict__.items()}, default=str)


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


async def produce_file(settings: KafkaSettings, path: Path, keyed: bool = True) -> Rate:
    """Produce every line of ``path`` to the telemetry topic, keyed region/tier or not (the default partitioner
    then spreads them over the partitions); returns the produce rate."""
    with path.open("rb") as source:

        async def next_chunk() -> bytes | None:
            return b"".join(source.readlines(4 << 20)) or None

        began = time.perf_counter()
        sent = await produce_chunks(settings, settings.topics.telemetry, next_chunk, keyed=keyed)
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


def confluent_floor(settings: KafkaSettings, total: int, seconds: float) -> Rate:
    """(f): the fastest Python consume-and-decode loop here: confluent-kafka (librdkafka) with its fetch queue
    backoff lowered, ``consume`` in batches, each value decoded into the contract-v1 struct by msgspec."""
    decoder = msgspec.json.Decoder(Telemetry)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "bench-floor",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 1})  # fmt: skip
    try:
        consumer.assign([ConfluentPartition(settings.topics.telemetry, p, 0) for p in range(PARTITIONS)])
        count = 0
        began = last = time.perf_counter()
        while count < total and last - began < seconds:
            for message in consumer.consume(10_000, 1.0):
                if message.error() is None:
                    decoder.decode(message.value())
                    count += 1
            last = time.perf_counter()
    finally:
        consumer.close()
    if not count:
        raise BenchError("the confluent-kafka consumer read nothing")
    return Rate(count, last - began, count, total)


async def committed_on(admin: Any, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


async def find_group(admin: Any, topic: str, ignore: set[str]) -> str | None:
    """The consumer group that has committed offsets on ``topic`` (this run's topics are fresh); None also while
    the broker is still loading its group metadata (a fresh broker's first group)."""
    try:
        groups = await admin.list_consumer_groups()
    except GroupLoadInProgressError:
        return None
    for group, *_rest in groups:
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


async def known_groups(settings: KafkaSettings) -> set[str]:
    async with admin_client(settings) as admin:
        return {str(group) for group, *_rest in await admin.list_consumer_groups()}
