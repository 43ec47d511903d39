"""Helpers for the end-to-end worker tests: a small plan, a seeded telemetry scenario, the worker as a
subprocess, producing telemetry (keyed, unkeyed, keyed by region), and reading a topic back.

Timeline of the scenario (plan: pane 1m, window 10m, lateness 2m, stall_after 6m, soak 1h, hold 30m):
- us-east/canary: healthy all along -> ``pass`` at 01:00.
- eu-west/canary: 15 % errors from 00:20 to 00:40 -> ``fail`` + ``hold`` at 00:30 (window scope), ``release``
  at 01:00, then healthy -> ``pass`` at 02:00.
- us-east/ramp healthy -> ``pass``; eu-west/ramp slow (median 600 ms) from 00:10 to 00:45 -> latency
  ``fail`` + ``hold`` in that region only, ``release``, then ``pass``.
- us-east/thin: about one request a minute, never the 200 requests a verdict needs -> ``pending`` at the
  end of its soak (and, with ``early_stop``, its telemetry stops 40 min before the end: a stall that only
  the stream clock reports, at the end of the input).
Around 0.2 % of the records are delivered 5 min late (counted late by both replay and worker), the others
up to 20 s out of order; ``invalid`` malformed or off-plan records are mixed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gatekeeper.core import decision as decisions
from gatekeeper.core.plan import Plan
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics
from gatekeeper.shell.planfile import load_plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.worker.processor import home_partition
from gatekeeper.shell.worker.topics import ensure_worker_topics

PARTITIONS = 8
T0_S = 1_760_832_000  # 2025-10-19T00:00:00Z
MINUTE_S = 60
READ_TIMEOUT_S = 30.0
PRODUCE_CHUNK = 500  # records per awaited chunk: at most ~3 min of event time visible ahead of the rest
Mode = Literal["keyed", "unkeyed", "region"]

_CRITERIA = [
    {
        "kind": "error_rate",
        "pass_below": "2%",
        "fail_above": "5%",
        "min_requests": 200,
        "min_requests_to_fail": 50,
    },
    {
        "kind": "latency",
        "quantile": 0.99,
        "pass_below_ms": 400,
        "fail_above_ms": 800,
        "min_requests": 200,
        "min_requests_to_fail": 50,
    },
]


def _tier(name: str, traffic_percent: float, regions: list[str] | None = None) -> dict[str, Any]:
    tier: dict[str, Any] = {
        "name": name,
        "traffic_percent": traffic_percent,
        "soak": "1h",
        "criteria": _CRITERIA,
    }
    if regions is not None:
        tier["regions"] = regions
    return tier


TEST_PLAN: dict[str, Any] = {
    "plan": "worker-e2e",
    "version": "1.0",
    "regions": ["us-east", "eu-west"],
    "evaluation": {
        "pane": "1m",
        "window": "10m",
        "lateness": "2m",
        "stall_after": "6m",
        "confidence": {"false_fail": 0.01, "false_pass": 0.05},
        "uptime": {"down_error_rate": "50%", "min_requests": 5},
    },
    "phases": [
        {
            "name": "canary",
            "hold_on_fail": "30m",
            "tiers": [_tier("canary", 5), _tier("ramp", 20), _tier("thin", 1, ["us-east"])],
        }
    ],
}

INVALID = [
    b'{"ts": 1760832600.5, "region": "us-east", "tier": "canary", "latency_ms": 12.0, "status": 200',
    b'{"ts": 1760832700, "region": "us-east", "tier": "canary", "status": 200}',
    b'{"ts": 1760832800, "region": "mars", "tier": "canary", "latency_ms": 10, "status": 200}',
    b'{"ts": 1760832900, "region": "eu-west", "tier": "thin", "latency_ms": 10, "status": 200}',
    b'{"ts": 1760833000, "region": "us-east", "tier": "canary", "latency_ms": -3, "status": 200}',
    b'{"ts": 1760833100, "region": "us-east", "tier": "ramp", "latency_ms": 10, "status": 777}',
    b"[1, 2, 3]",
    b"not json at all",
    b'{"ts": 99, "region": "us-east", "tier": "ramp", "latency_ms": 10, "status": 200}',
    b'{"ts": 1760833200, "region": "eu-west", "tier": "ramp", "latency_ms": 10}',
]


def write_plan(directory: Path) -> Path:
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(TEST_PLAN, sort_keys=False))
    return path


@dataclass(frozen=True, slots=True)
class _Stream:
    region: str
    tier: str
    per_minute: float
    end_min: int
    error_rate: float = 0.002
    median_ms: float = 60.0
    episode: tuple[int, int] | None = None  # minutes
    episode_error_rate: float | None = None
    episode_median_ms: float | None = None
    regular: bool = False  # evenly spaced (thin traffic without silent gaps) rather than Poisson


def scenario(
    *,
    minutes: int = 180,
    early_stop: bool = True,
    invalid: bool = True,
    late_share: float = 0.0,
    seed: int = 11,
) -> list[bytes]:
    """Telemetry JSON lines (no newline) in arrival order."""
    rng = np.random.default_rng(seed)
    streams = [
        _Stream("us-east", "canary", 40, minutes),
        _Stream("eu-west", "canary", 40, minutes, episode=(20, 40), episode_error_rate=0.15),
        _Stream("us-east", "ramp", 40, minutes),
        _Stream("eu-west", "ramp", 40, minutes, episode=(10, 45), episode_median_ms=600.0),
        _Stream("us-east", "thin", 1, minutes - 40 if early_stop else minutes, regular=True),
    ]
    times: list[np.ndarray[Any, Any]] = []
    lines: list[bytes] = []
    for s in streams:
        span_ms = s.end_min * MINUTE_S * 1000
        if s.regular:
            ts = np.arange(0, span_ms, 60_000, dtype=np.int64) + rng.integers(0, 20_000, span_ms // 60_000)
        else:
            n = int(rng.poisson(s.per_minute * s.end_min))
            ts = np.sort(rng.integers(0, span_ms, n, dtype=np.int64))
        minute = ts // 60_000
        inside = (
            np.zeros(ts.size, dtype=bool) if s.episode is None else (minute >= s.episode[0]) & (minute < s.episode[1])
        )
        error_rate = np.where(inside, s.episode_error_rate or s.error_rate, s.error_rate)
        median = np.where(inside, s.episode_median_ms or s.median_ms, s.median_ms)
        latency = np.round(median * np.exp(0.4 * rng.standard_normal(ts.size)), 3)
        status = np.where(rng.random(ts.size) < error_rate, 503, 200)
        for t, lat, st in zip(ts.tolist(), latency.tolist(), status.tolist(), strict=True):
            lines.append(
                f'{{"ts": {T0_S + t / 1000:.3f}, "region": "{s.region}", "tier": "{s.tier}", '
                f'"latency_ms": {lat}, "status": {st}}}'.encode()
            )
        times.append(ts)
    ts_all = np.concatenate(times)
    delay = rng.integers(0, 20_000, ts_all.size)
    late = rng.random(ts_all.size) < late_share
    delay[late] = 300_000 + rng.integers(0, 60_000, int(late.sum()))
    arrival = ts_all + delay
    if invalid:
        lines += INVALID
        arrival = np.concatenate([arrival, rng.integers(0, minutes * 60_000, len(INVALID))])
    order = np.argsort(arrival, kind="stable")
    return [lines[i] for i in order.tolist()]


def expected(plan_path: Path, lines: list[bytes]) -> list[bytes]:
    """Replay's decisions (encoded, in order) over the same lines, without end-of-input flush."""
    sink = io.BytesIO()
    replay(load_plan(plan_path), io.BytesIO(b"\n".join(lines) + b"\n"), sink)
    return [line for line in sink.getvalue().split(b"\n") if line]


