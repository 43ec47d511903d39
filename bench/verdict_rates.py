"""Verdict speed and error rates of gatekeeper's methods side by side, by Monte-Carlo on the same traffic, beside
Flagger- and Argo-style point-estimate gates (semantics from shared/notes/gate-anchors.md).

Methods: ``fixed`` (the former fixed-sample bounds, alpha spent over hourly looks), ``sequential`` (anytime-valid
likelihood-ratio tests read after every pane; docs/statistics.md), each with the plan's 1 % false-fail held per
gate or per rollout (1 %/24 per gate), and a Wald SPRT of the error rate (ceiling against 2x the ceiling) on the
very same panes as the reference. Every figure is the real ``Gate`` over the plan config/rollout-plan.yaml.

    python -m bench.verdict_rates --replicas 200 --fail-replicas 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gatekeeper.core.plan import Plan
from gatekeeper.planfile import load_plan
from gatekeeper.sim.verdicts import Change, Regime, quantile_of, run_replica, sprt_fail_hours, with_method

WEEK_MS = 604_800_000
METHODS = (("fixed", "gate"), ("sequential", "gate"), ("sequential", "rollout"))
SPRT_ALPHAS = (("SPRT 1%", 0.01), ("SPRT 1%/24", 0.01 / 24))


@dataclass(frozen=True, slots=True)
class Case:
    tier: str
    label: str
    regime: Regime
    per_min: float
    weeks: int
    change: Change | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One case under one method: fail and pass shares, times to fail (after ``change`` when given) and pass."""

    replicas: int
    failed: int
    failed_before_change: int
    passed: int
    fail_hours: list[float]
    pass_hours: list[float]

    def cell(self, what: str) -> str:
        if what == "fail_time":
            med, p90 = quantile_of(self.fail_hours, 0.5), quantile_of(self.fail_hours, 0.9)
            if med is None or p90 is None:
                return "-"
            missed = self.replicas - len(self.fail_hours)
            return f"{med:.1f} / {p90:.1f}" + (f" ({missed} not failed)" if missed else "")
        if what == "failed":
            return f"{self.failed / self.replicas:.1%}"
        if what == "passed":
            return f"{self.passed / self.replicas:.1%}"
        med = quantile_of(self.pass_hours, 0.5)
        return "-" if med is None else f"{med:.0f} h ({self.passed / self.replicas:.0%})"


_ROWS: dict[tuple[str, Case, int, int], Row] = {}


def gate_row(plan: Plan, case: Case, replicas: int, seed: int = 1) -> Row:
    """``case`` under ``plan``, remembered: the same case in two tables runs once."""
    key = (plan.plan_version, case, replicas, seed)
    if key not in _ROWS:
        _ROWS[key] = _gate_row(plan, case, replicas, seed)
    return _ROWS[key]


def _gate_row(plan: Plan, case: Case, replicas: int, seed: int) -> Row:
    after = 0 if case.change is None else case.change.after_hours
    fails, passes, early = [], [], 0
    for i in range(replicas):
        o = run_replica(
            plan, case.tier, case.regime, case.per_min, case.weeks * WEEK_MS, seed * 100_003 + i, case.change
        )
        if o.fail_hours is not None:
            if o.fail_hours <= after:
                early += 1
            else:
                fails.append(o.fail_hours - after)
        if o.pass_hours is not None and (o.fail_hours is None or o.pass_hours < o.fail_hours):
            passes.append(o.pass_hours)
    return Row(replicas, len(fails) + early, early, len(passes), fails, passes)


def sprt_row(plan: Plan, case: Case, alpha: float, replicas: int, seed: int = 1) -> Row:
    ceiling = next(
        c.fail_above for _, _, t in plan.gates() if t.name == case.tier for c in t.criteria if c.kind == "error_rate"
    )
    after = 0 if case.change is None else case.change.after_hours
    fails, early = [], 0
    for i in range(replicas):
        h = sprt_fail_hours(
            case.regime,
            case.per_min,
            case.weeks * WEEK_MS,
            seed * 100_003 + i,
            ceiling,
            alpha,
            2 * ceiling,
            case.change,
        )
        if h is not None:
            if h <= after:
                early += 1
            else:
                fails.append(h - after)
    return Row(replicas, len(fails) + early, early, 0, fails, [])


def table(plan: Plan, title: str, what: str, cases: list[Case], replicas: int, sprt: bool) -> None:
    heads = [f"{m} / {s}" for m, s in METHODS] + ([name for name, _ in SPRT_ALPHAS] if sprt else [])
    print(f"\n### {title} ({replicas} replicas per cell)\n")
    print("| tier | truth | req/min | " + " | ".join(heads) + " |")
    print("| --- | --- | ---: | " + " | ".join("---:" for _ in heads) + " |")
    for case in cases:
        started = time.perf_counter()
        cells = [gate_row(with_method(plan, m, s), case, replicas).cell(what) for m, s in METHODS]
        if sprt:
            cells += [sprt_row(plan, case, a, replicas).cell(what) for _, a in SPRT_ALPHAS]
        print(
            f"| {case.tier} | {case.label} | {case.per_min:g} | "
            + " | ".join(cells)
            + f" |  <!-- {time.perf_counter() - started:.0f} s -->",
            flush=True,
        )


