"""Kafka connection and topic settings shared by the worker, ``simulate --bootstrap`` and ``tail``.

Every setting comes from a flag or from the environment (flag wins); secrets only from the environment or a
file, and never appear in logs, reprs or error messages (pydantic ``SecretStr``).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from gatekeeper.errors import UserError
from gatekeeper.validation import format_validation

if TYPE_CHECKING:
    import ssl

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Topics(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    telemetry: str = "telemetry"
    decisions: str = "decisions"
    breaches: str = "breaches"
    dlq: str = "telemetry.dlq"
    incidents: str = "incidents"  # side inputs of the gates (shell/worker/side.py)
    approvals: str = "approvals"
    business_metrics: str = "business-metrics"
    partitions: int = Field(default=8, ge=1, le=10_000)  # every gatekeeper topic gets the same count
    replication: int = Field(default=1, ge=1, le=32)
    decisions_retention_ms: int = Field(default=90 * 86_400_000, ge=-1)  # -1: keep forever
    create: bool = True  # create missing topics at start-up (else a missing topic fails the start)


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)  # never echo a password

    bootstrap: str = Field(min_length=1)  # host:port[,host:port...]
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topics: Topics = Topics()

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"security protocol {self.security_protocol} needs sasl_mechanism, sasl_username and a password "
                "(GATEKEEPER_SASL_PASSWORD or --sasl-password-file)"
            )
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is set but security protocol {self.security_protocol} uses no SASL")
        for part, (host, port) in zip(self.bootstrap.split(","), self.servers(), strict=True):
            if not host or not port.isdigit():
                raise ValueError(f"bootstrap {part.strip()!r} is not host:port")
        files = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, n)]
        if files and not self.tls:
            # else the client would connect in plain text, the files silently unused
            raise ValueError(f"{', '.join(files)} set but security protocol {self.security_protocol} uses no TLS")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile is set without ssl_certfile (the client certificate it belongs to)")
        if self.tls:
            self.ssl_context()  # unreadable or malformed files fail here, before anything connects
        return self

    @property
    def tls(self) -> bool:
        """Whether the protocol uses TLS (SSL, SASL_SSL)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def servers(self) -> list[tuple[str, str]]:
        """``bootstrap`` as (host, port) pairs, as written (the validator checks them)."""
        return [(host, port) for host, _, port in (p.strip().rpartition(":") for p in self.bootstrap.split(","))]

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of SSL / SASL_SSL (the system's CAs unless ``ssl_cafile``; a client certificate when
        ``ssl_certfile``); a ValueError naming the file that cannot be used."""
        import ssl  # here, not at start-up: most runs use no TLS

        from aiokafka.helpers import create_ssl_context

        try:
            context: ssl.SSLContext = create_ssl_context(cafile=self.ssl_cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"ssl_cafile {self.ssl_cafile!r} cannot be used: {exc.strerror or exc}") from None
        if self.ssl_certfile:
            try:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                pair = f"ssl_certfile {self.ssl_certfile!r}" + (
                    f" with ssl_keyfile {self.ssl_keyfile!r}" if self.ssl_keyfile else ""
                )
                raise ValueError(f"{pair} cannot be used: {exc.strerror or exc}") from None
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka clients (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # guaranteed by the validator
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs


_ENV = {
    "bootstrap": "GATEKEEPER_BOOTSTRAP",
    "security_protocol": "GATEKEEPER_SECURITY_PROTOCOL",
    "sasl_mechanism": "GATEKEEPER_SASL_MECHANISM",
    "sasl_username": "GATEKEEPER_SASL_USERNAME",
    "sasl_password": "GATEKEEPER_SASL_PASSWORD",
    "ssl_cafile": "GATEKEEPER_SSL_CAFILE",
    "ssl_certfile": "GATEKEEPER_SSL_CERTFILE",
    "ssl_keyfile": "GATEKEEPER_SSL_KEYFILE",
}
_TOPIC_ENV = {
    "telemetry": "GATEKEEPER_TOPIC_TELEMETRY",
    "decisions": "GATEKEEPER_TOPIC_DECISIONS",
    "breaches": "GATEKEEPER_TOPIC_BREACHES",
    "dlq": "GATEKEEPER_TOPIC_DLQ",
    "incidents": "GATEKEEPER_TOPIC_INCIDENTS",
    "approvals": "GATEKEEPER_TOPIC_APPROVALS",
    "business_metrics": "GATEKEEPER_TOPIC_BUSINESS_METRICS",
    "partitions": "GATEKEEPER_PARTITIONS",
    "replication": "GATEKEEPER_REPLICATION",
}


def add_kafka_arguments(parser: argparse.ArgumentParser, *, topics: bool = True) -> None:
    """Connection (and topic) flags; each also read from the GATEKEEPER_* variable named in its help."""
    group = parser.add_argument_group("Kafka connection")
    group.add_argument("--bootstrap", help="bootstrap servers host:port[,...] (GATEKEEPER_BOOTSTRAP)")
    group.add_argument("--security-protocol", help="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL")
    group.add_argument("--sasl-mechanism", help="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512")
    group.add_argument("--sasl-username")
    group.add_argument("--sasl-password-file", help="file holding the SASL password (or GATEKEEPER_SASL_PASSWORD)")
    group.add_argument("--ssl-cafile")
    group.add_argument("--ssl-certfile")
    group.add_argument("--ssl-keyfile")
    if topics:
        names = parser.add_argument_group("topics")
        names.add_argument("--telemetry-topic", help="default: telemetry (GATEKEEPER_TOPIC_TELEMETRY)")
        names.add_argument("--decisions-topic", help="default: decisions (GATEKEEPER_TOPIC_DECISIONS)")
        names.add_argument("--breaches-topic", help="default: breaches (GATEKEEPER_TOPIC_BREACHES)")
        names.add_argument("--dlq-topic", help="default: telemetry.dlq (GATEKEEPER_TOPIC_DLQ)")
        names.add_argument("--incidents-topic", help="default: incidents (GATEKEEPER_TOPIC_INCIDENTS)")
        names.add_argument("--approvals-topic", help="default: approvals (GATEKEEPER_TOPIC_APPROVALS)")
        names.add_argument(
            "--business-metrics-topic", help="default: business-metrics (GATEKEEPER_TOPIC_BUSINESS_METRICS)"
        )
        names.add_argument("--partitions", type=int, help="partitions of every topic (default 8)")
        names.add_argument("--replication", type=int, help="replication factor of created topics (default 1)")
        names.add_argument("--no-create-topics", action="store_true", help="fail if a topic is missing")


def kafka_settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> KafkaSettings:
    """Settings from flags, then GATEKEEPER_* variables; a clear UserError (without secrets) when invalid."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
        elif env.get(var):
            values[name] = env[var]
    password_file = getattr(args, "sasl_password_file", None)
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                values["sasl_password"] = handle.read().strip()
        except OSError as exc:
            raise UserError(f"cannot read the SASL password file {password_file}: {exc.strerror}") from None
    topics: dict[str, Any] = {}
    for name, var in _TOPIC_ENV.items():
        flag = getattr(args, f"{name}_topic", None) if name not in ("partitions", "replication") else None
        flag = getattr(args, name, None) if name in ("partitions", "replication") else flag
        if flag is not None:
            topics[name] = flag
        elif env.get(var):
            topics[name] = env[var]
    if getattr(args, "no_create_topics", False):
        topics["create"] = False
    values["topics"] = topics
    if "bootstrap" not in values:
        raise UserError("no Kafka bootstrap servers: pass --bootstrap HOST:PORT or set GATEKEEPER_BOOTSTRAP")
    try:
        return KafkaSettings.model_validate(values)
    except ValidationError as exc:
        raise UserError(format_validation("Kafka settings", KafkaSettings, exc)) from None
