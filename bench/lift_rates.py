"""How long the seed canary's revenue criterion takes, and how often it errs, by Monte-Carlo: the real lift math
(``gatekeeper.core.lift.estimate``, the plan's canary criterion with its gate's alphas: pass when the anytime-valid
lower bound is above 0 and the estimate at least +5.8 %, fail when the upper bound is below +5.8 %) read every
hour, on revenue as ``gatekeeper simulate``'s scenarios make it: each learner reports a weekly value, half of
them purchases (lognormal, CV 0.5, control mean 15), the other half 0 (per-value CV ~1.2).

    python -m bench.lift_rates --replicas 100 --lift 0.06 --treatment 5000 --control 20000
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from gatekeeper.core.gate import GateSpec
from gatekeeper.core.lift import LiftJudge, estimate
from gatekeeper.planfile import load_plan

HOURS_PER_WEEK = 168


def canary_lift() -> LiftJudge:
    """The seed plan's canary lift judge as its gate has it (with its alphas from the plan's split)."""
    plan = load_plan("config/rollout-plan.yaml")
    region, phase, tier = next(g for g in plan.gates() if g[2].name == "canary")
    spec = GateSpec.of(region, phase, tier, plan.evaluation, plan.plan_version, len(plan.gates()))
    return next(j for j in spec.judges if isinstance(j, LiftJudge))


def replica(judge: LiftJudge, lift: float, treatment: int, control: int, weeks: int, seed: int) -> tuple[str, float]:
    spec = judge.spec
    rng = np.random.default_rng(seed)
    sigma2 = float(np.log1p(0.25))
    sums = [0.0] * 6
    for hour in range(weeks * HOURS_PER_WEEK):
        for at, learners, mean in ((0, treatment, 15.0 * (1 + lift)), (3, control, 15.0)):
            n = rng.binomial(learners, 1 / HOURS_PER_WEEK)  # each learner's weekly value falls in one hour
            bought = rng.random(n) < 0.5
            values = np.where(bought, rng.lognormal(np.log(2 * mean) - sigma2 / 2, np.sqrt(sigma2), n), 0.0)
            sums[at] += n
            sums[at + 1] += float(values.sum())
            sums[at + 2] += float((values * values).sum())
        if min(sums[0], sums[3]) < spec.min_per_arm:
            continue
        passing, failing = (estimate(sums, judge.alpha(side), spec.tune_at) for side in (False, True))
        target = spec.pass_estimate_at_least
        if passing is not None and passing.lower > spec.pass_lower_above and (target is None or passing.lift >= target):
            return "pass", (hour + 1) / HOURS_PER_WEEK
        if failing is not None and failing.upper < spec.fail_upper_below:
            return "fail", (hour + 1) / HOURS_PER_WEEK
    return "pending", float(weeks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--lift", type=float, default=0.06)
    parser.add_argument("--treatment", type=int, default=5000, help="treatment learners (a weekly value each)")
    parser.add_argument("--control", type=int, default=20000, help="control learners")
    parser.add_argument("--weeks", type=int, default=8)
    args = parser.parse_args()
    judge = canary_lift()
    print(f"alpha: fail side {judge.alpha(True):.3g}, pass side {judge.alpha(False):.3g}")
    runs = [replica(judge, args.lift, args.treatment, args.control, args.weeks, s) for s in range(args.replicas)]
    counts = Counter(kind for kind, _ in runs)
    print(f"true lift {args.lift:+.1%}, {args.treatment:,} treatment + {args.control:,} control learners, "
          f"{args.replicas} replicas, {args.weeks} weeks: {dict(counts)}")  # fmt: skip
    for kind in ("pass", "fail"):
        weeks = sorted(w for k, w in runs if k == kind)
        if weeks:
            median, p90 = weeks[len(weeks) // 2], weeks[max(0, int(0.9 * len(weeks)) - 1)]
            learner_weeks = round(median * (args.treatment + args.control))
            print(f"  {kind}: median {median:.2f} weeks ({learner_weeks:,} learner-weeks both arms, "
                  f"{round(median * args.treatment):,} treatment), P90 {p90:.2f} weeks")  # fmt: skip


if __name__ == "__main__":
    main()
