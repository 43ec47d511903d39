"""The Kafka tools against a real broker: ``simulate --bootstrap`` puts exactly the scenario's lines on the
telemetry topic, ``tail`` prints exactly the decisions on the decisions topic (filtered, tolerant of
garbage), and ``kafka_admin.ensure_topics`` creates and checks topics.

Every test uses fresh topic names, so the tests share the session's broker without interfering.
"""

from __future__ import annotations

import asyncio
import io
import json
import select
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gatekeeper.core.decision import CriterionResult, Decision, Metrics, decode, encode
from gatekeeper.shell.cli import main
from gatekeeper.shell.kafka_admin import admin_client, ensure_topics, partition_counts
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics
from gatekeeper.shell.planfile import UserError
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


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def settings_for(bootstrap: str, **topics: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, topics=Topics(**topics))


async def read_all(bootstrap: str, topic: str, count: int) -> list[Record]:
    """``count`` records of every partition of ``topic`` from the beginning, in partition order."""
    async with admin_client(settings_for(bootstrap)) as admin:
        partitions = (await partition_counts(admin, [topic]))[topic]
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


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


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
    assert expected_partitions == asyncio.run(_partitions(kafka_bootstrap, topic))


async def _partitions(bootstrap: str, topic: str) -> dict[str, int]:
    async with admin_client(settings_for(bootstrap)) as admin:
        return await partition_counts(admin, [topic])


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


# -- tail ----------------------------------------------------------------------------------------------------
def decision(kind: str, region: str, tier: str, hour: int, reason: str, hold_until: str | None = None) -> Decision:
    at = f"2025-10-21T{hour:02d}:00:00Z"
    return Decision(
        decision_id=uuid.uuid4().hex,
        decision=kind,  # type: ignore[arg-type]  # the test's kinds are all valid
        region=region,
        tier=tier,
        phase="ramp",
        window_start=f"2025-10-21T{hour - 1:02d}:00:00Z",
        window_end=at,
        at=at,
        metrics=Metrics(
            requests=1880,
            errors=32,
            error_rate=32 / 1880,
            error_rate_lower=0.007,
            error_rate_upper=0.0337,
            p50_ms=24.8,
            p95_ms=44.3,
            p99_ms=55.2,
            p99_lower_ms=50.4,
            p99_upper_ms=68.0,
        ),
        criteria=(CriterionResult("error_rate", "window", "fail", 0.002, 32 / 1880, reason=reason),),
        reasons=(reason, "a second reason that the readable line leaves out"),
        plan_version="2.0",
        hold_until=hold_until,
    )


DECISIONS = [
    decision("fail", "us-east", "ramp-10", 1, "error rate 1.702% above the 0.2% ceiling"),
    decision("hold", "us-east", "ramp-10", 1, "hold 2w after a failed tier", "2025-11-04T01:00:00Z"),
    decision("pass", "us-west", "ramp-10", 2, "GO: soak complete and every criterion passed"),
    decision("pending", "eu-west", "ramp-25", 3, "no telemetry since 02:00 (15m)"),
    decision("fail", "eu-west", "ramp-10", 4, "P99 latency 104.6 ms above the 50 ms ceiling"),
    decision("hold", "eu-west", "ramp-10", 4, "hold 2w after a failed tier", "2025-11-04T04:00:00Z"),
    decision("release", "us-east", "ramp-10", 5, "hold ended; the soak restarts"),
]


def decisions_topic(bootstrap: str, extra: list[tuple[bytes | None, bytes]] | None = None) -> str:
    """A fresh 3-partition topic holding DECISIONS (keyed region/tier), ``extra`` records in the middle."""
    topic = fresh("decisions")
    asyncio.run(ensure_topics(settings_for(bootstrap, partitions=3), {topic: {}}))
    items: list[tuple[bytes | None, bytes]] = [(d.key.encode(), encode(d)) for d in DECISIONS]
    asyncio.run(produce(bootstrap, topic, [*items[:3], *(extra or []), *items[3:]]))
    return topic


def tail(bootstrap: str, topic: str, *flags: str) -> int:
    return main(["tail", "--bootstrap", bootstrap, "--decisions-topic", topic, "--no-follow", *flags])


def in_key_order(lines: list[bytes]) -> bool:
    """True when the decisions of each key appear in the order they were produced."""
    produced = {encode(d): i for i, d in enumerate(DECISIONS)}
    per_key: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        per_key[decode(line).key].append(produced[line])
    return all(order == sorted(order) for order in per_key.values())


