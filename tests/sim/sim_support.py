"""Shared helpers of the simulator tests: the repository's plan, its decoder, and small scenario builders.

(A plain module imported relatively, like tests/core/helpers.py.)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import TelemetryDecoder
from gatekeeper.sim.scenario import Scenario, Stream

REPO = Path(__file__).resolve().parents[2]
PLAN_FILE = REPO / "config" / "rollout-plan.yaml"
SCENARIO_DIR = REPO / "config" / "scenarios"
START = "2025-10-19T00:00:00Z"
START_MS = 1_760_832_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


@functools.cache
def repo_plan() -> Plan:
    """config/rollout-plan.yaml, loaded the way the brief's consumers load it."""
    return Plan.model_validate(yaml.safe_load(PLAN_FILE.read_text()))


def repo_decoder() -> TelemetryDecoder:
    """A decoder for the plan's (region, tier) gates."""
    return TelemetryDecoder([(r, t.name) for r, _p, t in repo_plan().gates()])


def make_stream(**fields: Any) -> Stream:
    """A healthy us-east canary stream over one day, with ``fields`` overriding."""
    base: dict[str, Any] = {
        "region": "us-east",
        "tier": "canary",
        "end": "1d",
        "rate_per_min": 30,
        "error_rate": "0.05%",
        "latency": {"median_ms": 18, "sigma": 0.3},
    }
    return Stream.model_validate(base | fields)


def make_scenario(streams: list[Stream] | None = None, **fields: Any) -> Scenario:
    """A scenario starting at ``START`` with the given streams (default: one ``make_stream()``)."""
    base: dict[str, Any] = {"name": "test", "seed": 7, "start": START}
    chosen = streams if streams is not None else [make_stream()]
    return Scenario.model_validate(base | fields | {"streams": chosen})
