"""The ``no_regression`` criterion (core/regression.py): the tier's version against the baseline version of its
region, error rate and P99, failing only when confidently worse by more than the margin; and the baseline's way
through both stages (decoder slots, ``slice: baseline`` partials, stage 2), the same in replay and per partial.
Stage 1's routing of the baseline is tested in test_slot_routing.py, stage 2's ledger in test_slice_ledger.py."""

from __future__ import annotations

import numpy as np
import pytest

from gatekeeper.core import sketch
from gatekeeper.core.criteria import Evidence, Look, UptimeEvidence
from gatekeeper.core.look_share import LookShare
from gatekeeper.core.plan import NoRegressionCriterion
from gatekeeper.core.regression import NoRegressionJudge
from gatekeeper.core.slice_ledger import BaselineLook, Sample

from .baseline_scenario import interleaved, regression_plan, replayed
from .helpers import HOUR, per_partial_path

ERRORS = NoRegressionCriterion(kind="no_regression", metric="error_rate", baseline_version="1.0", margin=0.0005)
LATENCY = NoRegressionCriterion(kind="no_regression", metric="latency", baseline_version="1.0", margin_ms=10)


def judge(spec: NoRegressionCriterion = ERRORS, alpha: float = 0.001) -> NoRegressionJudge:
    return NoRegressionJudge(spec, LookShare(alpha, planned=6))


def look(own: Evidence, base: Sample, looks: int = 1) -> Look:
    return Look(own, own, UptimeEvidence(0, HOUR, HOUR), "exact", None, BaselineLook(base, base, looks))


def rates(n_own: int, k_own: int, n_base: int, k_base: int) -> Look:
    return look(Evidence(n_own, k_own, sketch.empty()), Sample(n_base, k_base))


def lognormal_bins(n: int, median_ms: float, seed: int) -> sketch.Bins:
    latencies = np.random.default_rng(seed).lognormal(np.log(median_ms), 0.35, n)
    return np.bincount(sketch.bucket_of(latencies), minlength=sketch.NBINS).astype(np.int64)


def test_confidently_worse_error_rate_fails() -> None:
    """0.3 % errors against the baseline's 0.05 % over 200,000 requests a side is a regression beyond a
    0.05-point margin: the fail check fails, naming the baseline version and the margin."""
    result = judge().fail_checks(rates(200_000, 600, 200_000, 100), 0.0)[0]
    assert ("fail", "no_regression_error_rate") == (result.verdict, result.name)
    assert "baseline 1.0" in result.reason
    assert "0.05% margin" in result.reason
    assert result.lower is not None
    assert result.lower > 0.0005


def test_equal_error_rates_never_fail_and_pass() -> None:
    """The same error rate on both sides (0.05 %, 200,000 requests each) neither may fail nor fails, and passes:
    the difference is confidently within the margin."""
    same = rates(200_000, 100, 200_000, 100)
    j = judge()
    assert (False, "inconclusive") == (j.may_fail(same), j.fail_checks(same, 0.0)[0].verdict)
    assert "pass" == j.pass_check(same, 0.01).verdict


def test_little_baseline_is_inconclusive() -> None:
    """A clearly worse treatment with only 60 baseline requests neither fails (100 needed a side) nor passes;
    the reason says the baseline is short."""
    thin = rates(200_000, 2_000, 60, 0)
    j = judge()
    fail, passing = j.fail_checks(thin, 0.0)[0], j.pass_check(thin, 0.01)
    assert ("inconclusive", "inconclusive") == (fail.verdict, passing.verdict)
    assert "too little baseline evidence" in fail.reason
    assert not j.may_fail(thin)


def test_no_baseline_at_all_is_inconclusive() -> None:
    """Without any baseline evidence (a look with no baseline), the criterion can neither fail nor pass."""
    own = Evidence(100_000, 50, sketch.empty())
    bare = Look(own, own, UptimeEvidence(0, HOUR, HOUR), "exact")
    j = judge()
    assert ("inconclusive", "inconclusive") == (j.fail_checks(bare, 0.0)[0].verdict, j.pass_check(bare, 0.01).verdict)


