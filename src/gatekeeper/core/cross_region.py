"""Cross-region latency (plan: a ``latency`` criterion with ``requests: cross_region``, issue 12's "Cross-region
latency < 200 ms"): the latency of a gate's requests whose client is in another region.

Which requests: a telemetry record with a ``client_region`` that is not its own ``region``. A record without
``client_region`` is not cross-region (its client's region is unknown). Such a record still counts for its
gate's ordinary criteria; in addition it is the cross-region evidence of its gate.

Where it flows (the baseline's path, core/slot_routing.py and core/slice_ledger.py): the decoder puts a copy of
each cross-region record right after it, keyed to its gate's *cross-region slot* (core/telemetry.py's
``with_copies``); stage 1 aggregates the slot as a gate and emits its panes as partials of the gate with
``slice: "cross_region"``; stage 2 keeps them apart from the gate's own partials and, as panes close, adds them
per window to the gate state's cross-region ledger, whose window and soak the gate hands to the criterion at each
window close (``Look.cross``). The copy sits next to its record, so where batches are cut changes nothing
(identical decision ids).

The judge: the ordinary latency criterion's statistics (order-statistic bounds of the quantile over the
cross-region sketch), at each look on the window and on the soak so far; it fails when a lower bound exceeds
``fail_above_ms``. Having no sequential test of its own, it spends its share of the gate's ``false_fail`` over
the soak's looks as ``no_regression`` does (core/look_share.py, half to each of the two checks), so by the
union bound its chance of a false fail stays within that share. It passes on the soak's upper bound at the pass
look's alpha; it needs ``min_requests`` cross-region requests to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gatekeeper.core.decision import CriterionResult
from gatekeeper.core.look_share import LookShare
from gatekeeper.core.slice_ledger import BaselineLook, Sample
from gatekeeper.core.slot_routing import CROSS_REGION

__all__ = ["CROSS_REGION", "CrossRegionJudge", "copy_mask"]


def copy_mask(key: npt.NDArray[np.int64], slots: frozenset[int]) -> npt.NDArray[np.bool_]:
    """Which rows are copies (keyed to a cross-region slot): not new records, so not counted as events."""
    return np.isin(key, np.fromiter(slots, np.int64, len(slots)))


# -- the judge ----------------------------------------------------------------------------------------------
class _Latency(Protocol):
    """What this module uses of the ordinary latency judge (criteria.StatisticalJudge)."""

    @property
    def fail_weight(self) -> float: ...

    def check(self, ev: Any, scope: Any, alpha: float, method: str, failing: bool) -> CriterionResult: ...

    def may_fail(self, look: Any) -> bool: ...


class _Look(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def cross(self) -> BaselineLook | None: ...


@dataclass(frozen=True, slots=True)
class _Sides:
    """The cross-region window and soak, where the ordinary judge reads a look's."""

    window: Sample
    soak: Sample


@dataclass(frozen=True, slots=True)
class CrossRegionJudge:
    """``latency``: the ordinary latency judge of the criterion; ``spend``: its share of the gate's ``false_fail``
    over the soak's planned looks, set by ``GateSpec.of`` (core/look_share.py)."""

    name: str
    latency: _Latency
    spend: LookShare = field(default_factory=LookShare)
    statistical: bool = True

    @property
    def fail_weight(self) -> float:
        return self.latency.fail_weight

    @staticmethod
    def _evidence(look: _Look) -> BaselineLook:
        return look.cross if look.cross is not None else BaselineLook(Sample(), Sample(), 0)

    def may_fail(self, look: _Look) -> bool:
        cross = self._evidence(look)
        return self.latency.may_fail(_Sides(cross.window, cross.soak))

    def fail_checks(self, look: _Look, alpha: float) -> list[CriterionResult]:
        """The gate's ``alpha`` is not used: the criterion spends its own share over the soak's looks."""
        cross = self._evidence(look)
        spent = self.spend.at(cross.looks) / 2
        return [
            self.latency.check(cross.window, "window", spent, look.method, True),
            self.latency.check(cross.soak, "soak", spent, look.method, True),
        ]

    def may_pass(self, look: _Look, alpha: float) -> bool:
        return True  # pass_check is as cheap as any screen of it

    def pass_check(self, look: _Look, alpha: float) -> CriterionResult:
        return self.latency.check(self._evidence(look).soak, "soak", alpha, look.method, False)
