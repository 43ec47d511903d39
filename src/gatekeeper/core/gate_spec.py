"""A gate's inputs from the plan (``GateSpec``) and its mutable state (``GateState``): plain data that the
state machine (core/gate.py) and its sequential bookkeeping (core/gate_sequential.py) share. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gatekeeper.core import dry_run, lift, look_share, sketch
from gatekeeper.core.criteria import Judge, StatisticalJudge, judges_for
from gatekeeper.core.plan import Evaluation, Phase, Tier
from gatekeeper.core.sequential import FailTest, Restarts
from gatekeeper.core.side_ledger import SideLedger
from gatekeeper.core.slice_ledger import BaselineLedger

Status = Literal["waiting", "soaking", "passed", "held"]


@dataclass(frozen=True, slots=True)
class GateSpec:
    """Everything a gate needs from the plan."""

    region: str
    phase: Phase
    tier: Tier
    evaluation: Evaluation
    plan_version: str
    judges: tuple[Judge, ...]
    false_fail: float  # this gate's share of the plan's false_fail (all of it with ``confidence.scope: gate``)
    false_pass: float
    tests: tuple[FailTest | None, ...]  # sequential: each statistical judge's test (its share of ``false_fail``)
    dry: frozenset[str] = frozenset()  # criteria in dry run: judged and reported, never fail nor block (dry_run.py)

    @staticmethod
    def of(region: str, phase: Phase, tier: Tier, evaluation: Evaluation, plan_version: str, gates: int) -> GateSpec:
        """``gates``: how many gates the plan has; with ``confidence.scope: rollout`` each gets an even share of
        the plan's error probabilities, so by the union bound they hold for the whole rollout. Required: a
        default of 1 silently gave a per-gate bound where the plan asked for one per rollout."""
        conf = evaluation.confidence
        split = max(1, gates) if conf.scope == "rollout" else 1
        false_fail, false_pass = conf.false_fail / split, conf.false_pass / split
        judges = lift.share_alpha(judges_for(tier, evaluation), false_fail, false_pass)
        total = sum(j.fail_weight for j in judges)  # the statistical criteria's and lift's (the others weigh 0)
        planned = max(1, tier.soak // evaluation.window)
        judges = tuple(look_share.share(j, false_fail, total, planned) for j in judges)
        tests = tuple(
            FailTest(j.null_rate, false_fail * j.fail_weight / total, conf.restart_share, planned)
            if isinstance(j, StatisticalJudge)
            else None
            for j in judges
        )
        dry = dry_run.dry_names(tier)
        return GateSpec(region, phase, tier, evaluation, plan_version, judges, false_fail, false_pass, tests, dry)


@dataclass(slots=True)
class GateState:
    """All of a gate's mutable state; plain data, so it can be snapshotted to a changelog."""

    status: Status = "waiting"
    soak_start: int = 0
    window_start: int = 0
    window_requests: int = 0
    window_errors: int = 0
    soak_requests: int = 0
    soak_errors: int = 0
    soak_bins: sketch.Bins = field(default_factory=sketch.empty)
    open_bins: dict[int, sketch.Bins] = field(default_factory=dict)  # window start -> latency sketch
    looks: int = 0
    pass_looks: int = 0
    hold_until: int = 0
    down_ms: int = 0
    silent_from: int = 0  # end of the last pane that carried data
    down_counted_until: int = 0
    stall_reported_for: int = -1  # the ``silent_from`` a stall was already reported for
    release_reported_for: int = -1  # the ``hold_until`` a release was already reported for
    late_events: int = 0
    max_ts: int | None = None  # newest event time seen (not late)
    open_panes: dict[int, list[int]] = field(default_factory=dict)  # pane start -> [requests, errors]
    stalled_ms: int = 0  # soak time not counted: windows without data closed inside a stall
    restarts: dict[str, Restarts] = field(default_factory=dict)  # sequential: criterion name -> restarted tests
    side: SideLedger = field(default_factory=SideLedger)  # incidents, approvals, business metrics received
    baseline: BaselineLedger = field(default_factory=BaselineLedger)  # no_regression's
    cross: BaselineLedger = field(default_factory=BaselineLedger)  # core/cross_region.py
