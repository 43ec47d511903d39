"""Shared fixtures: a real Kafka broker for the tests that ask for one.

``kafka_bootstrap`` is resolved once per session, and only when a test requests it:

1. ``$GATEKEEPER_TEST_BOOTSTRAP`` -- an existing cluster (never stopped by the tests);
2. testcontainers' ``KafkaContainer`` in KRaft mode, when a Docker engine answers;
3. ``LocalKafka`` from ``scripts/local_kafka.py`` -- a JVM broker built from Maven Central jars.

When none of them gives a broker the test is skipped, or failed when ``$CI`` is ``true``. Tests that stop
the broker or log in with SCRAM always get the local JVM broker (started for them when the session uses another).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

LOCAL_KAFKA_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "local_kafka.py"


@dataclass
class _Session:
    """What the session got: a bootstrap address, or the reasons it got none."""

    bootstrap: str | None = None
    local: Any = None  # the LocalKafka instance when this session started the JVM broker
    problems: list[str] = field(default_factory=list)


class BrokerControl:
    """Handle on the session's local broker for tests that take it down and bring it back."""

    def __init__(self, local: Any) -> None:
        self._local = local

    @property
    def bootstrap(self) -> str:
        return str(self._local.bootstrap)

    @property
    def running(self) -> bool:
        return bool(self._local.running)

    def stop(self) -> None:
        """Stop the broker process (SIGTERM, SIGKILL after 20 s); its ports, cluster id and data are kept."""
        self._local.stop_process()

    def restart(self) -> None:
        """Start the broker again on the same ports and log dir; returns once it answers requests."""
        self._local.restart()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (failing, not skipping, because CI=true)", pytrace=False)
    pytest.skip(reason)


def _docker_problem() -> str | None:
    """None when a Docker engine answers a ping, else why not."""
    try:
        importlib.import_module("docker").from_env(timeout=5).ping()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


def _load_local_kafka() -> Any:
    spec = importlib.util.spec_from_file_location("local_kafka", LOCAL_KAFKA_SCRIPT)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {LOCAL_KAFKA_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start_container(session: _Session) -> Any:
    """Start a KRaft KafkaContainer and fill in ``session.bootstrap``; returns the container or None."""
    if problem := _docker_problem():
        session.problems.append(problem)
        return None
    container = None
    try:
        try:
            kafka_module = importlib.import_module("testcontainers.community.kafka")
        except ImportError:  # testcontainers < 4.5
            kafka_module = importlib.import_module("testcontainers.kafka")
        container = kafka_module.KafkaContainer().with_kraft()
        container.start()
    except Exception as exc:
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
        session.problems.append(f"testcontainers KafkaContainer failed ({type(exc).__name__}: {exc})")
        return None
    host, _, port = str(container.get_bootstrap_server()).rpartition(":")
    session.bootstrap = f"{'127.0.0.1' if host == 'localhost' else host}:{port}"
    return container


@pytest.fixture(scope="session")
def _kafka_session() -> Iterator[_Session]:
    session = _Session(bootstrap=os.environ.get("GATEKEEPER_TEST_BOOTSTRAP") or None)
    if session.bootstrap:
        yield session
        return
    container = _start_container(session)
    if container is not None:
        try:
            yield session
        finally:
            container.stop()
        return
    try:
        module = _load_local_kafka()
        local = module.LocalKafka()
    except Exception as exc:
        session.problems.append(f"cannot load {LOCAL_KAFKA_SCRIPT} ({type(exc).__name__}: {exc})")
        yield session
        return
    try:
        session.bootstrap = local.start()
        session.local = local
    except module.LocalKafkaError as exc:
        local.keep = True  # its run dir holds the broker's logs
        session.problems.append(f"the local JVM broker (scripts/local_kafka.py) did not start: {exc}")
    try:
        yield session
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka_session: _Session) -> str:
    """``"host:port"`` of a running Kafka broker, shared by the whole session."""
    if _kafka_session.bootstrap is None:
        _unavailable("no Kafka broker: " + "; ".join(_kafka_session.problems))
    return _kafka_session.bootstrap


