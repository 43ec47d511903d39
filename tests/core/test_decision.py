"""Decision events (contract v1): JSON round trip, the fields every decision carries, deterministic ids."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from gatekeeper.core.decision import Decision, decision_id, decode, encode
from gatekeeper.core.timefmt import parse_instant

from .helpers import MINUTE, rich_run

TOP_LEVEL = {
    "decision_id",
    "decision",
    "region",
    "tier",
    "phase",
    "window_start",
    "window_end",
    "at",
    "metrics",
    "criteria",
    "reasons",
    "plan_version",
}
METRICS = {
    "requests",
    "errors",
    "error_rate",
    "error_rate_lower",
    "error_rate_upper",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p99_lower_ms",
    "p99_upper_ms",
}
CRITERION = {"name", "scope", "threshold", "observed", "verdict"}


@pytest.fixture(scope="module")
def decisions() -> list[Decision]:
    return rich_run()


@pytest.fixture(scope="module")
def documents(decisions: list[Decision]) -> list[dict[str, Any]]:
    return [json.loads(encode(d)) for d in decisions]


def test_round_trip(decisions: list[Decision]) -> None:
    """decode(encode(d)) == d for every kind of decision."""
    assert decisions == [decode(encode(d)) for d in decisions]


def test_top_level_fields(documents: list[dict[str, Any]]) -> None:
    """Every decision's JSON has the contract's top-level fields."""
    assert [] == [(d["decision"], TOP_LEVEL - set(d)) for d in documents if not set(d) >= TOP_LEVEL]


def test_metrics_fields(documents: list[dict[str, Any]]) -> None:
    """Every decision's metrics have requests, errors, the error rate with bounds, P50/P95/P99 and P99 bounds
    (null when there is nothing to show, never left out)."""
    missing = [(d["decision"], METRICS - set(d["metrics"])) for d in documents]
    assert [] == [(kind, fields) for kind, fields in missing if fields]


def test_criteria_fields(documents: list[dict[str, Any]]) -> None:
    """Every judged criterion has a name, scope, threshold, observed value and verdict."""
    criteria = [c for d in documents for c in d["criteria"]]
    assert criteria
    assert [] == [c for c in criteria if not set(c) >= CRITERION]
    assert {"pass", "fail", "inconclusive"} >= {c["verdict"] for c in criteria}


def test_every_kind_has_its_reasons(documents: list[dict[str, Any]]) -> None:
    """Every decision says why, in at least one reason, and carries its reason code."""
    assert [] == [d for d in documents if not d["reasons"] or not d["reason_code"]]
    assert {"fail", "hold", "release", "pass", "pending"} == {d["decision"] for d in documents}


def test_hold_until(documents: list[dict[str, Any]]) -> None:
    """A hold carries hold_until = the end of the window (10m) the fail fell in + hold_on_fail (30m), so the
    retried soak starts on the window grid; no other decision carries one."""
    holds = [d for d in documents if d["decision"] == "hold"]
    assert holds
    ats = [parse_instant(d["at"]) for d in holds]
    expected = [at + (-at) % (10 * MINUTE) + 30 * MINUTE for at in ats]
    assert expected == [parse_instant(d["hold_until"]) for d in holds]
    assert [] == [d for d in documents if d["decision"] != "hold" and "hold_until" in d]


def test_times(documents: list[dict[str, Any]]) -> None:
    """Times are RFC 3339 UTC; a decision is made at the end of the span it describes."""
    for d in documents:
        start, end, when = (parse_instant(d[k]) for k in ("window_start", "window_end", "at"))
        assert (True, when) == (start <= end, end)
        assert d["at"].endswith("Z")


def test_ids(decisions: list[Decision]) -> None:
    """Ids are 32 hex digits, and the Kafka key is region/tier."""
    assert all(re.fullmatch(r"[0-9a-f]{32}", d.decision_id) for d in decisions)
    assert {"us-east/canary", "eu-west/canary"} == {d.key for d in decisions}


def test_decision_id_depends_on_every_part() -> None:
    """decision_id is a pure function of its parts, and changing any one part changes it."""
    parts = ["1.0+abc", "us-east", "canary", "pass", "2025-10-19T01:00:00Z", "a/b", "go"]
    base = decision_id(*parts)
    assert base == decision_id(*parts)
    variants = [[*parts[:i], p + "x", *parts[i + 1 :]] for i, p in enumerate(parts)]
    changed = [decision_id(*variant) for variant in variants]
    assert len(parts) == len(set(changed) - {base})


def test_decode_rejects_an_unknown_kind(decisions: list[Decision]) -> None:
    """Decoding checks the contract: 'maybe' is not a decision kind."""
    kind = f'"decision":"{decisions[0].decision}"'.encode()
    raw = encode(decisions[0]).replace(kind, b'"decision":"maybe"')
    with pytest.raises(msgspec.ValidationError, match="decision"):
        decode(raw)
