"""Breach event contract v2 of the ``breaches`` topic (streams/breach.v2.schema.json): what
``core/burn_rate.py``'s alerts emit and what alerting systems read. Apart from the alert math, as
``core/decision.py`` is apart from the gate, so readers of the topic need only this."""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["page", "ticket"]
Change = Literal["opened", "escalated", "deescalated", "resolved"]


class FiredWindow(msgspec.Struct, frozen=True):
    """A rule that fired: its windows and the burn rates measured over them."""

    severity: Severity
    long: str
    short: str
    burn_rate: float  # the rule's threshold
    long_burn: float
    short_burn: float


class Breach(msgspec.Struct, frozen=True, omit_defaults=True):
    """A breach event (contract v2 of the ``breaches`` topic; streams/breach.v2.schema.json). One breach is
    one ``breach_id``: opened once, updated when its severity changes (``revision`` counts the events), resolved
    once. ``event_id`` identifies each event, so consumers deduplicate by it."""

    breach_id: str
    event_id: str
    revision: int
    state: Literal["open", "resolved"]
    change: Change
    severity: Severity
    region: str
    tier: str
    slo: str
    objective: str
    windows: tuple[FiredWindow, ...]  # the rules that fired at this event (none when resolving)
    budget_consumed: float  # bad requests / budgeted bad requests over everything the gate watched so far
    opened_at: str
    at: str
    plan_version: str
    resolved_at: str | None = None
    decision_id: str | None = None  # the gate's latest fail decision, when there is one

    @property
    def key(self) -> str:
        return f"{self.region}/{self.tier}"


_BREACH_ENCODER = msgspec.json.Encoder()
_BREACH_DECODER = msgspec.json.Decoder(Breach)


def encode(breach: Breach) -> bytes:
    """A breach event as JSON (contract v2 of the ``breaches`` topic)."""
    return _BREACH_ENCODER.encode(breach)


def decode(raw: bytes) -> Breach:
    """A breach event from ``encode``'s JSON; msgspec's errors for anything else."""
    return _BREACH_DECODER.decode(raw)
