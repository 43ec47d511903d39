"""What the gate asks of side-input verdicts beyond the judges' own answers."""

from __future__ import annotations

from collections.abc import Sequence

from gatekeeper.core.approvals import PREFIX
from gatekeeper.core.decision import CriterionResult
from gatekeeper.core.side_ledger import SideLedger


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
