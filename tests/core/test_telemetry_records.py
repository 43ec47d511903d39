"""Telemetry contract v1, record by record: valid records become columns, every invalid record one Rejection
with a countable code, a message naming the field and its original bytes; invalid records never disturb valid
ones."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from gatekeeper.core.telemetry import (
    EPOCH_MAX_S,
    EPOCH_MIN_S,
    MAX_LATENCY_MS,
    MAX_RECORD_BYTES,
    EventBatch,
    Telemetry,
    _reason_of,
)

from .helpers import DECODER, T0, VALID, columns, record


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


@pytest.mark.parametrize(
    "raised",
    [
        pytest.param(UnicodeDecodeError("utf-8", LATIN1, 0, 1, "invalid start byte"), id="msgspec <= 0.22"),
        pytest.param(msgspec.DecodeError("JSON is malformed: invalid utf-8"), id="msgspec 0.23"),
        pytest.param(msgspec.ValidationError("some future wording"), id="any other exception"),
    ],
)
def test_reason_code_does_not_depend_on_the_library_exception(raised: Exception) -> None:
    """The reason code is read from the record's bytes, not from which exception the JSON library raised nor its
    wording: invalid UTF-8 inside a string is invalid_utf8 whatever msgspec version decoded it."""
    assert "invalid_utf8" == _reason_of(raised, LATIN1)[0]


def _refused_by_decoder(raw: bytes) -> bool:
    try:
        msgspec.json.decode(raw, type=Telemetry)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return True
    return False


# Those the JSON decoder itself refuses; the rest (oversized, unknown gate, ts out of range, ...) are judged on
# the decoded values.
DECODER_REFUSED = [
    (i, raw, code) for i, raw, code, _ in INVALID if len(raw) <= MAX_RECORD_BYTES and _refused_by_decoder(raw)
]


@pytest.mark.parametrize(
    ("raw", "code"), [(r, c) for _, r, c in DECODER_REFUSED], ids=[i for i, _, _ in DECODER_REFUSED]
)
def test_reason_codes_ignore_the_library_message(raw: bytes, code: str) -> None:
    """Every record the JSON decoder refuses gets its code from our own checks even when the library's message
    says nothing useful (a library upgrade that rewords its errors cannot turn missing_field:ts into
    invalid_record)."""
    assert code == _reason_of(msgspec.ValidationError("reworded"), raw)[0]
