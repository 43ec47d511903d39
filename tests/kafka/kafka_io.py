"""Kafka client helpers of the tests in tests/kafka: unique topic names and settings, creating and listing
topics, producing records (keyed, unkeyed, keyed by region, as pairs, to given partitions) and reading a topic
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gatekeeper.shell.kafka_admin import admin_client, partition_counts
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics
from gatekeeper.shell.worker.topics import ensure_worker_topics

PARTITIONS = 8
READ_TIMEOUT_S = 30.0
PRODUCE_CHUNK = 500  # records per awaited chunk: at most ~3 min of event time visible ahead of the rest
Mode = Literal["keyed", "unkeyed", "region", "spread", "crc32"]


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def settings_for(bootstrap: str, **topics: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, topics=Topics(**topics))


async def partitions_of(bootstrap: str, topic: str) -> dict[str, int]:
    """``{topic: partition count}``, or ``{}`` when the topic does not exist."""
    async with admin_client(settings_for(bootstrap)) as admin:
        return await partition_counts(admin, [topic])


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
        self.incidents = f"incidents-{tag}"
        self.approvals = f"approvals-{tag}"
        self.business = f"business-{tag}"

    def flags(self) -> list[str]:
        return [
            "--app-id", self.app_id,
            "--telemetry-topic", self.telemetry,
            "--decisions-topic", self.decisions,
            "--breaches-topic", self.breaches,
            "--dlq-topic", self.dlq,
            "--incidents-topic", self.incidents,
            "--approvals-topic", self.approvals,
            "--business-metrics-topic", self.business,
            "--partitions", str(PARTITIONS),
        ]  # fmt: skip

    def settings(self, bootstrap: str) -> KafkaSettings:
        topics = Topics(
            telemetry=self.telemetry,
            decisions=self.decisions,
            breaches=self.breaches,
            dlq=self.dlq,
            incidents=self.incidents,
            approvals=self.approvals,
            business_metrics=self.business,
            partitions=PARTITIONS,
        )
        return KafkaSettings(bootstrap=bootstrap, topics=topics)


def create_topics(bootstrap: str, names: Names) -> None:
    asyncio.run(ensure_worker_topics(names.settings(bootstrap), names.app_id))


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


def record_key(line: bytes, mode: Mode) -> bytes | None:
    if mode in ("unkeyed", "spread"):
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
    partition 0; ``spread``: no key, each record on a random partition (the default partitioner, as most
    exporters produce); ``crc32``: key ``region/tier`` on CRC32(key) % partitions, the partition librdkafka's
    default partitioner (confluent-kafka's producer) picks for a keyed record."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
        await producer.start()
        try:
            for start in range(0, len(lines), PRODUCE_CHUNK):
                futures = []
                for line in lines[start : start + PRODUCE_CHUNK]:
                    key = record_key(line, mode)
                    partition = 0 if mode == "unkeyed" else None
                    if mode == "crc32" and key is not None:
                        partition = zlib.crc32(key) % PARTITIONS
                    futures.append(await producer.send(topic, line, key=key, partition=partition))
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


def produce_to(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes]]) -> None:
    """Produce ``(partition, key, value)`` records in order, in awaited chunks."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
        await producer.start()
        try:
            for start in range(0, len(records), PRODUCE_CHUNK):
                chunk = records[start : start + PRODUCE_CHUNK]
                futures = [await producer.send(topic, v, key=k, partition=p) for p, k, v in chunk]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


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


@dataclass(frozen=True, slots=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int = -1  # ms: the record's CreateTime, the producer's wall clock when it sent the record


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
                        Consumed(tp.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp)
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
