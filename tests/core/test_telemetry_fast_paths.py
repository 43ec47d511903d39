"""The decoder's shortcut changes nothing: the plan's-labels decoder (tried first, dropped at the first input
with other labels) gives the same batches and rejections as decoding each record on its own."""

from __future__ import annotations

from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder

from .helpers import GATES, columns, record

Outcome = tuple[tuple[list[int], list[int], list[float], list[bool]], list[str]]  # columns, rejections


def one_by_one(lines: list[bytes]) -> Outcome:
    """Columns and rejection codes of ``lines`` decoded each on its own (by a fresh decoder per line)."""
    parts = [TelemetryDecoder(GATES).decode([line], i + 1) for i, line in enumerate(lines)]
    batch = EventBatch.concat(parts)
    return columns(batch), [f"{r.position}:{r.code}:{r.message}" for r in batch.rejections]


def as_block(decoder: TelemetryDecoder, lines: list[bytes]) -> Outcome:
    batch = decoder.decode_block(b"\n".join(lines))
    return columns(batch), [f"{r.position}:{r.code}:{r.message}" for r in batch.rejections]


def test_records_of_other_labels_after_plan_labels_decode_as_alone() -> None:
    """Blocks of the plan's labels only, then one with a region and a tier outside the plan, then plan labels
    again: each block decodes as its records would alone (rejections with their reasons, good records kept)."""
    decoder = TelemetryDecoder(GATES)
    plain = [record(latency_ms=float(i)) for i in range(5)]
    mixed = [record(region="mars"), record(latency_ms=7.0), record(tier="nope"), record(region="eu-west")]
    for lines in (plain, mixed, plain):
        assert one_by_one(lines) == as_block(decoder, lines)


def test_invalid_records_among_plan_labels_decode_as_alone() -> None:
    """A block of the plan's labels with records the contract refuses (bad latency, no outcome, bad JSON) gives
    the same rejections and columns as decoding each line alone, and the next clean block still decodes."""
    decoder = TelemetryDecoder(GATES)
    lines = [record(), record(latency_ms=-1.0), record(status=None), b'{"ts": 1', record(tier="ramp-10")]
    assert one_by_one(lines) == as_block(decoder, lines)
    assert one_by_one(lines[:1]) == as_block(decoder, lines[:1])


def test_escaped_member_names_are_read() -> None:
    """An ``error`` member and a tier written with ``\\u`` escapes still count: the record is an error of the
    plan's gate, not one missing its outcome."""
    escaped = (
        b'{"ts": 1760832000.25, "region": "us-east", "tier": "c\\u0061nary", "latency_ms": 3.0, "err\\u006fr": true}'
    )
    lines = [record(), escaped]
    expected: Outcome = (([1_760_832_000_250] * 2, [0, 0], [12.5, 3.0], [False, True]), [])
    assert expected == as_block(TelemetryDecoder(GATES), lines)


def test_records_beyond_the_plain_members_decode_as_alone() -> None:
    """With baseline and cross-region slots, blocks of plain records (a status, no other member) alternate with
    blocks holding a baseline version, a client in another region, an ``error`` flag, an unknown member or no
    status at all: each block decodes as its records would alone (slot keys and copies included)."""

    def alone(lines: list[bytes]) -> Outcome:
        parts = [TelemetryDecoder(GATES, None, BASELINES, CROSS).decode([line], i + 1) for i, line in enumerate(lines)]
        batch = EventBatch.concat(parts)
        return columns(batch), [f"{r.position}:{r.code}:{r.message}" for r in batch.rejections]

    decoder = TelemetryDecoder(GATES, None, BASELINES, CROSS)
    plain = [record(latency_ms=float(i), status=200 + 100 * (i % 4)) for i in range(5)]
    rich = [
        record(version="1.0"),
        record(client_region="eu-west"),
        record(status=None, error=True),
        record(status=503, error=False),
        record(extra="x"),
        record(status=None),
    ]
    for lines in (plain, rich, plain, plain + rich[:1]):
        assert alone(lines) == as_block(decoder, lines)
    assert [3, 0, 4] == as_block(decoder, rich[:2])[0][1]  # the baseline slot; the gate and its copy


BASELINES = {("us-east", "1.0"): 3}  # key 3: us-east's baseline slot
CROSS = {0: 4}  # key 4: the cross-region slot of gate 0 (us-east/canary)
