"""What a gate keeps of its side inputs (incidents, approvals, business metrics) and how a judge sees them as of
a look; the records' own contracts and folds are in core/incidents.py, approvals.py and lift.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec

# [n_T, sum_T, sumsq_T, n_C, sum_C, sumsq_C] as exact integers in decimal text (values in 1e-4 units, squares
# in 1e-8): exact, so the sums do not depend on the order records arrive in (float sums would, in their last
# bits, and so would the decisions' bytes); text, because they outgrow 64 bits (core/lift.py)
Sums = list[str]


class IncidentState(msgspec.Struct, array_like=True):
    """An incident as a gate keeps it (times in epoch ms)."""

    id: str
    severity: str
    kind: str
    region: str
    tier: str
    opened_ms: int
    resolved_ms: int | None
    version_ms: int
    title: str = ""


class ApprovalState(msgspec.Struct, frozen=True, array_like=True):
    checkpoint: str
    region: str
    decision: str
    by: str
    at_ms: int
    note: str = ""


class SideLedger(msgspec.Struct):
    """What a gate knows of its side inputs (snapshotted with the gate's state)."""

    incidents: dict[str, IncidentState] = {}
    approvals: list[ApprovalState] = []
    lift: dict[str, dict[int, Sums]] = {}  # metric -> window start -> sums (core/lift.py)
    positions: dict[str, int] = {}  # source -> position after the last record applied
    awaiting_for: int = -1  # the soak start an "awaiting approval" pending was reported for

    def is_empty(self) -> bool:
        return not (self.incidents or self.approvals or self.lift or self.positions)


@dataclass(frozen=True, slots=True)
class SideView:
    """A gate's side inputs as of ``end`` (a window's close), with its soak's and window's starts."""

    ledger: SideLedger
    soak_start: int
    window_start: int
    end: int


class SideJudge:
    """What the side inputs' judges share: certain or with their own alpha, none takes a share of the gate's
    false_fail (``criteria.Judge``)."""

    __slots__ = ()
    statistical = False
    fail_weight = 0.0


class SideLook(Protocol):
    """A look as the side judges read it (``criteria.Look``)."""

    @property
    def side(self) -> SideView | None: ...


_LEDGER_ENCODER = msgspec.msgpack.Encoder()
_LEDGER_DECODER = msgspec.msgpack.Decoder(SideLedger)


def dump_ledger(ledger: SideLedger) -> bytes:
    return b"" if ledger.is_empty() else _LEDGER_ENCODER.encode(ledger)


def load_ledger(raw: bytes) -> SideLedger:
    """The ledger ``dump_ledger`` wrote; ValueError on other bytes."""
    if not raw:
        return SideLedger()
    try:
        return _LEDGER_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a side-input ledger: {exc}") from None
