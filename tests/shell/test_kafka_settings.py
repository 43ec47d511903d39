"""Kafka settings from flags and GATEKEEPER_* variables: precedence, validation, aiokafka keyword arguments,
and the SASL password kept out of every message, repr and str. No broker needed."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import pytest

from gatekeeper.errors import UserError
from gatekeeper.shell.kafka_settings import KafkaSettings, add_kafka_arguments, kafka_settings

REPO = Path(__file__).resolve().parents[2]

PASSWORD = "Zq9x-v7Kp2w-Tr4mN8-8jHq"  # distinctive: no piece of it occurs in any message by chance


def leaks(text: str, window: int = 6) -> list[str]:
    """Pieces of the password (``window`` characters or more) found in ``text``: truncated reprs leak too."""
    pieces = {PASSWORD[i : i + window] for i in range(len(PASSWORD) - window + 1)}
    return sorted(piece for piece in pieces if piece in text)


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser)
    return parser.parse_args(list(flags))


def scram_env(**extra: str) -> dict[str, str]:
    return {
        "GATEKEEPER_BOOTSTRAP": "broker-1.example:9093,broker-2.example:9093",
        "GATEKEEPER_SECURITY_PROTOCOL": "SASL_SSL",
        "GATEKEEPER_SASL_MECHANISM": "SCRAM-SHA-512",
        "GATEKEEPER_SASL_USERNAME": "gatekeeper",
        "GATEKEEPER_SASL_PASSWORD": PASSWORD,
        **extra,
    }


def test_defaults_from_a_bootstrap_flag_alone() -> None:
    """--bootstrap alone gives PLAINTEXT and the default topic names and partition count."""
    settings = kafka_settings(parse("--bootstrap", "127.0.0.1:9092"), environ={})

    expected = ("127.0.0.1:9092", "PLAINTEXT", "telemetry", "decisions", "telemetry.dlq", 8, True)
    actual = (
        settings.bootstrap,
        settings.security_protocol,
        settings.topics.telemetry,
        settings.topics.decisions,
        settings.topics.dlq,
        settings.topics.partitions,
        settings.topics.create,
    )
    assert expected == actual


def test_environment_fills_what_flags_leave_out_and_flags_win() -> None:
    """GATEKEEPER_* variables supply settings; a flag given too takes precedence over its variable."""
    env = {
        "GATEKEEPER_BOOTSTRAP": "env-host:9092",
        "GATEKEEPER_TOPIC_TELEMETRY": "env-telemetry",
        "GATEKEEPER_TOPIC_DECISIONS": "env-decisions",
        "GATEKEEPER_PARTITIONS": "12",
    }
    args = parse("--bootstrap", "flag-host:9092", "--decisions-topic", "flag-decisions", "--no-create-topics")

    settings = kafka_settings(args, environ=env)

    expected = ("flag-host:9092", "env-telemetry", "flag-decisions", 12, False)
    actual = (
        settings.bootstrap,
        settings.topics.telemetry,
        settings.topics.decisions,
        settings.topics.partitions,
        settings.topics.create,
    )
    assert expected == actual


def test_missing_bootstrap_is_a_clear_error() -> None:
    """Without --bootstrap or GATEKEEPER_BOOTSTRAP the error says how to give one."""
    with pytest.raises(UserError) as caught:
        kafka_settings(parse(), environ={})

    message = str(caught.value)
    assert "--bootstrap" in message
    assert "GATEKEEPER_BOOTSTRAP" in message


def test_bad_bootstrap_address_is_named() -> None:
    """A bootstrap entry that is not host:port is named in the error."""
    with pytest.raises(UserError) as caught:
        kafka_settings(parse("--bootstrap", "kafka-without-port"), environ={})

    assert "kafka-without-port" in str(caught.value)


def test_sasl_ssl_scram_settings_build_aiokafka_kwargs() -> None:
    """SASL_SSL + SCRAM-SHA-512 from the environment validates and gives aiokafka's connection kwargs,
    with an SSL context and the password passed through as plain text (only there)."""
    settings = kafka_settings(parse(), environ=scram_env())

    kwargs = settings.aiokafka_kwargs()

    expected = {
        "bootstrap_servers": "broker-1.example:9093,broker-2.example:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gatekeeper",
        "sasl_plain_password": PASSWORD,
    }
    actual = {k: v for k, v in kwargs.items() if k != "ssl_context"}
    assert expected == actual
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    """--sasl-password-file supplies the password (its trailing newline dropped)."""
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env = scram_env()
    del env["GATEKEEPER_SASL_PASSWORD"]

    settings = kafka_settings(parse("--sasl-password-file", str(secret)), environ=env)

    expected = PASSWORD
    assert expected == settings.aiokafka_kwargs()["sasl_plain_password"]


def test_missing_password_is_a_clear_error() -> None:
    """SASL without a password fails, and the message says where a password comes from."""
    env = scram_env()
    del env["GATEKEEPER_SASL_PASSWORD"]

    with pytest.raises(UserError) as caught:
        kafka_settings(parse(), environ=env)

    message = str(caught.value)
    assert "password" in message
    assert "GATEKEEPER_SASL_PASSWORD" in message
    assert "--sasl-password-file" in message


def test_unreadable_password_file_is_a_clear_error(tmp_path: Path) -> None:
    """A password file that cannot be read is named in the error."""
    missing = tmp_path / "no-such-file"

    with pytest.raises(UserError) as caught:
        kafka_settings(parse("--sasl-password-file", str(missing)), environ=scram_env())

    assert str(missing) in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "env_changes"),
    [
        pytest.param((), {"GATEKEEPER_SASL_USERNAME": ""}, id="no-username"),
        pytest.param((), {"GATEKEEPER_SASL_MECHANISM": "SCRAM-SHA-1"}, id="unknown-mechanism"),
        pytest.param((), {"GATEKEEPER_SECURITY_PROTOCOL": "SASL_TLS"}, id="unknown-protocol"),
        pytest.param(("--bootstrap", "no-port"), {}, id="bad-bootstrap"),
        pytest.param(("--partitions", "0"), {}, id="bad-partitions"),
    ],
)
def test_password_never_appears_in_error_messages(flags: tuple[str, ...], env_changes: dict[str, str]) -> None:
    """Settings that are invalid for another reason while a password is set fail without showing it."""
    with pytest.raises(UserError) as caught:
        kafka_settings(parse(*flags), environ=scram_env(**env_changes))

    message = str(caught.value)
    assert message  # there is an explanation ...
    expected: list[str] = []  # no piece of the password
    assert expected == leaks(message + repr(caught.value))


def test_password_never_appears_in_repr_str_or_dumps() -> None:
    """repr, str and the JSON/dict dumps of valid settings mask the password."""
    settings = kafka_settings(parse(), environ=scram_env())

    renderings = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]

    expected: list[str] = []  # no piece of the password
    assert expected == leaks("\n".join(renderings))


def test_direct_validation_error_does_not_show_the_password() -> None:
    """Building KafkaSettings directly (as the worker might) with an inconsistent SASL set-up raises an error
    whose text holds no piece of the password."""
    with pytest.raises(ValueError, match="needs") as caught:
        KafkaSettings.model_validate({"bootstrap": "h:1", "security_protocol": "SASL_SSL", "sasl_password": PASSWORD})

    expected: list[str] = []  # no piece of the password
    assert expected == leaks(str(caught.value))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--ssl-cafile", "{missing}"), "ssl_cafile '{missing}' cannot be used: No such file or directory"),
        (("--ssl-cafile", "{garbage}"), "ssl_cafile '{garbage}' cannot be used: [X509: NO_CERTIFICATE_OR_CRL_FOUND]"),
        (("--ssl-certfile", "{garbage}"), "ssl_certfile '{garbage}' cannot be used: "),
        (("--ssl-keyfile", "{garbage}"), "ssl_keyfile is set without ssl_certfile"),
        (("--security-protocol", "PLAINTEXT", "--ssl-cafile", "{garbage}"),
         "ssl_cafile set but security protocol PLAINTEXT uses no TLS"),
    ],
    ids=["missing-ca", "not-pem-ca", "not-pem-cert", "key-without-cert", "tls-file-without-tls"],
)  # fmt: skip
def test_unusable_tls_files_fail_before_connecting(tmp_path: Path, flags: tuple[str, ...], expected: str) -> None:
    """A TLS file that is missing or not PEM, a key without its certificate, or a TLS file with a protocol
    without TLS (the client would connect in plain text, the file unused): a UserError naming the setting, the
    file and why, before anything connects (aiokafka raised a traceback or said only "Unable to bootstrap")."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    paths = {"missing": str(tmp_path / "missing.pem"), "garbage": str(garbage)}
    tls = {"GATEKEEPER_BOOTSTRAP": "broker-1.example:9093", "GATEKEEPER_SECURITY_PROTOCOL": "SSL"}
    args = parse(*(f.format(**paths) for f in flags))
    with pytest.raises(UserError) as caught:
        kafka_settings(args, environ=tls)

    message = str(caught.value)
    assert expected.format(**paths) in message, message
