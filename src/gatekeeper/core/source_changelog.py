"""Stage 1's changelog: a source's state <-> bytes (msgpack, exact; records as core/changelog_record.py writes them).

A source's ``SourceState`` with the offset of the next record to read from it, so a restart resumes
exactly after the last record folded into it. Written by a ``ReadWriter`` (format 5): a whole snapshot now and
then, and between two of them only how far the source was read; a restore folds the records read since the
snapshot again, without dead letters or counts (re-folding is exact; what the wall clock decided, sealed panes and
records rejected for their time, is written whole at once). A live worker checkpoints every 2 s, and on thin
unkeyed input every partition holds an open pane of every gate that grows by a few records between two
checkpoints: writing that growth was most of the bytes it wrote to its internal topics (docs/benchmarks.md).

Older formats are still read (docs/reliability.md lists them). Format 1: panes with absolute latency buckets, not
deflated. Format 2 writes a pane's latency buckets as differences from the one before (ascending: mostly 1-byte
numbers), deflates each record (zlib level 6), and between whole snapshots writes the open panes that changed (and
those emitted), each record under its own key. Format 3 writes a pane that was open at the previous write and only
grew as what it gained (its sums, and the buckets whose counts grew with the increments); format 4 those gains as
columns (gates, starts as differences from the first, sums, buckets, counts). ``SourceWriter`` still writes format
4 changes (for tests of reading them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import msgspec
import numpy as np

from gatekeeper.core.aggregate import OpenPane, SourceState
from gatekeeper.core.changelog_record import ENCODER as _ENCODER
from gatekeeper.core.changelog_record import FORMAT, decode, deflate, inflate

__all__ = [
    "FORMAT", "READ_FORMAT", "SOURCE_FORMAT", "ReadWriter", "Restored", "SourceWriter", "dump_source", "load_source",
    "load_source_chain", "restore_source",
]  # fmt: skip

# 4: what panes gained as columns; 3: changes may add to a pane; 2: records deflated, buckets as differences (1, 2, 3:
# still read)
SOURCE_FORMAT = 4
READ_FORMAT = 5  # between whole snapshots only how far the source was read (``ReadWriter``)


class _Pane(msgspec.Struct, array_like=True):
    gate: int
    start: int
    requests: int
    errors: int
    late: int
    buckets: list[int]  # format 2: the first bucket, then each one's difference from the one before
    counts: list[int]
    seq: int = -1
    dirty: bool = True


class _Source(msgspec.Struct, array_like=True):
    format: int
    source: str
    next_offset: int
    newest: int | None
    events: int
    late: int
    panes: list[_Pane]
    epoch: int = 0  # which whole snapshot this is: the changes written after it name it
    read: int = -1  # format 5: records before this offset were read already (a restore folds them again quietly)


class _Grown(msgspec.Struct, array_like=True):
    """Format 4: what open panes gained, a column per field (each deflates better beside its likes than mixed
    into one array per pane); ``starts`` as differences from ``origin``, ``sizes``: each pane's number of buckets
    in ``buckets`` and ``counts`` (its buckets as differences, as in ``_Pane``)."""

    origin: int
    gates: list[int]
    starts: list[int]
    requests: list[int]
    errors: list[int]
    late: list[int]
    seqs: list[int]
    dirty: list[bool]
    sizes: list[int]
    buckets: list[int]
    counts: list[int]

    @classmethod
    def of(cls, panes: list[_Pane]) -> _Grown | None:
        if not panes:
            return None
        origin = min(p.start for p in panes)
        return cls(
            origin, [p.gate for p in panes], [p.start - origin for p in panes], [p.requests for p in panes],
            [p.errors for p in panes], [p.late for p in panes], [p.seq for p in panes], [p.dirty for p in panes],
            [len(p.buckets) for p in panes], [b for p in panes for b in p.buckets],
            [c for p in panes for c in p.counts],
        )  # fmt: skip

    def panes(self, what: str) -> list[_Pane]:
        """The panes again; ValueError when the columns disagree in length."""
        n = len(self.gates)
        lengths = {
            len(c) for c in (self.starts, self.requests, self.errors, self.late, self.seqs, self.dirty, self.sizes)
        }
        if lengths - {n} or sum(self.sizes) != len(self.buckets) or len(self.buckets) != len(self.counts):
            raise ValueError(f"not a {what}: its columns of grown panes differ in length")
        out, at = [], 0
        for i in range(n):
            end = at + self.sizes[i]
            out.append(_Pane(
                self.gates[i], self.origin + self.starts[i], self.requests[i], self.errors[i], self.late[i],
                self.buckets[at:end], self.counts[at:end], self.seqs[i], self.dirty[i],
            ))  # fmt: skip
            at = end
        return out


class _Changes(msgspec.Struct, array_like=True):
    """What changed in a source's state since the previous write (a whole snapshot, or other changes)."""

    format: int
    base: int  # the epoch of the whole snapshot the chain starts from
    seq: int  # 1, 2, ... after it
    next_offset: int
    newest: int | None
    events: int
    late: int
    panes: list[_Pane]  # open panes new or changed since the previous write
    gone: list[tuple[int, int]]  # (gate, start) of the panes emitted since
    # format 3: open panes changed since the previous write as what they gained: their sums, seq and dirty as they
    # are, the latency buckets whose counts grew with how much (buckets as differences, as in ``panes``)
    added: list[_Pane] = []
    grown: _Grown | None = None  # format 4: ``added`` as columns


