"""A pass look judged lazily (core/side_judging.py ``pass_results``): stopping at the first criterion that rules out
both a pass and an "awaiting approval" pending changes no decision."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from gatekeeper.core import dry_run
from gatekeeper.core.approvals import PREFIX
from gatekeeper.core.decision import CriterionResult, Verdict
from gatekeeper.core.side_judging import awaiting_approval, pass_results
from gatekeeper.core.side_ledger import SideLedger


@dataclass(frozen=True)
class FixedJudge:
    """A criterion whose pass check always gives ``verdict`` (the Judge protocol's pass side); counts its calls."""

    name: str
    verdict: Verdict
    calls: list[str]
    screened: bool = False

    def pass_check(self, look: Any, alpha: float) -> CriterionResult:
        self.calls.append(self.name)
        return CriterionResult(name=self.name, scope="soak", verdict=self.verdict, threshold=1.0, observed=None,
                               reason=self.name)  # fmt: skip

    def may_pass(self, look: Any, alpha: float) -> bool:
        # exact, as the statistical judges' screen; or none (always yes), as the others'
        return self.verdict == "pass" or not self.screened


def outcome(
    results: tuple[CriterionResult, ...] | None, dry: frozenset[str], ledger: SideLedger
) -> tuple[bool, tuple[str, ...]]:
    """What the gate (``Gate._close_window``) does with a pass look's results, None when not all were judged:
    pass or not, and the awaiting-approval reasons."""
    judged = () if results is None else results
    return results is not None and dry_run.all_pass(judged, dry), awaiting_approval(judged, ledger, 0)


def test_lazy_pass_look_gives_the_same_pass_and_pending_as_judging_everything() -> None:
    """For every combination of three criteria (an error rate, a latency, an approval; each pass / inconclusive
    / fail, each in dry run or not; every judge with an exact ``may_pass`` screen, or none) and an
    awaiting-approval pending said or not yet in this soak: the gate's
    pass and pending are the same from ``pass_results`` as from every criterion's pass check, and its results are
    theirs whenever it does not stop early (which it does in over 200 of the 864 cases)."""
    verdicts: tuple[Verdict, ...] = ("pass", "inconclusive", "fail")
    names = ("error_rate", "p99_latency_ms", PREFIX + "go")
    stopped = 0
    for chosen, dry_mask, said, screened in itertools.product(
        itertools.product(verdicts, repeat=3), itertools.product((False, True), repeat=3), (False, True), (False, True)
    ):
        dry = frozenset(n for n, d in zip(names, dry_mask, strict=True) if d)
        calls: list[str] = []
        judges = [FixedJudge(n, v, calls, screened) for n, v in zip(names, chosen, strict=True)]
        full = tuple(j.pass_check(None, 0.01) for j in judges)
        ledger_full, ledger_lazy = SideLedger(), SideLedger()
        if said:
            ledger_full.awaiting_for = ledger_lazy.awaiting_for = 0
        expected = outcome(full, dry, ledger_full)
        calls.clear()
        lazy = pass_results(judges, dry, None, 0.01, ledger_lazy, 0)  # type: ignore[arg-type]
        actual = outcome(lazy, dry, ledger_lazy)
        assert (expected, ledger_full.awaiting_for) == (actual, ledger_lazy.awaiting_for)
        if lazy is None:
            stopped += 1
        else:
            assert full == lazy
    assert stopped > 200
