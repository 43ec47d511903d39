"""Telemetry contract v1: valid records become columns, every invalid record one Rejection with a countable
code, a message naming the field and its original bytes; invalid records never disturb valid ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gatekeeper.core.telemetry import (
    EPOCH_MAX_S,
    EPOCH_MIN_S,
    MAX_LATENCY_MS,
    MAX_RECORD_BYTES,
    SUB_BLOCK_BYTES,
    EventBatch,
    TelemetryDecoder,
)

from .helpers import T0, record

GATES = [("us-east", "canary"), ("us-east", "ramp-10"), ("eu-west", "canary")]  # ramp-10 only in us-east
DECODER = TelemetryDecoder(GATES)
VALID = record()


def columns(batch: EventBatch) -> tuple[list[int], list[int], list[float], list[bool]]:
    return batch.ts_ms.tolist(), batch.key.tolist(), batch.latency_ms.tolist(), batch.error.tolist()


def decode_one(raw: bytes) -> EventBatch:
    return DECODER.decode([raw])


# -- valid records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "ts_ms"),
    [
        (1_760_832_000.25, T0 + 250),
        (1_760_832_000, T0),
        ("2025-10-19T00:00:00.250Z", T0 + 250),
        ("2025-10-19T02:00:00.250+02:00", T0 + 250),
        ("2025-10-18T20:00:00.250-04:00", T0 + 250),
        (EPOCH_MIN_S, int(EPOCH_MIN_S) * 1000),
        (EPOCH_MAX_S, int(EPOCH_MAX_S) * 1000),
    ],
)
def test_timestamps(ts: float | str, ts_ms: int) -> None:
    """ts is epoch seconds (a number) or RFC 3339 text with Z or an offset; both become epoch milliseconds."""
    batch = decode_one(record(ts=ts))
    assert ([ts_ms], []) == (batch.ts_ms.tolist(), batch.rejections)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"status": 200}, False),
        ({"status": 499}, False),
        ({"status": 500}, True),
        ({"status": 503}, True),
        ({"status": None, "error": True}, True),
        ({"status": None, "error": False}, False),
        ({"status": 503, "error": False}, False),
        ({"status": 200, "error": True}, True),
    ],
)
def test_error_flag(fields: dict[str, Any], error: bool) -> None:
    """A request failed when ``error`` says so; without ``error``, when its status is 5xx."""
    batch = decode_one(record(**fields))
    assert ([error], []) == (batch.error.tolist(), batch.rejections)


def test_columns_and_keys() -> None:
    """Valid records become columns in arrival order; ``key`` is the index of the (region, tier) gate."""
    records = [
        record(ts=1_760_832_001, region="eu-west", latency_ms=3.5),
        record(ts=1_760_832_000, tier="ramp-10", latency_ms=0, status=502),
        record(ts=1_760_832_002, latency_ms=MAX_LATENCY_MS),
    ]
    batch = DECODER.decode(records)
    expected = ([T0 + 1000, T0, T0 + 2000], [2, 1, 0], [3.5, 0.0, MAX_LATENCY_MS], [False, True, False])
    assert expected == columns(batch)
    dtypes = [np.dtype(t) for t in (np.int64, np.int64, np.float64, np.bool_)]
    assert dtypes == [batch.ts_ms.dtype, batch.key.dtype, batch.latency_ms.dtype, batch.error.dtype]


def test_unknown_fields_are_ignored() -> None:
    """Fields outside the contract (and the optional ids) do not matter."""
    host = {"name": "a", "tags": [1, 2]}
    extra = record(request_id="r-1", learner_id=42, version="v2", host=host, note=None, x=1.5)
    assert columns(decode_one(VALID)) == columns(decode_one(extra))
    assert [] == decode_one(extra).rejections


def test_no_records() -> None:
    """No records, no events and no rejections."""
    batch = DECODER.decode([])
    assert (0, []) == (len(batch), batch.rejections)


# -- invalid records -------------------------------------------------------------------------------------

INVALID: list[tuple[str, bytes, str, list[str]]] = [
    ("truncated json", b'{"ts": 1760832000, "region": ', "malformed_json", ["truncated"]),
    ("not json at all", b"hello", "malformed_json", ["malformed"]),
    ("invalid utf-8 bytes", b"\xff\xfe{}", "malformed_json", ["malformed"]),
    ("empty record", b"", "malformed_json", ["truncated"]),
    ("json array", b"[1, 2]", "not_an_object", ["object", "array"]),
    ("json number", b"42", "not_an_object", ["object", "int"]),
    ("json string", b'"ok"', "not_an_object", ["object", "str"]),
    ("json null", b"null", "not_an_object", ["object", "null"]),
    ("missing ts", record(ts=None), "missing_field:ts", ["`ts`"]),
    ("missing region", record(region=None), "missing_field:region", ["`region`"]),
    ("missing tier", record(tier=None), "missing_field:tier", ["`tier`"]),
    ("missing latency", record(latency_ms=None), "missing_field:latency_ms", ["`latency_ms`"]),
    ("neither status nor error", record(status=None), "missing_field:status", ["`status`", "`error`"]),
    ("negative latency", record(latency_ms=-0.5), "invalid_field:latency_ms", ["$.latency_ms", ">= 0"]),
    (
        "latency above a day",
        record(latency_ms=MAX_LATENCY_MS + 1),
        "invalid_field:latency_ms",
        ["$.latency_ms"],
    ),
    (
        "latency 1e999",
        VALID.replace(b'"latency_ms": 12.5', b'"latency_ms": 1e999'),
        "invalid_field:latency_ms",
        ["$.latency_ms"],
    ),
    ("latency as text", record(latency_ms="12"), "invalid_field:latency_ms", ["$.latency_ms"]),
    ("NaN token", VALID.replace(b"12.5", b"NaN"), "malformed_json", ["malformed"]),
    ("Infinity token", VALID.replace(b"12.5", b"Infinity"), "malformed_json", ["malformed"]),
    ("-Infinity token", VALID.replace(b"12.5", b"-Infinity"), "malformed_json", ["malformed"]),
    ("nan token", VALID.replace(b"12.5", b"nan"), "malformed_json", ["malformed"]),
    ("epoch before 2000", record(ts=EPOCH_MIN_S - 1), "invalid_field:ts", ["$.ts"]),
    ("epoch after 2100", record(ts=EPOCH_MAX_S + 1), "invalid_field:ts", ["$.ts"]),
    ("epoch in milliseconds", record(ts=T0), "invalid_field:ts", ["$.ts"]),
    (
        "rfc 3339 before 2000",
        record(ts="1999-12-31T23:59:59Z"),
        "invalid_field:ts",
        ["timestamp", "outside 2000-01-01..2100-01-01"],
    ),
    (
        "rfc 3339 before 2000 by offset",
        record(ts="2000-01-01T01:00:00+02:00"),
        "invalid_field:ts",
        ["timestamp", "outside 2000-01-01..2100-01-01"],
    ),
    (
        "rfc 3339 after 2100",
        record(ts="2100-01-01T00:00:01Z"),
        "invalid_field:ts",
        ["timestamp", "outside 2000-01-01..2100-01-01"],
    ),
    ("rfc 3339 without offset", record(ts="2025-10-19T00:00:00"), "invalid_field:ts", ["$.ts", "timezone"]),
    ("ts not a time", record(ts="yesterday"), "invalid_field:ts", ["$.ts"]),
    ("ts boolean", record(ts=True), "invalid_field:ts", ["$.ts"]),
    ("unknown region", record(region="mars"), "unknown_region", ["region 'mars'", "us-east"]),
    ("unknown tier", record(tier="ramp-99"), "unknown_tier", ["tier 'ramp-99'", "canary"]),
    (
        "tier not gated in region",
        record(region="eu-west", tier="ramp-10"),
        "unknown_gate",
        ["tier 'ramp-10'", "region 'eu-west'"],
    ),
    ("empty region", record(region=""), "invalid_field:region", ["$.region"]),
    ("region too long", record(region="r" * 65), "invalid_field:region", ["$.region"]),
    ("status boolean", record(status=True), "invalid_field:status", ["$.status"]),
    ("status out of range", record(status=600), "invalid_field:status", ["$.status"]),
    ("error not boolean", record(error="yes"), "invalid_field:error", ["$.error"]),
    ("oversized", record(pad="x" * MAX_RECORD_BYTES), "oversized", [str(MAX_RECORD_BYTES), "bytes"]),
    ("two objects on one line", VALID + b"," + VALID, "malformed_json", ["trailing characters"]),
    ("two objects, no comma", VALID + VALID, "malformed_json", ["trailing characters"]),
    ("two lines in one record", VALID + b"\n" + VALID, "malformed_json", ["trailing characters"]),
]


@pytest.mark.parametrize(
    ("raw", "code", "needles"), [(r, c, n) for _, r, c, n in INVALID], ids=[i for i, _, _, _ in INVALID]
)
def test_invalid_record(raw: bytes, code: str, needles: list[str]) -> None:
    """An invalid record between two valid ones gives exactly one Rejection, with the right reason code, a
    message naming the field, its position and its original bytes; the valid neighbours still decode."""
    batch = DECODER.decode([VALID, raw, VALID], first_position=10)
    assert 2 == len(batch)
    assert 1 == len(batch.rejections)
    rejection = batch.rejections[0]
    assert (10 + 1, code, raw) == (rejection.position, rejection.code, rejection.raw)
    assert [] == [n for n in needles if n not in rejection.message]


@pytest.mark.parametrize(
    ("raw", "code"),
    [(r, c) for _, r, c, _ in INVALID],
    ids=[i for i, _, _, _ in INVALID],
)
def test_invalid_record_alone(raw: bytes, code: str) -> None:
    """An invalid record on its own is rejected with the same code: no events come out of it."""
    batch = decode_one(raw)
    assert (0, [code]) == (len(batch), [r.code for r in batch.rejections])


def test_explicit_positions() -> None:
    """Positions can be given per record (e.g. partition offsets); rejections carry them, in order."""
    batch = DECODER.decode([b"x", VALID, b"[]"], positions=[1007, 1009, 1012])
    assert [
        (1007, "malformed_json"),
        (1012, "not_an_object"),
    ] == [(r.position, r.code) for r in batch.rejections]


LATIN1 = VALID.replace(b'"us-east"', b'"z\xfcrich"')


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([VALID, LATIN1, VALID], id="latin-1 region"),
        pytest.param([b'{"tier": "', b"\x80", VALID], id="junk harmless alone, joined by the fast path"),
    ],
)
def test_invalid_utf8_is_a_rejection(records: list[bytes]) -> None:
    """Invalid UTF-8 (a Latin-1 region name; or a record that leaves a string open followed by a stray
    byte, which an all-at-once fast path could join into one JSON string) is rejected like any other bad
    record, one Rejection per bad record, and never stops the batch (regression: UnicodeDecodeError escaped
    and decode() crashed)."""
    batch = DECODER.decode(records)
    bad = [(i + 1, raw) for i, raw in enumerate(records) if raw != VALID]
    assert (records.count(VALID), bad) == (len(batch), [(r.position, r.raw) for r in batch.rejections])


def test_invalid_utf8_code() -> None:
    """A string field that is not UTF-8 gives the code invalid_utf8 and a message saying so."""
    (rejection,) = decode_one(LATIN1).rejections
    assert ("invalid_utf8", LATIN1) == (rejection.code, rejection.raw)
    assert "UTF-8" in rejection.message


def test_records_cannot_splice_into_each_other() -> None:
    """Each record is judged on its own: two objects in one record and an object split across two records
    are all rejected, whatever the records around them (regression: the joined fast path only checked the
    count, so these three passed as three valid events)."""
    two = VALID + b"," + VALID
    head, tail = (
        b'{"ts": 1760832001, "region": "us-east"',
        b'"tier": "canary", "latency_ms": 2, "status": 500}',
    )
    batch = DECODER.decode([two, head, tail])
    assert (0, [1, 2, 3]) == (len(batch), [r.position for r in batch.rejections])


# -- property: junk never disturbs valid records ---------------------------------------------------------

offsets = st.sampled_from([0, 120, -300, 330, -600])


@st.composite
def valid_records(draw: st.DrawFn) -> bytes:
    """A random record that satisfies the contract and the decoder's gates."""
    region, tier = draw(st.sampled_from(GATES))
    ms = draw(st.integers(int(EPOCH_MIN_S) * 1000, int(EPOCH_MAX_S) * 1000))
    ts: float | str
    if draw(st.booleans()):
        ts = ms / 1000
    else:
        zone = timezone(timedelta(minutes=draw(offsets)))
        ts = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone).isoformat()
    fields: dict[str, Any] = {
        "ts": ts,
        "region": region,
        "tier": tier,
        "latency_ms": draw(st.floats(0, MAX_LATENCY_MS)),
    }
    outcome = draw(st.sampled_from(["status", "error", "both"]))
    if outcome != "error":
        fields["status"] = draw(st.integers(100, 599))
    if outcome != "status":
        fields["error"] = draw(st.booleans())
    if draw(st.booleans()):
        fields["request_id"] = draw(st.text(max_size=20))
    return json.dumps(fields).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

