"""Side-input partitions as holding sources of the merge watermark (core/side_watermarks.py, core/merge.py)."""

from __future__ import annotations

from gatekeeper.core.merge import GateInbox, Merger, SourceMark, merge_watermark
from gatekeeper.core.partials import Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.core.side_inputs import Routed, SideRouter, event_ms
from gatekeeper.core.side_watermarks import SideClock, concerned, hold, record_ms
from plans_for_tests import small_plan, small_tier

MINUTE = 60_000
T0 = 1_760_832_000_000


def test_a_holding_source_caps_the_merge_watermark_while_not_idle() -> None:
    """Telemetry at 10 and 12 minutes: the merge is 10; a side partition at 7 caps it at 7, at 20 changes nothing,
    idle or not reported yet (None) it holds nothing / everything."""
    telemetry = [SourceMark(10 * MINUTE), SourceMark(12 * MINUTE)]
    assert 10 * MINUTE == merge_watermark(telemetry)
    assert 7 * MINUTE == merge_watermark([*telemetry, SourceMark(7 * MINUTE, holds=True)])
    assert 10 * MINUTE == merge_watermark([*telemetry, SourceMark(20 * MINUTE, holds=True)])
    assert 10 * MINUTE == merge_watermark([*telemetry, SourceMark(7 * MINUTE, idle=True, holds=True)])
    assert None is merge_watermark([*telemetry, SourceMark(None, holds=True)])


def test_a_holding_source_never_advances_the_merge_watermark() -> None:
    """Every telemetry source idle (the input ended): the merge is their max, 12, not the side partition's 30,
    whether that one is idle or not; with no telemetry report at all, nothing closes."""
    ended = [SourceMark(10 * MINUTE, idle=True), SourceMark(12 * MINUTE, idle=True)]
    assert 12 * MINUTE == merge_watermark([*ended, SourceMark(30 * MINUTE, holds=True)])
    assert 12 * MINUTE == merge_watermark([*ended, SourceMark(30 * MINUTE, idle=True, holds=True)])
    assert 11 * MINUTE == merge_watermark([*ended, SourceMark(11 * MINUTE, holds=True)])
    assert None is merge_watermark([SourceMark(None), SourceMark(30 * MINUTE, holds=True)])


def test_a_holding_source_waking_up_wakes_no_other_source() -> None:
    """A side partition reported idle then active again does not make the idle telemetry partitions count as
    active (its watermark only holds, so it cannot close panes they are about to send); a telemetry partition
    waking up still wakes the others, the side partition included."""
    plan = Plan.model_validate(small_plan("side-marks", "1", [small_tier("canary", 5)]))
    merger = Merger(plan, ["t:0", "t:1"])
    inbox: GateInbox = merger.start()
    hold(inbox, ["incidents:0"])
    key = next(iter(merger.specs))
    for w in (Watermark(source="t:0", watermark=5 * MINUTE, idle=True),
              Watermark(source="t:1", watermark=6 * MINUTE, idle=True),
              Watermark(source="incidents:0", watermark=None, idle=True),
              Watermark(source="incidents:0", watermark=3 * MINUTE)):  # fmt: skip
        merger.on_watermark(key, inbox, w, [])
    assert (True, True, False) == tuple(inbox.sources[s].idle for s in ("t:0", "t:1", "incidents:0"))
    merger.on_watermark(key, inbox, Watermark(source="t:0", watermark=7 * MINUTE), [])
    assert (False, False, False) == tuple(inbox.sources[s].idle for s in ("t:0", "t:1", "incidents:0"))


def test_hold_adds_new_side_sources_and_flags_restored_ones() -> None:
    """``hold`` adds an unreported holding source, and flags one restored from a snapshot (which keeps no flag)
    without losing its watermark."""
    inbox = GateInbox(sources={"t:0": SourceMark(MINUTE), "incidents:1": SourceMark(2 * MINUTE, idle=True)})
    hold(inbox, ["incidents:0", "incidents:1"])
    assert {"t:0": SourceMark(MINUTE), "incidents:0": SourceMark(None, holds=True),
            "incidents:1": SourceMark(2 * MINUTE, idle=True, holds=True)} == inbox.sources  # fmt: skip


def test_concerned_gates_are_those_whose_criteria_read_the_kind() -> None:
    """Incidents concern the tiers with ``no_incidents``, approvals those with a checkpoint requiring approval,
    business metrics those with a ``lift`` criterion, in every region of the tier; a plain tier waits for none."""
    lift = {"kind": "lift", "metric": "revenue", "pass_lower_above": 0, "fail_upper_below": 0}
    tiers = [
        small_tier("canary", 5, more_criteria=[{"kind": "no_incidents", "severities": ["critical"]}]),
        small_tier("ramp", 25, more_criteria=[lift]),
        small_tier("plain", 50),
    ]
    tiers[1]["checkpoints"] = [{"name": "GO", "after": "30m", "approval": True}]
    plan = Plan.model_validate(small_plan("side-concerned", "1", tiers))
    assert {"incident": ("us-east/canary", "eu-west/canary"), "approval": ("us-east/ramp", "eu-west/ramp"),
            "business": ("us-east/ramp", "eu-west/ramp")} == concerned(plan)  # fmt: skip


