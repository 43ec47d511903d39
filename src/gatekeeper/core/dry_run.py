"""Dry-run criteria (as Argo Rollouts' ``dryRun``): a criterion, or every criterion of a tier, marked
``dry_run: true`` is judged and reported in every decision's criteria (``dry_run: true`` on its result), and never
fails, holds or blocks a pass, so a new criterion is trialled on live traffic safely. It keeps its share of the
gate's false-fail probability, so making it live later changes no other criterion's test. It raises no breach
alerts either (``burn_spec.slos_of``).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from gatekeeper.core.decision import CriterionResult
from gatekeeper.core.plan import Tier


def dry_names(tier: Tier) -> frozenset[str]:
    """Names of the tier's criteria in dry run (all of them for a tier in dry run)."""
    return frozenset(c.name for c in tier.criteria if tier.dry_run or c.dry_run)


def mark(results: Iterable[CriterionResult], dry: frozenset[str]) -> tuple[CriterionResult, ...]:
    """The results, those of dry-run criteria marked ``dry_run``."""
    return tuple(msgspec.structs.replace(r, dry_run=True) if r.name in dry else r for r in results)


def failing(results: Iterable[CriterionResult], dry: frozenset[str]) -> list[CriterionResult]:
    """The failed results that count: not dry-run."""
    return [r for r in results if r.verdict == "fail" and r.name not in dry]


def all_pass(results: Iterable[CriterionResult], dry: frozenset[str]) -> bool:
    """Whether every criterion that counts passed (dry-run ones never block)."""
    return all(r.verdict == "pass" or r.name in dry for r in results)