@pytest.mark.parametrize(("margin", "fails"), [(0.0005, True), (0.002, False)])
def test_the_margin_is_honoured(margin: float, fails: bool) -> None:
    """0.13 % against 0.04 % (0.09 points worse, 1,000,000 requests a side) fails with a 0.05-point margin and
    not with a 0.2-point one, where it passes instead."""
    spec = NoRegressionCriterion(kind="no_regression", metric="error_rate", baseline_version="1.0", margin=margin)
    j, worse = judge(spec), rates(1_000_000, 1_300, 1_000_000, 400)
    verdicts = (j.fail_checks(worse, 0.0)[0].verdict, j.pass_check(worse, 0.01).verdict)
    assert (("fail", "inconclusive") if fails else ("inconclusive", "pass")) == verdicts


def test_latency_regression_fails_and_equal_latency_passes() -> None:
    """P99 latency: a treatment 1.3x slower (P99 ~73 ms against ~56 ms, 200,000 samples a side) is more than
    10 ms worse, so it fails; the same distribution passes and cannot fail."""
    base = Sample(200_000, 0, lognormal_bins(200_000, 25, seed=1))
    slow = Evidence(200_000, 0, lognormal_bins(200_000, 32.5, seed=2))
    same = Evidence(200_000, 0, lognormal_bins(200_000, 25, seed=3))
    j = judge(LATENCY)
    result = j.fail_checks(look(slow, base), 0.0)[0]
    assert ("fail", "no_regression_p99_latency_ms") == (result.verdict, result.name)
    assert (False, "pass") == (j.may_fail(look(same, base)), j.pass_check(look(same, base), 0.01).verdict)


def test_the_fail_alpha_is_spent_over_the_looks() -> None:
    """The fail check spends the criterion's share over the soak's looks: a difference just conclusive at the
    first look is not at a much later one (its alpha is smaller there), so repeated looks cannot add up."""
    j = judge(alpha=0.01)
    borderline = [rates(200_000, k, 200_000, 100) for k in range(150, 400)]
    first = next(i for i, lk in enumerate(borderline) if j.fail_checks(lk, 0.0)[0].verdict == "fail")
    late = borderline[first]
    later = look(Evidence(late.soak.requests, late.soak.errors, sketch.empty()), late.baseline.soak, looks=1_000)  # type: ignore[union-attr]
    assert "inconclusive" == j.fail_checks(later, 0.0)[0].verdict


def test_the_criterion_needs_the_margin_of_its_metric() -> None:
    """An error-rate comparison takes ``margin`` (a percentage is read as a fraction), a latency one
    ``margin_ms``; the other is refused with a message saying which."""
    spec = NoRegressionCriterion.model_validate(
        {"kind": "no_regression", "metric": "error_rate", "baseline_version": "1.0", "margin": "0.05%"}
    )
    assert 0.0005 == pytest.approx(spec.margin)
    with pytest.raises(ValueError, match="no_regression on latency takes margin_ms"):
        NoRegressionCriterion.model_validate(
            {"kind": "no_regression", "metric": "latency", "baseline_version": "1.0", "margin": "1%"}
        )


# -- through the pipeline --------------------------------------------------------------------------------------
def test_a_regressing_canary_fails_on_its_baseline_and_the_baseline_is_not_its_own() -> None:
    """Replayed, the us-east canary (2 % errors, within its own 5 % ceiling) fails no_regression_error_rate against
    the baseline's 0.1 %; the baseline records (tier label ``baseline``) are accepted and never counted as the
    canary's own requests; eu-west, with no baseline, never fails."""
    decisions, _ = replayed(interleaved(), 5_000)
    fails = [d for d in decisions if d.decision == "fail"]
    assert [("us-east", "no_regression_error_rate")] == [
        (d.region, next(c.name for c in d.criteria if c.verdict == "fail")) for d in fails
    ]
    own_requests = {c.requests for c in fails[0].criteria if c.name == "no_regression_error_rate"}
    assert own_requests <= {100 * m for m in range(1, 91)}  # the canary's 100 a minute, never the baseline's


def test_decisions_do_not_depend_on_batch_cuts_nor_on_the_partial_path() -> None:
    """The same records in batches of 997 or 20,000, and stage 2 fed one ``Partial`` per message (the worker's
    way, ``Merger.apply``) rather than columns, give byte-identical decisions."""
    lines = interleaved()
    small, _ = replayed(lines, 997)
    large, _ = replayed(lines, 20_000)
    per_partial = per_partial_path(regression_plan(), lines)
    assert [d.decision_id for d in small] == [d.decision_id for d in large] == [d.decision_id for d in per_partial]
    assert small == large == per_partial