class _ChangesOut(msgspec.Struct, array_like=True):
    """``_Changes`` with its panes encoded already (the writer encodes every pane to compare it anyway)."""

    format: int
    base: int
    seq: int
    next_offset: int
    newest: int | None
    events: int
    late: int
    panes: list[msgspec.Raw]
    gone: list[tuple[int, int]]
    added: list[msgspec.Raw]
    grown: _Grown | None


class _Read(msgspec.Struct, array_like=True):
    """Format 5: how far the source was read (``next_offset``) since the whole snapshot ``base``. Also the head of
    every change record (msgspec skips an array's further items), to tell a format-5 record from older ones."""

    format: int
    base: int
    seq: int
    next_offset: int


class Restored(NamedTuple):
    """A source's state as restored: fold it on from ``next_offset``; records before ``read`` were read (and their
    dead letters sent) before: fold them again without sending or counting anything but partials."""

    state: SourceState
    next_offset: int
    epoch: int
    read: int


_SOURCE = msgspec.msgpack.Decoder(_Source)
_READ = msgspec.msgpack.Decoder(_Read)
_CHANGES = msgspec.msgpack.Decoder(_Changes)
_SOURCE_FORMATS = (FORMAT, 2, 3, SOURCE_FORMAT, READ_FORMAT)


def _pane(gate: int, start: int, p: OpenPane) -> _Pane:
    steps = p.buckets.astype(np.int64)  # a copy; np.diff costs ~10x more on these few dozen buckets
    steps[1:] -= p.buckets[:-1]
    return _Pane(gate, start, p.requests, p.errors, p.late, steps.tolist(), p.counts.tolist(), p.seq, p.dirty)


def _open(p: _Pane, fmt: int) -> OpenPane:
    buckets, counts = np.asarray(p.buckets, np.int64), np.asarray(p.counts, np.int64)
    if fmt >= 2:
        buckets = np.cumsum(buckets, dtype=np.int64)
    return OpenPane(p.requests, p.errors, p.late, buckets, counts, p.seq, p.dirty)


def dump_source(state: SourceState, next_offset: int, epoch: int = 0, read: int = -1) -> bytes:
    panes = [_pane(gate, start, p) for (gate, start), p in sorted(state.panes.items())]
    return deflate(
        _ENCODER.encode(
            _Source(
                SOURCE_FORMAT, state.source, next_offset, state.newest, state.events, state.late, panes, epoch, read
            )
        )
    )


def load_source(raw: bytes) -> tuple[SourceState, int]:
    """(the state, the offset of the next record to fold); ValueError on bytes that are not one."""
    state, next_offset, _epoch = load_source_chain(raw, lambda _seq: None)
    return state, next_offset


