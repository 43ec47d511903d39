"""CloudEvents headers of produced decisions and breach events (``gatekeeper.shell.cloudevents``), read back with the
CloudEvents Python SDK's Kafka binding (``cloudevents.kafka.from_binary`` / ``to_binary``). No broker needed;
``tests/kafka/test_cloudevents_kafka.py`` checks the records a real worker writes."""

from __future__ import annotations

import json
from pathlib import Path

from cloudevents.kafka import KafkaMessage, from_binary, to_binary

from gatekeeper.core import breach
from gatekeeper.core import decision as decisions
from gatekeeper.core.plan import Plan
from gatekeeper.shell.cloudevents import breach_headers, headers_of
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics
from plans_for_tests import small_plan, small_tier

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "error-breach.decisions.jsonl"


def _golden_fail() -> bytes:
    return next(line for line in GOLDEN.read_bytes().splitlines() if json.loads(line)["decision"] == "fail")


def test_a_decision_reads_back_as_a_cloudevent_with_the_decision_as_data() -> None:
    """Binary mode: the SDK finds every required attribute, the partition key is the Kafka key and the data is
    the unchanged decision JSON."""
    value = _golden_fail()
    decision = decisions.decode(value)
    message = KafkaMessage(dict(headers_of(decision)), decision.key.encode(), value)

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


def _breach() -> breach.Breach:
    """A breach event as the worker writes it (the fields of contract v2)."""
    window = breach.FiredWindow("page", "1h", "5m", 14.4, 20.5, 60.1)
    return breach.Breach(
        breach_id="b" * 32, event_id="e" * 32, revision=0, state="open", change="opened", severity="page",
        region="us-east", tier="ramp-10", slo="error_rate", objective="error rate <= 0.002", windows=(window,),
        budget_consumed=0.04, opened_at="2025-10-21T00:05:00Z", at="2025-10-21T00:05:00Z", plan_version="2.0+abc",
    )  # fmt: skip


def test_the_sdk_writes_back_exactly_our_headers_and_key() -> None:
    """Round trip: ``to_binary`` of the parsed event gives the same headers and key, so we follow the binding
    as the SDK implements it (no ``ce_partitionkey`` header: the extension is the key)."""
    for key, value, headers in (
        (decisions.decode(_golden_fail()).key, _golden_fail(), dict(headers_of(decisions.decode(_golden_fail())))),
        (_breach().key, breach.encode(_breach()), dict(breach_headers(_breach()))),
    ):
        event = from_binary(KafkaMessage(headers, key.encode(), value), data_unmarshaller=lambda raw: raw)
        again = to_binary(event, data_marshaller=lambda raw: raw)

        assert (headers, key.encode(), value) == (again.headers, again.key, again.value)


def test_a_breach_event_reads_back_with_its_event_id_and_change() -> None:
    """A breach event (contract v2) is a CloudEvent of type ``io.gatekeeper.breach.v2``: its id is the event's
    ``event_id`` (one per opened/escalated/deescalated/resolved), its subject the change, its time ``at``."""
    alert = _breach()
    message = KafkaMessage(dict(breach_headers(alert)), alert.key.encode(), breach.encode(alert))

    event = from_binary(message, data_unmarshaller=lambda raw: raw)

    expected = {
        "specversion": "1.0",
        "id": "e" * 32,
        "source": "/gatekeeper/plans/2.0+abc/gates/us-east/ramp-10",
        "type": "io.gatekeeper.breach.v2",
        "subject": "opened",
        "time": "2025-10-21T00:05:00Z",
        "datacontenttype": "application/json",
        "partitionkey": b"us-east/ramp-10",
    }
    assert expected == dict(event.get_attributes())
    assert breach.encode(alert) == event.get_data()


def test_source_segments_are_percent_encoded() -> None:
    """A region or tier holding ``/`` or a space is percent-encoded, so the source keeps its path segments; the
    ``+`` of a plan version (allowed in a path) is kept."""
    decision = decisions.decode(_golden_fail())
    odd = decisions.Decision(**{**{f: getattr(decision, f) for f in decision.__struct_fields__}, "tier": "a/b c"})

    source = dict(headers_of(odd))["ce_source"].decode()

    assert f"/gatekeeper/plans/{decision.plan_version}/gates/us-east/a%2Fb%20c" == source


def test_the_worker_processor_puts_the_headers_on_decisions_and_breaches() -> None:
    """Every decision the processor emits carries its decision headers, every breach event the breach headers;
    ``breaches`` carries breach events (contract v2), no copies of decisions. 50 % errors against a 5 % ceiling
    burn 10x: one page rule over 30 m / 5 m at 5x opens a breach."""
    page = {"severity": "page", "long": "30m", "short": "5m", "burn_rate": 5}
    plan = small_plan("ce-test", "1", [small_tier("canary", 5)], alerts={"rules": [page]})
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

    on_decisions = [(m.value, m.headers) for m in flush.messages if m.topic == "d"]
    on_breaches = [(m.value, m.headers) for m in flush.messages if m.topic == "b"]
    assert [(decisions.encode(d), headers_of(d)) for d in flush.decisions] == on_decisions
    assert [(breach.encode(b), breach_headers(b)) for b in flush.breaches] == on_breaches
    assert ["opened"] == [b.change for b in flush.breaches]
