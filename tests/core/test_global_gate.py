"""The all-regions gate (core/global_gate.py): a tier naming its regions gets one ``global`` decision stream
that passes only once every region passed, holds while any region is held, names the regions blocking it, and
decides the same whatever the interleaving of the regions' decisions (event time, not arrival)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from gatekeeper.core import global_gate
from gatekeeper.core.decision import Decision, Metrics, decision_id
from gatekeeper.core.global_gate import GlobalGates, TierFold
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_ms, parse_instant
from plans_for_tests import small_plan, small_tier

from .helpers import HOUR, MINUTE, T0, batch, by_time, chunks, concat, make_plan

REGIONS = ("us-east", "eu-west")


def plan(regions: tuple[str, ...] | None = REGIONS) -> Plan:
    """The small test plan, its canary tier naming ``regions`` (None: every region of the plan)."""
    return make_plan(small_plan("global-test", "1.0", [small_tier("canary", 5, regions=regions)]))


def regional(region: str, kind: str, minute: int, hold_minutes: int = 0) -> Decision:
    """A regional decision of the canary tier ``minute`` minutes after T0."""
    at = format_ms(T0 + minute * MINUTE)
    until = format_ms(T0 + (minute + hold_minutes) * MINUTE) if kind == "hold" else None
    return Decision(
        decision_id(f"{region}{kind}", region, "canary", kind, at, "", ""),
        kind,  # type: ignore[arg-type]
        region,
        "canary",
        "canary",
        at,
        at,
        at,
        Metrics(0, 0, None, None, None, None, None, None, None, None),
        (),
        (),
        "1.0",
        hold_until=until,
    )


def fold_all(gates: GlobalGates, decisions: list[Decision], progress: int) -> list[Decision]:
    return gates.fold("canary", TierFold(), decisions, progress)


def summary(decided: list[Decision]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(d.region, d.decision, d.at, d.reasons) for d in decided]


STORY = [
    regional("eu-west", "fail", 30),
    regional("eu-west", "hold", 30, hold_minutes=30),
    regional("us-east", "pass", 60),
    regional("eu-west", "release", 60),
    regional("eu-west", "pass", 120),
]


def test_only_tiers_naming_two_regions_or_more_have_a_global_gate() -> None:
    """A tier with ``regions`` of two or more gets a global gate; one without (every region of the plan) or
    naming a single region does not, so existing plans decide exactly as before."""
    assert ["canary"] == list(global_gate.specs(plan()))
    assert {} == global_gate.specs(plan(None))
    assert {} == global_gate.specs(plan(("us-east",)))
    assert {"us-east/canary": "global/canary", "eu-west/canary": "global/canary"} == global_gate.home_keys(plan())


def test_the_global_gate_holds_while_a_region_holds_and_passes_once_all_passed() -> None:
    """eu-west fails and is held at 00:30: global ``hold`` (eu-west held, us-east not passed yet); at 01:00
    us-east passes and eu-west is released: ``release``, eu-west still blocking; eu-west passes at 02:00: one
    global ``pass``, which names when each region passed."""
    decided = fold_all(GlobalGates(plan()), STORY, T0 + 3 * HOUR)
    assert [
        (
            "global",
            "hold",
            "2025-10-19T00:30:00Z",
            (
                "held by eu-west (held since 2025-10-19T00:30:00Z until 2025-10-19T01:00:00Z)",
                "not passed yet: us-east (no decision yet)",
            ),
        ),
        (
            "global",
            "release",
            "2025-10-19T01:00:00Z",
            ("not passed yet: eu-west (released at 2025-10-19T01:00:00Z, soaking again)",),
        ),
        (
            "global",
            "pass",
            "2025-10-19T02:00:00Z",
            ("every region of tier canary passed: us-east at 2025-10-19T01:00:00Z, eu-west at 2025-10-19T02:00:00Z",),
        ),
    ] == summary(decided)
    hold = decided[0]
    assert ("regions_held", "2025-10-19T01:00:00Z") == (hold.reason_code, hold.hold_until)
    assert [("region:us-east", "inconclusive"), ("region:eu-west", "fail")] == [
        (c.name, c.verdict) for c in hold.criteria
    ]


def test_a_region_passing_alone_leaves_the_global_gate_pending() -> None:
    """us-east passes while eu-west has no decision: ``pending`` naming eu-west, never a pass."""
    decided = fold_all(GlobalGates(plan()), [regional("us-east", "pass", 60)], T0 + 2 * HOUR)
    assert [("pending", ("not passed yet: eu-west (no decision yet)",))] == [(d.decision, d.reasons) for d in decided]


def test_a_passed_region_failing_later_holds_the_global_gate_again() -> None:
    """After the global pass, a region that fails (a gate keeps watching) holds the global gate again."""
    later = [*STORY, regional("us-east", "fail", 150), regional("us-east", "hold", 150, 30)]
    decided = fold_all(GlobalGates(plan()), later, T0 + 4 * HOUR)
    assert ["hold", "release", "pass", "hold"] == [d.decision for d in decided]


def test_pending_regional_decisions_change_nothing() -> None:
    """A region's ``pending`` (stalled, awaiting approval) neither blocks nor unblocks: after us-east's pass
    made the global gate pending on eu-west, eu-west's own pending adds no global decision."""
    story = [regional("us-east", "pass", 60), regional("eu-west", "pending", 70)]
    decided = fold_all(GlobalGates(plan()), story, T0 + 2 * HOUR)
    assert [("pending", "2025-10-19T01:00:00Z")] == [(d.decision, d.at) for d in decided]


