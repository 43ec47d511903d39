"""No regression against the baseline version (plan criterion ``no_regression``, issue 12), as Kayenta's canary
analysis does, with the error guarantees of the other criteria.

Which telemetry is the baseline: a record of region R whose ``version`` is the ``baseline_version`` a
``no_regression`` criterion of a gate of R names, whatever its tier label (``baseline`` is the usual one; it is
not rejected as an unknown tier). Such a record is baseline evidence only, never its tier's own. Records without
a version, or of another version, count for their (region, tier) gate as before.

Where it flows: the decoder gives a baseline record the key of a *baseline slot* (one per region and baseline
version, after the gates' keys); stage 1 aggregates slots as it does gates and emits each slot's pane once per
gate that compares with it, as a ``Partial`` of that gate with ``slice: "baseline"`` (core/slot_routing.py).
Stage 2 keeps those apart from the gate's own partials and, as panes close, adds them to the gate state's
baseline ledger per window, before the gate's own panes of the same close, so replay and the worker judge on the
same evidence (core/slice_ledger.py). The gate folds a window's baseline into the baseline soak when it closes
that window (the soak restarts with the gate's own after a hold).

The test (docs/statistics.md): at the gate's k-th window close of a soak, the criterion fails when
  lower(treatment) - upper(baseline) > margin
with each one-sided bound at alpha_k / 2 (Clopper-Pearson for error rates, order-statistic bounds for the
quantile), alpha_k = ``stats.look_alpha`` of the criterion's share of the gate's ``false_fail``: the alpha_k sum
to that share, so by the union bound the chance of ever failing a treatment that is not worse by more than the
margin stays within it, however long the soak runs. It passes when
  upper(treatment) - lower(baseline) <= margin
at the pass look's alpha (split in two the same way). Each side needs ``min_requests`` to pass and
``min_requests_to_fail`` to fail; with less baseline the verdict is inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from gatekeeper.core import sketch, stats
from gatekeeper.core.decision import CriterionResult, Verdict
from gatekeeper.core.look_share import LookShare
from gatekeeper.core.plan import NoRegressionCriterion
from gatekeeper.core.slice_ledger import BaselineLook, Sample


# What this module reads of its callers' types (structural, so it imports none of criteria, gate or merge).
class _Sampled(Protocol):
    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def bins(self) -> sketch.Bins: ...


class _Look(Protocol):
    @property
    def soak(self) -> _Sampled: ...

    @property
    def baseline(self) -> BaselineLook | None: ...


# -- the judge ----------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _confidence(alpha: float) -> str:
    """The confidence as "99.99%", or as "1 - 3.1e-08" where six digits would round to 100 %."""
    return f"{(1 - alpha) * 100:.6g}%" if alpha >= 5e-7 else f"1 - {alpha:.2g}"


def _ms(x: float) -> str:
    return "unbounded" if math.isinf(x) else f"{x:.4g} ms"


@dataclass(frozen=True, slots=True)
class NoRegressionJudge:
    """``spend``: the criterion's share of the gate's ``false_fail`` over a soak's planned looks, set by
    ``GateSpec.of`` (core/look_share.py)."""

    spec: NoRegressionCriterion
    spend: LookShare = field(default_factory=LookShare)
    statistical: bool = True

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fail_weight(self) -> float:
        return self.spec.false_fail_weight

    @property
    def _margin(self) -> float:
        margin = self.spec.margin if self.spec.metric == "error_rate" else self.spec.margin_ms
        return float(margin or 0.0)

    def _show(self, x: float) -> str:
        return _pct(x) if self.spec.metric == "error_rate" else _ms(x)

    def _label(self) -> str:
        return "error rate" if self.spec.metric == "error_rate" else f"P{self.spec.quantile * 100:g} latency"

    def _measure(self, s: _Sampled, alpha: float) -> tuple[float | None, float, float]:
        if self.spec.metric == "error_rate":
            lower, upper = stats.clopper_pearson(s.errors, s.requests, alpha)
            return (s.errors / s.requests if s.requests else None), lower, upper
        lower, upper = stats.quantile_bounds(s.bins, self.spec.quantile, alpha)
        return sketch.quantile(s.bins, self.spec.quantile), lower, upper

    def may_fail(self, look: _Look) -> bool:
        """The difference of the point estimates bounds the confident one from above."""
        base, own, needed = look.baseline, look.soak, self.spec.min_requests_to_fail
        if base is None or min(own.requests, base.soak.requests) < needed:
            return False
        t, b = self._measure(own, 0.5)[0], self._measure(base.soak, 0.5)[0]
        return t is not None and b is not None and t - b > self._margin

    def fail_checks(self, look: _Look, alpha: float) -> list[CriterionResult]:
        """The gate's ``alpha`` is not used: the criterion spends its own share over the soak's looks."""
        looks = 1 if look.baseline is None else max(1, look.baseline.looks)
        return [self._judge(look, self.spend.at(looks), failing=True)]

    def may_pass(self, look: _Look, alpha: float) -> bool:
        return True  # pass_check is as cheap as any screen of it

    def pass_check(self, look: _Look, alpha: float) -> CriterionResult:
        return self._judge(look, alpha, failing=False)

    def _judge(self, look: _Look, alpha: float, failing: bool) -> CriterionResult:
        spec, margin, show = self.spec, self._margin, self._show
        own = look.soak
        base = look.baseline.soak if look.baseline is not None else Sample()
        needed = spec.min_requests_to_fail if failing else spec.min_requests
        t, t_lo, t_hi = self._measure(own, alpha / 2)
        b, b_lo, b_hi = self._measure(base, alpha / 2)
        lower, upper = t_lo - b_hi, t_hi - b_lo
        observed = None if t is None or b is None else t - b
        conf = _confidence(alpha)
        seen = (f"{self._label()} {'n/a' if t is None else show(t)} vs {'n/a' if b is None else show(b)} for "
                f"baseline {spec.baseline_version} ({own.requests:,} vs {base.requests:,} requests)")  # fmt: skip
        verdict: Verdict = "inconclusive"
        if min(own.requests, base.requests) < needed:
            side = "baseline" if base.requests < needed else "treatment"
            action = "fail" if failing else "pass"
            why = f"{seen}: too little {side} evidence; {needed:,} requests a side needed to {action}"
        elif failing and lower > margin:
            verdict = "fail"
            why = f"{seen}: at least {show(lower)} worse at {conf} confidence, more than the {show(margin)} margin"
        elif not failing and upper <= margin:
            verdict = "pass"
            why = f"{seen}: at most {show(upper)} worse at {conf} confidence, within the {show(margin)} margin"
        else:
            why = (f"{seen}: between {show(lower)} and {show(upper)} worse at {conf}, not yet conclusive against "
                   f"the {show(margin)} margin")  # fmt: skip
        return CriterionResult(
            name=self.name, scope="soak", verdict=verdict, threshold=margin, observed=observed,
            lower=None if math.isinf(lower) else lower, upper=None if math.isinf(upper) else upper,
            requests=own.requests, reason=why,
        )  # fmt: skip
