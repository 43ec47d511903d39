"""``simulate --bootstrap`` against a real broker puts exactly the scenario's lines on the telemetry topic
(unkeyed or keyed by gate, each partition in the file's order), and ``kafka_admin.ensure_topics`` creates and
checks the topics it produces to.

Every test uses fresh topic names, so the tests share the session's broker without interfering.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_io import fresh, partitions_of, settings_for

from gatekeeper.errors import UserError
from gatekeeper.shell.cli import main
from gatekeeper.shell.kafka_admin import ensure_topics
from gatekeeper.sim.scenario import load_scenario
from gatekeeper.sim.writer import write_scenario

pytestmark = pytest.mark.kafka

PLAN = Path(__file__).resolve().parents[2] / "config" / "rollout-plan.yaml"
READ_TIMEOUT_S = 60.0
Record = tuple[int, bytes | None, bytes]  # partition, key, value

SCENARIO = f"""
name: tools-test
description: two small streams, disordered, with invalid records, for the Kafka tool tests
seed: 4242
start: "2025-10-19T00:00:00Z"
plan: {PLAN}
disorder: 30s
malformed_share: 0.02
streams:
  - region: us-east
    tier: canary
    end: 2h
    rate_per_min: 8
    error_rate: 0.01
    latency: {{median_ms: 18, sigma: 0.3}}
  - region: eu-west
    tier: rollout-75
    end: 2h
    rate_per_min: 6
    latency: {{median_ms: 25, sigma: 0.4}}
"""


async def read_all(bootstrap: str, topic: str, count: int) -> list[Record]:
    """``count`` records of every partition of ``topic`` from the beginning, in partition order."""
    partitions = (await partitions_of(bootstrap, topic))[topic]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[Record] = []
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        async with asyncio.timeout(READ_TIMEOUT_S):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, batch in sorted(batches.items(), key=lambda item: item[0].partition):
                    records += [(tp.partition, r.key, r.value) for r in batch if r.value is not None]
    finally:
        await consumer.stop()
    return records


def scenario_file(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A small scenario file and the lines the simulator writes for it (its arrival order)."""
    path = tmp_path / "tools-test.yaml"
    path.write_text(SCENARIO)
    out = io.BytesIO()
    write_scenario(load_scenario(path), out)
    lines = out.getvalue().splitlines()
    assert len(set(lines)) == len(lines), "the order checks below need distinct lines"
    return path, lines


def in_file_order(records: list[Record], lines: list[bytes]) -> bool:
    """True when each partition's records appear in the same relative order as in the file."""
    where = {line: i for i, line in enumerate(lines)}
    per_partition: dict[int, list[int]] = defaultdict(list)
    for partition, _key, value in records:
        per_partition[partition].append(where[value])
    return all(positions == sorted(positions) for positions in per_partition.values())


def gate_of(line: bytes) -> bytes | None:
    """``region/tier`` of a record that is a JSON object with both as strings, else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and isinstance(record.get("region"), str) and isinstance(record.get("tier"), str):
        return f"{record['region']}/{record['tier']}".encode()
    return None


# -- simulate ------------------------------------------------------------------------------------------------
def test_simulate_unkeyed_produces_exactly_the_scenario_lines(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --output and --keyed, simulate --bootstrap writes nothing to stdout, creates the telemetry
    topic with 8 partitions and produces every line of the scenario once, unkeyed, each partition keeping
    the file's order; the summary on stderr counts the records."""
    path, lines = scenario_file(tmp_path)
    topic = fresh("telemetry")

    status = main(["simulate", "--scenario", str(path), "--bootstrap", kafka_bootstrap, "--telemetry-topic", topic])
    records = asyncio.run(read_all(kafka_bootstrap, topic, len(lines)))
    captured = capsys.readouterr()

    expected_status_and_stdout = (0, "")
    assert expected_status_and_stdout == (status, captured.out)
    assert f"{len(lines):,} records" in captured.err
    assert sorted(lines) == sorted(value for _p, _k, value in records)
    expected_keys: set[bytes | None] = {None}
    assert expected_keys == {key for _p, key, _v in records}
    assert in_file_order(records, lines)
    expected_partitions = {topic: 8}
    assert expected_partitions == asyncio.run(partitions_of(kafka_bootstrap, topic))


