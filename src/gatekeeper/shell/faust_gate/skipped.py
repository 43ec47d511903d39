"""Messages Faust's fetcher skipped, found by their offsets and read with a consumer of our own.

faust-streaming (0.15) can lose the rest of a fetched batch: its ``Consumer.getmany`` stops yielding a batch's
records when the flow stops or the group generation changes, while aiokafka's position has already moved past
them. The partition's next message then comes after a hole, which Faust takes for the offsets of compacted or
transactional records (``Consumer._add_gap``) and counts as acked, so its next commit passes messages no agent
saw. Found after a restart of the Faust gate (tests/kafka/test_faust_gate.py: a restored gate missed partials,
stalled and passed on less evidence, about one run in three): the restarted process read offset 73 of a panes
partition, then 207.

So the agent checks every message's offset against the one it expects next (after an assignment: the group's
committed offset, where Faust starts) and first handles a hole's records, read here. The panes topic is written
without transactions and never compacted, so a hole there is always a loss; a compacted side-input topic's
hole reads as the records still there (none, or the latest of a key), which is what Faust would have given.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from gatekeeper.shell.worker.records import Record


class SkipWatch:
    """The next offset expected of each (topic, partition) the agent reads, and the reads of what it skipped."""

    def __init__(self, connect: dict[str, Any], group: str, timeout: float = 120.0) -> None:
        self.connect, self.group, self.timeout = connect, group, timeout
        self.expected: dict[tuple[str, int], int] = {}
        self.skipped = 0  # records read here because Faust's fetcher skipped them
        self._reader: AIOKafkaConsumer | None = None  # no group: assigned and read as needed
        self._offsets: AIOKafkaConsumer | None = None  # the gate's group, never subscribed: its committed offsets

    def forget(self) -> None:
        """Partitions were revoked or assigned: where Faust starts each is the group's committed offset again."""
        self.expected.clear()

    def handled(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self.expected[key] = max(self.expected.get(key, 0), offset + 1)

    async def before(self, topic: str, partition: int, offset: int) -> list[Record]:
        """The records of ``topic``/``partition`` between the one expected next and ``offset`` (none when
        ``offset`` is the one expected, or an earlier one Faust reads again)."""
        start = self.expected.get((topic, partition))
        if start is None:
            start = await self._start(TopicPartition(topic, partition))
            self.expected[topic, partition] = start
        if offset <= start:
            return []
        records = await self._read(TopicPartition(topic, partition), start, offset)
        self.skipped += len(records)
        return records

    async def stop(self) -> None:
        for consumer in (self._reader, self._offsets):
            if consumer is not None:
                await consumer.stop()

    async def _start(self, tp: TopicPartition) -> int:
        """Where Faust starts reading ``tp`` after an assignment: the group's committed offset, or (none
        committed: ``auto_offset_reset`` earliest) the partition's first."""
        if self._offsets is None:
            self._offsets = AIOKafkaConsumer(**self.connect, group_id=self.group, enable_auto_commit=False)
            await self._offsets.start()
        committed = await self._offsets.committed(tp)
        if committed is not None:
            return int(committed)
        reader = await self.reader()
        return int((await reader.beginning_offsets([tp]))[tp])

    async def _read(self, tp: TopicPartition, start: int, end: int) -> list[Record]:
        return await read_range(await self.reader(), tp, start, end, self.timeout)

    async def reader(self) -> AIOKafkaConsumer:
        """A consumer without a group (started at first use): its assignment is whatever the last read needed."""
        if self._reader is None:
            self._reader = AIOKafkaConsumer(**self.connect, group_id=None, enable_auto_commit=False)
            await self._reader.start()
        return self._reader


async def read_range(
    reader: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, timeout: float
) -> list[Record]:
    """The records at offsets ``start`` to ``end`` (excluded) of ``tp``, in order, read with ``reader`` (started, no
    group; its assignment is replaced, then emptied). Offsets without a record (transaction markers, compacted
    away) are simply absent. TimeoutError when they are not read in ``timeout`` s."""
    reader.assign([tp])
    try:
        reader.seek(tp, start)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: list[Record] = []
        while await reader.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"could not read offsets {start} to {end - 1} of {tp.topic}:{tp.partition} "
                                   f"in {timeout:g} s")  # fmt: skip
            for r in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                if r.offset < end:
                    found.append(Record(tp.topic, tp.partition, r.offset, r.key, r.value))
        return found
    finally:
        reader.unsubscribe()
