"""The lift criterion's alpha inside the plan's split (core/lift.share_alpha, core/gate.GateSpec.of): its fail side
takes a share of the gate's false_fail by weight beside the statistical criteria, its pass side the gate's
false_pass; an own ``alpha`` keeps it outside the split."""

from __future__ import annotations

import pytest

from gatekeeper.core.lift import LiftJudge
from gatekeeper.core.plan import LiftCriterion

from .helpers import HOUR, make_gate, plan_dict, tier_of

LIFT = {"kind": "lift", "metric": "revenue", "pass_lower_above": 0, "fail_upper_below": 0}


def lift_of(raw: dict[str, object]) -> LiftJudge:
    return next(j for j in make_gate(raw).spec.judges if isinstance(j, LiftJudge))


def test_the_lift_takes_its_weight_of_the_gates_false_fail_and_the_whole_false_pass() -> None:
    """Two gates (1 % / 2 to fail, 5 % / 2 to pass each); error rate weight 3, latency 1, lift 1: the error rate's
    test gets 3/5 of 0.5 %, the latency's 1/5, the lift's fail side 1/5, its pass side all of 2.5 %. With a lift
    weight of 2: 3/6, 1/6, 2/6."""
    raw = plan_dict()
    tier_of(raw)["criteria"][0]["false_fail_weight"] = 3
    tier_of(raw)["criteria"].append(dict(LIFT))
    spec = make_gate(raw).spec
    judge = lift_of(raw)
    assert [0.005 * 3 / 5, 0.005 / 5] == pytest.approx([t.alpha for t in spec.tests if t is not None])
    assert [0.005 / 5, 0.025] == pytest.approx([judge.alpha(True), judge.alpha(False)])
    tier_of(raw)["criteria"][-1]["false_fail_weight"] = 2
    spec = make_gate(raw).spec
    assert [0.005 * 3 / 6, 0.005 / 6] == pytest.approx([t.alpha for t in spec.tests if t is not None])
    assert 0.005 * 2 / 6 == pytest.approx(lift_of(raw).alpha(True))


def test_an_own_alpha_keeps_the_lift_outside_the_split() -> None:
    """``alpha: 0.001`` on the criterion: both sides use it, and the statistical criteria keep the whole gate's
    false_fail between them (3/4 and 1/4), as without a lift."""
    raw = plan_dict()
    tier_of(raw)["criteria"][0]["false_fail_weight"] = 3
    tier_of(raw)["criteria"].append(dict(LIFT, alpha=0.001))
    spec = make_gate(raw).spec
    assert [0.005 * 3 / 4, 0.005 / 4] == pytest.approx([t.alpha for t in spec.tests if t is not None])
    assert (0.001, 0.001) == (lift_of(raw).alpha(True), lift_of(raw).alpha(False))


def test_a_lift_judge_without_its_share_says_so() -> None:
    """A judge built outside a gate, with neither an own alpha nor a share, cannot judge: ValueError naming it."""
    judge = LiftJudge(LiftCriterion(kind="lift", fail_upper_below=0.0), HOUR)
    with pytest.raises(ValueError, match="revenue_lift: no share of the gate's alpha"):
        judge.alpha(True)
