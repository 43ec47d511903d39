"""``gatekeeper worker --telemetry-format otlp`` on a real broker: OpenTelemetry trace batches, as the Collector's
kafkaexporter writes them (one ExportTraceServiceRequest per record, built with the official classes, keyed by a
trace id), give the decisions replay gives for the same requests as contract-v1 lines; a malformed batch goes
to the DLQ whole with its reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import worker_harness as h

from otlp_batches import Encoding, batches

pytestmark = pytest.mark.kafka
MALFORMED = b"\x0a\xff\xff\xff\x0f not a trace batch"


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_worker_decides_on_trace_batches_like_replay(kafka_bootstrap: str, tmp_path: Path, encoding: Encoding) -> None:
    """Batches of 100 server spans (+ 2 client spans, ignored), all on one partition that is the home of
    no gate in particular: requests are forwarded to their gates' home partitions and decided there; the
    decisions equal replay's on the lines, so do the breach events, the malformed batch is dead-lettered."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    messages = batches(lines, 100, encoding, client_spans=2)
    messages.insert(len(messages) // 2, MALFORMED if encoding == "proto" else b'{"resourceSpans": "x"}')
    h.create_topics(kafka_bootstrap, names)
    h.produce_keyed(kafka_bootstrap, names.telemetry, [(5, f"{i:032x}".encode(), m) for i, m in enumerate(messages)])

    worker = h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", "--telemetry-format", "otlp")
    with h.running(worker) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        dead = h.wait_for(kafka_bootstrap, names.dlq, h.count_at_least(1), workers, settle=0.0)
        assert 0 == workers[0].stop()

    values = [r.value for r in got]
    assert sorted(expected) == sorted(values)
    assert h.by_key(expected) == h.by_key(values)
    breaches = sorted(h.expected_breaches(plan, lines))  # burn-rate breach events, as replay's --breaches
    assert breaches == sorted(r.value for r in h.read_topic(kafka_bootstrap, names.breaches))
    assert [b"otlp:malformed"] == [dict(r.headers)["gk.reason"] for r in dead]
    (totals,) = workers[0].events("worker totals")
    assert (len(messages), 2 * (len(messages) - 1)) == (totals["records"], totals["ignored_spans"])
    assert Counter({"otlp:malformed": 1}) == Counter(totals["rejected"])