def load_source_chain(raw: bytes, changes: Callable[[int], bytes | None]) -> tuple[SourceState, int, int]:
    """``restore_source`` as (the state, the offset of the next record to fold, the snapshot's epoch)."""
    state, next_offset, epoch, _read = restore_source(raw, changes)
    return state, next_offset, epoch


def restore_source(raw: bytes, changes: Callable[[int], bytes | None]) -> Restored:
    """A whole snapshot and the changes written after it (``changes(seq)``: the record of change ``seq``, 1, 2,
    ..., None when there is none). Changes written after an older snapshot (left behind under their keys) are not
    part of the chain. ValueError on bytes that are not a snapshot or changes, naming the change."""
    what = "stage-1 source state"
    snap = decode(_SOURCE, inflate(raw, what), what, _SOURCE_FORMATS)
    panes = {(p.gate, p.start): _open(p, snap.format) for p in snap.panes}
    state = SourceState(snap.source, snap.newest, panes, snap.events, snap.late)
    next_offset, seq = snap.next_offset, 1
    read = max(next_offset, snap.read)
    while (more := changes(seq)) is not None:
        what = f"stage-1 source change {seq}"
        body = inflate(more, what)
        head = decode(_READ, body, what, _SOURCE_FORMATS)
        if head.base != snap.epoch or head.seq != seq:
            break  # left from an older chain: this one ends here
        seq += 1
        if head.format == READ_FORMAT:
            read = max(read, head.next_offset)
            continue
        change = decode(_CHANGES, body, what, _SOURCE_FORMATS)
        for key in change.gone:
            state.panes.pop(key, None)
        state.panes.update({(p.gate, p.start): _open(p, change.format) for p in change.panes})
        for p in change.added + (change.grown.panes(what) if change.grown else []):
            held = state.panes.get((p.gate, p.start))
            if held is None:
                raise ValueError(f"{what}: adds to pane ({p.gate}, {p.start}), which the state does not hold")
            state.panes[p.gate, p.start] = _add(held, _open(p, change.format))
        state.newest, state.events, state.late = change.newest, change.events, change.late
        next_offset = read = change.next_offset
    return Restored(state, next_offset, snap.epoch, read)


def _add(held: OpenPane, gained: OpenPane) -> OpenPane:
    """``held`` with the latency counts ``gained`` added; sums, seq and dirty are ``gained``'s."""
    buckets, where = np.unique(np.concatenate([held.buckets, gained.buckets]), return_inverse=True)
    counts = np.zeros(buckets.size, np.int64)
    np.add.at(counts, where, np.concatenate([held.counts, gained.counts]))
    return OpenPane(gained.requests, gained.errors, gained.late, buckets, counts, gained.seq, gained.dirty)


def _gained(gate: int, start: int, p: OpenPane, before: tuple[np.ndarray, np.ndarray]) -> _Pane | None:
    """Pane ``p`` as what it gained since ``before`` (its buckets and counts then); None when it is not a
    growth of it (a bucket gone or a count down: written whole instead)."""
    old_buckets, old_counts = before
    at = np.searchsorted(p.buckets, old_buckets)
    if at.size and (at[-1] >= p.buckets.size or (p.buckets[at] != old_buckets).any()):
        return None
    grown = p.counts.copy()
    grown[at] -= old_counts
    if (grown < 0).any():
        return None
    keep = grown > 0
    return _pane(gate, start, OpenPane(p.requests, p.errors, p.late, p.buckets[keep], grown[keep], p.seq, p.dirty))


