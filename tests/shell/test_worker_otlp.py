"""The worker's path for OTLP trace batches without a broker: polls of batch records decoded by ``OtlpDecoder`` and
flushed by the processor (stage 1 maps each request to its batch's record; the partials are fed back into stage 2)
decide what replay decides on the same requests as contract-v1 lines, on one partition or spread over eight, and a
re-delivered poll adds nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest

from gatekeeper.core.decision import decode
from gatekeeper.core.otlp import OtlpDecoder, SpanBatch
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics
from otlp_batches import Encoding, batches, telemetry_lines
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000
PLAN = Plan.model_validate(small_plan("otlp-worker", "1", [small_tier("canary", 5)]))
GATES = Pipeline(PLAN).keys


def replayed(lines: list[bytes]) -> list[bytes]:
    sink = io.BytesIO()
    replay(PLAN, io.BytesIO(b"\n".join(lines)), sink)
    return sink.getvalue().splitlines()


class Loop:
    """One processor and the panes topic fed back into it: what a worker with both roles does per poll."""

    def __init__(self, partitions: int) -> None:
        self.topics = Topics("telemetry", "panes", "decisions", "breaches", "dlq", partitions)
        self.processor = Processor(PLAN, self.topics, lambda _k: None, lambda _k: None)
        self.panes: dict[int, list[bytes]] = {}
        self.read: dict[int, int] = {}
        self.flushes: list[Flush] = []

    def poll(self, runs: list[tuple[str, int, list[Any]]]) -> Flush:
        """Decode a telemetry poll as the worker's decoding does, flush it, then every partial it caused."""
        values = [r.value for _t, _p, records in runs for r in records]
        decoded = OtlpDecoder(GATES).decode(values, first_position=0)
        assert isinstance(decoded, SpanBatch)
        first = self._apply(self.processor.flush_polled(runs, decoded=decoded))
        while any(len(v) > self.read.get(q, 0) for q, v in self.panes.items()):
            panes = []
            for q, values in sorted(self.panes.items()):
                start = self.read.get(q, 0)
                panes.append(
                    ("panes", q, [Record("panes", q, start + i, None, v) for i, v in enumerate(values[start:])])
                )
                self.read[q] = len(values)
            self._apply(self.processor.flush_polled(panes))
        return first

    def _apply(self, flush: Flush) -> Flush:
        self.flushes.append(flush)
        for m in flush.messages:
            if m.topic == "panes" and m.value is not None:
                self.panes.setdefault(m.partition, []).append(m.value)
        return flush

    def decisions(self) -> list[bytes]:
        return [m.value for f in self.flushes for m in f.messages if m.topic == "decisions" and m.value is not None]


def by_gate(values: list[bytes]) -> dict[str, list[bytes]]:
    """Decisions per gate, in order (the processor emits gate by gate; replay interleaves gates)."""
    out: dict[str, list[bytes]] = {}
    for value in values:
        decision = decode(value)
        out.setdefault(decision.key, []).append(value)
    return out


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_batches_on_one_partition_decide_like_replay(encoding: Encoding) -> None:
    """One partition, polls of 20 batches of 100 requests: every request is aggregated once and the decisions
    equal replay's on the same requests as contract-v1 lines."""
    lines = telemetry_lines(T0_S)
    records = [Record("telemetry", 0, i, None, b) for i, b in enumerate(batches(lines, 100, encoding, 2))]
    loop = Loop(1)

    for i in range(0, len(records), 20):
        loop.poll([("telemetry", 0, records[i : i + 20])])

    assert by_gate(replayed(lines)) == by_gate(loop.decisions())
    assert (len(lines), 0) == (sum(f.applied for f in loop.flushes), sum(f.late for f in loop.flushes))


def test_batches_spread_over_eight_partitions_decide_like_replay() -> None:
    """Batches spread round-robin over eight partitions (none of them keyed by gate): the partials of every
    partition merge into replay's decisions."""
    lines = telemetry_lines(T0_S)
    loop = Loop(8)
    parts: dict[int, list[Record]] = {p: [] for p in range(8)}
    for i, value in enumerate(batches(lines, 100, "proto")):
        parts[i % 8].append(Record("telemetry", i % 8, 1000 + len(parts[i % 8]), None, value))

    for i in range(0, max(map(len, parts.values())), 3):
        loop.poll([("telemetry", p, recs[i : i + 3]) for p, recs in parts.items() if recs[i : i + 3]])

    assert by_gate(replayed(lines)) == by_gate(loop.decisions())
    assert len(lines) == sum(f.applied for f in loop.flushes)


def test_a_redelivered_poll_is_skipped_and_a_malformed_batch_goes_to_the_dlq() -> None:
    """After a crash the same records come again: no request is applied twice. A malformed batch is one dead
    letter with its original bytes and reason ``otlp:malformed``."""
    lines = telemetry_lines(T0_S, minutes=30)
    messages = batches(lines, 100, "json")
    values = [*messages[:2], b'{"resourceSpans": 1}', *messages[2:]]
    records = [Record("telemetry", 0, i, None, value) for i, value in enumerate(values)]
    loop = Loop(1)

    first = loop.poll([("telemetry", 0, records)])
    again = loop.poll([("telemetry", 0, records[1:])])

    dead = [(m.value, dict(m.headers)["gk.reason"]) for m in first.messages if m.topic == "dlq"]
    assert [(b'{"resourceSpans": 1}', b"otlp:malformed")] == dead
    assert (len(lines), 0, len(records) - 1) == (first.applied, again.applied, again.skipped)
