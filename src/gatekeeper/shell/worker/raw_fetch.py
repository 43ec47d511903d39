"""The worker's poll with the telemetry partitions' fetched record batches kept as bytes (``raw_records.py`` parses
them where the values are decoded), the other topics' records as ``getmany`` returns them.

Why: on thin telemetry, aiokafka's building a ``ConsumerRecord`` per record was the largest part of the worker's
main process (docs/benchmarks.md, h-wmain, h-worker7), and aiokafka's public API has no path without it. This
module is ``getmany`` (``AIOKafkaConsumer.getmany`` and ``Fetcher.fetched_records`` of aiokafka 0.14) with the
telemetry partitions' ``FetchResult`` drained as bytes, keeping its semantics: assignment checks
(``FetchResult.check_assignment``), the position moved to the next offset to fetch (``consumed_to``, as a drained
``PartitionRecords`` leaves it), drained results deleted and the fetch routine woken (``_notify``), fetch errors
raised as aiokafka raises them, at most ``max_records`` records a poll (counted from the batch headers: whole
batches are taken, so a poll may hold fewer). The bytes are captured where aiokafka's fetcher wraps them
(``fetcher.MemoryRecords``, replaced by ``_KeptBytes``, which delegates to it).

``attach`` checks the internals this relies on (and aiokafka's version, and read_uncommitted: aborted
transactions are not filtered here) and returns None otherwise: the worker then polls with ``getmany``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator
from inspect import GEN_CREATED, getgeneratorstate
from typing import Any

import aiokafka
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import ConsumerStoppedError
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from gatekeeper.shell.worker.raw_records import RawRun

FALLBACK = "telemetry records parsed in this process (aiokafka's getmany)"  # the log line when not attached
KNOWN_VERSIONS = ("0.14.0",)  # whose fetcher internals this module was checked against
_LOG_OVERHEAD = 12  # base offset and length: every batch's (and legacy message's) first 12 bytes
_HEAD = struct.Struct(">qiib")  # base offset, length, partition leader epoch (v2; crc in v0/v1), magic
_V2 = struct.Struct(">qiibIhi30xi")  # ... crc, attributes, last offset delta, (timestamps, producer), record count
_CONTROL = 0x20  # v2 attributes: a control batch (transaction markers), never returned


class _KeptBytes:
    """aiokafka's ``MemoryRecords`` over a partition's fetched bytes, which it keeps (``raw``)."""

    __slots__ = ("_records", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._records = MemoryRecords(raw)

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        return self._records.next_batch()


def batches(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """The complete batches of fetched ``data`` (a fetch may end inside one): (first byte, end byte, next offset,
    records: the header's count, 0 for a control batch, 1 for a legacy message or set; at most what aiokafka
    returns of it but for a legacy compressed set)."""
    pos, size = 0, len(data)
    while size - pos >= _LOG_OVERHEAD:
        base, length, _epoch, magic = _HEAD.unpack_from(data, pos)
        end = pos + _LOG_OVERHEAD + length
        if end > size:
            break
        if magic >= 2 and end - pos >= _V2.size:
            *_, attributes, last_delta, count = _V2.unpack_from(data, pos)
            yield pos, end, base + last_delta + 1, 0 if attributes & _CONTROL else count
        else:  # v0/v1 (a compressed set holds more, but counts as one) or too short: the parser raises
            yield pos, end, base + 1, 1
        pos = end


class RawFetch:
    """``getmany`` for the worker's consumer, ``topic``'s records as bytes. Create it with ``attach``."""

    def __init__(self, consumer: Any, topic: str) -> None:
        self._consumer, self._fetcher, self.topic = consumer, consumer._fetcher, topic
        self.check_crcs = bool(self._fetcher._check_crcs)

    async def getmany(self, timeout_ms: int) -> tuple[dict[TopicPartition, list[Any]], list[RawRun]]:
        """Records of the other topics by partition, and the telemetry topic's runs, in fetch order."""
        consumer = self._consumer
        if consumer._closed:
            raise ConsumerStoppedError()
        consumer._coordinator.check_errors()
        with consumer._subscription.fetch_context():
            return await self._fetched(timeout_ms / 1000, consumer._max_poll_records)

    async def _fetched(self, timeout: float, max_records: int) -> tuple[dict[TopicPartition, list[Any]], list[RawRun]]:
        """``Fetcher.fetched_records`` for all assigned partitions."""
        fetcher = self._fetcher
        while True:
            if fetcher._subscriptions.reassignment_in_progress:
                await fetcher._subscriptions.wait_for_assignment()
            start_time = time.monotonic()
            drained: dict[TopicPartition, list[Any]] = {}
            raw: list[RawRun] = []
            budget = max_records
            for tp in list(fetcher._records.keys()):
                result = fetcher._records[tp]
                if type(result) is aiokafka_fetcher.FetchResult:
                    budget -= self._drain(tp, result, budget, drained, raw)
                    if budget <= 0 or (result.has_more() and tp.topic == self.topic):
                        break  # the poll is full (a telemetry result is left only then)
                elif drained or raw:
                    return drained, raw  # the error is raised on the next call
                else:
                    del fetcher._records[tp]  # so that the partition is fetched again
                    fetcher._notify(fetcher._wait_consume_future)
                    result.check_raise()
            if drained or raw or not timeout:
                return drained, raw
            waiter = fetcher._create_fetch_waiter()
            done, pending = await asyncio.wait([waiter], timeout=timeout)
            if not done or fetcher._closed:
                if pending:
                    pending.pop().cancel()
                return {}, []
            if waiter.done():
                waiter.result()  # authorization errors
            timeout = max(0.0, timeout - (time.monotonic() - start_time))

    def _drain(
        self, tp: TopicPartition, result: Any, budget: int, drained: dict[TopicPartition, list[Any]], raw: list[RawRun]
    ) -> int:
        """Up to ``budget`` records of one partition's fetch result into ``drained`` (or, telemetry, ``raw``);
        how many were taken. A result returned whole is deleted, so that the partition is fetched again."""
        if tp.topic == self.topic:
            run, count = self._take(tp, result, budget, alone=not (drained or raw))
            if run is not None:
                raw.append(run)
        else:
            records = result.getall(budget)
            count = len(records)
            if records:
                drained[tp] = records
        if not result.has_more():
            del self._fetcher._records[tp]
            self._fetcher._notify(self._fetcher._wait_consume_future)
        return count

    def _take(self, tp: TopicPartition, result: Any, budget: int, *, alone: bool) -> tuple[RawRun | None, int]:
        """Whole batches of ``result`` up to ``budget`` records (one batch at least when the poll is empty so
        far, ``alone``) as a run, and how many records their headers count; the position moved past them, the
        rest (if any) left in ``result`` as a fresh ``PartitionRecords``."""
        if not result.check_assignment(tp) or not result.has_more():
            return None, 0
        records = result._partition_records
        kept = records._records
        if not isinstance(kept, _KeptBytes) or getgeneratorstate(records._records_iterator) != GEN_CREATED:
            # fetched before attach() (the runtime attaches before subscribing), or read by aiokafka already
            raise RuntimeError(f"{tp}: fetched records not from the start of the worker's raw fetch path")
        data, fetch_offset = kept.raw, records.next_fetch_offset
        cut, taken, next_offset, left = -1, 0, fetch_offset, False
        for _begin, end, after, count in batches(data):  # from the first: the parser skips as aiokafka does
            if taken + count > budget and (taken or not alone):
                left = True
                break
            cut, taken, next_offset = end, taken + count, after
        if left and cut < 0:
            return None, 0  # the poll is full before this partition
        # ``records`` and its unstarted generator refer to each other (aiokafka breaks that once the generator
        # has run out): break it, or the fetched bytes would wait for a full garbage collection
        records._records_iterator = None
        if left:
            result._partition_records = aiokafka_fetcher.PartitionRecords(
                records._tp,
                _KeptBytes(data[cut:]),
                records._aborted_transactions,
                next_offset,
                records._key_deserializer,
                records._value_deserializer,
                records._check_crcs,
                records._isolation_level,
            )
            result._update_position()
        else:
            records.next_fetch_offset = next_offset
            result._update_position()
            result._partition_records = None  # drained, as getall leaves it
        if not taken:
            return None, 0  # control batches only (or nothing new): the position moved, nothing to return
        return RawRun(tp.partition, fetch_offset, data[:cut]), taken


