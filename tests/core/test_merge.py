"""Stage 2 (core/merge.py): partials of many sources merged per gate, commutatively and idempotently; panes
closed when every source's watermark (or its idleness) allows; and both stages over one source (replay's
pipeline) deciding like both stages over the same events spread across sources."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from gatekeeper.core.aggregate import Aggregator
from gatekeeper.core.decision import Decision
from gatekeeper.core.merge import GateInbox, Merger, SourceMark, _GateRows, merge_watermark
from gatekeeper.core.partials import Message, Partial, Watermark
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.telemetry import EventBatch

from .helpers import (
    EAST,
    MINUTE,
    T0,
    WEST,
    at,
    batch,
    chunks,
    encoded,
    healthy,
    make_plan,
    rich_events,
    rich_plan,
    take,
)

KEYS = ["us-east/canary", "eu-west/canary"]


def split(events: EventBatch, sources: int) -> list[EventBatch]:
    """The events spread over ``sources`` sources round-robin (as an unkeyed producer does), each keeping
    their order."""
    index = np.arange(len(events))
    return [take(events, index[index % sources == s]) for s in range(sources)]


def stage1(events: EventBatch, source: str, size: int = 500) -> list[Message]:
    """One source's stage-1 output: per batch its partials, then its watermark; then ``finish``."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    state, out = agg.start(source), list[Message]()
    for part in chunks(events, size):
        state, partials, mark = agg.fold(state, part)
        out += [*partials, mark]
    state, partials, mark = agg.finish(state)
    return [*out, *partials, mark]


def interleave(streams: list[list[Message]], seed: int) -> list[Message]:
    """The streams merged in a random interleaving that keeps each stream's own order."""
    rng = np.random.default_rng(seed)
    owners = np.concatenate([np.full(len(s), i) for i, s in enumerate(streams)])
    rng.shuffle(owners)
    cursors = [iter(s) for s in streams]
    return [next(cursors[i]) for i in owners.tolist()]


def stage2(messages: list[Message], sources: list[str]) -> tuple[list[Decision], dict[str, GateInbox]]:
    merger = Merger(make_plan(rich_plan()), sources)
    inboxes = merger.start_all()
    return merger.apply(inboxes, messages), inboxes


def one_source() -> list[Decision]:
    """Replay's pipeline over the events in their order, flushed."""
    pipeline = Pipeline(make_plan(rich_plan()))
    return [*pipeline.ingest(rich_events()), *pipeline.flush()]


def test_spread_over_sources_decides_like_one_source_in_any_arrival_order() -> None:
    """The rich run (fail, hold, release, pass, checkpoint, stall) spread over 3 sources, their stage-1
    outputs interleaved in 3 random orders, gives exactly the decisions of one source holding all events."""
    names = ["t:0", "t:1", "t:2"]
    streams = [stage1(part, name) for part, name in zip(split(rich_events(), 3), names, strict=True)]
    expected = one_source()
    assert {"fail", "hold", "release", "pass", "pending"} == {d.decision for d in expected}
    for seed in range(3):
        decisions, _ = stage2(interleave(streams, seed), names)
        assert encoded(expected) == encoded(decisions)


