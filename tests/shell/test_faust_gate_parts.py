"""The Faust gate engine's small parts without a broker: its Kafka security settings as Faust credentials
(``faust_gate/credentials.py``; SASL is tested through the broker in ``tests/kafka/test_faust_gate_parity.py``,
SSL only here: the test broker has no TLS listener) and when a side partition is said to be idle
(``faust_gate/idle.py``)."""

from __future__ import annotations

import ssl

import faust
from faust.types.auth import AuthProtocol, SASLMechanism

from gatekeeper.shell.faust_gate.credentials import broker_credentials
from gatekeeper.shell.faust_gate.idle import IdleWatch
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
