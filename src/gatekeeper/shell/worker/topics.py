"""The worker's topics: created (or verified) with one partition count before Faust starts.

Faust co-assigns partition p of every topic with the same partition count to one worker; the worker relies
on it (a gate's telemetry, its forwarded records and its state changelog share partition home(G)). So every
topic must have ``topics.partitions`` partitions: a missing topic is created (unless ``--no-create-topics``)
and a topic with another count fails the start with a message saying which one (``kafka_admin``).

Also the two side reads the worker does with clients of its own: where the group resumes each partition
(``start_offsets``), and records Faust skipped without handing them to an agent (``read_range``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from gatekeeper.shell.kafka_admin import admin_client, ensure_topics, gatekeeper_topics
from gatekeeper.shell.kafka_settings import KafkaSettings

TABLE_NAME = "gate-state"
GATES_RETENTION_MS = 7 * 86_400_000  # as long as the telemetry a forward comes from is kept


def gates_topic(app_id: str) -> str:
    """The internal routing topic: telemetry re-keyed by ``region/tier``."""
    return f"{app_id}-gates"


def changelog_topic(app_id: str) -> str:
    """Faust's changelog of the ``gate-state`` table (``<app-id>-<table>-changelog``)."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def worker_topics(settings: KafkaSettings, app_id: str) -> dict[str, dict[str, str]]:
    """Every topic the worker uses, with the configs it gets when created."""
    topics = gatekeeper_topics(settings)
    topics[gates_topic(app_id)] = {"retention.ms": str(GATES_RETENTION_MS)}
    topics[changelog_topic(app_id)] = {"cleanup.policy": "compact"}
    return topics


async def ensure_worker_topics(settings: KafkaSettings, app_id: str) -> dict[str, int]:
    """Create the missing topics (or fail if creation is off) and verify every partition count;
    returns topic -> partitions. Raises ``UserError`` with a one-line reason."""
    return await ensure_topics(settings, worker_topics(settings, app_id))


async def start_offsets(
    settings: KafkaSettings, group: str, tps: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Where the consumer group ``group`` resumes each partition: its committed offset, else the partition's
    first offset (the worker reads from the earliest record)."""
    wanted = [TopicPartition(topic, partition) for topic, partition in tps]
    if not wanted:
        return {}
    async with admin_client(settings) as admin:
        committed = await admin.list_consumer_group_offsets(group, partitions=wanted)
    starts = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items() if meta.offset >= 0}
    missing = [tp for tp in wanted if (tp.topic, tp.partition) not in starts]
    if missing:
        consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            first = await consumer.beginning_offsets(missing)
        finally:
            await consumer.stop()
        starts |= {(tp.topic, tp.partition): int(offset) for tp, offset in first.items()}
    return starts


async def read_range(
    settings: KafkaSettings, topic: str, partition: int, start: int, end: int, timeout: float = 30.0
) -> list[Any]:
    """The records of one partition at offsets ``start <= offset < end`` (aiokafka ConsumerRecords), read
    with a consumer of its own (no group). Fewer when some offsets hold no record (transaction markers)."""
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: list[Any] = []
        while await consumer.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"could not re-read {topic}/{partition} offsets {start}..{end - 1} in {timeout:g} s")
            batch = await consumer.getmany(tp, timeout_ms=500)
            found += [r for r in batch.get(tp, []) if start <= r.offset < end]
        return found
    finally:
        await consumer.stop()