BAD_VALUES: dict[str, list[Any]] = {
    "ts": [None, -1, 0, 1e12, "yesterday", "2025-10-19T00:00:00", True, []],
    "region": [None, "", "mars", 5, "r" * 65, ["us-east"]],
    "tier": [None, "", "ramp-99", 7],
    "latency_ms": [None, -0.5, "12", 1e9, [1.0], False],
    "status": [None, True, 99, 600, "200"],
}


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    """A record that is valid but for one required field, missing or wrong."""
    fields = json.loads(record())
    name = draw(st.sampled_from(sorted(BAD_VALUES)))
    bad = draw(st.sampled_from(BAD_VALUES[name]))
    if bad is None:
        del fields[name]
    else:
        fields[name] = bad
    return json.dumps(fields).encode()


junk = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=32).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_misses(),
    valid_records().map(lambda r: r + b"," + r),
    valid_records().map(lambda r: r[: len(r) // 2]),
)


@settings(max_examples=300, deadline=None)
@given(
    valid=st.lists(valid_records(), max_size=12),
    bad=st.lists(junk, min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
    first=st.integers(0, 10**9),
)
def test_junk_never_disturbs_valid_records(
    valid: list[bytes],
    bad: list[bytes],
    seed: int,
    first: int,
) -> None:
    """Interleaving arbitrary junk (random bytes and text, random JSON values, near-miss records, two
    objects in one record, truncated records) with valid records leaves the valid records' columns exactly
    as decoded alone, and gives exactly one Rejection per junk record, carrying its original bytes and its
    position."""
    is_junk = np.random.default_rng(seed).permutation([False] * len(valid) + [True] * len(bad))
    valid_iter, junk_iter = iter(valid), iter(bad)
    mixed = [next(junk_iter) if j else next(valid_iter) for j in is_junk]
    batch = DECODER.decode(mixed, first_position=first)
    assert columns(DECODER.decode(valid)) == columns(batch)
    expected = [(first + i, raw) for i, (raw, j) in enumerate(zip(mixed, is_junk, strict=True)) if j]
    assert expected == [(r.position, r.raw) for r in batch.rejections]


# -- decode_block: newline-separated records in one buffer ----------------------------------------------


def same_result(expected: EventBatch, actual: EventBatch) -> bool:
    def rejections(b: EventBatch) -> list[tuple[int, str, bytes]]:
        return [(r.position, r.code, r.raw) for r in b.rejections]

    return columns(expected) == columns(actual) and rejections(expected) == rejections(actual)


@settings(max_examples=200, deadline=None)
@given(
    valid=st.lists(valid_records(), max_size=12),
    bad=st.lists(junk.filter(lambda raw: b"\n" not in raw), max_size=6),
    seed=st.integers(0, 2**32 - 1),
    first=st.integers(0, 10**9),
)
def test_decode_block_equals_decode(valid: list[bytes], bad: list[bytes], seed: int, first: int) -> None:
    """decode_block(lines joined by newlines) gives exactly what decode(lines) gives: the same columns and the
    same rejections at the same line positions."""
    lines = list(np.random.default_rng(seed).permutation(np.array(valid + bad, dtype=object)))
    assume(lines)
    block = b"\n".join(lines)
    assert same_result(DECODER.decode(lines, first_position=first), DECODER.decode_block(block, first))


def test_decode_block_across_sub_blocks() -> None:
    """A block larger than SUB_BLOCK_BYTES is decoded in pieces; line positions and rejections still count
    from the start of the whole block, including bad lines right at the piece boundaries."""
    lines = [record(ts=1_760_832_000 + i, latency_ms=i % 500) for i in range(6000)]
    size = np.cumsum([len(line) + 1 for line in lines])
    boundary = int(np.searchsorted(size, SUB_BLOCK_BYTES))
    for i in (0, boundary - 1, boundary, boundary + 1, 4321, len(lines) - 1):
        lines[i] = b"junk %d" % i
    block = b"\n".join(lines)
    assert len(block) > 2 * SUB_BLOCK_BYTES
    result = DECODER.decode_block(block, first_position=100)
    assert same_result(DECODER.decode(lines, first_position=100), result)
    assert 6000 - 6 == len(result)


def test_decode_of_a_long_list_works_in_sub_blocks() -> None:
    """A list of records larger than two sub-blocks is decoded in pieces (for the CPU cache): the result equals
    decoding each record alone, with positions counted over the whole list, bad records at any piece included."""
    lines = [record(ts=1_760_832_000 + i, latency_ms=i % 500) for i in range(6000)]
    for i in (0, 1499, 1500, 3001, len(lines) - 1):
        lines[i] = b"junk %d" % i
    assert sum(map(len, lines)) > 2 * SUB_BLOCK_BYTES
    one_by_one = EventBatch.concat([DECODER.decode([line], first_position=7 + i) for i, line in enumerate(lines)])
    assert same_result(one_by_one, DECODER.decode(lines, first_position=7))


SPLIT_OBJECT = [b'{"ts": 1760832001, "region": "us-east"', b'"tier": "canary", "status": 500}']


@pytest.mark.parametrize(
    ("lines", "positions"),
    [
        ([VALID + b"," + VALID, *SPLIT_OBJECT], [1, 2, 3]),
        ([VALID, VALID.replace(b", ", b",\n").split(b"\n")[0]], [2]),
        ([VALID, record(pad="x" * MAX_RECORD_BYTES), VALID], [2]),
    ],
    ids=["spliced lines", "object cut at a newline", "oversized line"],
)
def test_decode_block_judges_each_line(lines: list[bytes], positions: list[int]) -> None:
    """Every line of a block stands alone: two objects on a line, half an object or an oversized line are
    rejected at their line, whatever the lines around them."""
    result = DECODER.decode_block(b"\n".join(lines))
    assert (lines.count(VALID), positions) == (len(result), [r.position for r in result.rejections])