class SourceWriter:
    """What to write for one source at a checkpoint: a whole snapshot first (and whenever the changes written
    since the last one add up to ``rewrite_after`` times its size, or ``chain`` of them are written), else the
    panes changed since the previous write. ``epoch``: that of the snapshot restored (the next one is numbered
    after it). A restore reads at most one whole snapshot and ``rewrite_after`` times its size of changes."""

    def __init__(self, epoch: int = 0, chain: int = 100, rewrite_after: int = 4, *, grown: bool = True) -> None:
        """``grown``: write a pane that grew as what it gained (format 3); False: whole (format 2's way)."""
        self.epoch, self.chain, self.rewrite_after, self.grown = epoch, chain, rewrite_after, grown
        self.seq = 0
        self._written: dict[tuple[int, int], bytes] | None = None  # panes as of the previous write, encoded
        self._bins: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # ... and their buckets, counts
        self._full_bytes = self._chain_bytes = 0

    def write(self, state: SourceState, next_offset: int) -> tuple[int, bytes]:
        """(0 and a whole snapshot, or the change's seq and the change)."""
        encoded = {key: _ENCODER.encode(_pane(*key, p)) for key, p in state.panes.items()}
        long = self.seq >= self.chain or self._chain_bytes >= self.rewrite_after * self._full_bytes
        bins = {key: (p.buckets.copy(), p.counts.copy()) for key, p in state.panes.items()}
        if self._written is None or long:
            self.epoch, self.seq = self.epoch + 1, 0
            raw = dump_source(state, next_offset, self.epoch)
            self._full_bytes, self._chain_bytes, self._written, self._bins = len(raw), 0, encoded, bins
            return 0, raw
        before = self._written
        changed: list[msgspec.Raw] = []
        added: list[_Pane] = []
        for key, value in sorted(encoded.items()):
            if before.get(key) == value:
                continue
            # A pane open across checkpoints gains a few records between two of them (thin input): what it gained
            # is much shorter than the pane whole, most of a live worker's changelog bytes otherwise
            gained = _gained(*key, state.panes[key], self._bins[key]) if key in before and self.grown else None
            if gained is None:
                changed.append(msgspec.Raw(value))
            else:
                added.append(gained)
        gone = sorted(key for key in before if key not in encoded)
        self.seq += 1
        change = _ChangesOut(
            SOURCE_FORMAT, self.epoch, self.seq, next_offset, state.newest, state.events, state.late, changed, gone,
            [], _Grown.of(added),
        )  # fmt: skip
        raw = deflate(_ENCODER.encode(change))
        self._chain_bytes += len(raw)
        self._written, self._bins = encoded, bins
        return self.seq, raw


class ReadWriter:
    """What to write for one source at a checkpoint (format 5): a whole snapshot now and then, and between two of
    them only how far the source was read. A restore folds the records read since the snapshot again: folding is
    exact (a record's lateness and pane follow from the records before it, in the partition's order, not from how
    polls cut them), so open panes, whose growth was most of what a live worker wrote (docs/benchmarks.md), need
    not be written at every checkpoint. What folding cannot reproduce (``whole``: an idle partition's panes
    sealed, a record rejected by the wall clock) is written whole at once.

    A snapshot is due when the records read since the last one reach ``per_byte`` times its size in bytes, at
    least ``least`` and at most ``most`` records: its bytes stay a small share of what was read (~1/(``per_byte``
    x the record size), ~0.1 % for ~115-byte records), and a restart folds at most ``most`` records again."""

    def __init__(self, epoch: int = 0, *, per_byte: int = 8, least: int = 2_000, most: int = 100_000) -> None:
        self.epoch, self.per_byte, self.least, self.most = epoch, per_byte, least, most
        self.seq = 0
        self._since: int | None = None  # the offset the last whole snapshot holds the state at
        self._full_bytes = 0

    def write(self, state: SourceState, next_offset: int, *, read: int = -1, whole: bool = False) -> tuple[int, bytes]:
        """(0 and a whole snapshot, or the change's seq and how far the source was read: ``next_offset``, or
        ``read`` when a restore's folding again has not reached that yet)."""
        due = min(self.most, max(self.least, self.per_byte * self._full_bytes))
        if whole or self._since is None or next_offset - self._since >= due:
            self.epoch, self.seq, self._since = self.epoch + 1, 0, next_offset
            raw = dump_source(state, next_offset, self.epoch, read)
            self._full_bytes = len(raw)
            return 0, raw
        self.seq += 1
        # not deflated: four small numbers, shorter as they are
        return self.seq, _ENCODER.encode(_Read(READ_FORMAT, self.epoch, self.seq, max(next_offset, read)))
