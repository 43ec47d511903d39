"""The worker's path for OTLP trace batches without a broker: polls of batch records decoded by ``OtlpDecoder``,
expanded to one record per request (``worker.spans``) and flushed by the processor decide what replay decides on
the same requests as contract-v1 lines -- applied where read, or forwarded to the gate's home partition and
applied there -- and a re-delivered poll adds nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest

from gatekeeper.core.decision import decode
from gatekeeper.core.engine import Engine
from gatekeeper.core.otlp import OtlpDecoder, SpanBatch
from gatekeeper.core.plan import Plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.worker import spans
from gatekeeper.shell.worker.processor import Flush, Processor, Record, Topics
from otlp_batches import Encoding, batches, telemetry_lines
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000
PLAN = Plan.model_validate(small_plan("otlp-worker", "1", [small_tier("canary", 5)]))
GATES = Engine(PLAN).keys


def replayed(lines: list[bytes]) -> list[bytes]:
    sink = io.BytesIO()
    replay(PLAN, io.BytesIO(b"\n".join(lines)), sink)
    return sink.getvalue().splitlines()


def flush(processor: Processor, runs: list[tuple[str, int, list[Any]]]) -> Flush:
    """Decode a poll as the worker's decoding does, expand it, flush it."""
    values = [r.value for _t, _p, records in runs for r in records]
    decoded = OtlpDecoder(GATES).decode(values, first_position=0)
    assert isinstance(decoded, SpanBatch)
    expanded, events = spans.expand(runs, decoded, "telemetry", GATES)  # type: ignore[arg-type]
    return processor.flush_polled(expanded, decoded=events)


def decisions_of(flushes: list[Flush]) -> list[bytes]:
    return [m.value for f in flushes for m in f.messages if m.topic == "decisions" and m.value is not None]


def by_gate(values: list[bytes]) -> dict[str, list[bytes]]:
    """Decisions per gate, in order (the processor emits gate by gate; replay interleaves gates)."""
    out: dict[str, list[bytes]] = {}
    for value in values:
        decision = decode(value)
        out.setdefault(decision.key, []).append(value)
    return out


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_batches_applied_where_read_decide_like_replay(encoding: Encoding) -> None:
    """One partition: every request is applied directly, in polls of 20 batches."""
    lines = telemetry_lines(T0_S)
    records = [Record("telemetry", 0, i, None, b) for i, b in enumerate(batches(lines, 100, encoding, 2))]
    processor = Processor(PLAN, Topics("telemetry", "gates", "decisions", "breaches", "dlq", 1), lambda _k: None)

    out = [flush(processor, [("telemetry", 0, records[i : i + 20])]) for i in range(0, len(records), 20)]

    assert by_gate(replayed(lines)) == by_gate(decisions_of(out))
    assert (len(lines), 0) == (sum(f.applied for f in out), sum(f.forwarded for f in out))


def test_requests_forwarded_to_their_home_partition_decide_like_replay() -> None:
    """Eight partitions, batches read on partition 3 (home of neither gate): each request is forwarded as a
    contract-v1 record with its source offset; fed back as the gates topic's records they decide like replay."""
    lines = telemetry_lines(T0_S)
    topics = Topics("telemetry", "gates", "decisions", "breaches", "dlq", 8)
    processor = Processor(PLAN, topics, lambda _k: None)
    assert 3 not in processor.home
    records = [Record("telemetry", 3, 1000 + i, None, b) for i, b in enumerate(batches(lines, 100, "proto"))]

    out = []
    for i in range(0, len(records), 20):
        first = flush(processor, [("telemetry", 3, records[i : i + 20])])
        forwards = [m for m in first.messages if m.topic == "gates"]
        by_partition: dict[int, list[Any]] = {}
        for n, m in enumerate(forwards):
            forwarded = Record("gates", m.partition, i * 10_000 + n, m.key, m.value, m.headers)
            by_partition.setdefault(m.partition, []).append(forwarded)
        out.append(flush(processor, [("gates", p, rs) for p, rs in sorted(by_partition.items())]))

    assert by_gate(replayed(lines)) == by_gate(decisions_of(out))
    assert len(lines) == sum(f.applied for f in out)


def test_a_redelivered_poll_is_skipped_and_a_malformed_batch_goes_to_the_dlq() -> None:
    """After a crash the same records come again: no request is applied twice. A malformed batch is one dead
    letter with its original bytes and reason ``otlp:malformed``."""
    lines = telemetry_lines(T0_S, minutes=30)
    messages = batches(lines, 100, "json")
    values = [*messages[:2], b'{"resourceSpans": 1}', *messages[2:]]
    records = [Record("telemetry", 0, i, None, value) for i, value in enumerate(values)]
    processor = Processor(PLAN, Topics("telemetry", "gates", "decisions", "breaches", "dlq", 1), lambda _k: None)

    first = flush(processor, [("telemetry", 0, records)])
    again = flush(processor, [("telemetry", 0, records[1:])])

    dead = [(m.value, dict(m.headers)["gk.reason"]) for m in first.messages if m.topic == "dlq"]
    assert [(b'{"resourceSpans": 1}', b"otlp:malformed")] == dead
    assert (len(lines), 0, len(lines) - 100) == (first.applied, again.applied, again.duplicates)
