"""Stage 1 (core/aggregate.py): one source's events folded into per-(gate, pane) partials, late records
counted against that source's watermark, panes emitted when the watermark passes their end."""

from __future__ import annotations

import numpy as np

from gatekeeper.core import sketch
from gatekeeper.core.aggregate import Aggregator
from gatekeeper.core.partials import Partial, Watermark, check

from .helpers import EAST, MINUTE, T0, WEST, batch, by_time, chunks, concat, healthy

KEYS = ["us-east/canary", "eu-west/canary"]
LATENESS = 2 * MINUTE


def aggregator() -> Aggregator:
    return Aggregator(KEYS, MINUTE, LATENESS)


def test_a_pane_is_emitted_once_the_watermark_passes_its_end() -> None:
    """Events at 00:00:30 and 00:02:59 leave the 00:00 pane open (watermark 00:00:59); one at 00:03:00 moves
    the watermark to 00:01:00 and emits it, with its watermark."""
    agg = aggregator()
    state = agg.start("p0")
    state, out, mark = agg.fold(state, batch([T0 + 30_000, T0 + 3 * MINUTE - 1], EAST, [10.0, 20.0]))
    assert ([], Watermark(source="p0", watermark=T0 + MINUTE - 1)) == (out, mark)
    state, out, mark = agg.fold(state, batch([T0 + 3 * MINUTE], EAST))
    expected = Partial(
        gate="us-east/canary",
        pane=T0,
        source="p0",
        requests=1,
        errors=0,
        bins=tuple(np.flatnonzero(sketch.bucket_of(np.asarray([10.0])) == np.arange(sketch.NBINS)).tolist()),
        counts=(1,),
    )
    assert ([expected], T0 + MINUTE) == (out, mark.watermark)


def test_late_is_per_source_whatever_the_gate() -> None:
    """The watermark is the source's: after an eu-west event at 00:10 (watermark 00:08), a us-east event at
    00:07 is late although us-east's own newest event is older; the late count goes into us-east's partial of
    the source's first open pane (00:08), with no request."""
    agg = aggregator()
    state = agg.start("p0")
    out: list[Partial] = []
    for events in ([T0 + 5 * MINUTE], EAST), ([T0 + 10 * MINUTE], WEST), ([T0 + 7 * MINUTE, T0 + 8 * MINUTE], EAST):
        state, emitted, _ = agg.fold(state, batch(*events))
        out += emitted
    assert (1, 3) == (state.late, state.events)
    state, emitted, _ = agg.finish(state)
    east = {p.pane: (p.requests, p.late) for p in out + emitted if p.gate == "us-east/canary"}
    assert {T0 + 5 * MINUTE: (1, 0), T0 + 8 * MINUTE: (1, 1)} == east


def test_partials_do_not_depend_on_batch_cuts() -> None:
    """The same events folded in one batch, in batches of 7 or of 1000 give the same partials and late
    count: a partial re-emitted after a re-read is identical."""
    events = by_time(concat(healthy(EAST, 0, 30, seed=1), healthy(WEST, 0, 30, seed=2)))
    order = np.argsort(events.ts_ms + np.random.default_rng(3).integers(0, 3 * MINUTE, len(events)), kind="stable")
    shuffled = type(events)(events.ts_ms[order], events.key[order], events.latency_ms[order], events.error[order])
    results = []
    for size in (len(shuffled), 7, 1000):
        agg = aggregator()
        state, emitted = agg.start("p0"), []
        for part in chunks(shuffled, size):
            state, out, _ = agg.fold(state, part)
            emitted += out
        state, out, _ = agg.finish(state)
        results.append((emitted + out, state.late))
    assert results[0] == results[1] == results[2]
    assert 0 < results[0][1]


