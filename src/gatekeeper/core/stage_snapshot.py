"""The two stages' state <-> bytes, for changelog-backed tables (msgpack, exact).

Stage 1: a source's ``SourceState`` with the offset of the next record to read from it, so a restart resumes
exactly after the last record folded into it (re-folding a record would change a partial, a conflict).
Stage 2: a gate's ``GateInbox``, the gate's own state as ``snapshot`` writes it, its alert state as
``breach_watch.dump`` does.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import numpy as np

from gatekeeper.core import breach_watch, snapshot
from gatekeeper.core.aggregate import OpenPane, SourceState
from gatekeeper.core.merge import GateInbox, MergeCounts, SourceMark, seen_of
from gatekeeper.core.partials import Partial

FORMAT = 1
_T = TypeVar("_T")


class _Pane(msgspec.Struct, array_like=True):
    gate: int
    start: int
    requests: int
    errors: int
    late: int
    buckets: list[int]
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


class _Mark(msgspec.Struct, array_like=True):
    watermark: int | None
    idle: bool


class _Inbox(msgspec.Struct, array_like=True):
    format: int
    gate: bytes
    sources: dict[str, _Mark]
    buffered: list[Partial]
    merged: list[tuple[int, str, int, bytes, int, int]]  # (pane, source, seq, digest, requests, late)
    closed_until: int | None
    counts: tuple[int, int, int, int]
    alerts: bytes = b""  # breach_watch.dump; empty in inboxes snapshotted before alerts existed


_ENCODER = msgspec.msgpack.Encoder()
_SOURCE = msgspec.msgpack.Decoder(_Source)
_INBOX = msgspec.msgpack.Decoder(_Inbox)


def dump_source(state: SourceState, next_offset: int) -> bytes:
    panes = [
        _Pane(gate, start, p.requests, p.errors, p.late, p.buckets.tolist(), p.counts.tolist(), p.seq, p.dirty)
        for (gate, start), p in sorted(state.panes.items())
    ]
    return _ENCODER.encode(_Source(FORMAT, state.source, next_offset, state.newest, state.events, state.late, panes))


def load_source(raw: bytes) -> tuple[SourceState, int]:
    """(the state, the offset of the next record to fold); ValueError on bytes that are not one."""
    snap = _decode(_SOURCE, raw, "stage-1 source state")
    panes = {
        (p.gate, p.start): OpenPane(
            p.requests,
            p.errors,
            p.late,
            np.asarray(p.buckets, np.int64),
            np.asarray(p.counts, np.int64),
            p.seq,
            p.dirty,
        )
        for p in snap.panes
    }
    return SourceState(snap.source, snap.newest, panes, snap.events, snap.late), snap.next_offset


def dump_inbox(inbox: GateInbox) -> bytes:
    c = inbox.counts
    return _ENCODER.encode(
        _Inbox(
            FORMAT,
            snapshot.dump(inbox.gate),
            {s: _Mark(m.watermark, m.idle) for s, m in inbox.sources.items()},
            [p for parts in inbox.buffered.values() for p in parts.values()],
            [(pane, source, *seen_of(m)) for pane, parts in inbox.merged.items() for source, m in parts.items()],
            inbox.closed_until,
            (c.duplicates, c.conflicts, c.late_partials, c.late),
            breach_watch.dump(inbox.alerts),
        )
    )


def load_inbox(raw: bytes) -> GateInbox:
    """The inbox ``dump_inbox`` wrote; ValueError on bytes that are not one."""
    snap = _decode(_INBOX, raw, "stage-2 gate inbox")
    inbox = GateInbox(
        gate=snapshot.load(snap.gate),
        sources={s: SourceMark(m.watermark, m.idle) for s, m in snap.sources.items()},
        closed_until=snap.closed_until,
        counts=MergeCounts(*snap.counts),
        alerts=breach_watch.load(snap.alerts),
    )
    for p in snap.buffered:
        inbox.buffered.setdefault(p.pane, {})[p.source] = p
    for pane, source, seq, digest, requests, late in snap.merged:
        inbox.merged.setdefault(pane, {})[source] = (seq, digest, requests, late)
    return inbox


def _decode(decoder: msgspec.msgpack.Decoder[_T], raw: bytes, what: str) -> _T:
    try:
        snap = decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a {what}: {exc}") from None
    if getattr(snap, "format", None) != FORMAT:
        raise ValueError(f"{what} format {getattr(snap, 'format', None)}; this version reads format {FORMAT}")
    return snap
