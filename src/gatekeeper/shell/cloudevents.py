"""CloudEvents 1.0 attributes of a produced decision or breach, in the Kafka binding's binary content mode.

The record's value stays the decision JSON (contract v1), so consumers that read it today are unaffected; the
attributes travel as ``ce_*`` headers plus ``content-type``, and the ``partitionkey`` extension is the Kafka
key itself (``region/tier``), which is how the binding and the SDKs map it (no ``ce_partitionkey`` header).

- ``ce_id``: the ``decision_id``; for a breach alert event (contract v2 of ``breaches``) its ``event_id``.
- ``ce_source``: ``/gatekeeper/plans/<plan_version>/gates/<region>/<tier>`` (a URI reference naming the plan
  version and the gate that decided); ``ce_subject``: the decision kind (``pass``, ``fail``, ...), so a
  consumer can filter on a header without parsing the value.
  A breach event's ``ce_subject`` is its change (``opened``, ``escalated``, ``deescalated``, ``resolved``).
- ``ce_type``: ``io.gatekeeper.decision.v1`` / ``io.gatekeeper.breach.v2`` (reverse-DNS, versioned with the
  contract; ``breach.v1`` was the fail decision copied to ``breaches``, before the burn-rate alerts).
- ``ce_time``: the decision's or breach event's event time ``at`` (RFC 3339).
"""

from __future__ import annotations

from urllib.parse import quote

from gatekeeper.core.breach import Breach
from gatekeeper.core.decision import Decision

SPEC_VERSION = "1.0"
DECISION_TYPE = "io.gatekeeper.decision.v1"
BREACH_TYPE = "io.gatekeeper.breach.v2"
CONTENT_TYPE = "application/json"


def source_of(decision: Decision | Breach) -> str:
    """The event's source: the plan version and the gate, each segment percent-encoded."""
    parts = (decision.plan_version, decision.region, decision.tier)
    plan, region, tier = (quote(p, safe="+:@") for p in parts)  # pchar sub-delims kept; "/" encoded
    return f"/gatekeeper/plans/{plan}/gates/{region}/{tier}"


def headers_of(decision: Decision) -> tuple[tuple[str, bytes], ...]:
    """The binary-mode headers of ``decision`` (the key is ``decision.key``)."""
    return _headers(decision.decision_id, source_of(decision), DECISION_TYPE, decision.decision, decision.at)


def breach_headers(breach: Breach) -> tuple[tuple[str, bytes], ...]:
    """The binary-mode headers of a breach alert event (the key is ``breach.key``)."""
    return _headers(breach.event_id, source_of(breach), BREACH_TYPE, breach.change, breach.at)


def _headers(ce_id: str, source: str, ce_type: str, subject: str, time: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", ce_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_subject", subject.encode()),
        ("ce_time", time.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    )
