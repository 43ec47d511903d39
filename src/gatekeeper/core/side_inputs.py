"""The gates' side inputs (incidents, approvals, business metrics): decoding a record of one of their topics,
which gates it concerns, and what a gate keeps of them (``SideLedger``, part of its state).

Side inputs are read as of an instant: at a window's close, a judge sees the records whose times fall before
it (``SideView``), so the order in which the records arrived does not matter as long as they arrive before the
gate's event time passes them (a record later than that takes effect at the next window's close). Each record
is applied once per gate: a gate remembers, per source (a topic partition, or a replay file), the position after
the last record it applied, and ignores records before it (re-deliveries after a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from gatekeeper.core import approvals, incidents, lift
from gatekeeper.core.approvals import Approval
from gatekeeper.core.incidents import Incident
from gatekeeper.core.lift import BusinessMetric
from gatekeeper.core.plan import LiftCriterion, Plan
from gatekeeper.core.side_ledger import SideLedger
from gatekeeper.core.side_records import ALL, RecordDecoder, Refused, check_scope, instant_ms

Kind = Literal["incident", "approval", "business"]
KINDS: tuple[Kind, ...] = ("incident", "approval", "business")
SideValue = Incident | Approval | BusinessMetric


class SideRecord(msgspec.Struct, frozen=True, array_like=True):
    """A decoded side record on its way to a gate: where it came from (``source``, ``position``), and its value."""

    source: str
    position: int
    kind: Kind
    value: bytes  # the record's JSON, as it arrived (decoded again where the gate is)


_RECORD_ENCODER = msgspec.msgpack.Encoder()
_RECORD_DECODER = msgspec.msgpack.Decoder(SideRecord)


def encode_record(record: SideRecord) -> bytes:
    return _RECORD_ENCODER.encode(record)


def decode_record(raw: bytes) -> SideRecord:
    """ValueError on bytes that are not a ``SideRecord``."""
    try:
        return _RECORD_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a side record: {exc}") from None


@dataclass(frozen=True, slots=True)
class Routed:
    """A valid side record and the gates ("region/tier") it concerns."""

    value: SideValue
    gates: tuple[str, ...]


_DECODERS: dict[Kind, RecordDecoder[msgspec.Struct]] = {
    "incident": RecordDecoder(Incident),
    "approval": RecordDecoder(Approval),
    "business": RecordDecoder(BusinessMetric),
}


class SideRouter:
    """Decodes side records against a plan and names the gates each one concerns."""

    def __init__(self, plan: Plan) -> None:
        self.window = plan.evaluation.window
        self.gates = [(region, tier) for region, _phase, tier in plan.gates()]
        self.regions = plan.regions
        self.tiers = tuple(dict.fromkeys(t.name for _r, t in self.gates))
        self.checkpoints = {c.name for _r, t in self.gates for c in t.checkpoints if c.approval}
        self.metrics = {c.metric for _r, t in self.gates for c in t.criteria if isinstance(c, LiftCriterion)}

    def route(self, kind: Kind, raw: bytes) -> Routed | Refused:
        value = _DECODERS[kind].decode(raw)
        if isinstance(value, Refused):
            return value
        if isinstance(value, Incident):
            return self._incident(value)
        if isinstance(value, Approval):
            return self._approval(value)
        assert isinstance(value, BusinessMetric)
        return self._business(value)

    def _incident(self, value: Incident) -> Routed | Refused:
        bad = check_scope(value.region, value.tier, self.regions, self.tiers)
        if bad is not None:
            return bad
        if value.resolved_at is not None and instant_ms(value.resolved_at) < instant_ms(value.opened_at):
            return Refused("invalid_field:resolved_at", "`resolved_at` is before `opened_at`")
        keys = [f"{r}/{t.name}" for r, t in self.gates if _in(value.region, r) and _in(value.tier, t.name)]
        return Routed(value, tuple(keys))

    def _approval(self, value: Approval) -> Routed | Refused:
        bad = check_scope(value.region, None, self.regions, self.tiers)
        if bad is not None:
            return bad
        if value.checkpoint not in self.checkpoints:
            known = ", ".join(sorted(self.checkpoints)) or "none"
            why = f"checkpoint {value.checkpoint!r} requires no approval (those that do: {known})"
            return Refused("unknown_checkpoint", why)
        keys = [
            f"{r}/{t.name}"
            for r, t in self.gates
            if _in(value.region, r) and any(c.name == value.checkpoint and c.approval for c in t.checkpoints)
        ]
        return Routed(value, tuple(keys))

    def _business(self, value: BusinessMetric) -> Routed | Refused:
        bad = check_scope(value.region, value.tier, self.regions, self.tiers)
        if bad is not None or value.region == ALL:
            return bad or Refused("invalid_field:region", "a business metric names one region, not 'all'")
        if value.cohort == "treatment" and (value.tier is None or value.tier == ALL):
            return Refused("missing_field:tier", "a treatment record names its tier")
        if value.metric not in self.metrics:
            known = ", ".join(sorted(self.metrics)) or "none"
            return Refused("unknown_metric", f"metric {value.metric!r} is judged by no lift criterion ({known})")
        keys = [
            f"{r}/{t.name}"
            for r, t in self.gates
            if r == value.region
            and (value.cohort == "control" or t.name == value.tier)
            and any(isinstance(c, LiftCriterion) and c.metric == value.metric for c in t.criteria)
        ]
        return Routed(value, tuple(keys))


def _in(wanted: str, actual: str) -> bool:
    return wanted in (ALL, actual)


def event_ms(value: SideValue) -> int:
    """When what the record says became true: the order replay applies records in."""
    if isinstance(value, Incident):
        return incidents.event_ms(value)
    if isinstance(value, Approval):
        return approvals.state_of(value).at_ms
    return lift.event_ms(value)


def apply(ledger: SideLedger, value: SideValue, source: str, position: int, window_ms: int) -> bool:
    """Apply a routed record to one gate's ledger, once: False for a position of ``source`` applied before."""
    if position < ledger.positions.get(source, 0):
        return False
    ledger.positions[source] = position + 1
    if isinstance(value, Incident):
        incidents.fold(ledger.incidents, value)
    elif isinstance(value, Approval):
        approvals.fold(ledger.approvals, value)
    else:
        lift.fold(ledger.lift, value, window_ms)
    return True
