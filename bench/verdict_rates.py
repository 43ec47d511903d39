"""False-fail and false-pass rates of gatekeeper's verdicts by Monte-Carlo, beside Flagger- and Argo-style
point-estimate gates on the same traffic (semantics from shared/notes/gate-anchors.md).

gatekeeper: the real Gate over a whole soak, one look per window (plan config/rollout-plan.yaml).
Flagger-style: 10 one-minute checks, each failing when the minute's error rate > threshold; rollback at 5.
Argo-style: 10 one-minute checks, failureLimit 0 (one failed check fails the analysis).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gatekeeper.planfile import load_plan
from gatekeeper.sim.verdicts import Regime, verdict_rates

WEEK_MS = 604_800_000


def point_estimate_gate(rate: float, per_min: float, checks: int, limit: int, threshold: float, reps: int) -> float:
    """Share of runs a point-estimate gate FAILS: a check fails when its minute's error rate > threshold."""
    rng = np.random.default_rng(3)
    n = rng.poisson(per_min, (reps, checks))
    errors = rng.binomial(n, rate)
    failed_checks = (errors > threshold * np.maximum(n, 1)).sum(axis=1)
    return float((failed_checks > limit).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=200)
    parser.add_argument("--plan", default="config/rollout-plan.yaml")
    args = parser.parse_args()
    plan = load_plan(args.plan)
    print(f"gatekeeper, {args.replicas} replicas per row (plan {plan.plan_version})")
    print(f"{'tier':<11} {'truth':<28} {'req/min':>7} {'failed':>7} {'passed':>7} {'t_fail h':>8} {'t_pass h':>8}")
    rows = [
        ("canary", "healthy (seed 0.079%)", Regime(0.00079, 40), 40, 4),
        ("canary", "error at ceiling 0.1%", Regime(0.001, 40), 40, 4),
        ("canary", "error 2x ceiling", Regime(0.002, 40), 40, 4),
        ("canary", "P99 at ceiling 50 ms", Regime(0.0005, 50), 40, 4),
        ("canary", "P99 60 ms", Regime(0.0005, 60), 40, 4),
        ("rollout-75", "healthy, thin 5/min", Regime(0.0005, 35), 5, 2),
        ("rollout-75", "half ceiling, 1000/min", Regime(0.0005, 35), 1000, 2),
        ("rollout-75", "2x ceiling, 100/min", Regime(0.002, 35), 100, 2),
        ("ramp-10", "between 0.15% and 0.2%", Regime(0.0017, 60), 200, 3),
    ]
    for tier, label, regime, per_min, weeks in rows:
        started = time.perf_counter()
        r = verdict_rates(plan, tier, regime, per_min, args.replicas, weeks * WEEK_MS)
        tf = f"{r.median_fail_hours:.0f}" if r.median_fail_hours is not None else "-"
        tp = f"{r.median_pass_hours:.0f}" if r.median_pass_hours is not None else "-"
        print(
            f"{tier:<11} {label:<28} {per_min:>7} {r.fail_share:>7.1%} {r.pass_share:>7.1%} {tf:>8} {tp:>8}"
            f"   ({time.perf_counter() - started:.1f} s)"
        )
    reps = 20_000
    print("\npoint-estimate gates on the same traffic (threshold 0.1%, 10 one-minute checks):")
    flagger = 1 - point_estimate_gate(0.002, 100, 10, 4, 0.001, reps)
    argo = point_estimate_gate(0.0005, 1000, 10, 0, 0.001, reps)
    print(f"Flagger-style (rollback at 5 failed checks) PROMOTES a 2x-ceiling canary at 100/min: {flagger:.1%}")
    print(f"Argo-style (failureLimit 0) FAILS a half-ceiling canary at 1000/min:                {argo:.1%}")


if __name__ == "__main__":
    main()