def test_nothing_is_decided_past_the_progress() -> None:
    """Decisions after the regional gates' progress wait: at 00:45 only the hold is out; the rest follows
    once the progress reaches them, and the two steps give what one gives."""
    gates, state = GlobalGates(plan()), TierFold()
    first = gates.fold("canary", state, STORY, T0 + 45 * MINUTE)
    rest = gates.fold("canary", state, [], T0 + 3 * HOUR)
    assert ["hold"] == [d.decision for d in first]
    assert fold_all(GlobalGates(plan()), STORY, T0 + 3 * HOUR) == first + rest


@pytest.mark.parametrize("seed", range(5))
def test_any_interleaving_and_cut_of_the_regions_decisions_gives_the_same_global_decisions(seed: int) -> None:
    """Each region's decisions in their order, the regions interleaved at random and cut into random steps
    (as the worker's partitions deliver them), each step's progress the oldest time both regions reached:
    the same global decisions, with the same ids, as all at once."""
    rng = random.Random(seed)
    by_region = {r: [d for d in STORY if d.region == r] for r in REGIONS}
    order = [r for r in REGIONS for _ in by_region[r]]
    rng.shuffle(order)
    cursor = dict.fromkeys(REGIONS, 0)
    arrived: list[Decision] = []
    for r in order:
        arrived.append(by_region[r][cursor[r]])
        cursor[r] += 1
    gates, state, got = GlobalGates(plan()), TierFold(), []
    cuts = sorted(rng.sample(range(1, len(arrived)), 2))
    cuts = [c for c in cuts if arrived[c - 1].at != arrived[c].at or arrived[c - 1].region != arrived[c].region]
    for lo, hi in itertools.pairwise([0, *cuts, len(arrived)]):
        # a gate closed up to C made every decision at or before C: a region's progress is just before its next
        # decision not delivered yet (a gate's fail and hold, made together, arrive together)
        progress = min(_next_at(arrived[hi:], r) - 1 for r in REGIONS)
        got += gates.fold("canary", state, arrived[lo:hi], progress)
    got += gates.fold("canary", state, [], T0 + 3 * HOUR)
    assert fold_all(GlobalGates(plan()), STORY, T0 + 3 * HOUR) == got


def test_the_fold_state_survives_a_snapshot() -> None:
    """A fold dumped mid-way and loaded again goes on to the same decisions (the worker's restart)."""
    gates, state = GlobalGates(plan()), TierFold()
    first = gates.fold("canary", state, STORY, T0 + 45 * MINUTE)
    restored = global_gate.load(global_gate.dump(state))
    rest = GlobalGates(plan()).fold("canary", restored, [], T0 + 3 * HOUR)
    assert fold_all(GlobalGates(plan()), STORY, T0 + 3 * HOUR) == first + rest


def test_a_corrupt_snapshot_is_a_clear_error() -> None:
    """Bytes that are not a fold state give a ValueError naming what they are not."""
    with pytest.raises(ValueError, match="not a global gate state"):
        global_gate.load(b"[1, 2")


def _next_at(rest: list[Decision], region: str) -> int:
    return min((parse_instant(d.at) for d in rest if d.region == region), default=T0 + 3 * HOUR)