@pytest.fixture(scope="session")
def _local_broker(_kafka_session: _Session) -> Iterator[Any]:
    """The local JVM broker (``scripts/local_kafka.py``): the session's own when it runs one, else one started
    for the tests that stop the broker or log in with SCRAM (a Docker or ``$GATEKEEPER_TEST_BOOTSTRAP`` broker
    cannot be stopped by us nor has our SCRAM user). Those tests therefore never skip under CI=true."""
    if _kafka_session.local is not None:
        yield _kafka_session.local
        return
    try:
        module = _load_local_kafka()
        local = module.LocalKafka()
    except Exception as exc:
        _unavailable(f"cannot load {LOCAL_KAFKA_SCRIPT} ({type(exc).__name__}: {exc})")
    try:
        local.start()
    except module.LocalKafkaError as exc:
        local.keep = True  # its run dir holds the broker's logs
        _unavailable(f"the local JVM broker (scripts/local_kafka.py) did not start: {exc}")
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def kafka_broker(_local_broker: Any) -> Iterator[BrokerControl]:
    """Stop/restart control over the local JVM broker; it is running again after the test."""
    control = BrokerControl(_local_broker)
    yield control
    if not control.running:  # leave a working broker for the tests that follow
        control.restart()


@dataclass(frozen=True)
class ScramListener:
    """The session broker's SASL_PLAINTEXT listener, its SASL_SSL one and the SCRAM-SHA-512 user they know."""

    bootstrap: str
    username: str
    password: str
    plaintext: str  # the same broker's PLAINTEXT listener, for set-up (topics, producing) without credentials
    tls_bootstrap: str  # SASL_SSL: the same user over TLS
    ca_file: str  # the PEM certificate the SASL_SSL listener presents (self-signed): what clients trust

    def login(self, protocol: str) -> tuple[str, tuple[str, ...]]:
        """The bootstrap and the worker's flags (no password: ``GATEKEEPER_SASL_PASSWORD``) for ``protocol``,
        SASL_PLAINTEXT or SASL_SSL."""
        flags = ("--security-protocol", protocol, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", self.username)
        if protocol == "SASL_SSL":
            return self.tls_bootstrap, (*flags, "--ssl-cafile", self.ca_file)
        return self.bootstrap, flags


@pytest.fixture
def kafka_scram(_local_broker: Any) -> ScramListener:
    """The SCRAM listeners of the local JVM broker (``scripts/local_kafka.py`` creates the user and the TLS
    certificate)."""
    local = _local_broker
    return ScramListener(
        str(local.sasl_bootstrap), str(local.scram_user), str(local.scram_password), str(local.bootstrap),
        str(local.tls_bootstrap), str(local.ca_file),
    )  # fmt: skip


@dataclass(frozen=True)
class MtlsListener:
    """The session broker's SSL listener requiring a client certificate, and a client's PEM files it accepts."""

    bootstrap: str
    ca_file: str  # the broker's certificate (self-signed): what clients trust
    certfile: str  # the client certificate the listener trusts
    keyfile: str  # its private key (unencrypted PEM)
    plaintext: str  # the same broker's PLAINTEXT listener, for set-up without certificates

    def flags(self) -> tuple[str, ...]:
        """The worker's flags for this listener."""
        return ("--security-protocol", "SSL", "--ssl-cafile", self.ca_file, "--ssl-certfile", self.certfile,
                "--ssl-keyfile", self.keyfile)  # fmt: skip


@pytest.fixture(scope="session")
def kafka_mtls(_local_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> MtlsListener:
    """The mutual-TLS listener of the local JVM broker; its client key pair (``scripts/local_kafka.py`` makes it
    with keytool, as PKCS12) written as the PEM files ``--ssl-certfile`` / ``--ssl-keyfile`` take."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    local = _local_broker
    password = str(local.keystore_password).encode()
    key, cert, _ = pkcs12.load_key_and_certificates(Path(local.client_keystore).read_bytes(), password)
    assert key is not None
    assert cert is not None
    out = tmp_path_factory.mktemp("client-tls")
    certfile, keyfile = out / "client-cert.pem", out / "client-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = serialization.PrivateFormat.PKCS8
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption()))
    return MtlsListener(
        str(local.mtls_bootstrap), str(local.ca_file), str(certfile), str(keyfile), str(local.bootstrap)
    )
