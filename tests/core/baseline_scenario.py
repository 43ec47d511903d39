"""The core tests' no_regression scenario: a plan whose canary compares with baseline version "1.0", and
interleaved canary, baseline and plain traffic replayed through the pipeline (tests/core/test_regression.py,
test_slot_routing.py, test_slice_ledger.py)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gatekeeper.core.decision import Decision
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan
from plans_for_tests import no_regression_criteria, small_plan, small_tier

from .helpers import MINUTE, T0, replay_lines, traffic


def regression_plan() -> Plan:
    """us-east and eu-west, tier ``canary`` with both no_regression criteria against version "1.0"."""
    return Plan.model_validate(
        small_plan("regression-test", "1.0", [small_tier("canary", 5, more_criteria=no_regression_criteria())])
    )


def records(events: Any, region: str, tier: str, version: str | None) -> list[bytes]:
    out = []
    for ts, latency, error in zip(
        events.ts_ms.tolist(), events.latency_ms.tolist(), events.error.tolist(), strict=True
    ):
        rec: dict[str, Any] = {"ts": ts / 1000, "region": region, "tier": tier, "latency_ms": latency,
                               "status": 500 if error else 200}  # fmt: skip
        if version is not None:
            rec["version"] = version
        out.append(json.dumps(rec).encode())
    return out


def interleaved() -> list[bytes]:
    """90 min of us-east: the canary (version 2.0) at 2 % errors, the baseline (1.0, tier label ``baseline``) at
    0.1 %, both 100 req/min; eu-west's canary without a version, healthy; in time order."""
    own = traffic(0, T0, T0 + 90 * MINUTE, 100, error_rate=0.02, seed=1)
    base = traffic(0, T0, T0 + 90 * MINUTE, 100, error_rate=0.001, seed=2)
    west = traffic(0, T0, T0 + 90 * MINUTE, 100, error_rate=0.001, seed=3)
    lines = records(own, "us-east", "canary", "2.0") + records(base, "us-east", "baseline", "1.0")
    lines += records(west, "eu-west", "canary", None)
    times = np.concatenate([own.ts_ms, base.ts_ms, west.ts_ms])
    return [lines[i] for i in np.argsort(times, kind="stable")]


def replayed(lines: list[bytes], size: int) -> tuple[list[Decision], Pipeline]:
    return replay_lines(regression_plan(), lines, size)
