"""Stage 2: merge one gate's partials from all its sources and close panes on the slowest source.

Per gate, the state is a ``GateInbox``: the core gate's state, the partials buffered per open pane and
source, and every source's last watermark. A pane closes when the *merge watermark* passes its end: the
minimum over the sources that are not idle of their watermarks (a known source that has not reported yet
holds every pane); when every source is idle, the maximum of their watermarks (the input has ended).
The set of sources is explicit: those the inbox starts with (replay: its one input; the worker: every
partition of the telemetry topic) and any source that has sent a watermark since. A source marked ``holds``
(the worker's side-input partitions: incidents, approvals, business metrics) only holds the merge watermark
at or below its own while it is not idle; it never advances it (replay, reading its side files first, has no
such source) and its waking up does not wake the others.

Merging is commutative and idempotent: a partial re-delivered with the same content is ignored (counted as
a duplicate); a higher ``seq`` of the same (gate, pane, source) replaces a lower one (each is the whole pane);
one with the same (gate, pane, source, seq) and other content is counted as a conflict, never merged. One for
a pane already closed is a re-delivery when its source's own watermark had passed that pane (the source sent
it before; its content is compared, by digest, while the pane is within the lateness plus one pane of the
merge watermark), else late (a source that was idle woke up, or an edge publisher behind): its requests and
late records (for a newer ``seq``: what it adds) go to the gate's late count, nothing else.

On close, in time order, each pane's sums go to ``Gate.on_panes`` and its latency bins to ``Gate.add_bins``
(the window it falls in); the late records counted with a pane are added to the gate's late count after the
windows ending at or before that pane's start closed, as if counted when they arrived. Then the gate's
windows close up to the merge watermark, and the same watermark is its stream clock (stalls, releases). The
same closed panes feed the gate's burn-rate breach alerts (``core/breach_watch.py``), up to the same watermark.
Pure: state in, state out; no clock.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch, slice_ledger
from gatekeeper.core.breach import Breach
from gatekeeper.core.breach_watch import BreachWatch, GateAlerts
from gatekeeper.core.decision import Decision
from gatekeeper.core.gate import Gate, GateSpec, GateState
from gatekeeper.core.partials import Closing, Message, Partial, PartialBatch, Watermark, encode, ragged
from gatekeeper.core.plan import Plan
from gatekeeper.core.slot_routing import BASELINE

Seen = tuple[int, bytes, int, int]  # (seq, digest, requests, late) of a merged partial


@dataclass(slots=True)
class SourceMark:
    watermark: int | None = None
    idle: bool = False
    holds: bool = False  # a side input: caps the merge watermark while not idle, never advances it


@dataclass(slots=True)
class MergeCounts:
    duplicates: int = 0  # identical re-deliveries, ignored
    conflicts: int = 0  # same (gate, pane, source), other content: a bug upstream; never merged
    late_partials: int = 0  # partials for panes already closed
    late: int = 0  # their requests and late records: late at stage 2 (stage 1 counted the others)


@dataclass(slots=True)
class GateInbox:
    """One gate's stage-2 state."""

    gate: GateState = field(default_factory=GateState)
    sources: dict[str, SourceMark] = field(default_factory=dict)
    buffered: dict[int, dict[str, Partial]] = field(default_factory=dict)  # pane -> source -> partial
    # recently closed panes, per source: the version merged (or, restored from a snapshot, its
    # (seq, digest, requests, late)), to compare re-deliveries with
    merged: dict[int, dict[str, Partial | Seen]] = field(default_factory=dict)
    closed_until: int | None = None  # every pane ending at or before it is closed
    counts: MergeCounts = field(default_factory=MergeCounts)
    alerts: GateAlerts = field(default_factory=GateAlerts)  # burn-rate breach alerts (core/breach_watch.py)
    baseline: slice_ledger.BaselineInbox = field(default_factory=slice_ledger.BaselineInbox)  # no_regression's
    cross: slice_ledger.BaselineInbox = field(default_factory=slice_ledger.BaselineInbox)  # core/cross_region.py