def test_partials_sum_to_the_events() -> None:
    """Over the emitted partials and the panes still open after ``finish`` (the one holding the newest event):
    requests plus late equal the events, errors the on-time failed events (a late failure at 00:00 is only
    counted late), and every partial passes the contract's own checks."""
    events = concat(
        healthy(EAST, 0, 20, seed=4), batch([T0 + 19 * MINUTE], WEST, 5.0, True), batch([T0], EAST, 9.0, True)
    )
    agg = aggregator()
    state, out, _ = agg.fold(agg.start("p0"), events)
    state, rest, _ = agg.finish(state)
    partials = out + rest
    for p in partials:
        check(p)
    still_open = list(state.panes.values())
    totals = (
        sum(p.requests + p.late for p in partials) + sum(p.requests + p.late for p in still_open),
        sum(p.errors for p in partials) + sum(p.errors for p in still_open),
        state.late,
    )
    assert (len(events), int(events.error[:-1].sum()), 1) == totals


def test_a_source_without_events_has_no_watermark() -> None:
    """Before its first event a source reports no watermark (None), which holds stage 2 until it is idle."""
    agg = aggregator()
    _state, out, mark = agg.fold(agg.start("p3"), batch([], EAST))
    assert ([], Watermark(source="p3", watermark=None)) == (out, mark)


def test_sealing_an_idle_source_emits_its_open_panes_and_a_pane_that_grows_again() -> None:
    """Events at 00:00:30 and 00:02:10 (watermark 00:00:10: both panes open); sealed, the source emits both
    panes at once (seq 0), its watermark unchanged; a later event for 00:02 (not late: the watermark did not
    move) makes the 00:02 pane emitted again, whole, as seq 1 once the watermark passes it; the 00:00 pane,
    unchanged since, is not emitted again."""
    agg = aggregator()
    state, out, mark = agg.fold(agg.start("p0"), batch([T0 + 30_000, T0 + 130_000], EAST))
    assert ([], T0 + 10_000) == (out, mark.watermark)
    state, sealed = agg.seal(state)
    assert [(T0, 1, 0), (T0 + 2 * MINUTE, 1, 0)] == [(p.pane, p.requests, p.seq) for p in sealed]
    state, again = agg.seal(state)
    assert [] == again
    state, out, _ = agg.fold(state, batch([T0 + 150_000, T0 + 6 * MINUTE], EAST))
    assert [(T0 + 2 * MINUTE, 2, 1)] == [(p.pane, p.requests, p.seq) for p in out]
    assert 0 == state.late


def test_open_panes_gain_bins_in_one_pass_as_one_at_a_time() -> None:
    """Merging new latency bins into many open panes at once (one ``np.unique`` over all of them) gives, per pane,
    the same ascending buckets and summed counts as merging each pane's bins on its own (``_add_sparse``)."""
    from gatekeeper.core.aggregate import OpenPane, _add_sparse, _add_sparse_all

    rng = np.random.default_rng(3)
    slots, expected, spans = [], [], []
    lo = 0
    new_buckets, new_counts = [], []
    for i in range(40):
        old = np.unique(rng.integers(0, sketch.NBINS, rng.integers(0, 12))).astype(np.int64)
        old_counts = rng.integers(1, 9, old.size).astype(np.int64)
        add = np.unique(rng.integers(0, sketch.NBINS, rng.integers(1, 12))).astype(np.int64)
        add_counts = rng.integers(1, 9, add.size).astype(np.int64)
        if i == 7:  # one pane gaining a bucket at the top of the range
            add = np.asarray([sketch.NBINS - 1], np.int64)
            add_counts = np.asarray([5], np.int64)
        slots.append(OpenPane(1, 0, 0, old, old_counts))
        expected.append(_add_sparse(old, old_counts, add, add_counts))
        spans.append((lo, lo + add.size))
        lo += add.size
        new_buckets.append(add)
        new_counts.append(add_counts)
    _add_sparse_all(
        [(slot, a, b) for slot, (a, b) in zip(slots, spans, strict=True)],
        np.concatenate(new_buckets),
        np.concatenate(new_counts),
    )
    actual = [(slot.buckets.tolist(), slot.counts.tolist()) for slot in slots]
    assert [(b.tolist(), c.tolist()) for b, c in expected] == actual
    assert all(slot.buckets.dtype == np.int64 and slot.counts.dtype == np.int64 for slot in slots)
