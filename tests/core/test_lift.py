"""The revenue-lift criterion: the delta-method estimate, its anytime-valid confidence sequence, and the judge's
pass / fail / inconclusive on a gate's business-metric ledger."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest

from gatekeeper.core.lift import BusinessMetric, LiftJudge, boundary, estimate, fold
from gatekeeper.core.plan import LiftCriterion
from gatekeeper.core.side_ledger import SideLedger, SideView

from .helpers import HOUR, T0

WEEK = 7 * 24 * HOUR


def sums_of(treatment: np.ndarray, control: np.ndarray) -> list[float]:
    return [treatment.size, treatment.sum(), (treatment**2).sum(), control.size, control.sum(), (control**2).sum()]


def test_the_estimate_is_the_ratio_of_means_minus_one_with_the_delta_method_width() -> None:
    """Treatment mean 10.6 over control mean 10: +6 %; with t = 20 000 and unit sigma the half-width is sigma times
    the boundary, sigma^2 = t * (delta-method variance)."""
    treatment = np.array([9.6, 11.6] * 5000)  # mean 10.6, sample variance ~1.0001
    control = np.array([9.0, 11.0] * 5000)  # mean 10.0
    est = estimate(sums_of(treatment, control), 0.001, 20_000)
    assert est is not None
    var = treatment.var(ddof=1) / (10_000 * 10.0**2) + 10.6**2 * control.var(ddof=1) / (10_000 * 10.0**4)
    half = math.sqrt(20_000 * var) * boundary(20_000, 0.001, 20_000)
    assert [0.06, 0.06 - half, 0.06 + half] == pytest.approx([est.lift, est.lower, est.upper], rel=1e-9)


def test_the_boundary_shrinks_with_data_and_grows_with_confidence() -> None:
    """More observations, a narrower sequence; a smaller alpha, a wider one."""
    assert boundary(10_000, 0.001, 20_000) > boundary(40_000, 0.001, 20_000)
    assert boundary(20_000, 0.0001, 20_000) > boundary(20_000, 0.01, 20_000)


def test_the_sequence_covers_the_true_lift_at_every_look_in_most_runs() -> None:
    """200 runs of 50 looks on a true +6 % lift (exponential revenue): at alpha 0.05 the sequence misses the truth
    at some look in at most 5 % of the runs (anytime-valid; a fixed-sample interval checked 50 times misses far
    more often)."""
    rng = np.random.default_rng(7)
    missed = 0
    for _ in range(200):
        sums = [0.0] * 6
        for _look in range(50):
            t = rng.exponential(10.6, 200)
            c = rng.exponential(10.0, 200)
            for i, v in enumerate(sums_of(t, c)):
                sums[i] += v
            est = estimate(sums, 0.05, 5_000)
            assert est is not None
            if not est.lower <= 0.06 <= est.upper:
                missed += 1
                break
    assert missed <= 10


def test_no_estimate_without_two_records_per_arm_or_with_a_control_mean_at_zero() -> None:
    """A relative lift needs a variance in each arm and a positive control mean."""
    assert estimate([1, 5, 25, 10, 50, 300], 0.01, 100) is None
    assert estimate([10, 50, 300, 10, 0, 0], 0.01, 100) is None


def ledger_with(lift: float, n: int, seed: int = 3) -> SideLedger:
    rng = np.random.default_rng(seed)
    ledger = SideLedger()
    arms: list[tuple[Literal["treatment", "control"], float]] = [("treatment", 10 * (1 + lift)), ("control", 10.0)]
    for cohort, mean in arms:
        for i, value in enumerate(rng.exponential(mean, n).tolist()):
            ts = (T0 + (i % 100) * HOUR) / 1000
            record = BusinessMetric(ts, "us-east", f"l{i}", cohort, "revenue", value, "canary")
            fold(ledger.lift, record, HOUR)
    return ledger


class _Look:
    def __init__(self, ledger: SideLedger, end: int) -> None:
        self.side = SideView(ledger, T0, end - HOUR, end)


def verdicts(lift: float, n: int) -> tuple[str, str]:
    spec = LiftCriterion(kind="lift", pass_lower_above=0.0, pass_estimate_at_least=0.058, fail_upper_below=0.058)
    judge = LiftJudge(spec, HOUR, fail_alpha=0.001, pass_alpha=0.001)
    look = _Look(ledger_with(lift, n), T0 + WEEK)
    return judge.pass_check(look, 0.0).verdict, judge.fail_checks(look, 0.0)[0].verdict


def test_a_large_lift_passes_a_drop_fails_and_thin_data_is_inconclusive() -> None:
    """+20 % on 20 000 records an arm: pass; -10 %: fail (upper bound below +5.8 %); 50 records an arm: neither
    (fewer than min_per_arm 100)."""
    assert ("pass", "inconclusive") == verdicts(0.20, 20_000)
    assert ("inconclusive", "fail") == verdicts(-0.10, 20_000)
    assert ("inconclusive", "inconclusive") == verdicts(0.20, 50)


def test_may_fail_is_the_fail_checks_verdict() -> None:
    """may_fail (asked at every window's close, without wording a reason) says "fail" exactly when the worded fail
    check does: lifts from -30 % to +20 %, 50 to 5,000 records an arm, looks after 1 hour to a week."""
    spec = LiftCriterion(kind="lift", pass_lower_above=0.0, fail_upper_below=0.058)
    judge = LiftJudge(spec, HOUR, fail_alpha=0.001, pass_alpha=0.001)
    expected, actual = [], []
    for lift in (-0.3, -0.1, 0.0, 0.2):
        for n in (50, 500, 5_000):
            ledger = ledger_with(lift, n)
            for end in (T0 + HOUR, T0 + 10 * HOUR, T0 + WEEK):
                look = _Look(ledger, end)
                expected.append(judge.fail_checks(look, 0.0)[0].verdict == "fail")
                actual.append(judge.may_fail(look))
    assert (expected, True) == (actual, any(expected))


def test_records_after_the_look_or_before_the_soak_do_not_count() -> None:
    """Only windows inside [soak start, look) count: at T0 + 1h just the first hour's records."""
    spec = LiftCriterion(kind="lift", fail_upper_below=0.0, min_per_arm=2, alpha=0.001)
    judge = LiftJudge(spec, HOUR)
    result = judge.pass_check(_Look(ledger_with(0.2, 1000), T0 + HOUR), 0.0)
    assert 20 == result.requests  # 10 per arm: records i % 100 == 0


def test_the_sums_are_exact_whatever_order_the_records_arrive_in() -> None:
    """The same records folded in two orders give the same ledger, byte for byte (a worker receives them in
    another order than replay; float sums would differ in their last bits, and so would the decisions)."""
    rng = np.random.default_rng(5)
    cohorts: list[Literal["treatment", "control"]] = ["control", "treatment"]
    records = [
        BusinessMetric(T0 / 1000 + i, "us-east", f"l{i}", cohorts[i % 2], "revenue", float(v), "canary")
        for i, v in enumerate(rng.exponential(10.0, 500).round(4))
    ]
    forward, backward = SideLedger(), SideLedger()
    for record in records:
        fold(forward.lift, record, HOUR)
    for record in reversed(records):
        fold(backward.lift, record, HOUR)
    assert forward.lift == backward.lift
