"""Fetched-bytes fixtures built with aiokafka's own record builders, and aiokafka's own reading of them (the oracle
the raw path is checked against)."""

from __future__ import annotations

import struct

from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

TP = TopicPartition("telemetry", 3)
_CRC_AT, _ATTRIBUTES_AT, _LAST_DELTA_AT = 17, 21, 23
CONTROL = 0x20


def batch(
    base: int,
    deltas: list[int],
    *,
    codec: int = 0,
    last_delta: int | None = None,
    control: bool = False,
    keys: bool = False,
) -> bytes:
    """A v2 record batch at ``base`` with records at ``base + delta`` (gaps: compaction), values naming their
    offset; ``last_delta`` past the last record (compaction removed it); ``control``: a commit marker."""
    builder = DefaultRecordBatchBuilder(2, codec, int(control), 7 if control else -1, 0, -1, 1 << 20)
    for d in deltas:
        key = struct.pack(">hh", 0, 1) if control else (b"k%d" % (base + d) if keys else None)
        value = b"" if control else b'{"offset": %d, "pad": "%s"}' % (base + d, b"x" * (d % 7))
        builder.append(d, 1_760_000_000_000 + d, key, value, [])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)  # the broker assigns the base offset (not covered by the CRC)
    if control or last_delta is not None:
        if control:
            data[_ATTRIBUTES_AT + 1] |= CONTROL
        if last_delta is not None:
            struct.pack_into(">i", data, _LAST_DELTA_AT, last_delta)
        struct.pack_into(">I", data, _CRC_AT, calc_crc32c(bytes(data[_ATTRIBUTES_AT:])))
    return bytes(data)


def legacy(base: int, count: int, *, codec: int = 0) -> bytes:
    """A v1 message set (one wrapper message when ``codec`` compresses it) of ``count`` records from ``base``."""
    builder = LegacyRecordBatchBuilder(1, codec, 1 << 20)
    for i in range(count):
        builder.append(i if codec else base + i, 1_760_000_000_000, None, b'{"legacy": %d}' % (base + i))
    data = bytearray(builder.build())
    if codec:  # the broker writes the wrapper at the last inner record's absolute offset
        struct.pack_into(">q", data, 0, base + count - 1)
    return bytes(data)


def aiokafka_reads(data: bytes, fetch_offset: int) -> tuple[list[tuple[int, bytes | None, bytes | None]], int]:
    """What aiokafka 0.14's fetcher returns from ``data`` fetched at ``fetch_offset``: (offset, key, value) per
    record, and the next offset to fetch."""
    records = PartitionRecords(TP, MemoryRecords(data), None, fetch_offset, None, None, True, READ_UNCOMMITTED)
    got = [(r.offset, r.key, r.value) for r in records]
    return got, records.next_fetch_offset
