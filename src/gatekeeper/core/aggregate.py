"""Stage 1: aggregate one source's events where they are, in the order the source holds them.

A source is one ordered input: a Kafka partition, or replay's file. Its watermark is its newest event time
minus the plan's lateness. An event whose pane ends at or before the watermark it arrives under (the
watermark of the events before it) is *late*: counted, never used; the count goes into the partial of that
gate's first open pane (the pane starting at the watermark, rounded down), which is still to be emitted.
The others are summed per (gate, pane): requests, errors, latency sketch bins. When the watermark passes a
pane's end, the pane is emitted as a ``Partial``; with it comes the source's ``Watermark``. A source found idle
is *sealed*: its open panes are emitted at once (stage 2 closes them on the other sources' watermarks, as one
source holding all records would); a pane that gets more records afterwards is emitted again, whole, with the
next ``seq`` (stage 2 keeps the highest, or counts the difference late if it closed the pane meanwhile).

Whole batches at a time, vectorised; the result does not depend on where the batches are cut, so a partial
re-emitted after a re-read from the same starting state is identical. ``version``: what the caller numbers
the emitted partials with (their ``seq``; the worker gives the source offset reached, so a pane emitted early
by ``seal`` and lost with a crash is never emitted again under the same number with other content); default:
one more than the pane's last. Pure: state in, state out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch
from gatekeeper.core.cross_region import copy_mask
from gatekeeper.core.partials import Partial, PartialBatch, Watermark, ragged, slice_of
from gatekeeper.core.slot_routing import CROSS_REGION, Fan
from gatekeeper.core.telemetry import EventBatch

_NEVER = -(1 << 62)  # a watermark below every event time


@dataclass(slots=True)
class OpenPane:
    """A pane not emitted yet: sums so far; bins sparse (ascending buckets, counts)."""

    requests: int = 0
    errors: int = 0
    late: int = 0
    buckets: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    seq: int = -1  # the last version emitted (by ``seal``), -1: none
    dirty: bool = True  # changed since that version


@dataclass(slots=True)
class SourceState:
    """One source's stage-1 state: its newest event time and its open panes by (gate index, pane start)."""

    source: str
    newest: int | None = None
    panes: dict[tuple[int, int], OpenPane] = field(default_factory=dict)
    events: int = 0  # not late
    late: int = 0