def seed_spread(plan: Plan, case: Case, replicas: int, seeds: int) -> None:
    """The median time to fail of ``case`` on ``seeds`` independent samples of ``replicas`` each: how far one
    sample's median moves (the first seed is the main table's)."""
    heads = [f"{m} / {s}" for m, s in METHODS] + [name for name, _ in SPRT_ALPHAS]
    print(f"\n### Median hours to fail, {case.tier} {case.label} at {case.per_min:g}/min, per sample of {replicas}\n")
    print("| seed | " + " | ".join(heads) + " |")
    print("| ---: | " + " | ".join("---:" for _ in heads) + " |")
    columns: list[list[float]] = [[] for _ in heads]
    for seed in range(1, seeds + 1):
        rows = [gate_row(with_method(plan, m, s), case, replicas, seed) for m, s in METHODS]
        rows += [sprt_row(plan, case, a, replicas, seed) for _, a in SPRT_ALPHAS]
        medians = [quantile_of(r.fail_hours, 0.5) or float("nan") for r in rows]
        for column, median in zip(columns, medians, strict=True):
            column.append(median)
        print(f"| {seed} | " + " | ".join(f"{m:.2f}" for m in medians) + " |", flush=True)
    print("| range | " + " | ".join(f"{min(c):.2f}-{max(c):.2f}" for c in columns) + " |")
    print("| mean | " + " | ".join(f"{sum(c) / len(c):.2f}" for c in columns) + " |")


def with_restart_share(plan: Plan, share: float) -> Plan:
    """``plan`` with ``confidence.restart_share`` replaced: the criterion's alpha kept for the restarted tests."""
    ev = plan.evaluation
    conf = ev.confidence.model_copy(update={"restart_share": share})
    return plan.model_copy(update={"evaluation": ev.model_copy(update={"confidence": conf})})


def restart_tradeoff(plan: Plan, shares: list[float], fail_replicas: int, mid_replicas: int, seed: int) -> None:
    """The split of a criterion's alpha between the soak's own test and the restarted ones (``restart_share``):
    median / P90 hours to fail a 2x canary from the start and from day 10, per gate and per rollout, on the same
    traffic for every share."""
    ok = Regime(0.00079, 35)
    from_start = Case("canary", "2x from the start", Regime(0.002, 35), 40, 4)
    day_ten = Case("canary", "2x from day 10", ok, 40, 4, Change(240, Regime(0.002, 35)))
    scopes = ("gate", "rollout")
    heads = [f"{c.label}, 1 % per {s}" for s in scopes for c in (from_start, day_ten)]
    print(f"\n### restart_share: from-start against mid-soak, hours to fail (median / P90; seed {seed})\n")
    print("| restart_share | " + " | ".join(heads) + " |")
    print("| ---: | " + " | ".join("---:" for _ in heads) + " |")
    for share in shares:
        cells = []
        for scope in scopes:
            judged = with_restart_share(with_method(plan, "sequential", scope), share)
            cells.append(gate_row(judged, from_start, fail_replicas, seed).cell("fail_time"))
            cells.append(gate_row(judged, day_ten, mid_replicas, seed).cell("fail_time"))
        print(f"| {share:g} | " + " | ".join(cells) + " |", flush=True)


