"""Decisions and breach events a real worker writes are CloudEvents in the Kafka binding's binary mode: each
record read from the broker parses with the CloudEvents SDK (``cloudevents.kafka.from_binary``) into the event
whose id is the decision's id (a breach event's ``event_id``), whose partition key is the record's key and whose
data is the unchanged decision (breach event)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import worker_harness as h
from cloudevents.kafka import KafkaMessage, from_binary

from gatekeeper.core import breach
from gatekeeper.core import decision as decisions

pytestmark = pytest.mark.kafka


def _events(records: list[h.Consumed]) -> list[tuple[dict[str, Any], Any]]:
    out = []
    for r in records:
        event = from_binary(KafkaMessage(dict(r.headers), r.key, r.value), data_unmarshaller=lambda raw: raw)
        out.append((dict(event.get_attributes()), event.get_data()))
    return out


def test_worker_decisions_and_breaches_parse_as_cloudevents(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every record on ``decisions`` and ``breaches`` is a CloudEvent 1.0 of the right type, id, source, time and
    partition key, with the decision (breach event) JSON as data and ``content-type: application/json``."""
    plan, names = h.write_plan(tmp_path, h.BREACH_PLAN), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        breaches = h.read_topic(kafka_bootstrap, names.breaches)
        assert 0 == workers[0].stop()

    for topic, records, kind in (("decisions", got, "decision"), ("breaches", breaches, "breach")):
        for (attributes, data), record in zip(_events(records), records, strict=True):
            subject: str
            if kind == "decision":
                d = decisions.decode(record.value)
                ident, source, subject, version, at = d.decision_id, (d.plan_version, d.key), d.decision, "v1", d.at
            else:
                b = breach.decode(record.value)
                ident, source, subject, version, at = b.event_id, (b.plan_version, b.key), b.change, "v2", b.at
            wanted = {
                "specversion": "1.0",
                "id": ident,
                "source": f"/gatekeeper/plans/{source[0]}/gates/{source[1]}",
                "type": f"io.gatekeeper.{kind}.{version}",
                "subject": subject,
                "time": at,
                "datacontenttype": "application/json",
                "partitionkey": source[1].encode(),
            }
            shown = {k: v for k, v in attributes.items() if k != "gk-closed-wall-ms"}
            assert (topic, wanted, record.value) == (topic, shown, data)
    assert sorted(expected) == sorted(r.value for r in got)
    assert breaches


def test_report_reads_the_decisions_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``gatekeeper report --bootstrap`` reads the decisions topic from its first record to its end, counts a
    re-delivered decision once and writes the page for every gate that decided."""
    values = h.expected(h.write_plan(tmp_path), h.scenario(invalid=False))
    names = h.Names()
    h.create_topics(kafka_bootstrap, names)
    keyed = [(decisions.decode(v).key.encode(), v) for v in values]
    h.produce_pairs(kafka_bootstrap, names.decisions, [*keyed, keyed[0]])
    page = tmp_path / "report.html"

    done = h.run_once(
        [sys.executable, "-m", "gatekeeper.shell.cli", "report", "--bootstrap", kafka_bootstrap,
         "--decisions-topic", names.decisions, "--output", str(page)]
    )  # fmt: skip

    gates = {decisions.decode(v).key for v in values}
    assert (0, f"gatekeeper report: {len(values)} decisions of {len(gates)} gates -> {page}") == (
        done.returncode,
        done.stderr.strip(),
    )
    assert all(f'id="gate-{g.replace("/", "-")}"' in page.read_text() for g in gates)
