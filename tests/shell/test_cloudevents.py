"""CloudEvents headers of produced decisions and breaches (``gatekeeper.shell.cloudevents``), read back with the
CloudEvents Python SDK's Kafka binding (``cloudevents.kafka.from_binary`` / ``to_binary``). No broker needed;
``tests/kafka/test_cloudevents_kafka.py`` checks the records a real worker writes."""

from __future__ import annotations

import json
from pathlib import Path

from cloudevents.kafka import KafkaMessage, from_binary, to_binary

from gatekeeper.core import decision as decisions
from gatekeeper.core.plan import Plan
from gatekeeper.shell.cloudevents import headers_of
from gatekeeper.shell.worker.processor import Processor, Record, Topics
from plans_for_tests import small_plan, small_tier

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "error-breach.decisions.jsonl"


def _golden_fail() -> bytes:
    return next(line for line in GOLDEN.read_bytes().splitlines() if json.loads(line)["decision"] == "fail")


def test_a_decision_reads_back_as_a_cloudevent_with_the_decision_as_data() -> None:
    """Binary mode: the SDK finds every required attribute, the partition key is the Kafka key and the data is
    the unchanged decision JSON."""
    value = _golden_fail()
    decision = decisions.decode(value)
    message = KafkaMessage(dict(headers_of(decision, "decision")), decision.key.encode(), value)

    event = from_binary(message, data_unmarshaller=lambda raw: raw)

    expected = {
        "specversion": "1.0",
        "id": decision.decision_id,
        "source": f"/gatekeeper/plans/{decision.plan_version}/gates/us-east/ramp-10",
        "type": "io.gatekeeper.decision.v1",
        "subject": "fail",
        "time": decision.at,
        "datacontenttype": "application/json",
        "partitionkey": b"us-east/ramp-10",
    }
    assert expected == dict(event.get_attributes())
    assert value == event.get_data()


def test_the_sdk_writes_back_exactly_our_headers_and_key() -> None:
    """Round trip: ``to_binary`` of the parsed event gives the same headers and key, so we follow the binding
    as the SDK implements it (no ``ce_partitionkey`` header: the extension is the key)."""
    value = _golden_fail()
    decision = decisions.decode(value)
    headers = dict(headers_of(decision, "breach"))

    event = from_binary(KafkaMessage(headers, decision.key.encode(), value), data_unmarshaller=lambda raw: raw)
    again = to_binary(event, data_marshaller=lambda raw: raw)

    assert (headers, decision.key.encode(), value) == (again.headers, again.key, again.value)
    assert b"io.gatekeeper.breach.v1" == headers["ce_type"]


def test_source_segments_are_percent_encoded() -> None:
    """A region or tier holding ``/`` or a space is percent-encoded, so the source keeps its path segments; the
    ``+`` of a plan version (allowed in a path) is kept."""
    decision = decisions.decode(_golden_fail())
    odd = decisions.Decision(**{**{f: getattr(decision, f) for f in decision.__struct_fields__}, "tier": "a/b c"})

    source = dict(headers_of(odd, "decision"))["ce_source"].decode()

    assert f"/gatekeeper/plans/{decision.plan_version}/gates/us-east/a%2Fb%20c" == source


def test_the_worker_processor_puts_the_headers_on_decisions_and_breaches() -> None:
    """Every decision the processor emits carries its decision headers, every breach the breach headers."""
    plan = small_plan("ce-test", "1", [small_tier("canary", 5)])
    processor = Processor(
        Plan.model_validate(plan), Topics("t", "g", "d", "b", "q", 1), lambda _k: None, lambda _k: None
    )
    t0 = 1_760_832_000
    fields = {"region": "us-east", "tier": "canary", "latency_ms": 50}
    records = [
        Record("t", 0, i, None, json.dumps({"ts": t0 + i * 0.5, "status": 503 if i % 2 else 200, **fields}).encode())
        for i in range(20_000)
    ]

    stage1 = processor.flush_polled([("t", 0, records)])
    partials = [Record("g", 0, i, m.key, m.value) for i, m in enumerate(stage1.messages) if m.topic == "g"]
    flush = processor.flush_polled([("g", 0, partials)])  # stage 2: the panes topic read back

    produced = [(m.topic, m.headers) for m in flush.messages if m.topic in ("d", "b")]
    assert any(topic == "b" for topic, _ in produced)
    for (topic, headers), decision in zip(
        produced, [d for d in flush.decisions for _ in range(2 if d.decision == "fail" else 1)], strict=True
    ):
        assert headers_of(decision, "breach" if topic == "b" else "decision") == headers
