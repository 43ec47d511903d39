"""Monte-Carlo of a gate's verdicts: how often does the real ``Gate`` fail a healthy tier, or pass a breaching
one, over its whole soak, and how soon does it fail a breach? Drives the gate with per-minute panes (binomial
errors) and per-window latency sketches (multinomial over the sketch's buckets of a lognormal), so a replica of
a three-week soak costs well under a second instead of millions of events. A Wald SPRT on the very same panes
is the reference for speed (``sprt_fail_hours``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch
from gatekeeper.core.decision import Decision
from gatekeeper.core.gate import Gate, GateSpec
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import parse_instant

START_MS = 1_760_832_000_000  # 2025-10-19T00:00:00Z
HOUR_MS = 3_600_000


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
class Change:
    """From ``after_hours`` (a whole number of windows after the first event) on, the tier behaves as ``regime``."""

    after_hours: int
    regime: Regime


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    requests: npt.NDArray[np.int64]  # per pane
    errors: npt.NDArray[np.int64]
    bins: sketch.Bins


def with_method(plan: Plan, method: str, scope: str) -> Plan:
    """``plan`` judged with ``evaluation.method`` and ``confidence.scope`` replaced (to compare methods)."""
    ev = plan.evaluation
    conf = ev.confidence.model_copy(update={"scope": scope})
    return plan.model_copy(update={"evaluation": ev.model_copy(update={"method": method, "confidence": conf})})


def traffic(
    regime: Regime, rate_per_min: float, horizon_ms: int, seed: int, change: Change | None = None, pane: int = 60_000
) -> Iterator[Window]:
    """One replica's panes and sketches, window by window (1 h windows); the same seed gives the same traffic."""
    rng = np.random.default_rng(seed)
    panes = HOUR_MS // pane
    probs = {regime: regime.bucket_probabilities()}
    for window_start in range(START_MS, START_MS + horizon_ms, HOUR_MS):
        now = regime
        if change is not None and window_start >= START_MS + change.after_hours * HOUR_MS:
            now = change.regime
        if now not in probs:
            probs[now] = now.bucket_probabilities()
        requests = rng.poisson(rate_per_min * pane / 60_000, panes).astype(np.int64)
        errors = rng.binomial(requests, now.error_rate).astype(np.int64)
        bins = rng.multinomial(int(requests.sum()), probs[now]).astype(np.int64)
        yield Window(window_start, requests, errors, bins)


@dataclass(frozen=True, slots=True)
class Outcome:
    """When (hours after the first event) one replica first failed and first passed; None if never."""

    fail_hours: float | None
    pass_hours: float | None


def run_replica(
    plan: Plan,
    tier: str,
    regime: Regime,
    rate_per_min: float,
    horizon_ms: int,
    seed: int,
    change: Change | None = None,
) -> Outcome:
    """Feed one gate for ``horizon_ms`` of event time, noting its first fail and first pass (their ``at``)."""
    region, phase, spec_tier = next((r, p, t) for r, p, t in plan.gates() if t.name == tier)
    gate = Gate(GateSpec.of(region, phase, spec_tier, plan.evaluation, plan.plan_version, len(plan.gates())))
    ev = plan.evaluation
    offsets = np.arange(ev.window // ev.pane, dtype=np.int64) * ev.pane
    out: list[Decision] = []
    first: dict[str, float] = {}
    for w in traffic(regime, rate_per_min, horizon_ms, seed, change, ev.pane):
        gate.add_bins(w.start, w.bins)
        busy = w.requests > 0
        gate.on_panes(w.start + offsets[busy], w.requests[busy], w.errors[busy], out)
        gate.close_windows_until(w.start + ev.window, out)
        for d in out:
            first.setdefault(d.decision, (parse_instant(d.at) - START_MS) / HOUR_MS)
        out.clear()
        if "fail" in first:
            break  # a failed gate is held: what follows is a retry, not the same soak
    return Outcome(first.get("fail"), first.get("pass"))


def sprt_fail_hours(
    regime: Regime,
    rate_per_min: float,
    horizon_ms: int,
    seed: int,
    ceiling: float,
    alpha: float,
    alternative: float,
    change: Change | None = None,
) -> float | None:
    """Wald's SPRT of error rate ``ceiling`` against ``alternative`` on the same panes as ``run_replica``,
    read after every pane; open-ended (no acceptance boundary): fail when the likelihood ratio reaches
    1 / alpha. The reference for speed: it knows the breach's size, which a gate does not."""
    hit = math.log(alternative / ceiling)
    miss = math.log((1 - alternative) / (1 - ceiling))
    log_lr, bound = 0.0, -math.log(alpha)
    for w in traffic(regime, rate_per_min, horizon_ms, seed, change):
        path = log_lr + np.cumsum(w.errors * hit + (w.requests - w.errors) * miss)
        crossed = np.flatnonzero(path >= bound)
        if crossed.size:
            return (w.start - START_MS) / HOUR_MS + (int(crossed[0]) + 1) / 60
        log_lr = float(path[-1])
    return None


@dataclass(frozen=True, slots=True)
class RateReport:
    replicas: int
    failed: int
    passed_first: int  # passed before any fail
    median_fail_hours: float | None
    median_pass_hours: float | None
    p90_fail_hours: float | None = None

    @property
    def fail_share(self) -> float:
        return self.failed / self.replicas

    @property
    def pass_share(self) -> float:
        return self.passed_first / self.replicas


def quantile_of(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if q > 0 else ordered[0]


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def verdict_rates(
    plan: Plan,
    tier: str,
    regime: Regime,
    rate_per_min: float,
    replicas: int,
    horizon_ms: int,
    seed: int = 1,
    change: Change | None = None,
) -> RateReport:
    """How many replicas ever failed, how many passed before failing, the median times to each and the P90
    time to fail (hours after the first event)."""
    runs = [
        run_replica(plan, tier, regime, rate_per_min, horizon_ms, seed * 100_003 + i, change) for i in range(replicas)
    ]
    fails = [o.fail_hours for o in runs if o.fail_hours is not None]
    passes = [
        o.pass_hours for o in runs if o.pass_hours is not None and (o.fail_hours is None or o.pass_hours < o.fail_hours)
    ]
    return RateReport(replicas, len(fails), len(passes), _median(fails), _median(passes), quantile_of(fails, 0.9))
