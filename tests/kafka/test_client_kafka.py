"""``gatekeeper.client`` and other readers of the decisions topic, on a real broker: typed decisions with
dedupe, ``latest``, ``gate``, ``wait_for_pass``; the example controller walking tiers by listening; and a
consumer written with confluent-kafka validating the worker's decisions against the JSON Schema."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import worker_harness as h
from confluent_kafka import Consumer, TopicPartition
from golden_decisions import golden, keyed

from gatekeeper.client import DecisionClient, GateHeldError
from gatekeeper.core.decision import Decision, decode

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "streams" / "decision.v1.schema.json"


async def collect(client: DecisionClient, tier: str | None = None, plan: str | None = None) -> list[Decision]:
    return [d async for d in client.decisions(plan=plan, tier=tier, follow=False)]


def test_client_reads_typed_deduplicated_decisions(kafka_bootstrap: str) -> None:
    """Iteration yields each decision_id once, typed; filters by plan version and tier; latest and gate fold."""
    names = h.Names()
    h.create_topic(kafka_bootstrap, names.decisions, h.PARTITIONS)
    breach, healthy = golden("error-breach"), golden("healthy-canary")
    pairs = [*keyed([*breach, *breach[:2], *healthy]), (b"us-east/canary", b"not a decision")]
    h.produce_pairs(kafka_bootstrap, names.decisions, pairs)
    client = DecisionClient(kafka_bootstrap, topic=names.decisions)

    everything = asyncio.run(collect(client))
    ramp = asyncio.run(collect(client, tier="ramp-10"))
    assert 6 == len(everything)  # error-breach's 4, healthy-canary's 2 (the pending awaiting its GO, the pass)
    version = decode(breach[0]).plan_version
    by_plan = [len(asyncio.run(collect(client, plan=v))) for v in (version, "9.9+other")]
    assert [6, 0] == by_plan
    assert ["fail", "hold", "release", "pass"] == [d.decision for d in ramp]
    assert all(isinstance(d, Decision) for d in everything)
    assert 4 == client.skipped  # four reads, one record that is not a decision each time
    assert decode(breach[-1]) == asyncio.run(client.latest("us-east", "ramp-10"))
    assert asyncio.run(client.latest("eu-west", "canary")) is None
    view = asyncio.run(client.gate("us-east", "ramp-10"))
    assert ("passed", True) == (view.state, view.may_advance)


def test_wait_for_pass(kafka_bootstrap: str) -> None:
    """Already passed: at once. Held: GateHeldError, or with through_holds the pass that follows the release,
    as soon as it is produced. Nothing coming: TimeoutError."""
    names = h.Names()
    h.create_topic(kafka_bootstrap, names.decisions, h.PARTITIONS)
    breach = golden("error-breach")
    h.produce_pairs(kafka_bootstrap, names.decisions, keyed([*golden("healthy-canary"), *breach[:2]]))
    client = DecisionClient(kafka_bootstrap, topic=names.decisions)

    assert "pass" == asyncio.run(client.wait_for_pass("us-east", "canary", timeout=30)).decision
    with pytest.raises(GateHeldError, match="us-east/ramp-10 failed at 2025-10-21T00:36:00Z"):
        asyncio.run(client.wait_for_pass("us-east", "ramp-10", timeout=30))
    with pytest.raises(TimeoutError):
        asyncio.run(client.wait_for_pass("eu-west", "canary", timeout=3))

    later = threading.Timer(3.0, h.produce_pairs, (kafka_bootstrap, names.decisions, keyed(breach[2:])))
    later.start()
    started = time.monotonic()
    passed = asyncio.run(client.wait_for_pass("us-east", "ramp-10", timeout=60, through_holds=True))
    later.join()
    assert (decode(breach[3]), True) == (passed, time.monotonic() - started >= 3.0)


def test_example_controller_walks_tiers(kafka_bootstrap: str) -> None:
    """examples/controller.py advances us-east through canary and ramp-10 (through its hold), then waits on
    ramp-25 and gives up after its timeout."""
    names = h.Names()
    h.create_topic(kafka_bootstrap, names.decisions, h.PARTITIONS)
    h.produce_pairs(kafka_bootstrap, names.decisions, keyed([*golden("healthy-canary"), *golden("error-breach")]))
    cmd = [sys.executable, str(REPO / "examples" / "controller.py"), "--bootstrap", kafka_bootstrap]
    cmd += ["--topic", names.decisions, "--region", "us-east", "--timeout", "5"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    lines = run.stdout.splitlines()
    assert 1 == run.returncode, run.stderr
    expected = [
        "controller: us-east: set traffic to 1% (tier canary); waiting for GO",
        "controller: us-east/canary: GO at 2025-11-15T01:00:00Z",  # after the release board's GO (issue 11)
        "controller: us-east: set traffic to 10% (tier ramp-10); waiting for GO",
        "controller: us-east/ramp-10: GO at",
        "controller: us-east: set traffic to 25% (tier ramp-25); waiting for GO",
        "controller: us-east/ramp-25: no pass within 5 s; staying on this tier",
    ]
    assert expected == [line[: len(e)] for line, e in zip(lines, expected, strict=True)]


def test_confluent_kafka_consumer_validates_worker_decisions(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A consumer written with confluent-kafka (librdkafka, not aiokafka) reads every decision the worker
    wrote and each one validates against streams/decision.v1.schema.json; keys are region/tier."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, settle=0.5)
        assert 0 == workers[0].stop()

    config = {"bootstrap.servers": kafka_bootstrap, "group.id": f"{names.app_id}-cfk", "enable.auto.commit": False}
    consumer = Consumer(config)
    consumer.assign([TopicPartition(names.decisions, p, 0) for p in range(h.PARTITIONS)])
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + 60
    try:
        while len(seen) < len(expected) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            document = json.loads(message.value() or b"")
            errors = [e.message for e in validator.iter_errors(document)]
            assert [] == errors, document
            assert f"{document['region']}/{document['tier']}".encode() == message.key()
            seen.append(document)
    finally:
        consumer.close()
    assert sorted(json.loads(v)["decision_id"] for v in expected) == sorted(str(d["decision_id"]) for d in seen)
