"""A criterion's own share of its gate's ``false_fail``, spent over a soak's looks: the bookkeeping of the judges
that have no sequential test of their own (``no_regression``, core/regression.py; cross-region latency,
core/cross_region.py). ``GateSpec.of`` hands each its share (``share``); the judge asks for the alpha of its k-th
look (``LookShare.at``, ``stats.look_alpha``: the looks' alphas sum to the share at most, so by the union bound
its chance of a false fail over the soak stays within it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

from gatekeeper.core import stats

__all__ = ["LookShare", "share"]

_J = TypeVar("_J")


@dataclass(frozen=True, slots=True)
class LookShare:
    """``alpha``: the criterion's share of the gate's ``false_fail``; ``planned``: the soak's planned looks."""

    alpha: float = 0.0
    planned: int = 1

    def at(self, look: int) -> float:
        """The alpha of look ``look`` (1-based; a look before the first counts as the first)."""
        return stats.look_alpha(self.alpha, max(1, look), self.planned)


@runtime_checkable
class _SpendsOwn(Protocol):
    @property
    def fail_weight(self) -> float: ...

    @property
    def spend(self) -> LookShare: ...


def share(judge: _J, false_fail: float, total: float, planned: int) -> _J:
    """``judge`` given its share of the gate's ``false_fail`` when it spends it itself over the soak's looks
    (a judge with a ``spend`` field: ``NoRegressionJudge``, ``CrossRegionJudge``); other judges unchanged."""
    if isinstance(judge, _SpendsOwn):
        spent: Any = judge  # a frozen dataclass (the protocol cannot say so to ``replace``)
        return replace(spent, spend=LookShare(false_fail * judge.fail_weight / total, max(1, planned)))  # type: ignore[no-any-return]
    return judge
