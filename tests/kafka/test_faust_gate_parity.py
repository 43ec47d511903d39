"""The Faust gate engine (``--role gate --gate-engine faust``) has what the default engine's stage 2 has, through the
real broker: SASL (SCRAM-SHA-512 on the session broker's SASL_PLAINTEXT and SASL_SSL listeners), ``--metrics-port``,
the side inputs (incidents, approvals, business metrics, as watermark sources of their gates) and the global gate.
Each run is ``--role aggregate`` (the default engine's stage 1) beside the Faust gate process, and its decisions are
compared with replay's by ``decision_id`` and content."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_side_inputs_kafka as side
import worker_harness as h
from test_worker_metrics import labelled, probe

from conftest import ScramListener
from gatekeeper.core import decision as decisions
from gatekeeper.shell.worker.topics import panes_topic

pytestmark = pytest.mark.kafka

FAST = ("--idle-after", "2", "--clock-interval", "0.2")
FAUST = ("--role", "gate", "--gate-engine", "faust")


def _ids(values: list[bytes]) -> list[str]:
    return sorted(decisions.decode(v).decision_id for v in values)


@contextlib.contextmanager
def split(
    bootstrap: str, names: h.Names, plan: Path, tmp_path: Path, n: int, gate: h.Worker | None = None
) -> Iterator[tuple[list[bytes], h.Worker]]:
    """``--role aggregate`` and the Faust gate process (``gate``, or one with the test's flags) until the
    decisions topic holds ``n``: (their values, the gate process), both still running; then both stopped, exit 0."""
    aggregate = h.Worker(bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *FAST)
    gate = gate or h.Worker(bootstrap, plan, names, tmp_path, "gate", *FAUST, *FAST)
    with h.running(aggregate, gate) as workers:
        got = h.wait_for(bootstrap, names.decisions, h.count_at_least(n), workers, 180, 1.0)
        yield [r.value for r in got], gate
        assert (0, 0) == (workers[0].stop(), workers[1].stop())


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_gate_over_scram_decides_like_replay(kafka_scram: ScramListener, tmp_path: Path, protocol: str) -> None:
    """The Faust gate process connects with SCRAM credentials (password from ``GATEKEEPER_SASL_PASSWORD``), in
    plain text or over TLS (Faust's SASL credentials with the SSL context trusting ``--ssl-cafile``): Faust's
    consumer, producer and changelog clients and the read-back client all authenticate; it gives replay's
    decisions, and its log (debug) never shows the password."""
    plan, names = h.write_plan(tmp_path), h.Names()
    plain = kafka_scram.plaintext  # set-up and stage 1 without credentials
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(plain, names)
    h.produce(plain, names.telemetry, lines, "spread")
    bootstrap, login = kafka_scram.login(protocol)
    gate = h.Worker(bootstrap, plan, names, tmp_path, "gate", *FAUST, *FAST, *login, "--log-level", "debug")
    gate.env = {"GATEKEEPER_SASL_PASSWORD": kafka_scram.password}
    with split(plain, names, plan, tmp_path, len(expected), gate) as (got, _gate):
        pass

    assert _ids(expected) == _ids(got)
    assert sorted(expected) == sorted(got)
    assert kafka_scram.password not in gate.log()


def test_faust_gate_metrics_port(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``--metrics-port 0`` on the Faust gate process: after replay's decisions are out, /readyz is 200 (its
    partitions held and read to their end), /healthz 200, decisions by kind equal replay's, one delay observation
    per decision, no dead letters, and every panes partition's lag is 0."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "spread")
    gate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "gate", *FAUST, *FAST, "--metrics-port", "0")
    with split(kafka_bootstrap, names, plan, tmp_path, len(expected), gate) as (got, _gate):
        ready, samples, health = probe(gate)

    assert _ids(expected) == _ids(got)
    assert (200, {"status": "ready", "assigned": True, "caught_up": True}) == (ready[0], json.loads(ready[1]))
    assert (200, {"status": "alive"}) == (health[0], json.loads(health[1]))
    kinds = Counter(decisions.decode(v).decision for v in expected)
    assert dict(kinds) == labelled(samples, "gatekeeper_decisions_total", "decision")
    assert {} == labelled(samples, "gatekeeper_rejected_total", "reason")
    assert len(expected) == samples[("gatekeeper_decision_delay_seconds_count", ())]
    lag, panes = "gatekeeper_consumer_lag_records", ("topic", panes_topic(names.app_id))
    lags = {dict(labels)["partition"]: v for (n, labels), v in samples.items() if n == lag and panes in labels}
    assert ({str(q) for q in range(h.PARTITIONS)}, {0.0}) == (set(lags), set(lags.values()))


def test_faust_gate_side_inputs_backlog_decides_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``test_side_inputs_kafka``'s backlog (telemetry spread over the partitions, incidents, approvals, revenue and
    bad side records, all produced before the processes start): the Faust gate process forwards and applies the
    side records and waits for the side partitions' watermarks, so its decisions are replay's with the same side
    files, byte for byte (the incident fails us-east/canary at 00:30, the GO releases us-east/ramp at 01:20); the
    bad side records are in the DLQ with their reasons."""
    plan, names = side.write_plan(tmp_path), h.Names()
    telemetry = h.scenario(invalid=False)
    revenue = side.business("us-east", "ramp", 0.4, 1, control=True)
    want = side.expected(plan, telemetry, revenue)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, telemetry, "spread")
    h.produce_pairs(kafka_bootstrap, names.incidents, [(b"INC-1", v) for v in side.lines(side.INCIDENTS)])
    h.produce_pairs(kafka_bootstrap, names.approvals, [(None, v) for v in side.lines(side.APPROVALS)])
    h.produce_pairs(kafka_bootstrap, names.business, [(None, v) for v in side.lines(revenue)])
    topic = {b"incidents": names.incidents, b"approvals": names.approvals}
    for name, value in side.BAD:
        h.produce_pairs(kafka_bootstrap, topic[name], [(None, value)])
    with split(kafka_bootstrap, names, plan, tmp_path, len(want)) as (got, _gate):
        pass

    assert _ids(want) == _ids(got)
    assert sorted(want) == sorted(got)
    assert [("fail", "breach", side.at(30)), ("hold", "hold", side.at(30)), ("release", "release", side.at(60)),
            ("pass", "go", side.at(120))] == side.shape(got, "us-east", "canary")  # fmt: skip
    dead = sorted(dict(r.headers)["gk.reason"].decode() for r in h.read_topic(kafka_bootstrap, names.dlq))
    assert ["invalid_field:severity", "malformed_json", "unknown_checkpoint"] == dead


def test_faust_gate_global_decisions_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The plan with a global canary gate, telemetry spread over the partitions: the Faust gate process (whose
    canary gates are homed with ``global/canary``, where stage 1 sends their partials) writes replay's decisions,
    the three global ones among them (hold while eu-west is held, release, pass), in replay's order per key."""
    plan, names = h.write_plan(tmp_path, h.GLOBAL_PLAN), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    assert 3 == len([d for d in map(decisions.decode, expected) if d.region == "global"])
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "spread")
    with split(kafka_bootstrap, names, plan, tmp_path, len(expected)) as (got, _gate):
        pass

    assert _ids(expected) == _ids(got)
    assert sorted(expected) == sorted(got)
    assert h.by_key(expected) == h.by_key(got)