class Aggregator:
    """Stage 1 for a plan: ``keys`` are the decoder's gate keys ("region/tier", by gate index); ``fan``: how
    baseline slots (keys after the gates') are emitted, once per gate comparing with them (core/slot_routing.py)."""

    def __init__(self, keys: list[str], pane: int, lateness: int, fan: Fan | None = None) -> None:
        self.keys, self.pane, self.lateness, self.fan = keys, pane, lateness, fan
        # cross-region slots: their rows copy the record before them (core/cross_region.py), so are no new events
        self.copies = frozenset(s for s, part in (fan.slot_slices.items() if fan else ()) if part == CROSS_REGION)

    def start(self, source: str) -> SourceState:
        return SourceState(source)

    def fold(
        self, state: SourceState, batch: EventBatch, version: int | None = None
    ) -> tuple[SourceState, list[Partial], Watermark]:
        """Apply ``batch`` (the source's next events, in its order); return the panes it closes and the
        source's watermark after it."""
        state, closed, watermark = self.fold_columns(state, batch, version)
        return state, closed.rows(), watermark

    def fold_columns(
        self, state: SourceState, batch: EventBatch, version: int | None = None
    ) -> tuple[SourceState, PartialBatch, Watermark]:
        """``fold`` with the closed panes as one columnar batch (for a stage 2 in the same process)."""
        through = self._fold(state, batch) if len(batch) else None
        watermark = None if state.newest is None else state.newest - self.lateness
        closed = self._emit(state, watermark, version, through)
        if self.fan is not None:
            closed = self.fan.batch(closed)
        return state, closed, Watermark(source=state.source, watermark=watermark)

    def seal(self, state: SourceState, version: int | None = None) -> tuple[SourceState, list[Partial]]:
        """The source is idle: emit every open pane as it is now, so the gates need not wait for this
        source's own watermark to pass them (they close on the other sources'). The panes stay open; one that
        gets more records is emitted again, whole, with the next ``seq``. The watermark does not move."""
        out = []
        for (gate, start), p in sorted(state.panes.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if p.dirty:
                p.seq = p.seq + 1 if version is None else max(version, p.seq + 1)
                p.dirty = False
                out.extend(self._partials(state, gate, start, p))
        return state, out

    def finish(self, state: SourceState) -> tuple[SourceState, list[Partial], Watermark]:
        """End of input, on request only: treat the lateness as elapsed and emit every open pane the data
        covers (the watermark becomes the newest event time)."""
        state, closed, watermark = self.finish_columns(state)
        return state, closed.rows(), watermark

    def finish_columns(self, state: SourceState) -> tuple[SourceState, PartialBatch, Watermark]:
        """``finish`` with the emitted panes as one columnar batch."""
        watermark = state.newest
        closed = self._emit(state, watermark)
        if self.fan is not None:
            closed = self.fan.batch(closed)
        return state, closed, Watermark(source=state.source, watermark=watermark)

    # -- internals ---------------------------------------------------------------------------------------
    def _fold(self, state: SourceState, batch: EventBatch) -> _Rows:
        """Fold ``batch`` into the open panes; return, as rows, the panes it opens and its own watermark closes
        at once (most, on sparse input): they never become an ``OpenPane``."""
        ts, pane = batch.ts_ms, self.pane
        running = np.maximum.accumulate(ts)
        if state.newest is not None:
            running = np.maximum(running, state.newest)
        before = np.empty_like(running)  # newest event time before each event
        before[0] = _NEVER if state.newest is None else state.newest
        before[1:] = running[:-1]
        watermark = before - self.lateness
        first_open = watermark - watermark % pane
        late = ts < first_open
        pane_of = np.where(late, first_open, ts - ts % pane)
        gates = len(self.keys)
        groups, inverse = group_values(pane_of // pane * gates + batch.key)
        on_time = ~late
        requests = np.bincount(inverse[on_time], minlength=groups.size)
        errors = np.bincount(inverse[on_time & batch.error], minlength=groups.size)
        lates = np.bincount(inverse[late], minlength=groups.size)
        codes, counts = np.unique(inverse[on_time] * sketch.NBINS + sketch.bucket_of(batch.latency_ms[on_time]),
                                  return_counts=True)  # fmt: skip
        cuts = np.searchsorted(codes, np.arange(groups.size + 1) * sketch.NBINS)
        buckets = codes % sketch.NBINS
        n_late = int(late.sum())
        copied = copy_mask(batch.key, self.copies) if batch.copies else None
        state.late += n_late if copied is None else int((late & ~copied).sum())
        state.events += int(ts.size) - n_late - (0 if copied is None else int((~late & copied).sum()))
        state.newest = int(running[-1])
        starts, gate_of = np.divmod(groups, gates)
        starts *= pane
        opened = np.fromiter((start // pane * gates + gate for gate, start in state.panes), np.int64, len(state.panes))
        through = (starts + pane <= state.newest - self.lateness) & ~np.isin(groups, opened)
        rows = np.flatnonzero(~through).tolist()
        updated: list[tuple[OpenPane, int, int]] = []  # open panes that get more bins: merged below in one step
        for group, n, errs, n_late_, lo, hi in zip(groups[rows].tolist(), requests[rows].tolist(),
                                                   errors[rows].tolist(), lates[rows].tolist(), cuts[rows].tolist(),
                                                   cuts[1:][rows].tolist(), strict=True):  # fmt: skip
            start, gate = divmod(group, gates)
            key = (gate, start * pane)
            slot = state.panes.get(key)
            if slot is None:
                state.panes[key] = OpenPane(n, errs, n_late_, buckets[lo:hi], counts[lo:hi].astype(np.int64))
                continue
            slot.requests += n
            slot.errors += errs
            slot.late += n_late_
            slot.dirty = True
            if hi > lo:
                updated.append((slot, lo, hi))
        if updated:
            _add_sparse_all(updated, buckets, counts)
        kept = np.flatnonzero(through)
        sizes = cuts[1:][kept] - cuts[:-1][kept]
        return _Rows(groups[kept], gate_of[kept], starts[kept], requests[kept], errors[kept], lates[kept], sizes,
                     buckets[ragged(cuts[:-1][kept], sizes)], counts[ragged(cuts[:-1][kept], sizes)])  # fmt: skip

    def _emit(
        self, state: SourceState, watermark: int | None, version: int | None = None, through: _Rows | None = None
    ) -> PartialBatch:
        """The open panes the watermark passed, with the rows that went ``through``, ordered by (pane, gate)."""
        closed = [] if watermark is None else sorted(
            (start, gate) for gate, start in state.panes if start + self.pane <= watermark
        )  # fmt: skip
        rows: list[tuple[int, int, int, int, int, int, int]] = []
        bins: list[npt.NDArray[np.int64]] = []
        counts: list[npt.NDArray[np.int64]] = []
        gates = len(self.keys)
        for start, gate in closed:
            p = state.panes.pop((gate, start))
            if p.dirty:  # else emitted as it is by ``seal`` already
                p.seq = p.seq + 1 if version is None else max(version, p.seq + 1)
                rows.append((start // self.pane * gates + gate, gate, start, p.seq, p.requests, p.errors, p.late))
                bins.append(p.buckets)
                counts.append(p.counts)
        table = np.asarray(rows, np.int64).reshape(-1, 7).T
        sizes = np.fromiter((b.size for b in bins), np.int64, len(bins))
        empty = np.empty(0, np.int64)
        pool_bins = np.concatenate(bins).astype(np.int64) if bins else empty
        pool_counts = np.concatenate(counts).astype(np.int64) if counts else empty
        if through is not None and through.group.size:
            # a pane that went through was never emitted: its first version
            first = np.full(through.group.size, 0 if version is None else max(version, 0), np.int64)
            fresh = (through.group, through.gate, through.start, first, through.requests, through.errors, through.late)
            table = np.concatenate((table, np.stack(fresh)), axis=1)
            sizes = np.concatenate((sizes, through.sizes))
            pool_bins = np.concatenate((pool_bins, through.buckets))
            pool_counts = np.concatenate((pool_counts, through.counts))
            order = np.argsort(table[0], kind="stable")
            table = table[:, order]
        else:
            order = np.arange(table.shape[1])
        starts = np.cumsum(sizes) - sizes
        at = ragged(starts[order], sizes[order])
        offsets = np.zeros(table.shape[1] + 1, np.int64)
        np.cumsum(sizes[order], out=offsets[1:])
        _codes, gate_col, pane_col, seq, requests, errors, lates = table
        return PartialBatch(state.source, self.keys, gate_col, pane_col, seq, requests, errors, lates, offsets,
                            pool_bins[at], pool_counts[at])  # fmt: skip

    def _partials(self, state: SourceState, gate: int, start: int, p: OpenPane) -> list[Partial]:
        """The partials of one pane: one, or one per gate comparing with a baseline slot."""
        emitted = [(self.keys[gate], "")] if self.fan is None else self.fan.emitted(gate)
        bins, counts = tuple(p.buckets.tolist()), tuple(p.counts.tolist())
        return [
            Partial(
                gate=key,
                pane=start,
                source=state.source,
                requests=p.requests,
                errors=p.errors,
                late=p.late,
                seq=p.seq,
                bins=bins,
                counts=counts,
                slice=slice_of(part),
            )
            for key, part in emitted
        ]


@dataclass(frozen=True, slots=True)
class _Rows:
    """Panes as columns (``group``: pane index * gates + gate, their order); bins of each in turn."""

    group: npt.NDArray[np.int64]
    gate: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]
    requests: npt.NDArray[np.int64]
    errors: npt.NDArray[np.int64]
    late: npt.NDArray[np.int64]
    sizes: npt.NDArray[np.int64]
    buckets: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]


def _add_sparse(
    a_idx: npt.NDArray[np.int64],
    a_cnt: npt.NDArray[np.int64],
    b_idx: npt.NDArray[np.int64],
    b_cnt: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if a_idx.size == 0:
        return b_idx, b_cnt.astype(np.int64)
    idx, inverse = np.unique(np.concatenate((a_idx, b_idx)), return_inverse=True)
    return idx.astype(np.int64), np.bincount(inverse, np.concatenate((a_cnt, b_cnt)), idx.size).astype(np.int64)


def _add_sparse_all(
    updated: list[tuple[OpenPane, int, int]], buckets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> None:
    """``_add_sparse`` of each open pane's bins with ``buckets[lo:hi]`` / ``counts[lo:hi]``, for all of them in one
    pass: every pane's (index, bucket) as one code, summed by ``np.unique``, split back per pane."""
    olds = [slot.buckets for slot, _lo, _hi in updated]
    news = [(lo, hi) for _slot, lo, hi in updated]
    sizes = np.fromiter((b.size + hi - lo for b, (lo, hi) in zip(olds, news, strict=True)), np.int64, len(updated))
    at = ragged(np.asarray([lo for lo, _hi in news], np.int64), np.asarray([hi - lo for lo, hi in news], np.int64))
    pool_buckets = np.concatenate([*olds, buckets[at]])
    pool_counts = np.concatenate([*(slot.counts for slot, _lo, _hi in updated), counts[at]]).astype(np.int64)
    old_sizes = np.fromiter((b.size for b in olds), np.int64, len(olds))
    owner = np.concatenate((np.repeat(np.arange(len(updated)), old_sizes),
                            np.repeat(np.arange(len(updated)), sizes - old_sizes)))  # fmt: skip
    codes, inverse = np.unique(owner * sketch.NBINS + pool_buckets, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), pool_counts, codes.size).astype(np.int64)
    cuts = np.searchsorted(codes, np.arange(len(updated) + 1) * sketch.NBINS).tolist()
    merged_buckets = (codes % sketch.NBINS).astype(np.int64)
    for (slot, _lo, _hi), lo, hi in zip(updated, cuts[:-1], cuts[1:], strict=True):
        slot.buckets, slot.counts = merged_buckets[lo:hi], summed[lo:hi]


def group_values(index: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(distinct values ascending, position of each element's value among them), like ``np.unique`` with
    ``return_inverse``, by counting when the values span a short range (the usual case: nearby times)."""
    low = int(index.min())
    span = int(index.max()) - low + 1
    if span > 4 * index.size + 64:
        values, inverse = np.unique(index, return_inverse=True)
        return values.astype(np.int64), inverse.astype(np.int64).reshape(-1)
    present = np.bincount(index - low, minlength=span) > 0
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present).astype(np.int64) + low, rank[index - low]