def by_key(values: list[bytes]) -> dict[str, list[bytes]]:
    """Encoded decisions grouped by their ``region/tier`` key, in order."""
    out: dict[str, list[bytes]] = {}
    for value in values:
        out.setdefault(decisions.decode(value).key, []).append(value)
    return out


def dedupe(values: list[bytes]) -> tuple[list[bytes], dict[str, set[bytes]]]:
    """First occurrence of every decision id, in order; and every id seen with more than one content."""
    seen: dict[str, set[bytes]] = {}
    first: list[bytes] = []
    for value in values:
        did = decisions.decode(value).decision_id
        if did not in seen:
            first.append(value)
        seen.setdefault(did, set()).add(value)
    return first, {k: v for k, v in seen.items() if len(v) > 1}


@dataclass
class Names:
    """Unique topic names and app id for one test."""

    app_id: str = field(default_factory=lambda: f"gk-test-{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        tag = self.app_id.removeprefix("gk-test-")
        self.telemetry = f"telemetry-{tag}"
        self.decisions = f"decisions-{tag}"
        self.breaches = f"breaches-{tag}"
        self.dlq = f"dlq-{tag}"

    def flags(self) -> list[str]:
        return [
            "--app-id", self.app_id,
            "--telemetry-topic", self.telemetry,
            "--decisions-topic", self.decisions,
            "--breaches-topic", self.breaches,
            "--dlq-topic", self.dlq,
            "--partitions", str(PARTITIONS),
        ]  # fmt: skip

    def settings(self, bootstrap: str) -> KafkaSettings:
        topics = Topics(
            telemetry=self.telemetry,
            decisions=self.decisions,
            breaches=self.breaches,
            dlq=self.dlq,
            partitions=PARTITIONS,
        )
        return KafkaSettings(bootstrap=bootstrap, topics=topics)


def create_topics(bootstrap: str, names: Names) -> None:
    asyncio.run(ensure_worker_topics(names.settings(bootstrap), names.app_id))


class Worker:
    """``gatekeeper worker`` in a subprocess, logging (JSON lines) to a file."""

    def __init__(self, bootstrap: str, plan: Path, names: Names, workdir: Path, label: str = "w1", *extra: str) -> None:
        self.log_path = workdir / f"{label}.log"
        self.cmd = [
            sys.executable, "-m", "gatekeeper.shell.cli", "worker",
            "--bootstrap", bootstrap, "--plan", str(plan), *names.flags(),
            "--log-format", "json", "--log-level", "info", *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}  # GATEKEEPER_* variables for the worker (the test's own are not passed on)

    def start(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")} | self.env
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """Our structured log lines with ``event == name``."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line[line.find("{") :])
                if isinstance(record, dict) and record.get("event") == name:
                    out.append(record)
        return out

    def wait_assigned(self, timeout: float = 60.0) -> list[int]:
        """Partitions of the latest non-empty assignment, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            assigned = [e["partitions"] for e in self.events("partitions assigned") if e["partitions"]]
            if assigned:
                return list(assigned[-1])
            time.sleep(0.2)
        raise AssertionError(f"worker got no partitions within {timeout} s; log:\n{self.log()[-4000:]}")

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"worker ignored signal {sig} for {timeout} s; log:\n{self.log()[-4000:]}") from None


@contextlib.contextmanager
def running(*workers: Worker) -> Iterator[tuple[Worker, ...]]:
    """Start the workers; SIGKILL any still running on the way out (a failed test must not leak them)."""
    try:
        yield tuple(w.start() for w in workers)
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(10)


def record_key(line: bytes, mode: Mode) -> bytes | None:
    if mode == "unkeyed":
        return None
    try:
        data = json.loads(line)
        region, tier = data["region"], data["tier"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(region, str) or not isinstance(tier, str):
        return None
    return region.encode() if mode == "region" else f"{region}/{tier}".encode()


def produce(bootstrap: str, topic: str, lines: list[bytes], mode: Mode) -> None:
    """Produce ``lines`` in order, in awaited chunks. ``keyed``: key ``region/tier``; ``region``: key
    ``region`` (a gate's records stay on one partition, usually not its home); ``unkeyed``: no key, all on
    partition 0 (a gate's records must stay in one partition to keep their order)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
        await producer.start()
        try:
            for start in range(0, len(lines), PRODUCE_CHUNK):
                futures = []
                for line in lines[start : start + PRODUCE_CHUNK]:
                    partition = 0 if mode == "unkeyed" else None
                    futures.append(await producer.send(topic, line, key=record_key(line, mode), partition=partition))
                await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def produce_pairs(bootstrap: str, topic: str, pairs: list[tuple[bytes | None, bytes]]) -> None:
    """Produce ``(key, value)`` pairs in order, in awaited chunks (default partitioner: murmur2 of the key,
    any partition for no key)."""

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True, max_request_size=4 << 20
        )
        await producer.start()
        try:
            for start in range(0, len(pairs), PRODUCE_CHUNK):
                futures = [await producer.send(topic, v, key=k) for k, v in pairs[start : start + PRODUCE_CHUNK]]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


@dataclass(frozen=True, slots=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def read_topic(bootstrap: str, topic: str) -> list[Consumed]:
    """Every record of ``topic`` up to its current end, partition by partition, in offset order."""

    async def run() -> list[Consumed]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)  # no group, no committed offsets: every partition starts at its beginning
            ends = await consumer.end_offsets(parts)
            out: list[Consumed] = []
            remaining = {tp for tp in parts if ends[tp] > 0}
            deadline = time.monotonic() + READ_TIMEOUT_S
            while remaining:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: could not read {sorted(remaining)} to {ends}")
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batch.items():
                    out += [
                        Consumed(tp.partition, r.offset, r.key, r.value, tuple(r.headers))
                        for r in records
                        if r.offset < ends[tp]
                    ]
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return sorted(out, key=lambda c: (c.partition, c.offset))
        finally:
            with contextlib.suppress(asyncio.CancelledError):  # aiokafka: a consumer stopped very early
                await consumer.stop()

    return asyncio.run(run())


def wait_for(
    bootstrap: str,
    topic: str,
    done: Any,
    worker: tuple[Worker, ...],
    timeout: float = 90.0,
    settle: float = 3.0,
) -> list[Consumed]:
    """Poll ``topic`` until ``done(records)``; wait ``settle`` s more and read again (to catch extras)."""
    deadline = time.monotonic() + timeout
    records = read_topic(bootstrap, topic)
    while not done(records):
        if time.monotonic() > deadline:
            logs = "\n".join(w.log()[-3000:] for w in worker)
            raise AssertionError(f"{topic}: gave up after {timeout} s with {len(records)} records; logs:\n{logs}")
        for w in worker:
            w.check_alive()
        time.sleep(0.5)
        records = read_topic(bootstrap, topic)
    time.sleep(settle)
    return read_topic(bootstrap, topic)


def count_at_least(n: int) -> Any:
    return lambda records: len(records) >= n


def distinct_ids_at_least(n: int) -> Any:
    return lambda records: len({decisions.decode(r.value).decision_id for r in records}) >= n


def replay_rejects(plan_path: Path, lines: list[bytes]) -> Counter[tuple[bytes, str]]:
    """(original bytes, reason code) of every record replay rejects."""
    rejects = io.BytesIO()
    replay(load_plan(plan_path), io.BytesIO(b"\n".join(lines) + b"\n"), io.BytesIO(), rejects=rejects)
    found: Counter[tuple[bytes, str]] = Counter()
    for line in rejects.getvalue().splitlines():
        record = json.loads(line)
        found[(record["raw"].encode("latin-1"), record["code"])] += 1
    return found


def without_late_counts(values: list[bytes]) -> list[bytes]:
    """The decisions with ``metrics.late_events`` zeroed (see the late-delivery test)."""
    out = []
    for value in values:
        d = decisions.decode(value)
        out.append(
            decisions.encode(msgspec.structs.replace(d, metrics=msgspec.structs.replace(d.metrics, late_events=0)))
        )
    return out


def home_partitions() -> set[int]:
    """Home partitions of the test plan's gates."""
    plan = Plan.model_validate(TEST_PLAN)
    return {home_partition(f"{region}/{tier.name}".encode(), PARTITIONS) for region, _, tier in plan.gates()}


def wait_split(workers: tuple[Worker, ...], timeout: float = 90.0) -> list[list[int]]:
    """Each worker's partitions, once their latest assignments are non-empty, disjoint and cover them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = []
        for w in workers:
            w.check_alive()
            events = w.events("partitions assigned")
            latest.append(list(events[-1]["partitions"]) if events else [])
        owned = [p for parts in latest for p in parts]
        if all(latest) and sorted(owned) == list(range(PARTITIONS)):
            return latest
        time.sleep(0.3)
    logs = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"the workers did not split the partitions within {timeout} s; logs:\n{logs}")


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(run())


def topic_names(bootstrap: str) -> set[str]:
    async def run() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return {t["topic"] for t in await admin.describe_topics()}
        finally:
            await admin.close()

    return asyncio.run(run())


def produce_keyed(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes | None]]) -> None:
    """Produce ``(partition, key, value)`` records in order; a None value is a tombstone."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for partition, key, value in records:
                await producer.send_and_wait(topic, value, key=key, partition=partition)
        finally:
            await producer.stop()

    asyncio.run(run())


def run_once(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a worker command expected to exit on its own (a start-up failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
