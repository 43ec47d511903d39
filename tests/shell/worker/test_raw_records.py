"""The decoding process's parser of fetched record batches (``shell/worker/raw_records.py``) against aiokafka's
own reading of the same bytes (``PartitionRecords``): the same (offset, key, value) sequence, whatever the codec,
the gaps, the control batches and where the fetch starts."""

from __future__ import annotations

import numpy as np
import pytest
from aiokafka import codec as codecs
from aiokafka.errors import CorruptRecordException
from kafka_batches import TP, aiokafka_reads, batch, legacy

from gatekeeper.core.telemetry import EventBatch, Rejection
from gatekeeper.shell.worker.raw_records import ParsedPoll, RawPoll, RawRun, parse, parse_poll

GZIP = 1  # Kafka's codec ids: none 0, gzip 1, snappy 2, lz4 3, zstd 4
CODECS = [
    pytest.param(0, id="none"),
    pytest.param(GZIP, id="gzip"),
    pytest.param(3, id="lz4", marks=pytest.mark.skipif(not codecs.has_lz4(), reason="no lz4")),
    pytest.param(4, id="zstd", marks=pytest.mark.skipif(not codecs.has_zstd(), reason="no zstd")),
    pytest.param(2, id="snappy", marks=pytest.mark.skipif(not codecs.has_snappy(), reason="no snappy")),
]


def fetched(codec: int) -> bytes:
    """Several batches: contiguous, a gap inside one and its last record compacted away, a commit marker, keyed
    records, and a fetch cut inside the last batch (the parser, like aiokafka, stops before it)."""
    return (
        batch(100, list(range(40)), codec=codec)
        + batch(140, [0, 1, 5, 6, 9], codec=codec, last_delta=12)
        + batch(153, [0], control=True)
        + batch(154, list(range(25)), codec=codec, keys=True)
        + batch(179, list(range(10)), codec=codec)[:-7]
    )


def ours(data: bytes, fetch_offset: int) -> list[tuple[int, bytes | None, bytes | None]]:
    offsets, keys, values = parse(data, fetch_offset, TP)
    return list(zip(offsets, keys, values, strict=True))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("fetch_offset", [100, 117, 143, 153, 160])
def test_parse_yields_what_aiokafka_returns(codec: int, fetch_offset: int) -> None:
    """From any fetch offset (the first batch starting below it, or a later batch's first record), with any
    codec: aiokafka's records, gaps and all, control batches and the cut-off tail left out."""
    data = fetched(codec)
    expected, _next_offset = aiokafka_reads(data, fetch_offset)
    assert len(expected) > 0
    assert expected == ours(data, fetch_offset)


def test_parse_of_legacy_message_sets_is_aiokafkas() -> None:
    """v1 message sets (plain and a gzip-compressed set, whose wrapper holds records below the fetch offset):
    aiokafka's records."""
    data = legacy(0, 3) + legacy(3, 5, codec=GZIP) + legacy(8, 2)
    for fetch_offset in (0, 2, 5):
        expected, _ = aiokafka_reads(data, fetch_offset)
        assert expected == ours(data, fetch_offset)


def test_a_bad_crc_raises_as_aiokafka() -> None:
    """A batch whose bytes do not match its CRC: ``CorruptRecordException`` naming the partition, as aiokafka."""
    good = batch(0, [0, 1, 2])
    bad = bytearray(batch(3, [0, 1, 2]))
    bad[-3] ^= 0xFF
    with pytest.raises(CorruptRecordException) as theirs:
        aiokafka_reads(good + bytes(bad), 0)
    with pytest.raises(CorruptRecordException) as mine:
        parse(good + bytes(bad), 0, TP)
    assert str(theirs.value) == str(mine.value)


def test_parse_poll_keeps_run_sizes_offsets_and_rejected_bytes() -> None:
    """A poll of two runs: each run's size, all offsets in run order, one decode over all values (positions from
    0), and the key and value of each rejected record by its poll position."""
    first = batch(10, [0, 1, 3], keys=True)  # offsets 10, 11, 13
    second = batch(50, [0, 1])  # offsets 50, 51
    poll = RawPoll("telemetry", [RawRun(3, 11, first), RawRun(5, 50, second)])
    seen: list[list[bytes]] = []

    def decode(values: list[bytes], not_after_ms: int) -> EventBatch:
        seen.append(values)
        empty = np.zeros(0, np.int64)
        rejections = [Rejection(1, "malformed_json", "test", values[1])]
        return EventBatch(empty, empty, np.zeros(0), np.zeros(0, np.bool_), rejections)

    parsed = parse_poll(poll, decode, 123)
    assert [2, 2] == parsed.sizes
    assert [11, 13, 50, 51] == parsed.offsets.tolist()
    assert [[b'{"offset": 11, "pad": "x"}', b'{"offset": 13, "pad": "xxx"}', *(v for *_, v in ours(second, 50))]] == [
        [bytes(v) for v in values] for values in seen
    ]
    assert {1: (b"k13", b'{"offset": 13, "pad": "xxx"}')} == parsed.rejected


def test_rejected_records_split_by_run_with_positions_in_their_run() -> None:
    """Rejected records at poll positions 0, 4, 5 and 9 of runs of 3, 0, 3 and 4 records: each in its own run
    (an empty run gets none), keyed by its position there."""
    rejected: dict[int, tuple[bytes | None, bytes | None]] = {
        0: (None, b"a"),
        4: (b"k", b"b"),
        5: (None, b"c"),
        9: (None, b"d"),
    }
    empty = np.zeros(0, np.int64)
    parsed = ParsedPoll([3, 0, 3, 4], empty, EventBatch(empty, empty, np.zeros(0), np.zeros(0, np.bool_)), rejected)
    expected = [{0: (None, b"a")}, {}, {1: (b"k", b"b"), 2: (None, b"c")}, {3: (None, b"d")}]
    assert expected == parsed.rejected_by_run()
