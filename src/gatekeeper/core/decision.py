"""Decision events (contract v1; see streams/decision.v1.schema.json) and their deterministic ids."""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

DecisionKind = Literal["pass", "fail", "hold", "release", "pending"]
Verdict = Literal["pass", "fail", "inconclusive"]
Scope = Literal["window", "soak"]


class CriterionResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """One criterion judged on one scope (the latest window or the whole soak so far)."""

    name: str
    scope: Scope
    verdict: Verdict
    threshold: float  # the threshold this verdict was judged against (fail_above for fail looks)
    observed: float | None  # point estimate (None: no data)
    lower: float | None = None  # confidence bounds on the true value, where the criterion is statistical
    upper: float | None = None
    requests: int = 0
    reason: str = ""
    dry_run: bool = False  # a criterion in dry run: reported, never fails, holds or blocks a pass


class Metrics(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the decision saw on its scope: counts, error rate with bounds, latency quantiles with P99 bounds."""

    requests: int
    errors: int
    error_rate: float | None
    error_rate_lower: float | None
    error_rate_upper: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p99_lower_ms: float | None
    p99_upper_ms: float | None
    uptime: float | None = None
    down_minutes: float | None = None
    late_events: int = 0


class Decision(msgspec.Struct, frozen=True, omit_defaults=True):
    """A gate's decision. ``region`` is a region of the plan, or ``global`` for a tier's all-regions gate
    (core/global_gate.py): its ``criteria`` are one ``region:<name>`` per region it waits for (and
    ``uptime:multi-region``), its ``metrics`` only the multi-region uptime."""

    decision_id: str
    decision: DecisionKind
    region: str
    tier: str
    phase: str
    window_start: str
    window_end: str
    at: str
    metrics: Metrics
    criteria: tuple[CriterionResult, ...]
    reasons: tuple[str, ...]
    plan_version: str
    look: int = 0
    hold_until: str | None = None
    reason_code: str = ""

    @property
    def key(self) -> str:
        """The Kafka key of this decision: one key's decisions stay in order on one partition."""
        return f"{self.region}/{self.tier}"


def decision_id(plan_version: str, region: str, tier: str, kind: str, at: str, scope: str, code: str) -> str:
    """Same plan and same input give the same id; any difference in what was decided gives another."""
    text = "\x1f".join((plan_version, region, tier, kind, at, scope, code))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Decision)


def encode(decision: Decision) -> bytes:
    return _ENCODER.encode(decision)


def decode(raw: bytes) -> Decision:
    return _DECODER.decode(raw)