def point_estimate_gate(rate: float, per_min: float, checks: int, limit: int, threshold: float, reps: int) -> float:
    """Share of runs a point-estimate gate FAILS: a check fails when its minute's error rate > threshold."""
    rng = np.random.default_rng(3)
    n = rng.poisson(per_min, (reps, checks))
    errors = rng.binomial(n, rate)
    failed_checks = (errors > threshold * np.maximum(n, 1)).sum(axis=1)
    return float((failed_checks > limit).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=200, help="replicas per cell for whole-soak rates")
    parser.add_argument("--fail-replicas", type=int, default=1000, help="replicas per cell for times to fail")
    parser.add_argument("--mid-replicas", type=int, default=250, help="replicas per cell for mid-soak breaches")
    parser.add_argument("--seeds", type=int, default=4, help="samples of the 2x canary for the median's spread")
    parser.add_argument("--plan", default="config/rollout-plan.yaml")
    parser.add_argument("--shares", default="0.1,0.25,0.5", help="restart_share values for --only tradeoff")
    parser.add_argument("--seed", type=int, default=1, help="traffic seed for --only tradeoff")
    parser.add_argument(
        "--only", choices=("fail", "spread", "mid", "rates", "pass", "anchors", "tradeoff"), action="append"
    )
    args = parser.parse_args()
    plan = load_plan(args.plan)
    only: Callable[[str], bool] = lambda part: not args.only or part in args.only  # noqa: E731
    print(f"plan {plan.plan_version}; cells: median / P90 hours, or shares; SPRT: ceiling vs 2x the ceiling")
    ok = Regime(0.00079, 35)  # the seed's canary error rate (0.79x the ceiling), P99 well inside 50 ms
    if only("fail"):
        table(plan, "Time to fail from the first request, hours (median / P90)", "fail_time", [
            Case("canary", f"error {x:g}x the ceiling", Regime(0.001 * x, 35), 40, 4) for x in (1.5, 2, 4)
        ] + [Case("rollout-75", f"error {x:g}x the ceiling", Regime(0.001 * x, 35), 1000, 2) for x in (1.5, 2, 4)]
          + [Case("canary", "P99 60 ms (ceiling 50)", Regime(0.0005, 60), 40, 4)],
            args.fail_replicas, sprt=True)  # fmt: skip
    if only("spread"):
        two_x = Case("canary", "error 2x the ceiling", Regime(0.002, 35), 40, 4)
        seed_spread(plan, two_x, args.fail_replicas, args.seeds)
    if only("mid"):
        table(plan, "Breach starting mid-soak: hours from its start to fail (median / P90)", "fail_time", [
            Case("canary", f"0.79x, then {x:g}x from day 10", ok, 40, 4, Change(240, Regime(0.001 * x, 35)))
            for x in (2, 4)
        ] + [Case("rollout-75", "0.79x, then 2x from day 3", ok, 1000, 2, Change(72, Regime(0.002, 35)))],
            args.mid_replicas, sprt=True)  # fmt: skip
    if only("rates"):
        table(plan, "False fail over the whole soak (canary 3 w; rollout-75 its 1 w soak and a week after)", "failed", [
            Case("canary", "0.79x (the seed's 0.079 %)", ok, 40, 3),
            Case("canary", "exactly at the 0.1 % ceiling", Regime(0.001, 35), 40, 3),
            Case("rollout-75", "0.8x, 1000/min", Regime(0.0008, 35), 1000, 2),
            Case("rollout-75", "exactly at the ceiling, 1000/min", Regime(0.001, 35), 1000, 2),
            Case("rollout-75", "0.8x, thin 5/min", Regime(0.0008, 35), 5, 2),
            Case("rollout-75", "at the ceiling, thin 5/min", Regime(0.001, 35), 5, 2),
            Case("canary", "P99 exactly at 50 ms", Regime(0.0005, 50), 40, 3),
        ], args.replicas, sprt=True)  # fmt: skip
    if only("pass"):
        table(plan, "False pass (share of replicas passed)", "passed", [
            Case("canary", "error 1.2x the ceiling", Regime(0.0012, 35), 40, 3),
            Case("rollout-75", "error 1.2x the ceiling, 1000/min", Regime(0.0012, 35), 1000, 2),
            Case("rollout-75", "exactly at the ceiling, 1000/min", Regime(0.001, 35), 1000, 2),
        ], args.replicas, sprt=False)  # fmt: skip
        table(plan, "Pass time on healthy tiers (median, share passed)", "pass_time", [
            Case("canary", "0.79x (the seed's 0.079 %)", ok, 40, 3),
            Case("rollout-75", "0.8x, 1000/min", Regime(0.0008, 35), 1000, 2),
            Case("rollout-75", "half the ceiling, thin 5/min", Regime(0.0005, 35), 5, 2),
            Case("ramp-10", "between pass (0.15 %) and fail (0.2 %)", Regime(0.0017, 60), 200, 3),
        ], args.replicas, sprt=False)  # fmt: skip
    if args.only and "tradeoff" in args.only:  # not in the default run: it repeats the 2x canary per share
        shares = [float(x) for x in args.shares.split(",")]
        restart_tradeoff(plan, shares, args.fail_replicas, args.mid_replicas, args.seed)
    if only("anchors"):
        reps = 20_000
        print("\npoint-estimate gates on the same traffic (threshold 0.1%, 10 one-minute checks):")
        flagger = 1 - point_estimate_gate(0.002, 100, 10, 4, 0.001, reps)
        argo = point_estimate_gate(0.0005, 1000, 10, 0, 0.001, reps)
        print(f"Flagger-style (rollback at 5 failed checks) PROMOTES a 2x-ceiling canary at 100/min: {flagger:.1%}")
        print(f"Argo-style (failureLimit 0) FAILS a half-ceiling canary at 1000/min:                {argo:.1%}")


if __name__ == "__main__":
    main()
