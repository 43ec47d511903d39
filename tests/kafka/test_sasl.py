"""``gatekeeper worker`` through the session broker's SASL_PLAINTEXT and SASL_SSL listeners with SCRAM-SHA-512 (the
user and the TLS certificate are made by ``scripts/local_kafka.py``): the same decisions as replay with the right
password, a clear stop with a wrong one or an untrusted certificate, and the password in no output. Topics are
created, produced and read through the PLAINTEXT listener of the same broker; only the worker authenticates."""

from __future__ import annotations

from pathlib import Path

import pytest
import worker_harness as h

from conftest import ScramListener

pytestmark = pytest.mark.kafka

SCRAM = ("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512")


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_worker_over_scram_decides_like_replay(kafka_scram: ScramListener, tmp_path: Path, protocol: str) -> None:
    """With the SCRAM credentials (password from ``GATEKEEPER_SASL_PASSWORD``), in plain text or over TLS (the
    broker's self-signed certificate trusted with ``--ssl-cafile``), the worker's consumer, producer, admin and
    restore clients all authenticate: its decisions equal replay's, and its log (debug level) never shows the
    password."""
    plan, names = h.write_plan(tmp_path), h.Names()
    kafka_bootstrap = kafka_scram.plaintext  # the same broker, for set-up without credentials
    lines = h.scenario()
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
    bootstrap, login = kafka_scram.login(protocol)
    worker = h.Worker(bootstrap, plan, names, tmp_path, "scram", *login, "--log-level", "debug")
    worker.env = {"GATEKEEPER_SASL_PASSWORD": kafka_scram.password}

    with h.running(worker) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(r.value for r in got)
    assert kafka_scram.password not in worker.log()


def test_an_untrusted_certificate_stops_the_worker_with_the_reason(kafka_scram: ScramListener, tmp_path: Path) -> None:
    """SASL_SSL without ``--ssl-cafile`` (the system's CAs do not know the broker's self-signed certificate), and
    SASL_SSL against the plain-text SASL listener: the worker exits by itself with status 2 and one line naming
    the broker and why TLS failed, where aiokafka alone says only "Unable to bootstrap"."""
    plan, names = h.write_plan(tmp_path), h.Names()
    bootstrap, login = kafka_scram.login("SASL_SSL")
    untrusted = login[: login.index("--ssl-cafile")]
    cases = [
        (bootstrap, "the TLS handshake with", "self-signed certificate (is --ssl-cafile the CA that signed"),
        (kafka_scram.bootstrap, "closed the connection during the TLS handshake", "does that listener speak TLS?"),
    ]
    for target, said, why in cases:
        cmd = [*h.Worker(target, plan, names, tmp_path).cmd, *untrusted]
        done = h.run_once(cmd, env={"GATEKEEPER_SASL_PASSWORD": kafka_scram.password})
        output = done.stdout + done.stderr
        assert (2, 1) == (done.returncode, output.count("gatekeeper: error: cannot connect to Kafka at")), output
        assert (True, True, True) == (target in output, said in output, why in output), output
        assert "Traceback" not in output


def test_wrong_scram_password_stops_the_worker_with_a_clear_message(kafka_scram: ScramListener, tmp_path: Path) -> None:
    """A wrong password: the worker exits by itself with status 2 and one line saying it cannot connect,
    naming the broker, without showing either password."""
    plan, names = h.write_plan(tmp_path), h.Names()
    wrong = "not-the-" + kafka_scram.password
    cmd = [*h.Worker(kafka_scram.bootstrap, plan, names, tmp_path).cmd, *SCRAM, "--sasl-username", kafka_scram.username]
    done = h.run_once(cmd, env={"GATEKEEPER_SASL_PASSWORD": wrong})
    output = done.stdout + done.stderr
    assert 2 == done.returncode, output
    assert "cannot connect to Kafka" in output
    assert kafka_scram.bootstrap in output
    assert (wrong not in output, kafka_scram.password not in output) == (True, True)
