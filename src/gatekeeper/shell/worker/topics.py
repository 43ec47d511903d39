"""The worker's topics: created (or verified) with one partition count before the worker joins its group.

The group's range assignor gives partition p of both input topics (telemetry and ``<app-id>-panes``) to one
worker, and that worker keeps partition p of both changelogs: the stage-1 state of telemetry partition p, and
the inboxes of the gates homed at p (a gate's partials and its state share partition home(G)). So every topic
must have ``topics.partitions`` partitions: a missing topic is created
(unless ``--no-create-topics``) and a topic with another count fails the start with a message saying which
one (``kafka_admin``).

Also the reads that restore the states of newly assigned partitions: the changelogs (``read_changelog``), and
the partials a gate's state holds by reference to the panes topic (``read_offsets``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from gatekeeper.shell.kafka_admin import TELEMETRY_RETENTION_MS, ensure_topics, gatekeeper_topics
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker.side import side_topics

TABLE_NAME = "gate-state"
PANES_RETENTION_MS = TELEMETRY_RETENTION_MS  # as long as the telemetry the partials come from
# Compaction only cleans closed segments: with Kafka's 1 GiB default, a restore could read up to 1 GiB of
# superseded states (~1 KiB per gate per poll); 64 MiB keeps it to well under a second.
CHANGELOG_SEGMENT_BYTES = 64 << 20
# A gate's inbox (its state with window sketches, plus partials buffered while a backlog is read) can pass
# Kafka's 1 MB default record limit (1.6 MB seen with the seed plan's 24 gates); the changelogs allow 16 MiB.
MAX_STATE_BYTES = 16 << 20


def panes_topic(app_id: str) -> str:
    """Stage 1 -> stage 2: partials keyed ``region/tier`` and every telemetry partition's watermark."""
    return f"{app_id}-panes"


def aggregate_changelog_topic(app_id: str) -> str:
    """The compacted changelog of the stage-1 states, one per telemetry partition (key ``<topic>:<p>``)."""
    return f"{app_id}-aggregate-changelog"


def changelog_topic(app_id: str) -> str:
    """The compacted changelog of the gate states, keyed ``region/tier`` (``<app-id>-gate-state-changelog``:
    the name Faust gave the table's changelog in earlier versions, whose entries are read as they are)."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def worker_topics(settings: KafkaSettings, app_id: str) -> dict[str, dict[str, str]]:
    """Every topic the worker uses, with the configs it gets when created."""
    topics = gatekeeper_topics(settings)
    topics[panes_topic(app_id)] = {"retention.ms": str(PANES_RETENTION_MS)}
    compacted = {
        "cleanup.policy": "compact",
        "segment.bytes": str(CHANGELOG_SEGMENT_BYTES),
        "max.message.bytes": str(MAX_STATE_BYTES),
    }
    topics[changelog_topic(app_id)] = dict(compacted)
    topics[aggregate_changelog_topic(app_id)] = dict(compacted)
    topics |= side_topics(settings, app_id)  # incidents, approvals, business metrics, <app-id>-side
    return topics


async def ensure_worker_topics(settings: KafkaSettings, app_id: str) -> dict[str, int]:
    """Create the missing topics (or fail if creation is off) and verify every partition count;
    returns topic -> partitions. Raises ``UserError`` with a one-line reason."""
    return await ensure_topics(settings, worker_topics(settings, app_id))


async def read_changelog(
    consumer: AIOKafkaConsumer, topic: str, partitions: Iterable[int], timeout: float = 120.0
) -> dict[bytes, bytes]:
    """The latest value of every key in ``partitions`` of the compacted ``topic``, read from the first
    record to the end offsets of now with ``consumer`` (started, no group; its assignment is replaced).
    A record without a value (a tombstone) deletes its key. TimeoutError when the end is not reached in
    ``timeout`` s."""
    tps = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not tps:
        return {}
    consumer.assign(tps)
    try:
        return await _read_to_end(consumer, topic, tps, timeout)
    finally:
        consumer.unsubscribe()  # no background fetching until the next restore


async def _read_to_end(
    consumer: AIOKafkaConsumer, topic: str, tps: list[TopicPartition], timeout: float
) -> dict[bytes, bytes]:
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    entries: dict[bytes, bytes] = {}
    pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
    while pending:
        if loop.time() > deadline:
            raise TimeoutError(f"could not read {topic} partitions {[tp.partition for tp in pending]} in {timeout:g} s")
        for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
            for r in records:
                if r.key is None:
                    continue
                if r.value is None:
                    entries.pop(r.key, None)
                else:
                    entries[r.key] = r.value
        pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    return entries


async def read_offsets(
    consumer: AIOKafkaConsumer, topic: str, wanted: Mapping[int, Iterable[int]], timeout: float = 120.0
) -> dict[tuple[int, int], bytes]:
    """The values of the records at the ``wanted`` offsets (partition -> offsets) of ``topic``, as
    (partition, offset) -> value, read in one pass per partition from the lowest offset asked to the highest
    with ``consumer`` (started, no group; its assignment is replaced). A record gone (past the retention) is
    missing from the result. TimeoutError when they are not read in ``timeout`` s."""
    asked = {p: set(offsets) for p, offsets in wanted.items() if offsets}
    if not asked:
        return {}
    tps = [TopicPartition(topic, p) for p in sorted(asked)]
    consumer.assign(tps)
    try:
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, min(asked[tp.partition]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: dict[tuple[int, int], bytes] = {}
        last = {tp: min(max(asked[tp.partition]) + 1, ends[tp]) for tp in tps}
        pending = [tp for tp in tps if await consumer.position(tp) < last[tp]]
        while pending:
            if loop.time() > deadline:
                missing = [tp.partition for tp in pending]
                raise TimeoutError(f"could not read {topic} partitions {missing} in {timeout:g} s")
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                found.update(
                    {(tp.partition, r.offset): r.value for r in records if r.offset in asked[tp.partition] and r.value}
                )
            pending = [tp for tp in pending if await consumer.position(tp) < last[tp]]
        return found
    finally:
        consumer.unsubscribe()