class Merger:
    """Stage 2 for a plan's gates (keys "region/tier"); ``sources``: the sources every gate waits for."""

    def __init__(self, plan: Plan, sources: Sequence[str]) -> None:
        ev = plan.evaluation
        self.pane, self.window = ev.pane, ev.window
        self.horizon = ev.lateness + ev.pane  # closed panes whose partials' contents are kept (as digests)
        self.sources = tuple(sources)
        gates = plan.gates()
        self.specs = {
            f"{region}/{tier.name}": GateSpec.of(region, phase, tier, ev, plan.plan_version, len(gates))
            for region, phase, tier in gates
        }
        self._gates = {key: Gate(spec) for key, spec in self.specs.items()}
        self.watch = BreachWatch(plan)

    def start(self) -> GateInbox:
        return GateInbox(sources={s: SourceMark() for s in self.sources})

    def start_all(self) -> dict[str, GateInbox]:
        return {key: self.start() for key in self.specs}

    def apply(
        self, inboxes: dict[str, GateInbox], messages: Iterable[Message], breaches: list[Breach] | None = None
    ) -> list[Decision]:
        """Route ``messages`` in order: a partial to its gate's inbox, a watermark to every inbox; breach alert
        events go to ``breaches``."""
        out: list[Decision] = []
        for m in messages:
            if isinstance(m, Partial):
                inbox = inboxes.get(m.gate)
                if inbox is None:
                    raise ValueError(f"partial for gate {m.gate!r}, which is not in the plan")
                self.on_partial(inbox, m)
            else:
                for key, inbox in inboxes.items():
                    self.on_watermark(key, inbox, m, out, breaches)
        return out

    def on_partial(self, inbox: GateInbox, p: Partial) -> None:
        if p.pane % self.pane:
            raise ValueError(f"partial {p.ident}: pane start is not a multiple of the plan's pane ({self.pane} ms)")
        if p.part:  # the baseline's or the cross-region requests' evidence, kept apart from the gate's own
            mark = inbox.sources.get(p.source)
            box = inbox.baseline if p.part == BASELINE else inbox.cross
            slice_ledger.on_partial(box, p, inbox.closed_until, mark, self.pane, inbox.counts)
            return
        if inbox.closed_until is not None and p.pane + self.pane <= inbox.closed_until:
            seen = inbox.merged.get(p.pane, {}).get(p.source)
            if seen is not None:
                seq, digest, requests, late = seen_of(seen)
                same = p.seq == seq and digest == _digest(p)
                if p.seq < seq or same or (p.seq > seq and (p.requests, p.late) == (requests, late)):
                    inbox.counts.duplicates += 1  # an older version, the same, or a newer one adding nothing
                elif p.seq == seq or p.requests < requests or p.late < late:
                    inbox.counts.conflicts += 1
                else:  # a newer version of a pane closed meanwhile: what it adds is late
                    inbox.merged[p.pane][p.source] = p
                    inbox.counts.late_partials += 1
                    added = p.requests - requests + p.late - late
                    inbox.counts.late += added
                    inbox.gate.late_events += added
                return
            mark = inbox.sources.get(p.source)
            if mark is not None and mark.watermark is not None and p.pane + self.pane <= mark.watermark:
                # Its source had passed this pane, so it sent this partial before: a re-delivery older than
                # the horizon kept for comparing contents.
                inbox.counts.duplicates += 1
                return
            inbox.counts.late_partials += 1
            late = p.requests + p.late
            inbox.counts.late += late
            inbox.gate.late_events += late
            return
        slot = inbox.buffered.setdefault(p.pane, {})
        before = slot.get(p.source)
        if before is None or p.seq > before.seq:
            slot[p.source] = p  # a newer version is the whole pane again: it replaces the older one
        elif p.seq < before.seq or before == p:
            inbox.counts.duplicates += 1
        else:
            inbox.counts.conflicts += 1

    def on_watermark(
        self, key: str, inbox: GateInbox, w: Watermark, out: list[Decision], breaches: list[Breach] | None = None
    ) -> None:
        until = self.advance(inbox, w, inbox.closed_until)
        if until is not None:
            self.close(key, inbox, until, out, [] if breaches is None else breaches)

    def advance(self, inbox: GateInbox, w: Watermark, closed: int | None) -> int | None:
        """``on_watermark`` without the closing: the source's mark updated, and the merge watermark to close up
        to when it passes ``closed`` (the inbox's ``closed_until``, or a close deferred to it: ``close``
        later, before anything else reads or changes the inbox's panes), else None."""
        mark = inbox.sources.setdefault(w.source, SourceMark())
        if w.watermark is not None and mark.watermark is not None and w.watermark < mark.watermark:
            return None  # an older report (re-delivered): it says nothing new
        if w.watermark is not None:
            mark.watermark = w.watermark
        if mark.idle and not w.idle and not mark.holds:
            # A source woke up: the others that were idle may wake up too, each at its own pace (another
            # poll, another worker). Wait for all of them again until each is reported idle anew, rather
            # than let this one's watermark close panes whose partials they are about to send.
            for other in inbox.sources.values():
                other.idle = False
        mark.idle = w.idle
        until = merge_watermark(inbox.sources.values())
        if until is None or (closed is not None and until <= closed):
            return None
        return until

    def gate(self, key: str, inbox: GateInbox) -> Gate:
        """The core gate of ``key`` over ``inbox``'s gate state."""
        gate = self._gates[key]
        gate.state = inbox.gate
        return gate

    def apply_columns(
        self, inboxes: dict[str, GateInbox], batch: PartialBatch, w: Watermark, breaches: list[Breach] | None = None
    ) -> list[Decision]:
        """``apply(inboxes, [*batch.rows(), w])`` without a ``Partial`` per row where that is the same: a gate
        whose only source is the batch's, with nothing buffered, gets its rows closed straight from the
        columns when ``w`` closes them all (replay's one source, every batch). Such panes keep no per-partial
        record for comparing re-deliveries: a later partial of them from that source, whose watermark passed
        them, counts as a duplicate; so this is for sources that never re-emit a pane (no ``seal``)."""
        out: list[Decision] = []
        if batch.slices:  # baseline and cross-region rows go in first, as their source sent them before ``w``
            is_slice = np.asarray([bool(s) for s in batch.slices], dtype=np.bool_)
            sliced = np.flatnonzero(is_slice[batch.gate])
            for p in batch.rows(sliced) if sliced.size else ():
                self.on_partial(inboxes[p.gate], p)
        every: list[Partial] = []  # one Partial per row, built only if a gate needs them
        index = {key: i for i, key in enumerate(batch.keys) if not batch.slices or not batch.slices[i]}
        by_gate = _GateRows(batch)
        bounds = by_gate.bounds
        for key, at_key in index.items():
            if key not in inboxes and bounds[at_key + 1] > bounds[at_key]:
                raise ValueError(f"partial for gate {key!r}, which is not in the plan")
        for key, inbox in inboxes.items():
            i = index.get(key)
            lo, hi = (bounds[i], bounds[i + 1]) if i is not None else (0, 0)
            until = self._direct_until(inbox, by_gate.pane[lo:hi], w)
            if until is None:
                if hi > lo:
                    every = every or batch.rows()
                    for r in by_gate.order[lo:hi].tolist():
                        self.on_partial(inbox, every[r])
                self.on_watermark(key, inbox, w, out, breaches)
                continue
            inbox.sources[w.source].watermark = w.watermark
            self._close_columns(key, inbox, until, by_gate.closing(lo, hi), out, [] if breaches is None else breaches)
        return out

    # -- internals ---------------------------------------------------------------------------------------
    def _direct_until(self, inbox: GateInbox, panes: npt.NDArray[np.int64], w: Watermark) -> int | None:
        """The merge watermark ``w`` brings ``inbox`` to if it closes the rows of ``panes`` from the columns, else
        None."""
        mark = inbox.sources.get(w.source)
        if mark is None or len(inbox.sources) != 1 or inbox.buffered or mark.idle or w.idle or w.watermark is None:
            return None
        after = inbox.closed_until
        older = mark.watermark is not None and w.watermark < mark.watermark
        if older or (after is not None and w.watermark <= after):
            return None  # nothing to close: ``on_watermark`` says what else it means
        if panes.size and (int(panes.max()) + self.pane > w.watermark or (
            after is not None and int(panes.min()) + self.pane <= after
        )):  # fmt: skip
            return None
        return w.watermark

    def close(self, key: str, inbox: GateInbox, until: int, out: list[Decision], breaches: list[Breach]) -> None:
        """Close the buffered panes ending at or before ``until`` and the gate's windows up to it (``until``:
        what ``advance`` returned, the latest of several when closes were deferred)."""
        closing = sorted(p for p in inbox.buffered if p + self.pane <= until)
        groups = [inbox.buffered.pop(pane) for pane in closing]
        for pane, group in zip(closing, groups, strict=True):
            inbox.merged[pane] = dict(group)  # compared as they are; digests only in snapshots
        parts = [p for group in groups for p in group.values()]
        sizes = np.fromiter((len(p.bins) for p in parts), np.int64, len(parts))
        total = int(sizes.sum())
        sums = np.asarray([(sum(p.requests for p in g.values()), sum(p.errors for p in g.values()),
                            sum(p.late for p in g.values())) for g in groups], np.int64).reshape(-1, 3)  # fmt: skip
        columns = Closing(
            np.asarray(closing, np.int64), sums[:, 0], sums[:, 1], sums[:, 2],
            np.repeat(np.fromiter((p.pane for p in parts), np.int64, len(parts)), sizes),
            np.fromiter(itertools.chain.from_iterable(p.bins for p in parts), np.int64, total),
            np.fromiter(itertools.chain.from_iterable(p.counts for p in parts), np.int64, total),
        )  # fmt: skip
        self._close_columns(key, inbox, until, columns, out, breaches)

    def _close_columns(
        self, key: str, inbox: GateInbox, until: int, c: Closing, out: list[Decision], breaches: list[Breach]
    ) -> None:
        """Close the panes ``c`` (time order) and the gate's windows up to ``until``; breach alert events to
        ``breaches``."""
        gate = self.gate(key, inbox)
        made = len(out)
        st = inbox.gate
        slice_ledger.close(inbox.baseline, st.baseline, until, self.pane, self.window)
        slice_ledger.close(inbox.cross, st.cross, until, self.pane, self.window)
        if c.bin_pane.size:
            self._add_bins(gate, c.bin_pane // self.window, c.buckets, c.counts)
        # Late records counted with a pane go in after the windows ending at or before its start closed: the
        # panes between two such panes go to the gate in one call.
        starts = [0, *np.flatnonzero(c.late).tolist()]
        ends = [*starts[1:], c.panes.size]
        for lo, hi in zip(starts, ends, strict=True):
            if hi > lo and c.late[lo]:
                gate.close_windows_until(int(c.panes[lo]), out)
                st.late_events += int(c.late[lo])
            used = np.flatnonzero(c.requests[lo:hi]) + lo
            if used.size:
                gate.on_panes(c.panes[used], c.requests[used], c.errors[used], out)
        gate.close_windows_until(until, out)
        gate.on_stream_clock(until, 0, out)
        self.watch.on_close(key, inbox.alerts, c, until, out[made:], breaches)
        inbox.closed_until = until
        horizon = until - self.horizon  # older re-deliveries are recognised by their source's watermark
        for pane in [p for p in inbox.merged if p < horizon]:
            del inbox.merged[pane]

    def _add_bins(
        self, gate: Gate, windows: npt.NDArray[np.int64], buckets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
    ) -> None:
        """The closing panes' latency bins (their window index, bucket, count), summed per window in one step and
        added to their windows (each still open: a window closes only after its last pane)."""
        first = int(windows.min())
        grid = np.bincount((windows - first) * sketch.NBINS + buckets, counts, (int(windows.max()) - first + 1)
                           * sketch.NBINS).astype(np.int64).reshape(-1, sketch.NBINS)  # fmt: skip
        for row in np.flatnonzero(grid.any(axis=1)).tolist():
            gate.add_bins((first + row) * self.window, grid[row])


class _GateRows:
    """A batch's rows grouped by gate, in emission order within each (pane ascending): every column gathered
    once for all gates, so that each gate's rows and bins are slices (a gather per gate and column cost more
    than the gathering itself)."""

    def __init__(self, batch: PartialBatch) -> None:
        # a stable sort on small integers: numpy's radix sort, the same order as on the int64 column
        small = np.uint8 if len(batch.keys) <= 0xFF else np.int64
        order = self.order = np.argsort(batch.gate.astype(small), kind="stable")
        self.bounds: list[int] = np.searchsorted(batch.gate[order], np.arange(len(batch.keys) + 1)).tolist()
        lo = batch.offsets[:-1][order]
        sizes = batch.offsets[1:][order] - lo
        self.pane, self.requests = batch.pane[order], batch.requests[order]
        self.errors, self.late = batch.errors[order], batch.late[order]
        at = ragged(lo, sizes)
        self.bins, self.counts, self.bin_pane = batch.bins[at], batch.counts[at], np.repeat(self.pane, sizes)
        ends = np.concatenate(([0], np.cumsum(sizes)))
        self.bin_at: dict[int, int] = dict(zip(self.bounds, ends[self.bounds].tolist(), strict=True))  # row -> bin

    def closing(self, lo: int, hi: int) -> Closing:
        """Rows [lo, hi) (one gate's: ``bounds`` both) as the panes of one close."""
        first, last = self.bin_at[lo], self.bin_at[hi]
        return Closing(self.pane[lo:hi], self.requests[lo:hi], self.errors[lo:hi], self.late[lo:hi],
                       self.bin_pane[first:last], self.bins[first:last], self.counts[first:last])  # fmt: skip


def _digest(p: Partial) -> bytes:
    return hashlib.blake2b(encode(p), digest_size=12).digest()


def seen_of(merged: Partial | Seen) -> Seen:
    """(seq, digest, requests, late) of a merged partial, as snapshots keep it."""
    if isinstance(merged, Partial):
        return (merged.seq, _digest(merged), merged.requests, merged.late)
    return merged


def merge_watermark(marks: Iterable[SourceMark]) -> int | None:
    """Min over the sources not idle (None while one of them has not reported); if all are idle, the max. Sources
    that only hold (``holds``) take no part in that, and then cap it while they are not idle."""
    marks = list(marks)
    active = [m.watermark for m in marks if not m.idle and not m.holds]
    if active:
        until = None if None in active else min(w for w in active if w is not None)
    else:
        idle = [m.watermark for m in marks if m.watermark is not None and not m.holds]
        until = max(idle) if idle else None
    held = [m.watermark for m in marks if m.holds and not m.idle]
    if until is None or not held:
        return until
    return None if None in held else min(until, *(w for w in held if w is not None))
