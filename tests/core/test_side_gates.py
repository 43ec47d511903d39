"""Incidents and GO/NO-GO approvals as gate inputs, through the pipeline (both stages) on the small test plan:
window 10m, soak 1h, hold 30m; us-east and eu-west."""

from __future__ import annotations

import json
from typing import Any

from gatekeeper.core.decision import Decision
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.side_inputs import Kind, Routed
from gatekeeper.core.side_records import Refused

from .helpers import EAST, WEST, at, by_time, concat, healthy, make_plan, of, plan_dict, summary, tier_of


def incident_plan(scope: str = "soak") -> dict[str, Any]:
    raw = plan_dict()
    tier_of(raw)["criteria"].append({"kind": "no_incidents", "severities": ["critical"], "scope": scope})
    return raw


def approval_plan(approvers: list[str] | None = None) -> dict[str, Any]:
    raw = plan_dict()
    checkpoint: dict[str, Any] = {"name": "GO/NO-GO", "after": "1h", "approval": True}
    if approvers:
        checkpoint["approvers"] = approvers
    tier_of(raw)["checkpoints"] = [checkpoint]
    return raw


def side(pipeline: Pipeline, kind: Kind, *records: dict[str, Any]) -> None:
    for position, rec in enumerate(records):
        routed = pipeline.side_router.route(kind, json.dumps(rec).encode())
        assert isinstance(routed, Routed), routed
        pipeline.apply_side(routed, kind, position)


def run(raw: dict[str, Any], *inputs: tuple[Kind, dict[str, Any]], end_min: int = 180) -> list[Decision]:
    pipeline = Pipeline(make_plan(raw))
    for position, (kind, rec) in enumerate(inputs):
        routed = pipeline.side_router.route(kind, json.dumps(rec).encode())
        assert isinstance(routed, Routed), routed
        pipeline.apply_side(routed, kind, position)
    events = by_time(concat(healthy(EAST, 0, end_min, seed=1), healthy(WEST, 0, end_min, seed=2)))
    return pipeline.ingest(events) + pipeline.flush()


def incident(**fields: Any) -> tuple[Kind, dict[str, Any]]:
    rec = {"id": "INC-7", "severity": "critical", "kind": "outage", "region": "us-east", "opened_at": at(25)}
    return "incident", rec | fields


def test_without_side_inputs_both_regions_pass_at_the_soak_end() -> None:
    """The base case the others change: healthy traffic passes each region when the 1h soak ends."""
    assert [("us-east", "pass", "go", at(60)), ("eu-west", "pass", "go", at(60))] == summary(run(incident_plan()))


def test_an_open_critical_incident_fails_and_holds_its_region_only() -> None:
    """An incident opened at 00:25 fails us-east at the close of the window it falls in (00:30), with the hold,
    the reason naming the incident; eu-west passes as usual."""
    decisions = run(incident_plan(), incident())
    east = [(d.decision, d.at) for d in decisions if d.region == "us-east"][:2]
    assert [("fail", at(30)), ("hold", at(30))] == east
    assert "critical outage incident INC-7" in of(decisions, "fail")[0].reasons[0]
    assert [at(60)] == [d.at for d in of(decisions, "pass", "eu-west")]


def test_an_incident_opened_and_resolved_inside_the_soak_still_fails_a_soak_criterion() -> None:
    """Zero incidents for the full soak: an incident resolved 3 minutes after it opened still fails the soak, once
    the window holding it closes; a window-scoped criterion sees it too, in that window only."""
    resolved = incident(resolved_at=at(28))
    assert [("fail", at(30))] == [(d.decision, d.at) for d in of(run(incident_plan(), resolved), "fail", "us-east")]
    assert [("fail", at(30))] == [
        (d.decision, d.at) for d in of(run(incident_plan("window"), resolved), "fail", "us-east")
    ]


def test_a_later_record_of_the_same_id_resolves_the_incident_and_the_gate_passes_after_the_hold() -> None:
    """The update (same id, resolved at 00:40) ends the incident: after the 30m hold (00:30-01:00) the soak
    restarts at 01:00 without it and passes at 02:00. A re-delivered older record changes nothing."""
    opened, resolved = incident(), incident(resolved_at=at(40))
    decisions = run(incident_plan(), opened, resolved, opened)
    east = [(d.decision, d.at) for d in decisions if d.region == "us-east"]
    assert [("fail", at(30)), ("hold", at(30)), ("release", at(60)), ("pass", at(120))] == east


def test_minor_incidents_and_other_regions_do_not_count() -> None:
    """The criterion's severity filter and the incident's region decide which gates it touches."""
    decisions = run(incident_plan(), incident(severity="minor"), incident(id="INC-8", region="eu-west",
                                                                          severity="major"))  # fmt: skip
    assert [] == of(decisions, "fail")


def test_incident_for_all_regions_fails_every_region() -> None:
    """``region: all`` reaches every region's gate of the tier; never resolved, it fails each again after every
    hold (00:30, then 01:10 after the 30m hold and the first window of the new soak...)."""
    decisions = run(incident_plan(), incident(region="all"))
    fails = {region: [d.at for d in of(decisions, "fail", region)][:2] for region in ("us-east", "eu-west")}
    assert {"us-east": [at(30), at(70)], "eu-west": [at(30), at(70)]} == fails


def approval(decision: str, minute: int, **fields: Any) -> tuple[Kind, dict[str, Any]]:
    rec = {"checkpoint": "GO/NO-GO", "decision": decision, "by": "alice", "at": at(minute), "region": "us-east"}
    return "approval", rec | fields


