"""``gatekeeper worker``: flags and entry point (the implementation lands with the Kafka worker)."""

from __future__ import annotations

import argparse

from gatekeeper.shell.kafka_settings import add_kafka_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", help="plan file (default: config/rollout-plan.yaml or $GATEKEEPER_PLAN)")
    add_kafka_arguments(parser)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("gatekeeper worker is not implemented yet")