def test_side_clock_publishes_on_new_panes_idleness_and_again() -> None:
    """A side partition's watermark is its newest record's time minus the lateness (2m), sent when it enters a
    new pane or its idleness changes; nothing before its first record unless idle; idle said again on request."""
    clock = SideClock(2 * MINUTE, MINUTE)
    assert None is clock.publish("incidents:0")
    clock.saw("incidents:0", T0 + 10 * MINUTE)
    assert Watermark(source="incidents:0", watermark=T0 + 8 * MINUTE) == clock.publish("incidents:0")
    clock.saw("incidents:0", T0 + 5 * MINUTE)  # older: the watermark stays
    clock.saw("incidents:0", T0 + 10 * MINUTE + 30_000)  # same pane of the watermark: nothing new
    assert None is clock.publish("incidents:0")
    idle = clock.publish("incidents:0", idle=True)
    assert Watermark(source="incidents:0", watermark=T0 + 8 * MINUTE + 30_000, idle=True) == idle
    assert None is clock.publish("incidents:0", idle=True)
    assert idle == clock.publish("incidents:0", idle=True, again=True)
    assert Watermark(source="approvals:1", watermark=None, idle=True) == clock.publish("approvals:1", idle=True)


def test_an_incident_advances_its_partition_by_its_opening() -> None:
    """An incident record, even the one that resolves it, advances its partition's watermark by its opened_at
    (a judge as of a time before the resolution sees it open), not by its version (resolved_at)."""
    plan = Plan.model_validate(small_plan("side-times", "1", [small_tier("canary", 5)]))
    router = SideRouter(plan)
    incident = router.route("incident", b'{"id": "I", "severity": "critical", "kind": "outage", '
                            b'"opened_at": "2025-10-19T00:25:00Z", "resolved_at": "2025-10-19T00:28:00Z"}')  # fmt: skip
    assert isinstance(incident, Routed)
    assert (T0 + 25 * MINUTE, T0 + 28 * MINUTE) == (record_ms(incident.value), event_ms(incident.value))


def test_side_clock_resumed_reports_a_gained_partition_active() -> None:
    """A partition gained in a rebalance (forgotten, nothing read yet) is reported active with no watermark of its
    own; after that, nothing new to say until it reads a record (its watermark) or is idle again."""
    clock = SideClock(2 * MINUTE, MINUTE)
    clock.saw("incidents:0", T0 + 10 * MINUTE)
    clock.publish("incidents:0", idle=True)
    clock.forget(["incidents:0"])
    assert Watermark(source="incidents:0", watermark=None, idle=False) == clock.resumed("incidents:0")
    assert None is clock.publish("incidents:0")
    assert Watermark(source="incidents:0", watermark=None, idle=True) == clock.publish("incidents:0", idle=True)
    clock.resumed("incidents:0")
    clock.saw("incidents:0", T0 + 20 * MINUTE)
    assert Watermark(source="incidents:0", watermark=T0 + 18 * MINUTE) == clock.publish("incidents:0")


def test_a_gained_side_partition_holds_its_gates_again_until_idle() -> None:
    """Telemetry at 10m: a side partition not reported yet holds everything (start-up), at 3m caps the merge at 3m,
    idle holds nothing (10m). Gained by another worker and reported active by its new owner: the gate holds at the
    last watermark it heard (3m) however far the telemetry goes (20m), until the new owner reports it idle again."""
    plan = Plan.model_validate(small_plan("side-gained", "1", [small_tier("canary", 5)]))
    merger = Merger(plan, ["t:0"])
    inbox: GateInbox = merger.start()
    hold(inbox, ["incidents:0"])
    key = next(iter(merger.specs))

    def merged_after(w: Watermark) -> int | None:
        merger.on_watermark(key, inbox, w, [])
        return merge_watermark(inbox.sources.values())

    old_owner, new_owner = SideClock(2 * MINUTE, MINUTE), SideClock(2 * MINUTE, MINUTE)
    old_owner.saw("incidents:0", 5 * MINUTE)
    steps = [merged_after(Watermark(source="t:0", watermark=10 * MINUTE))]
    for w in (old_owner.publish("incidents:0"), old_owner.publish("incidents:0", idle=True)):
        assert w is not None
        steps.append(merged_after(w))
    new_owner.forget(["incidents:0"])
    steps.append(merged_after(new_owner.resumed("incidents:0")))
    steps.append(merged_after(Watermark(source="t:0", watermark=20 * MINUTE)))
    idle = new_owner.publish("incidents:0", idle=True)
    assert idle is not None
    steps.append(merged_after(idle))
    assert [None, 3 * MINUTE, 10 * MINUTE, 3 * MINUTE, 3 * MINUTE, 20 * MINUTE] == steps
