"""The small rollout plan of the core, shell and Kafka tests, written once.

pane 1m | window 10m | lateness 2m | stall_after 6m | soak 1h | hold 30m: every span a whole number of the one it
must divide, and stall_after > lateness, as the plan validators require. Regions us-east and eu-west, one phase
``canary``; each tier judges the error rate (pass below 2 %, fail above 5 %) and the P99 latency (pass below
400 ms, fail above 800 ms) from 200 requests, 50 being enough to fail.

Each caller keeps its own plan name, version and tiers. Every call returns new dicts: a test may edit its copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def criteria() -> list[dict[str, Any]]:
    """The error-rate and P99 latency criteria of every tier."""
    return [
        {
            "kind": "error_rate",
            "pass_below": "2%",
            "fail_above": "5%",
            "min_requests": 200,
            "min_requests_to_fail": 50,
        },
        {
            "kind": "latency",
            "quantile": 0.99,
            "pass_below_ms": 400,
            "fail_above_ms": 800,
            "min_requests": 200,
            "min_requests_to_fail": 50,
        },
    ]


def small_tier(
    name: str,
    traffic_percent: float,
    *,
    regions: Sequence[str] | None = None,
    more_criteria: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A tier soaking 1h with ``criteria()`` and ``more_criteria``; in every region of the plan unless ``regions``."""
    tier: dict[str, Any] = {
        "name": name,
        "traffic_percent": traffic_percent,
        "soak": "1h",
        "criteria": [*criteria(), *more_criteria],
    }
    if regions is not None:
        tier["regions"] = list(regions)
    return tier


def small_plan(name: str, version: str, tiers: list[dict[str, Any]], **evaluation: Any) -> dict[str, Any]:
    """The plan ``name`` at ``version``: one phase ``canary`` (hold 30m after a fail) with ``tiers``;
    ``evaluation`` keys are added to the evaluation settings or replace them."""
    return {
        "plan": name,
        "version": version,
        "regions": ["us-east", "eu-west"],
        "evaluation": {
            "pane": "1m",
            "window": "10m",
            "lateness": "2m",
            "stall_after": "6m",
            "confidence": {"false_fail": 0.01, "false_pass": 0.05},
            "uptime": {"down_error_rate": "50%", "min_requests": 5},  # silence_counts_as_down: false (default)
            **evaluation,
        },
        "phases": [{"name": "canary", "hold_on_fail": "30m", "tiers": tiers}],
    }


def no_regression_criteria() -> list[dict[str, Any]]:
    """Both ``no_regression`` criteria against baseline version "1.0": error rate (margin 0.5 points) and P99
    (margin 50 ms), 500 requests a side to fail, 2,000 to pass."""
    sizes = {"baseline_version": "1.0", "min_requests_to_fail": 500, "min_requests": 2000}
    return [
        {"kind": "no_regression", "metric": "error_rate", "margin": "0.5%", **sizes},
        {"kind": "no_regression", "metric": "latency", "margin_ms": 50, **sizes},
    ]
