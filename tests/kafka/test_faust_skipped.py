"""``shell/faust_gate/skipped.py`` through the real broker: the Faust gate agent's check that it sees every offset
of its partitions. Given the offset of each message Faust hands it, ``SkipWatch.before`` returns the records Faust's
fetcher skipped since the one expected next (after an assignment: the group's committed offset, or the
partition's first when none is committed), read with a consumer of its own, in offset order."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from kafka_io import create_topic, produce_to

from gatekeeper.shell.faust_gate.skipped import SkipWatch
from gatekeeper.shell.worker.records import Record

pytestmark = pytest.mark.kafka


def _topic(bootstrap: str, n: int) -> tuple[str, list[Record]]:
    """A fresh one-partition topic holding ``n`` keyed records."""
    topic = f"skipped-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, 1)
    pairs = [(b"k%d" % i, b"v%d" % i) for i in range(n)]
    produce_to(bootstrap, topic, [(0, key, value) for key, value in pairs])
    return topic, [Record(topic, 0, i, key, value) for i, (key, value) in enumerate(pairs)]


async def _commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


def test_before_returns_what_was_skipped_since_the_committed_offset(kafka_bootstrap: str) -> None:
    """The group committed offset 3: a first message at 3 has nothing before it; after it, a message at 7 has
    records 4-6 before it (keys and values as produced); a message Faust reads again (5) has none; after an
    assignment (``forget``) the committed offset is where it starts again."""
    topic, records = _topic(kafka_bootstrap, 10)
    group = f"skipped-group-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[list[list[Record]], int]:
        await _commit(kafka_bootstrap, group, topic, 3)
        watch = SkipWatch({"bootstrap_servers": kafka_bootstrap}, group, timeout=30.0)
        try:
            got = [await watch.before(topic, 0, 3)]
            watch.handled(topic, 0, 3)
            got.append(await watch.before(topic, 0, 7))
            watch.handled(topic, 0, 7)
            got.append(await watch.before(topic, 0, 5))
            watch.forget()
            got.append(await watch.before(topic, 0, 5))
            return got, watch.skipped
        finally:
            await watch.stop()

    got, skipped = asyncio.run(run())
    assert [[], records[4:7], [], records[3:5]] == got
    assert 5 == skipped


def test_before_starts_at_the_partitions_first_offset_when_nothing_is_committed(kafka_bootstrap: str) -> None:
    """No offset committed (Faust then starts at the earliest): a first message at 2 has records 0 and 1 before
    it."""
    topic, records = _topic(kafka_bootstrap, 4)

    async def run() -> list[Record]:
        watch = SkipWatch({"bootstrap_servers": kafka_bootstrap}, f"skipped-group-{uuid.uuid4().hex[:8]}", timeout=30.0)
        try:
            return await watch.before(topic, 0, 2)
        finally:
            await watch.stop()

    assert records[:2] == asyncio.run(run())
