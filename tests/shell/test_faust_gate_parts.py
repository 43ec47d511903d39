"""The Faust gate engine's small parts without a broker: its Kafka security settings as Faust credentials
(``faust_gate/credentials.py``; SASL is tested through the broker in ``tests/kafka/test_faust_gate_parity.py``,
SSL only here: the test broker has no TLS listener), when a side partition is said to be idle
(``faust_gate/idle.py``) and when a stalled restore of the gate-state table is sought again or given up
(``faust_gate/restore_watch.py``)."""

from __future__ import annotations

import ssl

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism

from gatekeeper.shell.faust_gate.credentials import broker_credentials
from gatekeeper.shell.faust_gate.idle import IdleWatch
from gatekeeper.shell.faust_gate.restore_watch import RestoreStalledError, RestoreWatch
from gatekeeper.shell.kafka_settings import KafkaSettings


def test_security_settings_become_the_matching_faust_credentials() -> None:
    """PLAINTEXT: none; SSL: SSL credentials with an SSL context; SASL_PLAINTEXT / SASL_SSL: SASL credentials with
    the mechanism, username and password, and an SSL context only for SASL_SSL."""
    sasl = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "gk", "sasl_password": "s3cret"}
    assert broker_credentials(KafkaSettings(bootstrap="k:9092")) is None

    tls = broker_credentials(KafkaSettings(bootstrap="k:9093", security_protocol="SSL"))
    assert (faust.SSLCredentials, AuthProtocol.SSL, True) == (
        type(tls),
        tls.protocol,
        isinstance(tls.context, ssl.SSLContext),
    )

    for protocol, context in (("SASL_PLAINTEXT", False), ("SASL_SSL", True)):
        creds = broker_credentials(KafkaSettings(bootstrap="k:9094", security_protocol=protocol, **sasl))
        got = (
            type(creds),
            creds.protocol,
            creds.mechanism,
            creds.username,
            creds.password,
            creds.ssl_context is not None,
        )
        assert (
            faust.SASLCredentials,
            AuthProtocol(protocol),
            SASLMechanism.SCRAM_SHA_512,
            "gk",
            "s3cret",
            context,
        ) == got


def test_a_partition_is_idle_after_idle_after_at_its_end_and_said_again_every_idle_after() -> None:
    """Seen at its end from t=0: not idle at 1.9 s, idle at 2 s, not again at 3 s, again at 4 s; a partition
    that moved (not at its end at 3 s) starts over: idle from 6 s; after ``forget`` nothing is idle until
    idle_after has passed again."""
    watch = IdleWatch(2.0)
    a, b = ("incidents", 0), ("approvals", 3)
    both = [a, b]
    assert [] == watch.due(both, {a, b}, 0.0)
    assert [] == watch.due(both, {a, b}, 1.9)
    assert [b, a] == watch.due(both, {a, b}, 2.0)
    assert [] == watch.due(both, {a}, 3.0)  # b moved
    assert [a] == watch.due(both, {a, b}, 4.0)
    assert [] == watch.due(both, {a, b}, 5.0)  # b back at its end since 4 s
    assert [b, a] == watch.due(both, {a, b}, 6.0)
    watch.forget()
    assert [] == watch.due(both, {a, b}, 7.0)
    assert [b, a] == watch.due(both, {a, b}, 9.0)


def test_a_restore_partition_without_a_record_for_stall_after_is_sought_again_then_given_up() -> None:
    """A restore started at 100 s: partition 1 receives records, partition 2 none. At 119 s nothing is due; at
    120 s partition 2 (records left, none received for 20 s) is sought again; then again 20 s after each seek
    (not before), and after 2 seeks the third stall raises ``RestoreStalledError`` naming the partition and the records
    left. A partition with nothing left is never sought."""
    watch: RestoreWatch[int] = RestoreWatch(stall_after=20.0, attempts=2)
    remaining, received = {1: 5, 2: 7, 3: 0}, {1: 118.0}

    assert [] == watch.check(119.0, 100.0, remaining, received)
    assert [2] == watch.check(120.0, 100.0, remaining, received)
    assert [] == watch.check(139.0, 100.0, remaining, {1: 138.0})
    assert [2] == watch.check(140.0, 100.0, remaining, {1: 139.0})
    with pytest.raises(RestoreStalledError) as raised:
        watch.check(160.0, 100.0, remaining, {1: 159.0})
    assert "received nothing of 2 (7 records left) for 20 s after 2 seeks" in str(raised.value)


def test_a_new_restore_or_none_starts_the_count_afresh() -> None:
    """Seeks count per restore: a restore that ends (``started`` None) or is restarted by a rebalance (a new start
    time) lets the next stall be sought again rather than given up, and a partition that received a record since
    is not stalled."""
    watch: RestoreWatch[str] = RestoreWatch(stall_after=10.0, attempts=1)
    assert ["p"] == watch.check(10.0, 0.0, {"p": 3}, {})
    assert [] == watch.check(11.0, None, {"p": 3}, {})
    assert ["p"] == watch.check(30.0, 20.0, {"p": 3}, {})
    assert [] == watch.check(44.0, 35.0, {"p": 3}, {})  # restarted at 35 s: 10 s have not passed
    assert [] == watch.check(50.0, 35.0, {"p": 3}, {"p": 44.0})
    assert ["p"] == watch.check(54.0, 35.0, {"p": 3}, {"p": 44.0})
