"""Incidents (contract v1, streams/incident.v1.schema.json): what an incident record says, how later records of
the same id update it, and the ``no_incidents`` criterion's judge.

An incident is open from ``opened_at`` until ``resolved_at`` (open while that is null). A record of an id
already known replaces it when its version (the latest of its ``opened_at``, ``resolved_at`` and
``updated_at``) is at least as new, so a re-delivered older record changes nothing. The judge looks at every
matching incident open at any instant of its scope (the soak so far, or the latest window): one opened and
resolved inside the soak still breaks "zero critical incidents for the full soak".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from gatekeeper.core.decision import CriterionResult, Scope
from gatekeeper.core.plan import NoIncidentsCriterion
from gatekeeper.core.side_ledger import IncidentState, SideJudge, SideLook
from gatekeeper.core.side_records import ALL, Instant, Label, Text, instant_ms
from gatekeeper.core.timefmt import format_ms

Severity = Literal["critical", "major", "minor"]


class Incident(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One record of the ``incidents`` topic."""

    id: Label
    severity: Severity
    kind: Label  # outage, data_loss, security, ...
    opened_at: Instant
    region: Label = ALL
    tier: Label = ALL
    resolved_at: Instant | None = None
    updated_at: Instant | None = None
    title: Text = ""


def state_of(record: Incident) -> IncidentState:
    opened = instant_ms(record.opened_at)
    resolved = None if record.resolved_at is None else instant_ms(record.resolved_at)
    updated = None if record.updated_at is None else instant_ms(record.updated_at)
    version = max(t for t in (opened, resolved, updated) if t is not None)
    return IncidentState(
        record.id, record.severity, record.kind, record.region, record.tier, opened, resolved, version, record.title
    )


def event_ms(record: Incident) -> int:
    """The record's event time: when what it says became true (its version)."""
    return state_of(record).version_ms


def fold(incidents: dict[str, IncidentState], record: Incident) -> bool:
    """Apply a record; False when an as-new or newer version of its id is known already (nothing changes)."""
    new = state_of(record)
    old = incidents.get(new.id)
    if old is not None and (old.version_ms > new.version_ms or old == new):
        return False
    incidents[new.id] = new
    return True


def describe(i: IncidentState) -> str:
    where = f"{i.region}/{i.tier}"
    until = "still open" if i.resolved_ms is None else f"resolved {format_ms(i.resolved_ms)}"
    title = f" {i.title!r}" if i.title else ""
    return f"{i.severity} {i.kind} incident {i.id}{title} ({where}) opened {format_ms(i.opened_ms)}, {until}"


@dataclass(frozen=True, slots=True)
class IncidentsJudge(SideJudge):
    """Certain, not sampled: a matching incident in the scope fails the criterion; none passes it."""

    spec: NoIncidentsCriterion

    @property
    def name(self) -> str:
        return self.spec.name

    def matching(self, look: SideLook) -> list[IncidentState]:
        side = look.side
        if side is None or not side.ledger.incidents:  # asked at every window's close; most gates never have one
            return []
        spec = self.spec
        start = side.soak_start if spec.scope == "soak" else side.window_start
        found = [
            i
            for i in side.ledger.incidents.values()
            if i.severity in spec.severities
            and (spec.kinds is None or i.kind in spec.kinds)
            and i.opened_ms < side.end
            and (i.resolved_ms is None or i.resolved_ms > start)
        ]
        return sorted(found, key=lambda i: (i.opened_ms, i.id))

    def _wanted(self) -> str:
        kinds = "" if self.spec.kinds is None else " " + "/".join(self.spec.kinds)
        return f"{'/'.join(self.spec.severities)}{kinds} incidents"

    def _result(self, look: SideLook, found: list[IncidentState], failing: bool) -> CriterionResult:
        scope: Scope = "soak" if self.spec.scope == "soak" else "window"
        if found:
            why = f"{describe(found[0])}: zero {self._wanted()} required over the {scope}"
            if len(found) > 1:
                why += f" ({len(found) - 1} more: {', '.join(i.id for i in found[1:])})"
            verdict: Literal["fail", "inconclusive", "pass"] = "fail"
        else:
            why = f"no {self._wanted()} over the {scope}"
            verdict = "inconclusive" if failing else "pass"
        return CriterionResult(
            name=self.name, scope=scope, verdict=verdict, threshold=0.0, observed=float(len(found)), reason=why
        )

    def may_fail(self, look: SideLook) -> bool:
        return bool(self.matching(look))

    def fail_checks(self, look: SideLook, alpha: float) -> list[CriterionResult]:
        return [self._result(look, self.matching(look), failing=True)]

    def may_pass(self, look: SideLook, alpha: float) -> bool:
        return True  # pass_check is as cheap as any screen of it

    def pass_check(self, look: SideLook, alpha: float) -> CriterionResult:
        return self._result(look, self.matching(look), failing=False)
