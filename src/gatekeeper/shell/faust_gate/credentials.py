"""The worker's Kafka security settings (``KafkaSettings``: SSL, SASL PLAIN / SCRAM, both) as Faust's
``broker_credentials``, built from the same aiokafka arguments the default engine connects with (one place
reads the password and builds the SSL context)."""

from __future__ import annotations

from typing import Any

from gatekeeper.shell.kafka_settings import KafkaSettings


def broker_credentials(settings: KafkaSettings) -> Any:
    """Faust credentials for ``settings``; None for PLAINTEXT."""
    import faust

    kwargs = settings.aiokafka_kwargs()
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    return faust.SASLCredentials(
        username=kwargs["sasl_plain_username"],
        password=kwargs["sasl_plain_password"],
        ssl_context=kwargs.get("ssl_context"),  # SASL_SSL when given, SASL_PLAINTEXT otherwise
        mechanism=kwargs["sasl_mechanism"],
    )
