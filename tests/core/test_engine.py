"""The engine end to end on small synthetic plans (pane 1m, window 10m, lateness 2m, stall 6m, soak 1h,
hold 30m): verdicts, per-region independence, lateness, order/batch-size independence, determinism."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core.decision import Decision
from gatekeeper.core.engine import Engine
from gatekeeper.core.telemetry import EventBatch

from .helpers import (
    EAST,
    HOUR,
    MINUTE,
    T0,
    WEST,
    at,
    batch,
    breach_then_healthy,
    by_time,
    concat,
    encoded,
    gate_key,
    healthy,
    make_engine,
    plan_dict,
    rich_run,
    run,
    summary,
    take,
    tier_of,
    traffic,
)


def test_gate_keys() -> None:
    """The base plan gates (us-east, canary) and (eu-west, canary), keyed 0 and 1 in EventBatch.key."""
    engine = make_engine()
    assert [("us-east", "canary"), ("eu-west", "canary")] == engine.keys
    assert (EAST, WEST) == (gate_key(engine, "us-east"), gate_key(engine, "eu-west"))


# -- verdicts --------------------------------------------------------------------------------------------


def test_healthy_traffic_passes_once_after_the_soak() -> None:
    """Three hours of healthy traffic give exactly one pass per region, at the end of the 1 h soak, and no
    other decision."""
    engine = make_engine()
    decisions = run(engine, by_time(concat(healthy(EAST, seed=1), healthy(WEST, seed=2))))
    assert [("us-east", "pass", "go", at(60)), ("eu-west", "pass", "go", at(60))] == summary(decisions)
    assert {"pass": 2} == engine.stats.by_kind
    assert (7200, 0, 2) == (engine.stats.events, engine.stats.late, engine.stats.decisions)


def test_no_pass_before_the_soak_ends() -> None:
    """With traffic covering only 59 minutes of the soak nothing passes, even after a flush."""
    engine = make_engine()
    decisions = run(engine, healthy(EAST, end_min=59), flush=True)
    assert [] == decisions


def test_pass_decision_describes_the_soak() -> None:
    """The pass covers the soak [T0, T0 + 1h]: its metrics count the soak's requests and every criterion
    reports a pass."""
    (decision,) = run(make_engine(), healthy(EAST))
    assert (at(0), at(60), at(60), 1200, 6) == (
        decision.window_start,
        decision.window_end,
        decision.at,
        decision.metrics.requests,
        decision.look,
    )
    assert [
        ("error_rate", "pass"),
        ("p99_latency_ms", "pass"),
        ("uptime", "pass"),
    ] == [(c.name, c.verdict) for c in decision.criteria]


def test_breach_fails_holds_releases_and_passes_later() -> None:
    """A clear error breach in the first window: the anytime-valid test, read after every pane, fails and holds
    at 00:03 with hold_until = the window's end (00:10) + 30m, nothing during the hold, release at 00:40, then a
    fresh 1 h soak that passes at 01:40."""
    decisions = run(make_engine(), by_time(breach_then_healthy(EAST)))
    assert [
        ("us-east", "fail", "breach", at(3)),
        ("us-east", "hold", "hold", at(3)),
        ("us-east", "release", "release", at(40)),
        ("us-east", "pass", "go", at(100)),
    ] == summary(decisions)
    fail, hold, release, _ = decisions
    assert (at(40), None) == (hold.hold_until, fail.hold_until)
    assert (at(0), at(3)) == (fail.window_start, fail.window_end)
    assert (at(10), at(40)) == (release.window_start, release.window_end)
    assert "error_rate" == fail.criteria[0].name
    assert ("soak", "fail") == (fail.criteria[0].scope, fail.criteria[0].verdict)


def test_regions_are_decided_on_their_own() -> None:
    """A breach in us-east fails and holds us-east only: eu-west, healthy, passes on time."""
    decisions = run(make_engine(), by_time(concat(breach_then_healthy(EAST), healthy(WEST))))
    assert [("eu-west", "pass", "go", at(60))] == summary(d for d in decisions if d.region == "eu-west")
    assert ["fail", "hold", "release", "pass"] == [d.decision for d in decisions if d.region == "us-east"]


def test_thin_traffic_never_passes() -> None:
    """One request a minute (60 per soak, 200 needed) never passes: one pending at the soak-end checkpoint,
    naming the missing requests, and nothing else over three hours."""
    engine = make_engine()
    decisions = run(engine, by_time(concat(healthy(EAST, per_minute=1), healthy(WEST))), flush=True)
    east = [d for d in decisions if d.region == "us-east"]
    assert [("us-east", "pending", "checkpoint:soak end", at(60))] == summary(east)
    assert "soak end: not enough evidence to pass" == east[0].reasons[0]
    assert any("60 requests in the soak; 200 needed to pass" in r for r in east[0].reasons)


def test_checkpoint_before_the_soak_end() -> None:
    """A checkpoint 30 minutes into the soak reports pending 'soak not complete' even for healthy traffic."""
    raw = plan_dict()
    tier_of(raw)["checkpoints"] = [{"name": "half-time", "after": "30m"}]
    decisions = run(make_engine(raw), healthy(EAST))
    assert [
        ("us-east", "pending", "checkpoint:half-time", at(30)),
        ("us-east", "pass", "go", at(60)),
    ] == summary(decisions)
    assert "half-time: soak not complete" == decisions[0].reasons[0]


def test_latency_breach_fails() -> None:
    """A window with a quarter of the requests at 3 s breaks the 800 ms P99 ceiling: fail on latency."""
    slow = traffic(EAST, T0, T0 + 10 * MINUTE, 20, seed=3)
    slow.latency_ms[::4] = 3000.0
    decisions = run(make_engine(), by_time(concat(slow, healthy(EAST, start_min=10, end_min=30))))
    assert [("fail", at(10)), ("hold", at(10))] == [(d.decision, d.at) for d in decisions]
    failed = [c for c in decisions[0].criteria if c.verdict == "fail"]
    assert {"p99_latency_ms"} == {c.name for c in failed}


# -- uptime ----------------------------------------------------------------------------------------------


def uptime_only(at_least: str = "90%") -> dict[str, Any]:
    raw = plan_dict()
    tier_of(raw)["criteria"] = [{"kind": "uptime", "at_least": at_least}]
    return raw


def with_down_minutes(minutes: list[int], end_min: int = 80) -> EventBatch:
    """10 requests a minute; every request of the listed minutes fails."""
    events = traffic(EAST, T0, T0 + end_min * MINUTE, 10)
    events.error[:] = np.isin((events.ts_ms - T0) // MINUTE, minutes)
    return events


def test_down_minutes_fail_the_uptime_criterion() -> None:
    """90 % uptime over a 1 h soak allows 6 down minutes: a 7th (at minute 44) fails at the next window close,
    with the down time in the metrics."""
    decisions = run(make_engine(uptime_only()), with_down_minutes([3, 13, 14, 23, 33, 43, 44]))
    assert [("fail", at(50)), ("hold", at(50))] == [(d.decision, d.at) for d in decisions]
    assert 7.0 == decisions[0].metrics.down_minutes
    assert ("uptime", "fail") == (decisions[0].criteria[0].name, decisions[0].criteria[0].verdict)


def test_few_down_minutes_still_pass() -> None:
    """5 down minutes in the 1 h soak leave uptime at 91.7 %: pass at the soak end."""
    decisions = run(make_engine(uptime_only()), with_down_minutes([3, 13, 23, 33, 43]))
    assert [("pass", at(60))] == [(d.decision, d.at) for d in decisions]
    assert decisions[0].metrics.uptime == pytest.approx(1 - 5 / 60)


def test_half_failing_minutes_are_not_down() -> None:
    """A minute is down only when more than half its requests fail: exactly half is up."""
    events = traffic(EAST, T0, T0 + 80 * MINUTE, 10)
    events.error[::2] = True  # 5 of 10 every minute
    decisions = run(make_engine(uptime_only()), events)
    assert [("pass", 0.0)] == [(d.decision, d.metrics.down_minutes) for d in decisions]


# -- lateness --------------------------------------------------------------------------------------------


def without_late_count(decision: Decision) -> Decision:
    return msgspec.structs.replace(decision, metrics=msgspec.structs.replace(decision.metrics, late_events=0))


def test_late_events_are_counted_and_ignored() -> None:
    """Events for a pane the watermark already closed are late: counted in stats.late (and in the gate's
    metrics) and otherwise ignored, even 50 failing 5 s requests."""
    stream = by_time(concat(healthy(EAST, end_min=90), healthy(WEST, end_min=90)))
    reference = run(make_engine(), stream)
    cut = int(np.searchsorted(stream.ts_ms, T0 + 30 * MINUTE))
    late = batch(np.full(50, T0 + 5 * MINUTE), EAST, 5000.0, True)
    engine = make_engine()
    decisions = run(engine, concat(take(stream, slice(0, cut)), late, take(stream, slice(cut, None))))
    assert (50, 50) == (engine.stats.late, engine.gates[EAST].state.late_events)
    assert encoded(reference) == encoded(map(without_late_count, decisions))
    assert [("us-east", 50), ("eu-west", 0)] == [(d.region, d.metrics.late_events) for d in decisions]


def test_lateness_boundary() -> None:
    """After an event at 00:10 the watermark is 00:08: panes before 00:08 are closed (late), 00:08 is open."""
    engine = make_engine()
    for minutes, ms in ((10, 0), (8, 0), (8, -1), (7, 0)):
        engine.ingest(batch([T0 + minutes * MINUTE + ms], EAST))
    assert 2 == engine.stats.late


# -- stalls, flush and the stream clock -------------------------------------------------------------------


def silent_gap() -> EventBatch:
    """us-east sends for 30 minutes, goes silent for 30, sends 20 more; eu-west sends throughout."""
    return by_time(
        concat(
            healthy(EAST, 0, 30, seed=1),
            healthy(EAST, 60, 80, seed=5),
            healthy(WEST, 0, 180, seed=2),
        )
    )


@pytest.mark.parametrize("size", [1, 7, 1000, None])
def test_stall_is_reported_once_per_silence(size: int | None) -> None:
    """A gate silent for longer than stall_after while another gate advances the stream gets exactly one
    pending 'stalled' per silence (at silence start + 6m), whatever the batch size: the 30-minute gap, and the
    end of its telemetry at 80 min (its soak is not complete then: the silent windows did not count)."""
    decisions = run(make_engine(), silent_gap(), size, flush=True)
    stalls = [(d.region, d.at, d.window_start) for d in decisions if d.reason_code == "stalled"]
    assert [("us-east", at(36), at(30)), ("us-east", at(86), at(80))] == stalls


def test_stream_clock_without_events() -> None:
    """observe_stream_time moves the stream clock (e.g. from other partitions): a silent gate is reported
    stalled without any event of its own."""
    engine = make_engine()
    engine.ingest(healthy(EAST, 0, 10))
    assert [] == engine.observe_stream_time(T0 + 17 * MINUTE)
    decisions = engine.observe_stream_time(T0 + 18 * MINUTE)
    assert [("us-east", "pending", "stalled", at(16))] == summary(decisions)


def test_flush_closes_windows_only_when_called() -> None:
    """The windows within the lateness stay open until flush() is called; flush closes what the data covers,
    once."""
    engine = make_engine()
    assert [] == run(engine, healthy(EAST, end_min=61))
    assert [("us-east", "pass", "go", at(60))] == summary(engine.flush())
    assert [] == engine.flush()


def test_empty_batch() -> None:
    """An empty batch changes nothing."""
    engine = make_engine()
    assert ([], 0, None) == (engine.ingest(EventBatch.empty()), engine.stats.events, engine.stream_max)


# -- determinism, order and batch-size independence ------------------------------------------------------


def test_rich_run_has_every_kind() -> None:
    """The reference run used below covers every decision kind."""
    assert {"fail", "hold", "release", "pass", "pending"} == {d.decision for d in rich_run()}


def test_same_input_same_decisions() -> None:
    """Running the same input twice gives identical decisions, ids included."""
    first, second = rich_run(), rich_run()
    assert [d.decision_id for d in first] == [d.decision_id for d in second]
    assert encoded(first) == encoded(second)


def test_decision_ids_are_unique() -> None:
    """No two decisions of a run share an id."""
    ids = [d.decision_id for d in rich_run()]
    assert len(ids) == len(set(ids))


@st.composite
def scenarios(draw: st.DrawFn) -> EventBatch:
    """Two gates of random steady traffic over 70-130 minutes, one of them maybe breaching for 10 minutes."""
    seed = draw(st.integers(0, 2**32 - 1))
    end = draw(st.integers(70, 130))
    parts = [
        traffic(
            key,
            T0 + draw(st.integers(0, 5)) * MINUTE,
            T0 + end * MINUTE,
            draw(st.integers(3, 12)),
            0.005,
            seed + key,
        )
        for key in (EAST, WEST)
    ]
    events = concat(*parts)
    if draw(st.booleans()):
        start = T0 + draw(st.integers(0, end - 10)) * MINUTE
        inside = (events.key == EAST) & (events.ts_ms >= start) & (events.ts_ms < start + 10 * MINUTE)
        events.error[inside] = np.random.default_rng(seed).random(int(inside.sum())) < 0.5
    return events


def arrival(events: EventBatch, jitter_ms: int, seed: int) -> EventBatch:
    """Arrival order = event time + uniform jitter below ``jitter_ms``: each event is displaced by less than
    the jitter relative to perfect order."""
    jitter = np.random.default_rng(seed).integers(0, max(1, jitter_ms), len(events))
    return take(events, np.argsort(events.ts_ms + jitter, kind="stable"))


LATENESS, PANE = 2 * MINUTE, MINUTE


@settings(max_examples=25, deadline=None)
@given(events=scenarios(), jitter_ms=st.integers(0, LATENESS - PANE), seed=st.integers(0, 2**32 - 1))
def test_order_within_lateness_does_not_matter(events: EventBatch, jitter_ms: int, seed: int) -> None:
    """Shuffling events by less than lateness minus one pane gives exactly the decisions of the perfectly
    ordered stream (compared as sorted encoded bytes), and no event is late."""
    reference = run(make_engine(), by_time(events), flush=True)
    engine = make_engine()
    shuffled = run(engine, arrival(events, jitter_ms, seed), flush=True)
    assert encoded(reference) == encoded(shuffled)
    assert 0 == engine.stats.late


@settings(max_examples=6, deadline=None)
@given(events=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_batch_size_does_not_matter(events: EventBatch, seed: int) -> None:
    """Splitting one arrival sequence into batches of 1, 7, 1000 events or one batch gives the same decisions
    (as sorted encoded bytes) and the same counts."""
    stream = arrival(events, LATENESS - PANE, seed)
    results = []
    for size in (1, 7, 1000, None):
        engine = make_engine()
        decisions = run(engine, stream, size, flush=True)
        results.append((encoded(decisions), engine.stats.late, engine.stats.events))
    assert [results[-1]] * 4 == results


def test_batch_size_does_not_matter_across_a_silence() -> None:
    """The batch-size independence holds when a gate goes silent and comes back, stall pendings included
    (regression: the stall carried the gate's look count, which depended on which clock reported it)."""
    results = [encoded(run(make_engine(), silent_gap(), size, flush=True)) for size in (1, 7, 1000, None)]
    assert [results[-1]] * 4 == results


def test_engine_is_reusable_per_plan() -> None:
    """Two engines of the same plan share nothing: feeding one leaves the other untouched."""
    plan_engine = make_engine()
    other = Engine(plan_engine.plan)
    run(plan_engine, healthy(EAST))
    assert (None, 0) == (other.stream_max, other.stats.events)
    assert HOUR == other.gates[EAST].spec.tier.soak