def uptime_plan() -> Plan:
    """The canary in both regions, with ``uptime: at_least 90%`` (6 min down allowed over its 1 h soak)."""
    tier = small_tier("canary", 5, regions=REGIONS, more_criteria=[{"kind": "uptime", "at_least": "90%"}])
    return make_plan(small_plan("global-test", "1.0", [tier]))


def panes(first: int, down: range) -> list[tuple[int, list[int]]]:
    """A region's closed panes from minute ``first``: its down minutes ``down``."""
    return [(T0 + first * MINUTE, [T0 + m * MINUTE for m in down])]


@pytest.mark.parametrize(
    ("east", "west", "down_minutes", "kind"),
    [
        (range(10, 14), range(12, 15), 5, "pass"),  # 4 + 3 down, 2 of them the same minutes: 5 <= 6 allowed
        (range(10, 14), range(20, 23), 7, "pending"),  # 4 + 3 at different minutes: 7 > 6, no pass
    ],
)
def test_multi_region_uptime_counts_a_minute_once_whichever_regions_were_down(
    east: range, west: range, down_minutes: int, kind: str
) -> None:
    """The global gate's uptime counts a minute down when a region serving traffic was down in it, once however
    many were: overlapping down minutes count once. Beyond what the tier's uptime allows, the global gate does
    not pass though both regions passed; it says so in its reasons and its ``uptime:multi-region`` criterion."""
    gates, state = GlobalGates(uptime_plan()), TierFold()
    both = {"us-east": panes(0, east), "eu-west": panes(0, west)}
    passes = [regional("us-east", "pass", 60), regional("eu-west", "pass", 60)]
    (decided,) = gates.fold("canary", state, passes, T0 + 2 * HOUR, both)
    uptime = decided.criteria[-1]
    assert (kind, down_minutes, 1 - down_minutes / 60) == (
        decided.decision,
        decided.metrics.down_minutes,
        decided.metrics.uptime,
    )
    assert ("uptime:multi-region", "pass" if kind == "pass" else "fail") == (uptime.name, uptime.verdict)
    if kind == "pending":
        assert decided.reasons[-1].startswith("multi-region uptime: 7 min down (a region serving traffic down)")


def test_a_region_serving_no_traffic_is_never_down() -> None:
    """A region that served no panes (passive, before its traffic is routed) adds no down minute; the uptime
    runs from the first pane any region served."""
    gates, state = GlobalGates(uptime_plan()), TierFold()
    passes = [regional("us-east", "pass", 60), regional("eu-west", "pass", 60)]
    (decided,) = gates.fold("canary", state, passes, T0 + 2 * HOUR, {"us-east": panes(30, range(0))})
    assert ("pass", 0.0, 1.0) == (decided.decision, decided.metrics.down_minutes, decided.metrics.uptime)


@pytest.mark.parametrize("size", [97, 1_000, 100_000])
def test_the_pipeline_counts_overlapping_down_minutes_once_whatever_the_batching(size: int) -> None:
    """Through the pipeline (replay's stages): us-east all errors in minutes 10-13, eu-west in 12-15, both 20
    requests a minute; the tier judges uptime only (90 %: 6 min allowed over its hour). Each region passes at
    01:00 with 4 down minutes; the global pass at 01:00 counts 6 (minutes 10-15, the overlap once), with the
    same decisions however the events are batched."""
    tier = {
        "name": "canary",
        "traffic_percent": 5,
        "soak": "1h",
        "regions": list(REGIONS),
        "criteria": [{"kind": "uptime", "at_least": "90%"}],
    }
    pipeline = Pipeline(make_plan(small_plan("global-test", "1.0", [tier])))
    parts = []
    for region, down in (("us-east", range(10, 14)), ("eu-west", range(12, 16))):
        ts = np.arange(T0, T0 + 80 * MINUTE, MINUTE // 20, dtype=np.int64)
        minute = (ts - T0) // MINUTE
        errors = (minute >= down.start) & (minute < down.stop)
        parts.append(batch(ts, pipeline.keys.index((region, "canary")), 10.0, errors))
    decided = [d for part in chunks(by_time(concat(*parts)), size) for d in pipeline.ingest(part)]
    got = [(d.region, d.decision, d.at, d.metrics.down_minutes) for d in decided]
    assert [
        ("us-east", "pass", "2025-10-19T01:00:00Z", 4.0),
        ("eu-west", "pass", "2025-10-19T01:00:00Z", 4.0),
        ("global", "pass", "2025-10-19T01:00:00Z", 6.0),
    ] == got
