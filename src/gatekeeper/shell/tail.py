"""``gatekeeper tail``: flags and entry point (the implementation lands with the Kafka tools)."""

from __future__ import annotations

import argparse

from gatekeeper.shell.kafka_settings import add_kafka_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_kafka_arguments(parser)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("gatekeeper tail is not implemented yet")
