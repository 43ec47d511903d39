"""The demo's side inputs: revenue of every running tier against its region's control, the injected incidents,
and the controller playing the approver (a GO for a checkpoint as soon as the gate says it awaits approval).
Records go through the same ledgers replay and the worker fill (``Pipeline.apply_side``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gatekeeper.core.approvals import Approval
from gatekeeper.core.decision import Decision
from gatekeeper.core.incidents import Incident
from gatekeeper.core.lift import BusinessMetric
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import LiftCriterion, Plan
from gatekeeper.core.side_inputs import Routed
from gatekeeper.core.timefmt import parse_instant

HOUR_MS = 3_600_000
APPROVER = "demo-controller"


@dataclass(frozen=True, slots=True)
class InjectedIncident:
    """A critical incident on a (region, tier), ``after_ms`` into its first attempt, lasting ``lasts_ms``."""

    region: str
    tier: str
    after_ms: int
    lasts_ms: int
    kind: str = "outage"


@dataclass(frozen=True, slots=True)
class Revenue:
    """Per-learner weekly revenue: ``per_hour`` values an hour in each arm, control mean ``mean``, treatment
    ``mean * (1 + lift)``; half the values are purchases (lognormal, CV 0.5), the others 0."""

    lift: float = 0.12
    per_hour: int = 25
    mean: float = 15.0


@dataclass(slots=True)
class SideStory:
    plan: Plan
    engine: Pipeline
    rng: np.random.Generator
    revenue: Revenue = field(default_factory=Revenue)
    incidents: Sequence[InjectedIncident] = ()
    position: int = 0
    approved: set[tuple[str, str, str]] = field(default_factory=set)  # (region, tier, soak start) given a GO
    opened: set[tuple[str, str]] = field(default_factory=set)

    def _apply(self, value: Incident | Approval | BusinessMetric, gates: tuple[str, ...]) -> None:
        self.engine.apply_side(Routed(value, gates), "demo", self.position)
        self.position += 1

    def hour(self, region: str, tier: str, first_since_ms: int, begin: int, end: int) -> None:
        """Side records of one running (region, tier) for the hour [begin, end)."""
        key = f"{region}/{tier}"
        for inc in self.incidents:
            at = first_since_ms + inc.after_ms
            if (inc.region, inc.tier) == (region, tier) and (region, tier) not in self.opened and begin <= at < end:
                self.opened.add((region, tier))
                self._apply(
                    Incident(id=f"INC-{region}-{tier}", severity="critical", kind=inc.kind, opened_at=at / 1000,
                             region=region, tier=tier, resolved_at=(at + inc.lasts_ms) / 1000,
                             title="injected by the demo"), (key,))  # fmt: skip
        if not self._has_lift(tier):
            return
        sigma2 = float(np.log1p(0.25))
        for cohort, mean in (("treatment", self.revenue.mean * (1 + self.revenue.lift)),
                             ("control", self.revenue.mean)):  # fmt: skip
            n = self.revenue.per_hour
            bought = self.rng.random(n) < 0.5
            values = np.where(bought, self.rng.lognormal(np.log(2 * mean) - sigma2 / 2, np.sqrt(sigma2), n), 0.0)
            times = np.sort(self.rng.integers(begin, end, n))
            c: Literal["treatment", "control"] = "treatment" if cohort == "treatment" else "control"
            for i, (ts, value) in enumerate(zip(times.tolist(), values.tolist(), strict=True)):
                record = BusinessMetric(ts=ts / 1000, region=region, learner_id=f"{c[0]}{self.position}-{i}",
                                        cohort=c, metric="revenue", value=value, tier=tier)  # fmt: skip
                self._apply(record, (key,))

    def _has_lift(self, tier: str) -> bool:
        return any(isinstance(c, LiftCriterion) for p in self.plan.phases for t in p.tiers if t.name == tier
                   for c in t.criteria)  # fmt: skip

    def react(self, d: Decision) -> None:
        """The controller as approver: a GO for every approval checkpoint of a tier awaiting one."""
        if d.decision != "pending" or d.reason_code != "approval":
            return
        mark = (d.region, d.tier, d.window_start)
        if mark in self.approved:
            return
        self.approved.add(mark)
        tier = next(t for p in self.plan.phases for t in p.tiers if t.name == d.tier)
        for cp in tier.checkpoints:
            if cp.approval:
                who = cp.approvers[0] if cp.approvers else APPROVER
                go = Approval(checkpoint=cp.name, decision="go", by=who, at=parse_instant(d.at) / 1000,
                              region=d.region, note="every automatic criterion passes")  # fmt: skip
                self._apply(go, (f"{d.region}/{d.tier}",))
