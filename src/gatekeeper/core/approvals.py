"""GO/NO-GO approvals (contract v1, streams/approval.v1.schema.json) and the judge of a checkpoint that requires
one (``approval: true`` in the plan).

A person's decision on a checkpoint for a region (or ``all``). Approvals are idempotent (the same record twice
is one approval) and audited: the verdict's reason names who decided, when, and their note, and it stands in
the decision's criteria. Only decisions made during the current soak count (a hold and a new soak need a new
GO); the latest counts, a NO-GO winning a tie. A ``go`` releases the tier's pass once every automatic criterion
passes; a ``no-go`` fails and holds the tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from gatekeeper.core.decision import CriterionResult, Verdict
from gatekeeper.core.plan import Checkpoint, Tier
from gatekeeper.core.side_ledger import ApprovalState, SideJudge, SideLook
from gatekeeper.core.side_records import ALL, Instant, Label, Text, instant_ms
from gatekeeper.core.timefmt import format_ms

PREFIX = "approval:"  # criterion names of approval judges


class Approval(msgspec.Struct, frozen=True):
    """One record of the ``approvals`` topic."""

    checkpoint: Label
    decision: Literal["go", "no-go"]
    by: Label
    at: Instant
    region: Label = ALL
    note: Text = ""


def state_of(record: Approval) -> ApprovalState:
    return ApprovalState(record.checkpoint, record.region, record.decision, record.by, instant_ms(record.at),
                         record.note)  # fmt: skip


def fold(approvals: list[ApprovalState], record: Approval) -> bool:
    """Record an approval; False when the very same one is known (a re-delivery)."""
    new = state_of(record)
    if new in approvals:
        return False
    approvals.append(new)
    return True


def describe(a: ApprovalState) -> str:
    said = "GO" if a.decision == "go" else "NO-GO"
    note = f": {a.note}" if a.note else ""
    return f"{said} for {a.checkpoint!r} ({a.region}) by {a.by} at {format_ms(a.at_ms)}{note}"


@dataclass(frozen=True, slots=True)
class ApprovalJudge(SideJudge):
    """The GO/NO-GO of one checkpoint that requires approval."""

    checkpoint: Checkpoint

    @property
    def name(self) -> str:
        return PREFIX + self.checkpoint.name

    def latest(self, look: SideLook) -> ApprovalState | None:
        side = look.side
        if side is None:
            return None
        allowed = self.checkpoint.approvers
        counted = [
            a
            for a in side.ledger.approvals
            if a.checkpoint == self.checkpoint.name
            and (not allowed or a.by in allowed)
            and side.soak_start <= a.at_ms < side.end
        ]
        return max(counted, key=lambda a: (a.at_ms, a.decision == "no-go", a.by, a.note), default=None)

    def awaiting(self) -> str:
        who = f" from {', '.join(self.checkpoint.approvers)}" if self.checkpoint.approvers else ""
        return f"awaiting approval: GO/NO-GO {self.checkpoint.name!r} needs a go{who}"

    def _result(self, latest: ApprovalState | None, verdict: Verdict, why: str) -> CriterionResult:
        go = None if latest is None else float(latest.decision == "go")
        return CriterionResult(name=self.name, scope="soak", verdict=verdict, threshold=1.0, observed=go, reason=why)

    def may_fail(self, look: SideLook) -> bool:
        latest = self.latest(look)
        return latest is not None and latest.decision == "no-go"

    def fail_checks(self, look: SideLook, alpha: float) -> list[CriterionResult]:
        latest = self.latest(look)
        if latest is not None and latest.decision == "no-go":
            return [self._result(latest, "fail", describe(latest))]
        return [self._result(latest, "inconclusive", self.awaiting() if latest is None else describe(latest))]

    def may_pass(self, look: SideLook, alpha: float) -> bool:
        return True  # pass_check is as cheap as any screen of it

    def pass_check(self, look: SideLook, alpha: float) -> CriterionResult:
        latest = self.latest(look)
        if latest is None:
            return self._result(None, "inconclusive", self.awaiting())
        return self._result(latest, "pass" if latest.decision == "go" else "fail", describe(latest))


def approval_judges(tier: Tier) -> list[ApprovalJudge]:
    return [ApprovalJudge(c) for c in tier.checkpoints if c.approval]
