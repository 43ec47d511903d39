"""What the gate asks of side-input verdicts beyond the judges' own answers."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from gatekeeper.core.approvals import PREFIX
from gatekeeper.core.decision import CriterionResult
from gatekeeper.core.side_ledger import SideLedger

if TYPE_CHECKING:
    from gatekeeper.core.criteria import Judge, Look


def awaiting_approval(results: Sequence[CriterionResult], ledger: SideLedger, soak_start: int) -> tuple[str, ...]:
    """The reasons of an "awaiting approval" pending when every criterion passes but some approval is missing,
    the first time in this soak (then marked in ``ledger``); empty otherwise."""
    open_ones = [r for r in results if r.verdict != "pass"]
    if not open_ones or ledger.awaiting_for == soak_start:
        return ()
    if not all(r.name.startswith(PREFIX) and r.verdict == "inconclusive" for r in open_ones):
        return ()
    ledger.awaiting_for = soak_start
    return (*(r.reason for r in open_ones), "every automatic criterion passes")


def pass_results(
    judges: Sequence[Judge], dry: Collection[str], look: Look, alpha: float, ledger: SideLedger, soak_start: int
) -> tuple[CriterionResult, ...] | None:
    """Every judge's pass check at a pass look, or None as soon as neither a pass nor an "awaiting approval"
    pending can follow: a judge that counts (not dry run) does not pass and is not an approval (that pending asks
    every open criterion to be one), or is an approval and that pending was already said in this soak. Judges are
    pure, so stopping there changes no decision; a soak that has run its course but is not yet conclusive (or
    waits days for a person's GO) otherwise judges every criterion, with its scipy bounds, at every window."""
    said = ledger.awaiting_for == soak_start
    results = []
    for judge in judges:
        counts = judge.name not in dry and (said or not judge.name.startswith(PREFIX))
        if counts and not judge.may_pass(look, alpha):
            return None  # the screen alone decides (most such looks): not worded, no lower bound
        result = judge.pass_check(look, alpha)
        if result.verdict != "pass" and counts:
            return None
        results.append(result)
    return tuple(results)
