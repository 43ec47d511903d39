"""Mutual TLS (``--security-protocol SSL`` with a client certificate, no SASL) through the session broker's SSL
listener, which requires a client certificate (``scripts/local_kafka.py`` makes the broker's and the client's key
pairs with keytool): the worker and the Faust gate engine decide as replay does; a missing or untrusted client
certificate stops the worker with the reason. Topics are created, produced and read through the PLAINTEXT listener
of the same broker; only the gatekeeper processes use TLS."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import worker_harness as h
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_faust_gate_parity import FAST, FAUST, split

from conftest import MtlsListener

pytestmark = pytest.mark.kafka


def test_worker_over_mutual_tls_decides_like_replay(kafka_mtls: MtlsListener, tmp_path: Path) -> None:
    """With the client certificate (``--ssl-certfile`` / ``--ssl-keyfile``) and the broker's certificate trusted
    (``--ssl-cafile``), the worker's consumer, producer, admin and restore clients all connect: its decisions
    equal replay's."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)
    h.create_topics(kafka_mtls.plaintext, names)
    h.produce(kafka_mtls.plaintext, names.telemetry, lines, "keyed")

    with h.running(h.Worker(kafka_mtls.bootstrap, plan, names, tmp_path, "mtls", *kafka_mtls.flags())) as workers:
        got = h.wait_for(kafka_mtls.plaintext, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(r.value for r in got)


def test_faust_gate_over_mutual_tls_decides_like_replay(kafka_mtls: MtlsListener, tmp_path: Path) -> None:
    """The Faust gate process (Faust's SSL credentials with the same TLS context) beside a ``--role aggregate``
    worker on the PLAINTEXT listener: its consumer, producer, changelog and read-back clients connect with the
    client certificate, and it gives replay's decisions."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_mtls.plaintext, names)
    h.produce(kafka_mtls.plaintext, names.telemetry, lines, "spread")
    gate = h.Worker(kafka_mtls.bootstrap, plan, names, tmp_path, "gate", *FAUST, *FAST, *kafka_mtls.flags())
    with split(kafka_mtls.plaintext, names, plan, tmp_path, len(expected), gate) as (got, _gate):
        pass

    assert sorted(expected) == sorted(got)


def stranger(directory: Path) -> tuple[Path, Path]:
    """A self-signed client certificate and its key that the broker does not trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    certfile, keyfile = directory / "stranger-cert.pem", directory / "stranger-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    return certfile, keyfile


def test_a_missing_or_untrusted_client_certificate_stops_the_worker_with_the_reason(
    kafka_mtls: MtlsListener, tmp_path: Path
) -> None:
    """Without a client certificate, or with one the broker does not trust: the worker exits by itself with
    status 2 and one line naming the broker, that it refused the TLS session and what to check, where aiokafka
    alone says only "Unable to bootstrap"."""
    plan, names = h.write_plan(tmp_path), h.Names()
    certfile, keyfile = stranger(tmp_path)
    tls = ("--security-protocol", "SSL", "--ssl-cafile", kafka_mtls.ca_file)
    cases = [
        (tls, "it requires a client certificate: --ssl-certfile and --ssl-keyfile"),
        ((*tls, "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)),
         "it does not trust the client certificate of --ssl-certfile"),
    ]  # fmt: skip
    for flags, why in cases:
        done = h.run_once([*h.Worker(kafka_mtls.bootstrap, plan, names, tmp_path).cmd, *flags])
        output = done.stdout + done.stderr
        assert (2, 1) == (done.returncode, output.count("gatekeeper: error: cannot connect to Kafka at")), output
        said = f"{kafka_mtls.bootstrap} refused the TLS session"
        assert (True, True, False) == (said in output, why in output, "Traceback" in output), output
