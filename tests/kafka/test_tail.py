"""``tail`` against a real broker prints exactly the decisions on the decisions topic: as JSON or readable
lines, filtered by region, tier and kind, from the beginning or only new ones, tolerant of garbage; it follows
the topic until Ctrl-C.

Every test uses fresh topic names, so the tests share the session's broker without interfering.
"""

from __future__ import annotations

import asyncio
import select
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka_io import fresh, partitions_of, settings_for

from gatekeeper.core.decision import CriterionResult, Decision, Metrics, decode, encode
from gatekeeper.shell.cli import main
from gatekeeper.shell.kafka_admin import ensure_topics

pytestmark = pytest.mark.kafka

READ_TIMEOUT_S = 60.0


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


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
    assert expected_partitions == asyncio.run(partitions_of(kafka_bootstrap, topic))


def test_tail_rejects_unknown_decision_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    """--decision with a kind that does not exist is a user error listing the valid kinds."""
    status = tail("127.0.0.1:9", "decisions", "--decision", "pass,passed")

    expected_status = 2
    assert expected_status == status
    assert "passed" in capsys.readouterr().err


def test_tail_follows_new_decisions_and_exits_cleanly_on_ctrl_c(kafka_bootstrap: str) -> None:
    """A following tail (default: only new decisions) says on stderr when it is positioned, prints a decision
    produced after that, and SIGINT (Ctrl-C) ends it with status 0 and no traceback."""
    topic = decisions_topic(kafka_bootstrap)
    argv = [sys.executable, "-m", "gatekeeper.shell.cli", "tail", "--bootstrap", kafka_bootstrap]
    proc = subprocess.Popen(
        [*argv, "--decisions-topic", topic, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None  # its readiness line: positions resolved, later decisions are printed
        ready, _w, _x = select.select([proc.stderr], [], [], READ_TIMEOUT_S)
        assert b"following" in (proc.stderr.readline() if ready else b"(no readiness line in time)")
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
