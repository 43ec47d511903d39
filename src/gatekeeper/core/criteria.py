"""Judges: one per criterion kind, each a pure function of the evidence and an alpha.

A judge answers two questions at every look:
- ``fail_checks``: is there confident evidence that the true value breaks the fail threshold?
  (per scope: the latest window, for sudden breaches; the whole soak so far, for sustained ones)
- ``pass_check``: is there confident evidence that the true value is within the pass threshold?
Anything short of confident evidence is ``inconclusive``. New criterion kinds register in ``JUDGES``.

With ``evaluation.method: sequential`` a statistical judge is a Bernoulli test: each request is a *hit* (an
error; a latency certainly above the ceiling) and the criterion breaks its ceiling when the hit rate exceeds
``null_rate``. The gate runs the anytime-valid test on the counts (``core/sequential.py``); the judge says
which counts and words the verdict (``sequential_result``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from gatekeeper.core import sketch, stats
from gatekeeper.core.approvals import approval_judges
from gatekeeper.core.cross_region import CrossRegionJudge
from gatekeeper.core.decision import CriterionResult, Scope, Verdict
from gatekeeper.core.incidents import IncidentsJudge
from gatekeeper.core.lift import LiftJudge
from gatekeeper.core.plan import (
    ErrorRateCriterion,
    Evaluation,
    LatencyCriterion,
    LiftCriterion,
    NoIncidentsCriterion,
    NoRegressionCriterion,
    Tier,
    UptimeCriterion,
)
from gatekeeper.core.regression import NoRegressionJudge
from gatekeeper.core.side_ledger import SideView
from gatekeeper.core.slice_ledger import BaselineLook


@dataclass(slots=True)
class Evidence:
    """What one scope saw: exact counts and the latency sketch."""

    requests: int
    errors: int
    bins: sketch.Bins


@dataclass(frozen=True, slots=True)
class UptimeEvidence:
    down_ms: int
    elapsed_ms: int
    soak_ms: int

    @property
    def uptime(self) -> float | None:
        return None if self.elapsed_ms <= 0 else 1 - self.down_ms / self.elapsed_ms


@dataclass(frozen=True, slots=True)
class Look:
    window: Evidence
    soak: Evidence
    uptime: UptimeEvidence
    method: str  # rate bounds: exact | wilson | wilson_cc
    side: SideView | None = None  # incidents, approvals, business metrics as of the look (core/side_inputs.py)
    baseline: BaselineLook | None = None  # the baseline version's evidence (core/regression.py)
    cross: BaselineLook | None = None  # the cross-region requests' evidence (core/cross_region.py)


class Judge(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def statistical(self) -> bool:
        """Whether the judge takes a share of the false-fail alpha."""
        ...

    def may_fail(self, look: Look) -> bool:
        """Cheap and exact necessary condition for a ``fail`` among ``fail_checks`` (skips most looks)."""
        ...

    def fail_checks(self, look: Look, alpha: float) -> list[CriterionResult]: ...

    def pass_check(self, look: Look, alpha: float) -> CriterionResult: ...

    def may_pass(self, look: Look, alpha: float) -> bool:
        """Cheap and exact necessary condition for a ``pass`` from ``pass_check`` (a soak that has run its course
        asks it at every window's close, and most such looks stop at the first criterion that says no)."""
        ...

    @property
    def fail_weight(self) -> float:
        """Relative share of the gate's false-fail alpha (0: takes none)."""
        ...


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _ms(x: float) -> str:
    return "unbounded" if math.isinf(x) else f"{x:.4g} ms"


Measure = Callable[[Evidence, float, str], tuple[float | None, float, float]]
Screen = Callable[[Evidence, float], bool]  # (evidence, fail threshold) -> could the lower bound exceed it?


@dataclass(frozen=True, slots=True)
class StatisticalJudge:
    """A sampled criterion: ``measure`` gives (point estimate, lower bound, upper bound) at a given alpha."""

    name: str
    label: str
    pass_below: float
    fail_above: float
    min_requests: int
    min_requests_to_fail: int
    measure: Measure
    screen: Screen
    show: Callable[[float], str]
    null_rate: float  # sequential: largest hit rate within the ceiling
    hits: Callable[[Evidence], int]  # sequential: requests certainly breaking the ceiling
    describe: Callable[[int, int, float | None], str]  # sequential: (requests, hits, estimate) -> what was seen
    per_pane: bool  # sequential: counts exist per pane (error rate), not only per window (latency sketch)
    fail_weight: float = 1.0
    statistical: bool = True
    upper: Callable[[Evidence, float, str], float] | None = None  # ``measure``'s upper bound alone, if cheaper

    def may_fail(self, look: Look) -> bool:
        needed, limit = self.min_requests_to_fail, self.fail_above
        return any(ev.requests >= needed and self.screen(ev, limit) for ev in (look.window, look.soak))

    def _judge(self, ev: Evidence, scope: Scope, alpha: float, method: str, failing: bool) -> CriterionResult:
        limit = self.fail_above if failing else self.pass_below
        needed = self.min_requests_to_fail if failing else self.min_requests
        observed, lower, upper = self.measure(ev, alpha, method)
        conf = f"{(1 - alpha) * 100:.6g}%"
        verdict: Verdict
        seen = "no data" if observed is None else self.show(observed)
        if ev.requests < needed:
            verdict = "inconclusive"
            action = "fail" if failing else "pass"
            why = f"{self.label}: {ev.requests} requests in the {scope}; {needed} needed to {action}"
        elif failing and lower > limit:
            verdict = "fail"
            why = (f"{self.label} {seen} in the {scope}: at least {self.show(lower)} at {conf} confidence, "
                   f"above the {self.show(limit)} ceiling")  # fmt: skip
        elif not failing and upper < limit:
            verdict = "pass"
            why = (f"{self.label} {seen} over the soak: at most {self.show(upper)} at {conf} confidence, "
                   f"below {self.show(limit)}")  # fmt: skip
        else:
            verdict = "inconclusive"
            why = (f"{self.label} {seen} in the {scope}, between {self.show(lower)} and {self.show(upper)} at {conf}: "
                   f"not yet conclusive against {self.show(limit)}")  # fmt: skip
        return CriterionResult(
            name=self.name, scope=scope, verdict=verdict,
            threshold=limit, observed=observed, lower=lower, upper=None if math.isinf(upper) else upper,
            requests=ev.requests, reason=why,
        )  # fmt: skip

    def check(self, ev: Evidence, scope: Scope, alpha: float, method: str, failing: bool) -> CriterionResult:
        """One bound of ``ev`` against the ceiling (``failing``) or the pass line (core/cross_region.py)."""
        return self._judge(ev, scope, alpha, method, failing)

    def fail_checks(self, look: Look, alpha: float) -> list[CriterionResult]:
        return [
            self._judge(look.window, "window", alpha, look.method, failing=True),
            self._judge(look.soak, "soak", alpha, look.method, failing=True),
        ]

    def pass_check(self, look: Look, alpha: float) -> CriterionResult:
        return self._judge(look.soak, "soak", alpha, look.method, failing=False)

    def may_pass(self, look: Look, alpha: float) -> bool:
        """Exactly ``pass_check(look, alpha).verdict == "pass"``, unworded and with the upper bound alone where
        the criterion has it apart (``upper``)."""
        ev = look.soak
        if ev.requests < self.min_requests:
            return False
        upper = self.measure(ev, alpha, look.method)[2] if self.upper is None else self.upper(ev, alpha, look.method)
        return upper < self.pass_below

    def sequential_result(
        self, ev: Evidence, hits: int, scope: Scope, since: str, reading: SequentialReading, alpha: float
    ) -> CriterionResult:
        """The verdict of the anytime-valid fail test, worded with ``ev`` and its ``hits`` (the counts of the
        scope carrying most of the evidence: the soak, or the window-restarted test started ``since``)."""
        limit, needed = self.fail_above, self.min_requests_to_fail
        conf = f"{(1 - alpha) * 100:.6g}%"
        observed, _, _ = self.measure(ev, 0.5, "exact") if ev.requests else (None, 0.0, 0.0)
        seen = self.describe(ev.requests, hits, observed)
        odds = f"{_ratio(reading.log_evidence)} to 1 for a breach, {_ratio(reading.log_threshold)} needed"
        verdict: Verdict = "inconclusive"
        if reading.requests < needed:
            why = f"{self.label}: {reading.requests} requests in the soak; {needed} needed to fail"
        elif reading.log_evidence >= reading.log_threshold:
            verdict = "fail"
            least = "" if reading.lower is None else f"at least {_pct(reading.lower)}, "
            why = (f"{seen} {since}: {least}above the {self.show(limit)} ceiling at {conf} confidence "
                   f"(likelihood ratio {odds}; anytime-valid: holds however often it is checked)")  # fmt: skip
        else:
            why = f"{seen} {since}: not yet conclusive against the {self.show(limit)} ceiling (likelihood ratio {odds})"
        return CriterionResult(
            name=self.name, scope=scope, verdict=verdict, threshold=limit, observed=observed,
            lower=reading.lower, requests=ev.requests, reason=why,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SequentialReading:
    """What the anytime-valid test says at one point: log evidence, the log threshold it must reach, the soak's
    request count, and a lower bound on the hit rate when one was computed."""

    log_evidence: float
    log_threshold: float
    requests: int
    lower: float | None = None


def _ratio(log_value: float) -> str:
    """A likelihood ratio a person reads: '3,100', '0.02', '3.8e+10', 'over 1e300'."""
    if log_value > 690:
        return "over 1e300"
    value = math.exp(log_value)
    if value >= 1e6:
        return f"{value:.2g}"
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _error_rate(ev: Evidence, alpha: float, method: str) -> tuple[float | None, float, float]:
    lower, upper = stats.rate_bounds(ev.errors, ev.requests, alpha, method)
    return (ev.errors / ev.requests if ev.requests else None), lower, upper


def _error_rate_upper(ev: Evidence, alpha: float, method: str) -> float:
    """``_error_rate``'s upper bound alone (the same operations: the same float)."""
    if method == "exact":
        return stats.clopper_pearson_upper(ev.errors, ev.requests, alpha)
    return stats.rate_bounds(ev.errors, ev.requests, alpha, method)[1]


def _rate_may_exceed(ev: Evidence, limit: float) -> bool:
    """A one-sided lower bound at alpha < 0.5 never exceeds the observed rate."""
    return ev.errors > limit * ev.requests


def _quantile_may_exceed(ev: Evidence, q: float, limit: float) -> bool:
    """The lower bound is the bucket of rank l <= median(Binomial(n, q)) <= ceil(n q): it can exceed ``limit``
    only if fewer than ceil(n q) samples sit in buckets starting at or below ``limit``."""
    last = int(np.searchsorted(sketch.LOWER_EDGES, limit, side="right")) - 1
    return int(ev.bins[: last + 1].sum()) < math.ceil(ev.requests * q)


def _describe_errors(requests: int, errors: int, _rate: float | None) -> str:
    rate = "n/a" if requests == 0 else _pct(errors / requests)
    return f"error rate {rate} ({errors:,} errors in {requests:,} requests)"


def slower_than(bins: sketch.Bins, limit_ms: float) -> int:
    """Samples certainly slower than ``limit_ms``: those in buckets whose lower edge is at or above it (a bucket
    holds (lower, upper]); a bucket straddling the limit is not counted, so a breach is never overstated."""
    return int(bins[_first_slower(limit_ms) :].sum())


def _first_slower(limit_ms: float) -> int:
    """The first bucket of ``slower_than``'s count (a judge finds it once: it was a numpy call per window)."""
    return int(np.searchsorted(sketch.LOWER_EDGES, limit_ms, side="left"))


def error_rate_judge(spec: ErrorRateCriterion) -> StatisticalJudge:
    return StatisticalJudge(
        name=spec.name, label="error rate", pass_below=spec.pass_below, fail_above=spec.fail_above,
        min_requests=spec.min_requests, min_requests_to_fail=spec.min_requests_to_fail,
        measure=_error_rate, screen=_rate_may_exceed, show=_pct, null_rate=spec.fail_above,
        hits=lambda ev: ev.errors, describe=_describe_errors, per_pane=True, fail_weight=spec.false_fail_weight,
        upper=_error_rate_upper,
    )  # fmt: skip


def latency_judge(spec: LatencyCriterion) -> StatisticalJudge:
    q = spec.quantile

    def measure(ev: Evidence, alpha: float, _method: str) -> tuple[float | None, float, float]:
        lower, upper = stats.quantile_bounds(ev.bins, q, alpha)
        return sketch.quantile(ev.bins, q), lower, upper

    limit, allowed = spec.fail_above_ms, 1 - q
    first_slow = _first_slower(limit)  # slower_than(bins, limit) is bins[first_slow:].sum()

    def describe(requests: int, slow: int, estimate: float | None) -> str:
        share = "n/a" if requests == 0 else _pct(slow / requests)
        shown = "" if estimate is None else f"P{q * 100:g} latency {_ms(estimate)}: "
        return (f"{shown}{share} of requests slower than {_ms(limit)} ({slow:,} of {requests:,}; "
                f"a P{q * 100:g} within {_ms(limit)} allows {_pct(allowed)})")  # fmt: skip

    return StatisticalJudge(
        name=spec.name, label=f"P{q * 100:g} latency", pass_below=spec.pass_below_ms,
        fail_above=spec.fail_above_ms, min_requests=spec.min_requests,
        min_requests_to_fail=spec.min_requests_to_fail, measure=measure,
        screen=lambda ev, limit: _quantile_may_exceed(ev, q, limit), show=_ms, null_rate=allowed,
        hits=lambda ev: int(ev.bins[first_slow:].sum()), describe=describe, per_pane=False,
        fail_weight=spec.false_fail_weight, upper=lambda ev, alpha, _method: stats.quantile_upper(ev.bins, q, alpha),
    )  # fmt: skip


def _latency_or_cross(spec: LatencyCriterion) -> Judge:
    if spec.requests == "cross_region":
        ordinary = replace(latency_judge(spec), label=f"cross-region P{spec.quantile * 100:g} latency")
        return CrossRegionJudge(spec.name, ordinary)
    return latency_judge(spec)


def _allowed_down_ms(floor: float, span_ms: int) -> int:
    """Down time ``floor`` uptime allows over ``span_ms``, in whole ms (so 1 - 0.9 rounding cannot bite)."""
    return round((1 - floor) * span_ms)


@dataclass(frozen=True, slots=True)
class UptimeJudge:
    """Time-based, not sampled: a breach is certain once the down time exceeds what the soak allows."""

    spec: UptimeCriterion
    name: str = "uptime"
    statistical: bool = False
    fail_weight: float = 0.0

    def _result(self, up: UptimeEvidence, verdict: Verdict, limit: float, why: str) -> CriterionResult:
        return CriterionResult(
            name=self.name, scope="soak", verdict=verdict, threshold=limit,
            observed=up.uptime, reason=why,
        )  # fmt: skip

    def may_fail(self, look: Look) -> bool:
        up = look.uptime
        if not up.down_ms:  # asked at every window's close: no down time cannot exceed an allowance (>= 0)
            return False
        return up.down_ms > _allowed_down_ms(self.spec.at_least, max(up.soak_ms, up.elapsed_ms))

    def fail_checks(self, look: Look, alpha: float) -> list[CriterionResult]:
        up, floor = look.uptime, self.spec.at_least
        budget = _allowed_down_ms(floor, max(up.soak_ms, up.elapsed_ms))
        down_min = up.down_ms / 60_000
        if up.down_ms > budget:
            allowed = budget / 60_000
            why = (
                f"{down_min:g} min down: more than the {allowed:.3g} min that {_pct(floor)} uptime allows over the soak"
            )
            return [self._result(up, "fail", floor, why)]
        return [self._result(up, "inconclusive", floor, f"{down_min:g} min down of {budget / 60_000:.3g} allowed")]

    def may_pass(self, look: Look, alpha: float) -> bool:
        return True  # pass_check is as cheap as any screen of it

    def pass_check(self, look: Look, alpha: float) -> CriterionResult:
        up, floor = look.uptime, self.spec.at_least
        uptime = up.uptime
        within = up.down_ms <= _allowed_down_ms(floor, up.elapsed_ms)
        if up.elapsed_ms >= up.soak_ms and uptime is not None and within:
            return self._result(up, "pass", floor, f"uptime {_pct(uptime)} over the soak, at least {_pct(floor)}")
        shown = "n/a" if uptime is None else _pct(uptime)
        return self._result(up, "inconclusive", floor, f"uptime {shown} so far; {_pct(floor)} needed over the soak")


JudgeFactory = Callable[[Any, Evaluation], Judge]
JUDGES: dict[type, JudgeFactory] = {
    ErrorRateCriterion: lambda spec, _ev: error_rate_judge(spec),
    LatencyCriterion: lambda spec, _ev: _latency_or_cross(spec),
    UptimeCriterion: lambda spec, _ev: UptimeJudge(spec),
    NoIncidentsCriterion: lambda spec, _ev: IncidentsJudge(spec),
    LiftCriterion: lambda spec, ev: LiftJudge(spec, ev.window),
    NoRegressionCriterion: lambda spec, _ev: NoRegressionJudge(spec),
}


def judges_for(tier: Tier, evaluation: Evaluation) -> list[Judge]:
    """The judges of a tier's criteria, in plan order, then one per checkpoint that requires approval."""
    return [JUDGES[type(spec)](spec, evaluation) for spec in tier.criteria] + list(approval_judges(tier))