def attach(consumer: Any, topic: str) -> tuple[RawFetch | None, str]:
    """The raw path for ``consumer`` (started, not subscribed yet), or None and why not."""
    version = getattr(aiokafka, "__version__", "?")
    if version not in KNOWN_VERSIONS:
        return None, f"aiokafka {version} (checked: {', '.join(KNOWN_VERSIONS)})"
    fetcher = getattr(consumer, "_fetcher", None)
    needed = [
        (consumer, ("_closed", "_coordinator", "_subscription", "_max_poll_records")),
        (fetcher, ("_records", "_notify", "_wait_consume_future", "_subscriptions", "_create_fetch_waiter")),
        (fetcher, ("_closed", "_check_crcs", "_isolation_level")),
        (aiokafka_fetcher, ("FetchResult", "PartitionRecords", "MemoryRecords", "READ_UNCOMMITTED")),
        (
            getattr(aiokafka_fetcher, "FetchResult", None),
            ("check_assignment", "has_more", "getall", "_update_position"),
        ),
    ]
    missing = [name for owner, names in needed for name in names if not hasattr(owner, name)]
    if fetcher is None or missing:
        return None, f"aiokafka internals missing: {', '.join(missing or ['_fetcher'])}"
    if fetcher._isolation_level != aiokafka_fetcher.READ_UNCOMMITTED:
        return None, "read_committed (aborted transactions are filtered by aiokafka only)"
    if aiokafka_fetcher.MemoryRecords not in (MemoryRecords, _KeptBytes):
        return None, "aiokafka's fetcher does not use aiokafka.record.memory_records.MemoryRecords"
    aiokafka_fetcher.MemoryRecords = _KeptBytes  # every fetch response keeps its bytes
    return RawFetch(consumer, topic), ""