def test_simulate_keyed_produces_the_lines_keyed_by_gate_and_writes_the_file(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With --keyed and --output, the file gets exactly the simulator's bytes and the topic exactly its lines;
    every valid record's key is its region/tier, all records of a key share one partition, in file order."""
    path, lines = scenario_file(tmp_path)
    topic, output = fresh("telemetry-keyed"), tmp_path / "copy.jsonl"

    status = main(
        [
            *("simulate", "--scenario", str(path), "--keyed", "--output", str(output)),
            *("--bootstrap", kafka_bootstrap, "--telemetry-topic", topic),
        ]
    )
    records = asyncio.run(read_all(kafka_bootstrap, topic, len(lines)))

    expected_status = 0
    assert expected_status == status
    expected_file = b"".join(line + b"\n" for line in lines)
    assert expected_file == output.read_bytes()
    assert sorted(lines) == sorted(value for _p, _k, value in records)
    wrong_keys = [(key, value) for _p, key, value in records if gate_of(value) not in (None, key)]
    expected_wrong: list[tuple[bytes | None, bytes]] = []
    assert expected_wrong == wrong_keys
    partitions_of_key: dict[bytes | None, set[int]] = defaultdict(set)
    for partition, key, _value in records:
        partitions_of_key[key].add(partition)
    expected_gates = {b"us-east/canary", b"eu-west/rollout-75"}
    assert expected_gates <= set(partitions_of_key)
    assert all(len(partitions_of_key[gate]) == 1 for gate in expected_gates)
    assert in_file_order(records, lines)


def test_simulate_unusable_scenario_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario the loader rejects ends with status 2 and one message naming the file and the field."""
    path = tmp_path / "broken.yaml"
    path.write_text(SCENARIO.replace("rate_per_min: 8", "rate_per_min: -8"))

    status = main(["simulate", "--scenario", str(path), "--bootstrap", "127.0.0.1:9"])
    err = capsys.readouterr().err

    expected_status = 2
    assert expected_status == status
    assert str(path) in err
    assert "rate_per_min" in err


def test_simulate_keyed_without_bootstrap_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--keyed only means something when producing to Kafka; without --bootstrap it is refused."""
    status = main(["simulate", "--scenario", str(PLAN.parent / "scenarios" / "stall.yaml"), "--keyed"])

    expected_status = 2
    assert expected_status == status
    assert "--keyed" in capsys.readouterr().err


# -- kafka_admin ---------------------------------------------------------------------------------------------
def test_ensure_topics_creates_with_partitions_and_configs_and_checks_existing(kafka_bootstrap: str) -> None:
    """Missing topics are created with the configured partitions and configs; calling again is a no-op;
    an existing topic with another partition count and a missing topic with creation off are UserErrors."""
    settings = settings_for(kafka_bootstrap, partitions=4)
    topics = {fresh("plain"): {}, fresh("retained"): {"retention.ms": "3600000"}}

    async def scenario() -> tuple[dict[str, int], dict[str, int], str, str]:
        first = await ensure_topics(settings, topics)
        again = await ensure_topics(settings, topics)
        with pytest.raises(UserError) as wrong:
            await ensure_topics(settings_for(kafka_bootstrap, partitions=6), topics)
        with pytest.raises(UserError) as off:
            await ensure_topics(settings_for(kafka_bootstrap, create=False), {fresh("absent"): {}})
        return first, again, str(wrong.value), str(off.value)

    first, again, wrong, off = asyncio.run(scenario())

    expected = dict.fromkeys(topics, 4)
    assert expected == first
    assert expected == again
    assert "has 4" in wrong
    assert "configured 6" in wrong
    assert "--no-create-topics" in off
