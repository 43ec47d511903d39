"""Business metrics (contract v1, streams/business-metric.v1.schema.json) and the ``lift`` criterion: the
relative lift of the treatment's mean over the control's, with an anytime-valid confidence sequence.

Each record is one learner's value of a metric for one period (``ts``: when the period's value was known, e.g.
its end). A gate keeps, per metric and per window of ``ts``, the count, sum and sum of squares of its tier's
treatment records and of its region's control records (the control has no tier: it serves every tier).

The interval (docs/statistics.md): lift = mean_T / mean_C - 1; its variance by the delta method,
  var = s_T^2 / (n_T mean_C^2) + mean_T^2 s_C^2 / (n_C mean_C^4);
and the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas ("Time-uniform
central limit theory and asymptotic confidence sequences", Ann. Statist. 2024, Thm 2.2) with t = n_T + n_C
observations and sigma^2 = t * var:
  lift +- sigma * sqrt( 2 (t rho^2 + 1) / (t^2 rho^2) * log( sqrt(t rho^2 + 1) / alpha ) ),
  rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / tune_at.
It covers the true lift at every look at once with probability ~1 - alpha, so looking every hour costs nothing.
alpha: the fail side's is the criterion's share of the gate's false_fail (``share_alpha``, by its
``false_fail_weight`` beside the statistical criteria), the pass side's the gate's false_pass (a pass needs every
criterion, so that needs no split); a criterion with its own ``alpha`` uses that for both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

import msgspec

from gatekeeper.core.decision import CriterionResult, Verdict
from gatekeeper.core.plan import LiftCriterion
from gatekeeper.core.side_ledger import SideJudge, SideLook, Sums
from gatekeeper.core.side_records import Instant, Label, instant_ms


class _Weighed(Protocol):
    @property
    def fail_weight(self) -> float: ...


J = TypeVar("J", bound=_Weighed)


class BusinessMetric(msgspec.Struct, frozen=True):
    """One record of the ``business-metrics`` topic."""

    ts: Instant
    region: Label
    learner_id: Label
    cohort: Literal["treatment", "control"]
    metric: Label
    value: float
    tier: Label | None = None  # required for the treatment, ignored for the control


def event_ms(record: BusinessMetric) -> int:
    return instant_ms(record.ts)


SCALE = 10_000  # values are counted in 1e-4 units, exactly


def fold(lift: dict[str, dict[int, Sums]], record: BusinessMetric, window_ms: int) -> None:
    """Add a record to its metric's bucket of the window its ``ts`` falls in (exact integer sums)."""
    ts = event_ms(record)
    buckets = lift.setdefault(record.metric, {})
    sums = buckets.setdefault(ts - ts % window_ms, ["0"] * 6)
    at = 0 if record.cohort == "treatment" else 3
    units = round(record.value * SCALE)
    for i, add in enumerate((1, units, units * units)):
        sums[at + i] = str(int(sums[at + i]) + add)


def pooled(buckets: list[Sums]) -> list[float]:
    """The buckets' exact totals as floats in value units: [n_T, sum_T, sumsq_T, n_C, sum_C, sumsq_C]."""
    totals = [sum(int(b[i]) for b in buckets) for i in range(6)]
    scale = (1, SCALE, SCALE * SCALE)
    return [totals[i] / scale[i % 3] for i in range(6)]


@dataclass(frozen=True, slots=True)
class LiftEstimate:
    lift: float
    lower: float
    upper: float
    n_treatment: int
    n_control: int
    mean_treatment: float
    mean_control: float


def _mean_var(n: float, total: float, squares: float) -> tuple[float, float]:
    mean = total / n
    return mean, max(0.0, (squares - n * mean * mean) / (n - 1))


def boundary(t: int, alpha: float, tune_at: int) -> float:
    """Half-width of the asymptotic confidence sequence for a mean of ``t`` observations of unit variance."""
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tune_at
    return math.sqrt(2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / alpha))


def estimate(sums: list[float], alpha: float, tune_at: int) -> LiftEstimate | None:
    """The lift and its confidence sequence from the pooled sums; None with fewer than 2 records in an arm or a
    control mean that is not positive (a relative lift is then undefined)."""
    n_t, n_c = sums[0], sums[3]
    if n_t < 2 or n_c < 2:
        return None
    mean_t, var_t = _mean_var(n_t, sums[1], sums[2])
    mean_c, var_c = _mean_var(n_c, sums[4], sums[5])
    if mean_c <= 0:
        return None
    lift = mean_t / mean_c - 1
    var = var_t / (n_t * mean_c**2) + mean_t**2 * var_c / (n_c * mean_c**4)
    t = round(n_t + n_c)
    half = math.sqrt(t * var) * boundary(t, alpha, tune_at)
    return LiftEstimate(lift, lift - half, lift + half, round(n_t), round(n_c), mean_t, mean_c)


def _pct(x: float) -> str:
    return f"{x * 100:+.3g}%"