def test_redelivered_partials_are_ignored() -> None:
    """Each source re-delivers the middle third of its messages after the first two thirds (as after a
    restart from an older committed offset): the same decisions; each re-delivered partial is counted as a
    duplicate, none as a conflict."""
    names = ["t:0", "t:1"]
    streams = [stage1(part, name) for part, name in zip(split(rich_events(), 2), names, strict=True)]
    again = [s[: 2 * len(s) // 3] + s[len(s) // 3 :] for s in streams]
    redelivered = sum(isinstance(m, Partial) for s in streams for m in s[len(s) // 3 : 2 * len(s) // 3])
    decisions, inboxes = stage2(interleave(again, 0), names)
    assert encoded(one_source()) == encoded(decisions)
    assert (redelivered, 0) == (
        sum(i.counts.duplicates for i in inboxes.values()),
        sum(i.counts.conflicts for i in inboxes.values()),
    )


def test_a_conflicting_partial_is_counted_never_merged() -> None:
    """A partial re-emitted with other content under the same (gate, pane, source) is a conflict: counted,
    and the decisions are those of the first one."""
    names = ["t:0"]
    messages = stage1(rich_events(), "t:0")
    first = next(i for i, m in enumerate(messages) if isinstance(m, Partial))
    original = messages[first]
    assert isinstance(original, Partial)
    forged = msgspec.structs.replace(original, errors=original.errors + 1, requests=original.requests + 1)
    decisions, inboxes = stage2([*messages[: first + 1], forged, *messages[first + 1 :]], names)
    assert encoded(one_source()) == encoded(decisions)
    assert 1 == inboxes[original.gate].counts.conflicts


def partial(gate: str, minute: int, source: str, requests: int = 10) -> Partial:
    return Partial(gate=gate, pane=T0 + minute * MINUTE, source=source, requests=requests, errors=0,
                   bins=(100,), counts=(requests,))  # fmt: skip


def mark(source: str, minute: int | None, idle: bool = False) -> Watermark:
    return Watermark(source=source, watermark=None if minute is None else T0 + minute * MINUTE, idle=idle)


def test_a_pane_closes_only_when_every_source_passed_it() -> None:
    """Source a at 00:30 and b at 00:05: panes close up to 00:05 only; once b reaches 00:20, up to 00:20."""
    merger = Merger(make_plan(), ["a", "b"])
    inbox, out = merger.start(), list[Decision]()
    merger.on_partial(inbox, partial("us-east/canary", 3, "a"))
    merger.on_partial(inbox, partial("us-east/canary", 10, "b"))
    for m in (mark("a", 30), mark("b", 5)):
        merger.on_watermark("us-east/canary", inbox, m, out)
    assert (T0 + 5 * MINUTE, [T0 + 10 * MINUTE]) == (inbox.closed_until, list(inbox.buffered))
    merger.on_watermark("us-east/canary", inbox, mark("b", 20), out)
    assert (T0 + 20 * MINUTE, [], T0 + 11 * MINUTE) == (inbox.closed_until, list(inbox.buffered),
                                                        inbox.gate.silent_from)  # fmt: skip


def test_a_source_without_records_of_a_gate_still_advances_it() -> None:
    """All of us-east's records come from source a; source b only reports its watermark (its records are
    eu-west's): us-east passes at the end of its soak, as with one source."""
    events = healthy(EAST, 0, 90, seed=1)
    west = healthy(WEST, 0, 90, seed=2)
    names = ["a", "b"]
    decisions, _ = stage2(interleave([stage1(events, "a"), stage1(west, "b")], 1), names)
    assert [("us-east", at(60)), ("eu-west", at(60))] == [(d.region, d.at) for d in decisions if d.decision == "pass"]
    assert [] == [d for d in decisions if d.decision == "fail"]


def test_a_silent_source_holds_panes_until_it_is_idle() -> None:
    """A known source that never reported holds every pane; marked idle it no longer does; when every source
    is idle the merge watermark is the newest of theirs."""
    merger = Merger(make_plan(), ["a", "b", "c"])
    inbox, out = merger.start(), list[Decision]()
    merger.on_partial(inbox, partial("us-east/canary", 1, "a"))
    merger.on_watermark("us-east/canary", inbox, mark("a", 10), out)
    merger.on_watermark("us-east/canary", inbox, mark("b", 12), out)
    assert (None, [T0 + MINUTE]) == (inbox.closed_until, list(inbox.buffered))
    merger.on_watermark("us-east/canary", inbox, mark("c", None, idle=True), out)
    assert (T0 + 10 * MINUTE, []) == (inbox.closed_until, list(inbox.buffered))
    assert T0 + 12 * MINUTE == merge_watermark([SourceMark(T0 + 10 * MINUTE, True), SourceMark(T0 + 12 * MINUTE, True)])


def test_a_partial_for_a_closed_pane_is_late() -> None:
    """A partial arriving after its pane closed (its source was idle) adds its requests to the gate's late
    count and nothing else; an older watermark report changes nothing."""
    merger = Merger(make_plan(), ["a", "b"])
    inbox, out = merger.start(), list[Decision]()
    merger.on_watermark("us-east/canary", inbox, mark("a", 10), out)
    merger.on_watermark("us-east/canary", inbox, mark("b", None, idle=True), out)
    merger.on_partial(inbox, partial("us-east/canary", 2, "b", requests=7))
    merger.on_watermark("us-east/canary", inbox, mark("a", 9), out)
    assert (1, 7, 7, {}, T0 + 10 * MINUTE) == (
        inbox.counts.late_partials,
        inbox.counts.late,
        inbox.gate.late_events,
        inbox.buffered,
        inbox.closed_until,
    )


def test_late_records_reach_the_gate_metrics() -> None:
    """Late records counted by stage 1 reach the gate's metrics through the partials: 50 failing requests
    for 00:05 after the stream reached 00:30 are counted late in us-east's decisions and change nothing
    else."""
    stream = healthy(EAST, end_min=90)
    cut = int(np.searchsorted(stream.ts_ms, T0 + 30 * MINUTE))
    late = batch(np.full(50, T0 + 5 * MINUTE), EAST, 5000.0, True)
    pipeline = Pipeline(make_plan())
    decisions = pipeline.ingest(EventBatch.concat([take(stream, slice(0, cut)), late, take(stream, slice(cut, None))]))
    reference = Pipeline(make_plan()).ingest(stream)
    assert (50, [50]) == (pipeline.stats.late, [d.metrics.late_events for d in decisions])
    assert [d.decision_id for d in reference] == [d.decision_id for d in decisions]


def test_a_source_waking_up_makes_the_idle_ones_wait_again() -> None:
    """All sources idle (a pause of the traffic); a wakes up far ahead: panes do not close on a's watermark
    alone, since b may be waking up too; once b is reported idle again (or reports), they close."""
    merger = Merger(make_plan(), ["a", "b"])
    inbox, out = merger.start(), list[Decision]()
    for m in (mark("a", 10, idle=True), mark("b", 10, idle=True)):
        merger.on_watermark("us-east/canary", inbox, m, out)
    merger.on_partial(inbox, partial("us-east/canary", 20, "b"))
    merger.on_watermark("us-east/canary", inbox, mark("a", 60), out)
    assert (T0 + 10 * MINUTE, [T0 + 20 * MINUTE]) == (inbox.closed_until, list(inbox.buffered))
    merger.on_watermark("us-east/canary", inbox, mark("b", 30), out)
    assert (T0 + 30 * MINUTE, [], 0) == (inbox.closed_until, list(inbox.buffered), inbox.counts.late_partials)
    merger.on_watermark("us-east/canary", inbox, mark("b", 30, idle=True), out)
    assert T0 + 60 * MINUTE == inbox.closed_until


def test_a_newer_version_of_a_partial_replaces_the_older_or_is_late() -> None:
    """A source's pane emitted again with a higher seq (whole) replaces the buffered one, in whichever order the
    two arrive; once the pane closed, what a newer version adds is counted late."""
    merger = Merger(make_plan(), ["a"])
    first = partial("us-east/canary", 1, "a", requests=10)
    second = msgspec.structs.replace(partial("us-east/canary", 1, "a", requests=15), seq=1)
    for order in ([first, second], [second, first]):
        inbox, out = merger.start(), list[Decision]()
        for p in order:
            merger.on_partial(inbox, p)
        assert second == inbox.buffered[T0 + MINUTE]["a"]
    merger.on_watermark("us-east/canary", inbox, mark("a", 3), out)
    third = msgspec.structs.replace(partial("us-east/canary", 1, "a", requests=18), seq=2)
    merger.on_partial(inbox, third)
    assert (15, 3, 1) == (inbox.gate.window_requests, inbox.gate.late_events, inbox.counts.late_partials)


def columnar_and_rows(sources: list[str], size: int) -> tuple[list[bytes], list[bytes], tuple[int, ...]]:
    """The rich run folded by source "t:0" in batches of ``size`` and merged into gates waiting for ``sources``
    (any other one reported idle first), once as columns (``apply_columns``) and once one ``Partial`` per row
    (``apply``): both decisions, and per way the first gate's closed_until, late and soak counts."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    merger = Merger(plan, sources)
    idle = [Watermark(source=s, watermark=None, idle=True) for s in sources if s != "t:0"]
    decided: list[list[bytes]] = []
    gates: list[tuple[int, ...]] = []
    for columnar in (True, False):
        inboxes, state = merger.start_all(), agg.start("t:0")
        out = merger.apply(inboxes, idle)
        for part in chunks(rich_events(), size):
            if columnar:
                state, closed, mark_ = agg.fold_columns(state, part)
                out += merger.apply_columns(inboxes, closed, mark_)
            else:
                state, partials, mark_ = agg.fold(state, part)
                out += merger.apply(inboxes, [*partials, mark_])
        decided.append(encoded(out))
        st = inboxes[KEYS[0]].gate
        gates.append((inboxes[KEYS[0]].closed_until or 0, st.late_events, st.soak_requests, st.soak_errors,
                      *st.soak_bins.tolist()))  # fmt: skip
    assert gates[0] == gates[1]
    return decided[0], decided[1], gates[0]


def test_columnar_partials_decide_like_one_partial_per_row() -> None:
    """Stage 1's partials handed over as columns decide exactly like the same partials one by one (same
    decisions, same gate state), whether the gates wait only for this source (closed straight from the
    columns) or also for an idle second one (the columns fall back to one partial per row); with 1,000-event
    and 37-event batches."""
    for size in (1000, 37):
        single_columns, single_rows, single_gate = columnar_and_rows(["t:0"], size)
        assert {"fail", "hold", "release", "pass"} <= {msgspec.json.decode(d)["decision"] for d in single_rows}
        assert single_rows == single_columns
        two_columns, two_rows, two_gate = columnar_and_rows(["t:0", "t:1"], size)
        assert single_rows == two_rows == two_columns
        assert single_gate == two_gate


def test_columnar_partials_of_a_gate_not_in_the_plan_are_refused() -> None:
    """A columnar batch holding rows of a gate the plan does not have is refused with the gate named, as a
    single partial of it is."""
    plan = make_plan(rich_plan())
    agg = Aggregator(["us-east/canary", "ap-south/canary"], plan.evaluation.pane, plan.evaluation.lateness)
    merger = Merger(plan, ["t:0"])
    _state, closed, mark_ = agg.fold_columns(agg.start("t:0"), batch([T0, T0 + 10 * MINUTE], 1))
    with pytest.raises(ValueError, match="not in the plan") as refused:
        merger.apply_columns(merger.start_all(), closed, mark_)
    assert "partial for gate 'ap-south/canary', which is not in the plan" == str(refused.value)


def test_a_batch_grouped_by_gate_gives_each_gate_its_rows_and_bins_in_emission_order() -> None:
    """Stage 2 gathers a columnar batch's rows by gate once (``_GateRows``): each gate's panes, sums and latency
    bins are those of its own ``Partial``s in the order stage 1 emitted them, with the gates' rows interleaved in
    the batch (two gates over 150 minutes, folded in one batch)."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    _state, closed, _mark = agg.fold_columns(agg.start("t:0"), rich_events())
    assert len(set(closed.gate[:4].tolist())) == 2  # the gates' rows interleave
    grouped = _GateRows(closed)
    for key in KEYS:
        mine = [p for p in closed.rows() if p.gate == key]
        expected = ([p.pane for p in mine], [p.requests for p in mine], [p.errors for p in mine],
                    [p.late for p in mine], [p.pane for p in mine for _ in p.bins],
                    [b for p in mine for b in p.bins], [c for p in mine for c in p.counts])  # fmt: skip
        i = KEYS.index(key)
        got = grouped.closing(grouped.bounds[i], grouped.bounds[i + 1])
        actual = tuple(column.tolist() for column in (got.panes, got.requests, got.errors, got.late, got.bin_pane,
                                                      got.buckets, got.counts))  # fmt: skip
        assert expected == actual