def test_tail_json_prints_exactly_the_decisions_on_the_topic(
    kafka_bootstrap: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """tail --json --from-beginning --no-follow prints each decision's JSON line once, each key's decisions
    in the order they were produced, and exits 0 at the end of the topic."""
    topic = decisions_topic(kafka_bootstrap)

    status = tail(kafka_bootstrap, topic, "--json", "--from-beginning")
    lines = capsysbinary.readouterr().out.splitlines()

    expected_status = 0
    assert expected_status == status
    assert sorted(encode(d) for d in DECISIONS) == sorted(lines)
    assert in_key_order(lines)


@pytest.mark.parametrize(
    ("flags", "wanted"),
    [
        pytest.param(("--region", "us-east"), lambda d: d.region == "us-east", id="region"),
        pytest.param(
            ("--region", "us-west", "--region", "eu-west"),
            lambda d: d.region != "us-east",
            id="repeated-region",
        ),
        pytest.param(("--tier", "ramp-25"), lambda d: d.tier == "ramp-25", id="tier"),
        pytest.param(("--decision", "fail,hold"), lambda d: d.decision in ("fail", "hold"), id="comma-kinds"),
        pytest.param(
            ("--decision", "hold", "--region", "eu-west,us-west", "--tier", "ramp-10"),
            lambda d: d.decision == "hold" and d.region == "eu-west",
            id="combined",
        ),
    ],
)
def test_tail_filters(
    kafka_bootstrap: str, capsysbinary: pytest.CaptureFixture[bytes], flags: tuple[str, ...], wanted: Any
) -> None:
    """--region, --tier and --decision (repeatable, comma lists) keep exactly the matching decisions; the
    filters combine with AND."""
    topic = decisions_topic(kafka_bootstrap)

    status = tail(kafka_bootstrap, topic, "--json", "--from-beginning", *flags)
    lines = capsysbinary.readouterr().out.splitlines()

    expected_status = 0
    assert expected_status == status
    assert sorted(encode(d) for d in DECISIONS if wanted(d)) == sorted(lines)


def test_tail_warns_about_garbage_and_keeps_going(
    kafka_bootstrap: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Records that are not decisions (bad JSON, a JSON object of another shape, an empty value) each get a
    warning on stderr naming partition and offset; every decision around them is still printed."""
    garbage: list[tuple[bytes | None, bytes]] = [
        (b"us-east/ramp-10", b"garbage{"),
        (b"us-east/ramp-10", b'{"decision": "pass", "region": "us-east"}'),
        (b"us-east/ramp-10", b""),
    ]
    topic = decisions_topic(kafka_bootstrap, garbage)

    status = tail(kafka_bootstrap, topic, "--json", "--from-beginning")
    captured = capsysbinary.readouterr()
    warnings = [line for line in captured.err.decode().splitlines() if "warning" in line]

    expected_status = 0
    assert expected_status == status
    assert sorted(encode(d) for d in DECISIONS) == sorted(captured.out.splitlines())
    assert len(garbage) == len(warnings)
    assert all("not a decision" in w and "offset" in w for w in warnings)


def test_tail_readable_lines(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json each decision is one plain line (--no-color) with its time, kind, region/tier, key
    metrics and first reason; a hold shows its end."""
    topic = decisions_topic(kafka_bootstrap)

    status = tail(kafka_bootstrap, topic, "--from-beginning", "--no-color")
    lines = capsys.readouterr().out.splitlines()

    expected_status = 0
    assert expected_status == status
    assert len(DECISIONS) == len(lines)
    for d in DECISIONS:
        (line,) = [ln for ln in lines if f"{d.region}/{d.tier}" in ln and d.reasons[0] in ln and d.at in ln]
        assert d.decision.upper() in line
        assert "requests 1,880" in line
        assert "errors 1.702% [0.700%, 3.370%]" in line
        assert "p99 55.2 ms (<= 68.0)" in line
        assert (d.hold_until is not None) == (f"until {d.hold_until}" in line)
        assert "\x1b[" not in line


def test_tail_without_from_beginning_shows_only_new_decisions(
    kafka_bootstrap: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """By default tail starts at the end: with --no-follow on a topic nobody writes to, it prints nothing."""
    topic = decisions_topic(kafka_bootstrap)

    status = tail(kafka_bootstrap, topic, "--json")

    expected_status = 0
    assert expected_status == status
    expected_output = b""
    assert expected_output == capsysbinary.readouterr().out


def test_tail_missing_topic_is_a_user_error_and_is_not_created(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail --no-follow on a topic that does not exist fails with status 2 naming it, and does not create it
    (the broker auto-creates topics a client asks metadata for)."""
    topic = fresh("no-such-decisions")

    status = tail(kafka_bootstrap, topic)
    err = capsys.readouterr().err

    expected_status = 2
    assert expected_status == status
    assert f"topic {topic} does not exist" in err
    expected_partitions: dict[str, int] = {}  # the topic still does not exist
    assert expected_partitions == asyncio.run(_partitions(kafka_bootstrap, topic))


def test_tail_rejects_unknown_decision_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    """--decision with a kind that does not exist is a user error listing the valid kinds."""
    status = tail("127.0.0.1:9", "decisions", "--decision", "pass,passed")

    expected_status = 2
    assert expected_status == status
    assert "passed" in capsys.readouterr().err


def test_tail_follows_new_decisions_and_exits_cleanly_on_ctrl_c(kafka_bootstrap: str) -> None:
    """A following tail (default: only new decisions) prints a decision produced after it started, and
    SIGINT (Ctrl-C) ends it with status 0 and no traceback."""
    topic = decisions_topic(kafka_bootstrap)
    argv = [sys.executable, "-m", "gatekeeper.shell.cli", "tail", "--bootstrap", kafka_bootstrap]
    proc = subprocess.Popen(
        [*argv, "--decisions-topic", topic, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        time.sleep(3.0)  # let it start and seek to the end (it skips the decisions already there)
        later = decision("pass", "eu-west", "ramp-50", 9, "GO: produced while tail was following")
        asyncio.run(produce(kafka_bootstrap, topic, [(later.key.encode(), encode(later))]))
        assert proc.stdout is not None
        readable, _w, _x = select.select([proc.stdout], [], [], READ_TIMEOUT_S)
        line = proc.stdout.readline() if readable else b"(nothing printed in time)"
        proc.send_signal(signal.SIGINT)
        _rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    expected = (encode(later) + b"\n", 0)
    assert expected == (line, proc.returncode)
    assert b"Traceback" not in err


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
