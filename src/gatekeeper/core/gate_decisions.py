"""A gate's decisions as records: id, scope, criteria and the metrics of the evidence they rest on. Pure."""

from __future__ import annotations

import numpy as np

from gatekeeper.core import dry_run, sketch, stats
from gatekeeper.core.criteria import Evidence, UptimeEvidence
from gatekeeper.core.decision import CriterionResult, Decision, DecisionKind, Metrics, decision_id
from gatekeeper.core.gate_spec import GateSpec, GateState
from gatekeeper.core.timefmt import format_ms

# the evidence of a stall or a release: empty metrics, so the content never depends on which clock reported it
NOTHING = Evidence(0, 0, sketch.empty())


def soak_evidence(st: GateState) -> Evidence:
    return Evidence(st.soak_requests, st.soak_errors, st.soak_bins)


def uptime(spec: GateSpec, st: GateState, end: int) -> UptimeEvidence:
    return UptimeEvidence(st.down_ms, end - st.soak_start, spec.tier.soak)


def decision(
    spec: GateSpec,
    st: GateState,
    kind: DecisionKind,
    start: int,
    end: int,
    at: int,
    results: tuple[CriterionResult, ...],
    reasons: tuple[str, ...],
    code: str,
    alpha: float = 0.05,
    evidence: Evidence | None = None,
    look: int | None = None,
) -> Decision:
    """A decision; its metrics describe ``evidence`` (default: the soak so far). With ``NOTHING`` (stall,
    release) the metrics are empty, so the content never depends on which clock reported it."""
    ev = evidence or soak_evidence(st)
    if ev is NOTHING:
        metrics = _metrics(ev, alpha, spec.evaluation.confidence.interval, UptimeEvidence(0, 0, 0), 0)
    else:
        metrics = _metrics(ev, alpha, spec.evaluation.confidence.interval, uptime(spec, st, end), st.late_events)
    when = format_ms(at)
    window_start, window_end = format_ms(start), format_ms(end)
    return Decision(
        decision_id=decision_id(
            spec.plan_version,
            spec.region,
            spec.tier.name,
            kind,
            when,
            f"{window_start}/{window_end}",
            code,
        ),
        decision=kind,
        region=spec.region,
        tier=spec.tier.name,
        phase=spec.phase.name,
        window_start=window_start,
        window_end=window_end,
        at=when,
        metrics=metrics,
        criteria=dry_run.mark(results, spec.dry) if spec.dry else results,
        reasons=reasons,
        plan_version=spec.plan_version,
        look=st.looks if look is None else look,
        hold_until=format_ms(st.hold_until) if kind == "hold" else None,
        reason_code=code,
    )


def _metrics(ev: Evidence, alpha: float, method: str, up: UptimeEvidence, late: int) -> Metrics:
    rate_lo, rate_hi = stats.rate_bounds(ev.errors, ev.requests, alpha, method)
    p99_lo, p99_hi = stats.quantile_bounds(ev.bins, 0.99, alpha)
    has = ev.requests > 0
    return Metrics(
        requests=ev.requests,
        errors=ev.errors,
        error_rate=ev.errors / ev.requests if has else None,
        error_rate_lower=rate_lo if has else None,
        error_rate_upper=rate_hi if has else None,
        p50_ms=sketch.quantile(ev.bins, 0.5),
        p95_ms=sketch.quantile(ev.bins, 0.95),
        p99_ms=sketch.quantile(ev.bins, 0.99),
        p99_lower_ms=p99_lo if has else None,
        p99_upper_ms=p99_hi if has and np.isfinite(p99_hi) else None,
        uptime=up.uptime,
        down_minutes=up.down_ms / 60_000,
        late_events=late,
    )
