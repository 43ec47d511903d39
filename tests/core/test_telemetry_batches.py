"""Telemetry decoding of mixed input: arbitrary junk among valid records never disturbs them (a property), a
newline-separated block decodes exactly like the list of its lines, and long inputs decode in sub-blocks with
positions counted over the whole input."""

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
)

from .helpers import DECODER, GATES, VALID, columns, record

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


def test_decode_block_with_an_oversized_line_among_sub_blocks() -> None:
    """An oversized line in a block of several sub-blocks is rejected at its line; the lines around it, in its
    sub-block and the others, decode as they would alone."""
    lines = [record(ts=1_760_832_000 + i, latency_ms=i % 500) for i in range(6000)]
    lines[3000] = record(pad="x" * MAX_RECORD_BYTES)
    result = DECODER.decode_block(b"\n".join(lines), first_position=10)
    assert same_result(DECODER.decode(lines, first_position=10), result)
    assert [(3010, "oversized")] == [(r.position, r.code) for r in result.rejections]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"\n".join([VALID, b"", VALID, b"  ", VALID]), (5, 2, 3, [])),  # blank lines skipped, numbers kept
        (b"\n" + VALID, (2, 1, 1, [])),  # an empty first line
        (VALID + b"\n", (2, 1, 1, [])),  # an empty last line
        (b"  \t ", (1, 1, 0, [])),  # nothing but whitespace
        (b"\n".join([VALID, b"  ", VALID]), (3, 0, 2, [(2, "malformed_json")])),  # no empty line: judged
    ],
    ids=["blank lines", "empty first", "empty last", "whitespace only", "whitespace line"],
)
def test_decode_lines_skips_blank_lines(block: bytes, expected: tuple[int, int, int, list[tuple[int, str]]]) -> None:
    """decode_lines counts a block's lines and its blank ones: a block with an empty line has every blank line
    (empty or whitespace) skipped, the others numbered as lines; in a block without an empty line, a line of
    whitespace is a record like any other, rejected as malformed."""
    count, blank, batch = DECODER.decode_lines(block, first_position=1)
    assert expected == (count, blank, len(batch), [(r.position, r.code) for r in batch.rejections])


def test_decode_lines_without_blank_lines_is_decode_block() -> None:
    """A block without blank lines gives decode_block's result, its line count and no blank line."""
    lines = [record(ts=1_760_832_000 + i) for i in range(50)] + [b"junk"]
    block = b"\n".join(lines)
    count, blank, batch = DECODER.decode_lines(block, first_position=3)
    assert (51, 0) == (count, blank)
    assert same_result(DECODER.decode_block(block, 3), batch)
