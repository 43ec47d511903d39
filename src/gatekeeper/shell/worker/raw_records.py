"""A poll's telemetry record batches, as fetched bytes, parsed and decoded where the decoding runs (the decoding
child with ``--jobs 2``): the main process neither builds a record object per telemetry record nor pickles a list
of their values (``raw_fetch.py`` takes the bytes out of aiokafka's fetcher).

``parse`` yields what aiokafka's ``PartitionRecords._unpack_records`` (0.14, read_uncommitted) yields, with its own
C record classes: CRCs checked (a bad one raises ``CorruptRecordException``, as aiokafka's iterator does), control
batches skipped, records below the next offset to return skipped (a fetch starting inside a batch, compressed
sets), gaps kept (compaction).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from aiokafka.errors import CorruptRecordException
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from gatekeeper.core.telemetry import EventBatch

DecodeValues = Callable[[list[bytes], int], EventBatch]  # a poll's values and the rejection clock, decoded


@dataclass(frozen=True, slots=True)
class RawRun:
    """One telemetry partition's share of a poll: whole record batches as fetched, ``fetch_offset`` the first
    offset to return (aiokafka's ``next_fetch_offset`` when they were taken)."""

    partition: int
    fetch_offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RawPoll:
    """A poll's raw telemetry runs, in fetch order."""

    topic: str
    runs: list[RawRun]
    check_crcs: bool = True


@dataclass(slots=True)
class ParsedPoll:
    """A raw poll parsed and decoded: per run the number of records, all their offsets (run after run), the
    decoded values (positions from 0 over the whole poll) and the key and value of each rejected record (the
    only records whose bytes anything reads again: their dead letters)."""

    sizes: list[int]
    offsets: npt.NDArray[np.int64]
    batch: EventBatch
    rejected: dict[int, tuple[bytes | None, bytes | None]] = field(default_factory=dict)

    def rejected_by_run(self) -> list[dict[int, tuple[bytes | None, bytes | None]]]:
        """``rejected`` split by run, each keyed by its position in its run: one pass over the rejected records
        (a poll of mostly bad records has thousands of them, in a few runs)."""
        ends = list(itertools.accumulate(self.sizes))
        out: list[dict[int, tuple[bytes | None, bytes | None]]] = [{} for _ in self.sizes]
        for at, kv in self.rejected.items():
            run = bisect.bisect_right(ends, at)
            out[run][at - (ends[run - 1] if run else 0)] = kv
        return out


def parse(
    data: bytes, fetch_offset: int, where: TopicPartition, check_crcs: bool = True
) -> tuple[list[int], list[bytes | None], list[bytes | None]]:
    """The offsets, keys and values of the records aiokafka would return from ``data`` fetched at
    ``fetch_offset`` (``where``: for the error message)."""
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    records = MemoryRecords(data)
    next_offset = fetch_offset
    while records.has_next():
        batch = records.next_batch()
        assert batch is not None  # has_next said so
        if check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {where}")
        if not batch.is_control_batch:
            for record in batch:
                offset = record.offset
                if offset < next_offset:  # a fetch starting inside a batch or a compressed set
                    continue
                offsets.append(offset)
                keys.append(record.key)
                values.append(record.value)
                next_offset = offset + 1
        next_offset = batch.next_offset  # a batch keeps its last offset even when compaction removed the record
    return offsets, keys, values


def parse_poll(poll: RawPoll, decode: DecodeValues, not_after_ms: int) -> ParsedPoll:
    """Parse every run of ``poll`` and decode all their values at once (``decode``: the values and
    ``not_after_ms`` to an ``EventBatch``, positions from 0)."""
    sizes: list[int] = []
    offsets: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    for run in poll.runs:
        o, k, v = parse(run.data, run.fetch_offset, TopicPartition(poll.topic, run.partition), poll.check_crcs)
        sizes.append(len(o))
        offsets += o
        keys += k
        values += v
    batch = decode([v or b"" for v in values], not_after_ms)
    rejected = {r.position: (keys[r.position], values[r.position]) for r in batch.rejections}
    return ParsedPoll(sizes, np.asarray(offsets, dtype=np.int64), batch, rejected)