@dataclass(frozen=True, slots=True)
class LiftJudge(SideJudge):
    """Pass when the sequence's lower bound clears ``pass_lower_above`` (and the estimate reaches
    ``pass_estimate_at_least``), fail when its upper bound lies below ``fail_upper_below``; inconclusive otherwise
    (a checkpoint then reports ``pending``)."""

    spec: LiftCriterion
    window_ms: int
    fail_alpha: float | None = None  # the gate's split (share_alpha): its share of the gate's false_fail
    pass_alpha: float | None = None  # the gate's false_pass

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fail_weight(self) -> float:  # type: ignore[override]  # a class constant on SideJudge, a field here
        """Its share of the gate's false_fail beside the statistical criteria (none with an own alpha)."""
        if self.spec.alpha is not None:
            return 0.0
        return 1.0 if self.spec.false_fail_weight is None else self.spec.false_fail_weight

    def alpha(self, failing: bool) -> float:
        """The confidence sequence's alpha on the fail side or the pass side."""
        if self.spec.alpha is not None:
            return self.spec.alpha
        alpha = self.fail_alpha if failing else self.pass_alpha
        if alpha is None:
            raise ValueError(f"{self.name}: no share of the gate's alpha (core/gate.GateSpec.of gives it one)")
        return alpha

    def _sums(self, look: SideLook) -> list[float]:
        side = look.side
        if side is None:
            return [0.0] * 6
        buckets = side.ledger.lift.get(self.spec.metric)
        if not buckets:  # no record of the metric yet (asked at every window's close): pooled([]) without the work
            return [0.0] * 6
        return pooled(
            [s for start, s in buckets.items() if side.soak_start <= start and start + self.window_ms <= side.end]
        )

    def judge(self, look: SideLook, failing: bool) -> CriterionResult:
        spec = self.spec
        sums = self._sums(look)
        n_t, n_c = round(sums[0]), round(sums[3])
        alpha = self.alpha(failing)
        est = estimate(sums, alpha, spec.tune_at)
        limit = spec.fail_upper_below if failing else spec.pass_lower_above
        conf = f"{(1 - alpha) * 100:.6g}%"
        verdict: Verdict = "inconclusive"
        label = f"{spec.metric} lift"
        if est is None or min(n_t, n_c) < spec.min_per_arm:
            why = f"{label}: {n_t} treatment and {n_c} control records over the soak; {spec.min_per_arm} per arm needed"
            return CriterionResult(name=self.name, scope="soak", verdict=verdict, threshold=limit, observed=None,
                                   requests=n_t + n_c, reason=why)  # fmt: skip
        means = f"treatment {est.mean_treatment:.4g} over control {est.mean_control:.4g}"
        seen = (f"{label} {_pct(est.lift)} ({means}, {n_t:,} + {n_c:,} records), "
                f"{_pct(est.lower)} to {_pct(est.upper)} at {conf} (anytime-valid)")  # fmt: skip
        target = spec.pass_estimate_at_least
        if failing and est.upper < spec.fail_upper_below:
            verdict, why = "fail", f"{seen}: below {_pct(spec.fail_upper_below)}"
        elif not failing and est.lower > spec.pass_lower_above and (target is None or est.lift >= target):
            aim = "" if target is None else f" and estimate at least {_pct(target)}"
            verdict, why = "pass", f"{seen}: lower bound above {_pct(spec.pass_lower_above)}{aim}"
        else:
            aim = "" if target is None else f", estimate >= {_pct(target)}"
            why = f"{seen}: not yet conclusive (pass: lower bound > {_pct(spec.pass_lower_above)}{aim})"
        return CriterionResult(name=self.name, scope="soak", verdict=verdict, threshold=limit, observed=est.lift,
                               lower=est.lower, upper=est.upper, requests=n_t + n_c, reason=why)  # fmt: skip

    def may_fail(self, look: SideLook) -> bool:
        """``judge(look, failing=True).verdict == "fail"``, without wording the reason: it is asked at every window's
        close of a sequential gate, and fails almost never."""
        spec = self.spec
        sums = self._sums(look)
        est = estimate(sums, self.alpha(True), spec.tune_at)
        if est is None or min(round(sums[0]), round(sums[3])) < spec.min_per_arm:
            return False
        return est.upper < spec.fail_upper_below

    def fail_checks(self, look: SideLook, alpha: float) -> list[CriterionResult]:
        return [self.judge(look, failing=True)]

    def may_pass(self, look: SideLook, alpha: float) -> bool:
        return True  # pass_check is as cheap as any screen of it

    def pass_check(self, look: SideLook, alpha: float) -> CriterionResult:
        return self.judge(look, failing=False)


def share_alpha(judges: Iterable[J], false_fail: float, false_pass: float) -> tuple[J, ...]:
    """The judges of a gate, each lift judge given its alphas: ``false_fail`` (the gate's) split over every judge by
    ``fail_weight`` (the statistical criteria's and the lift's; the others weigh 0), ``false_pass`` whole."""
    judges = tuple(judges)
    total = sum(j.fail_weight for j in judges)
    return tuple(
        replace(j, fail_alpha=false_fail * j.fail_weight / total, pass_alpha=false_pass)
        if isinstance(j, LiftJudge) and j.fail_weight > 0
        else j
        for j in judges
    )