def test_a_checkpoint_requiring_approval_waits_for_a_go() -> None:
    """No GO: at the soak end (also the GO/NO-GO checkpoint) every automatic criterion passes, so the gate says
    once, in ONE pending (reason code ``approval``, no second ``checkpoint:`` pending at the same instant), that
    all it awaits is approval, listing who may give it; never a pass."""
    decisions = run(approval_plan(["alice", "bob"]))
    east = [(d.decision, d.reason_code, d.at, d.reasons) for d in decisions if d.region == "us-east"]
    reasons = ("awaiting approval: GO/NO-GO 'GO/NO-GO' needs a go from alice, bob", "every automatic criterion passes")
    assert [("pending", "approval", at(60), reasons)] == east


def test_a_checkpoint_with_evidence_and_approval_missing_is_one_pending_naming_both() -> None:
    """At the soak end with too few requests for the error rate AND no GO, one pending (the checkpoint's) names
    both blockers: the missing evidence and the missing approval."""
    raw = approval_plan()
    tier_of(raw)["criteria"][0]["min_requests"] = 10**9
    decisions = run(raw, end_min=65)
    east = [(d.decision, d.reason_code, d.at) for d in decisions if d.region == "us-east"]
    assert [("pending", "checkpoint:GO/NO-GO", at(60))] == east
    reasons = of(decisions, "pending", "us-east")[0].reasons
    expected = ("GO/NO-GO: not enough evidence to pass", True, "awaiting approval: GO/NO-GO 'GO/NO-GO' needs a go")
    assert expected == (reasons[0], reasons[1].startswith("error rate: "), reasons[2])


def test_a_go_releases_the_pending_checkpoint_and_is_audited() -> None:
    """A GO at 01:15 passes us-east at the next window close (01:20), the approver in the reasons and in the
    criteria; eu-west (no GO for it) keeps waiting."""
    decisions = run(approval_plan(), approval("go", 75, note="dashboards green"))
    passed = of(decisions, "pass")
    assert [("us-east", at(80))] == [(d.region, d.at) for d in passed]
    audit = "GO for 'GO/NO-GO' (us-east) by alice at 2025-10-19T01:15:00Z: dashboards green"
    assert audit in passed[0].reasons
    assert [("approval:GO/NO-GO", "pass")] == [(c.name, c.verdict) for c in passed[0].criteria if "approval" in c.name]


def test_a_go_given_before_the_soak_ends_passes_at_the_soak_end_and_twice_is_once() -> None:
    """A GO inside the soak counts once the automatic criteria pass; the same approval twice is one."""
    once = run(approval_plan(), approval("go", 20))
    twice = run(approval_plan(), approval("go", 20), approval("go", 20))
    assert [("us-east", at(60))] == [(d.region, d.at) for d in of(once, "pass")]
    assert once == twice


def test_a_no_go_fails_and_holds_with_the_note() -> None:
    """A NO-GO at 00:45 fails and holds us-east at 00:50 with the approver's note; the later soak needs a new GO."""
    decisions = run(approval_plan(), approval("no-go", 45, note="support not staffed"))
    east = [(d.decision, d.at) for d in decisions if d.region == "us-east"][:3]
    assert [("fail", at(50)), ("hold", at(50)), ("release", at(80))] == east
    assert "NO-GO for 'GO/NO-GO' (us-east) by alice at 2025-10-19T00:45:00Z: support not staffed" in (
        of(decisions, "fail")[0].reasons
    )
    assert [] == of(decisions, "pass", "us-east")


def test_approvals_from_people_not_listed_do_not_count() -> None:
    """With ``approvers`` in the plan, a GO by someone else is ignored."""
    assert [] == of(run(approval_plan(["bob"]), approval("go", 20)), "pass")


def test_side_records_that_break_their_contract_get_reasons() -> None:
    """Each refusal has a countable code: unknown region, unknown checkpoint, missing field, bad enum."""
    router = Pipeline(make_plan(approval_plan())).side_router

    def code(kind: Kind, rec: dict[str, Any] | str) -> str:
        raw = rec.encode() if isinstance(rec, str) else json.dumps(rec).encode()
        result = router.route(kind, raw)
        return result.code if isinstance(result, Refused) else "ok"

    assert "unknown_region" == code("incident", incident(region="mars")[1])
    assert "invalid_field:severity" == code("incident", incident(severity="huge")[1])
    assert "missing_field:opened_at" == code("incident", {"id": "x", "severity": "minor", "kind": "outage"})
    assert "invalid_field:resolved_at" == code("incident", incident(resolved_at=at(1))[1])
    assert "unknown_checkpoint" == code("approval", approval("go", 1, checkpoint="launch")[1])
    assert "malformed_json" == code("approval", "{not json")
    assert "not_an_object" == code("approval", "[1]")
    assert "ok" == code("approval", approval("go", 1)[1])


def test_a_plan_without_the_new_checkpoint_fields_keeps_its_version() -> None:
    """``approval: false`` and no ``approvers`` are the defaults: writing them changes no plan version (decision
    ids of existing plans stay), while requiring approval does."""
    raw = plan_dict()
    tier_of(raw)["checkpoints"] = [{"name": "half", "after": "30m"}]
    explicit = plan_dict()
    tier_of(explicit)["checkpoints"] = [{"name": "half", "after": "30m", "approval": False, "approvers": []}]
    required = plan_dict()
    tier_of(required)["checkpoints"] = [{"name": "half", "after": "30m", "approval": True}]
    versions = [make_plan(r).plan_version for r in (raw, explicit, required)]
    assert versions[0] == versions[1] != versions[2]
