"""Monte-Carlo of a gate's verdicts: how often does the real ``Gate`` fail a healthy tier, or pass a breaching
one, over its whole soak with one look per window? Drives the gate with per-minute panes (binomial errors)
and per-window latency sketches (multinomial over the sketch's buckets of a lognormal), so a replica of a
three-week soak costs ~0.1 s instead of millions of events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch
from gatekeeper.core.decision import Decision
from gatekeeper.core.gate import Gate, GateSpec
from gatekeeper.core.plan import Plan

START_MS = 1_760_832_000_000  # 2025-10-19T00:00:00Z


@dataclass(frozen=True, slots=True)
class Regime:
    """True behaviour of the tier: per-request error probability and lognormal latency."""

    error_rate: float
    p99_ms: float
    sigma: float = 0.35

    def bucket_probabilities(self) -> npt.NDArray[np.float64]:
        median = self.p99_ms / math.exp(2.3263478740408408 * self.sigma)  # z(0.99)
        edges = np.log(sketch.UPPER_EDGES / median) / (self.sigma * math.sqrt(2))
        cdf = 0.5 * (1 + np.vectorize(math.erf)(edges))
        cdf[-1] = 1.0
        return np.diff(np.concatenate(([0.0], cdf)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """When (hours after the first event) one replica first failed and first passed; None if never."""

    fail_hours: float | None
    pass_hours: float | None


def run_replica(plan: Plan, tier: str, regime: Regime, rate_per_min: float, horizon_ms: int, seed: int) -> Outcome:
    """Feed one gate for ``horizon_ms`` of event time, noting its first fail and first pass."""
    region, phase, spec_tier = next((r, p, t) for r, p, t in plan.gates() if t.name == tier)
    gate = Gate(GateSpec.of(region, phase, spec_tier, plan.evaluation, plan.plan_version, len(plan.gates())))
    rng = np.random.default_rng(seed)
    ev = plan.evaluation
    panes_per_window = ev.window // ev.pane
    probs = regime.bucket_probabilities()
    offsets = np.arange(panes_per_window, dtype=np.int64) * ev.pane
    out: list[Decision] = []
    first: dict[str, float] = {}
    for window_start in range(START_MS, START_MS + horizon_ms, ev.window):
        requests = rng.poisson(rate_per_min * ev.pane / 60_000, panes_per_window).astype(np.int64)
        errors = rng.binomial(requests, regime.error_rate).astype(np.int64)
        gate.add_bins(window_start, rng.multinomial(int(requests.sum()), probs).astype(np.int64))
        busy = requests > 0
        gate.on_panes(window_start + offsets[busy], requests[busy], errors[busy], out)
        gate.close_windows_until(window_start + ev.window, out)
        for d in out:
            first.setdefault(d.decision, (window_start + ev.window - START_MS) / 3_600_000)
        out.clear()
        if "fail" in first:
            break  # a failed gate is held: what follows is a retry, not the same soak
    return Outcome(first.get("fail"), first.get("pass"))


@dataclass(frozen=True, slots=True)
class RateReport:
    replicas: int
    failed: int
    passed_first: int  # passed before any fail
    median_fail_hours: float | None
    median_pass_hours: float | None

    @property
    def fail_share(self) -> float:
        return self.failed / self.replicas

    @property
    def pass_share(self) -> float:
        return self.passed_first / self.replicas


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def verdict_rates(
    plan: Plan, tier: str, regime: Regime, rate_per_min: float, replicas: int, horizon_ms: int, seed: int = 1
) -> RateReport:
    """How many replicas ever failed, how many passed before failing, and the median times to each."""
    runs = [run_replica(plan, tier, regime, rate_per_min, horizon_ms, seed * 100_003 + i) for i in range(replicas)]
    fails = [o.fail_hours for o in runs if o.fail_hours is not None]
    passes = [
        o.pass_hours for o in runs if o.pass_hours is not None and (o.fail_hours is None or o.pass_hours < o.fail_hours)
    ]
    return RateReport(replicas, len(fails), len(passes), _median(fails), _median(passes))
