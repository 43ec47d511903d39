"""Stage 2's changelog: a gate's ``GateInbox`` <-> bytes (msgpack, exact; records as core/changelog_record.py writes
them): the gate's own state as ``snapshot`` writes it, its alert state as ``breach_watch.dump`` does. The partials
it holds (buffered for open panes, and those merged into recently closed ones) are already in the panes topic: those
whose offset there is given (``located``) are written as (pane, source, offset), and read back from that topic on
restore, rather than written again whole at every checkpoint (the changelog would otherwise carry the partials many
times over while panes wait for the slowest partition). The record at that offset may be a batch of many partials
(core/panes_batch.py): the gate (the entry's key), pane and source name the partial inside it (``read_back``), so
the reference needs no more.
Inboxes are deflated (their dense window sketches are mostly zeros), with a preset dictionary
(core/inbox_dictionary.py: ~70 % shorter on thin input, where an inbox is a few hundred bytes mostly of field and
source names); inboxes deflated without one, and those written before deflating (msgpack as it is), are still read.
"""

from __future__ import annotations

import msgspec

from gatekeeper.core import breach_watch, inbox_dictionary, panes_batch, snapshot
from gatekeeper.core.changelog_record import ENCODER as _ENCODER
from gatekeeper.core.changelog_record import FORMAT, decode, deflate, inflate
from gatekeeper.core.merge import GateInbox, MergeCounts, Seen, SourceMark, seen_of
from gatekeeper.core.partials import Partial, PartialError
from gatekeeper.core.slot_routing import CROSS_REGION

__all__ = ["FORMAT", "INBOX_FORMAT", "Located", "dump_inbox", "load_inbox", "place", "read_back"]

INBOX_FORMAT = 2  # 2: partials located in the panes topic (format 1 had them all inline; still read)
Located = dict[tuple[int, str], int]  # (pane, source) -> offset of the partial in its gate's panes partition


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
    # partials held by reference: per pane, (index into ``names``, offset in the panes topic); compact because
    # every checkpoint writes them again (about 7 bytes each; a source name alone is 12)
    names: list[str] = []
    buffered_at: list[tuple[int, list[tuple[int, int]]]] = []
    merged_at: list[tuple[int, list[tuple[int, int]]]] = []
    alerts: bytes = b""  # breach_watch.dump; empty in inboxes snapshotted before alerts existed
    # buffered baseline and cross-region partials (core/regression.py, core/cross_region.py; their ``slice`` says
    # which), whole: few, and short-lived
    baseline: list[Partial] = []


_INBOX = msgspec.msgpack.Decoder(_Inbox)


def dump_inbox(inbox: GateInbox, located: Located | None = None) -> bytes:
    """``located``: the panes-topic offsets of partials ``inbox`` holds (written as references; others whole)."""
    at = located or {}
    c = inbox.counts
    buffered = [(pane, s, p) for pane, parts in inbox.buffered.items() for s, p in parts.items()]
    merged = [(pane, s, m) for pane, parts in inbox.merged.items() for s, m in parts.items()]
    names = sorted({s for pane, s, _m in [*buffered, *merged] if (pane, s) in at})
    index = {name: i for i, name in enumerate(names)}

    def refs(held: list[tuple[int, str, Partial | Seen]]) -> list[tuple[int, list[tuple[int, int]]]]:
        by_pane: dict[int, list[tuple[int, int]]] = {}
        for pane, s, m in held:
            if (pane, s) in at and isinstance(m, Partial):
                by_pane.setdefault(pane, []).append((index[s], at[pane, s]))
        return sorted(by_pane.items())

    return deflate(
        _ENCODER.encode(
            _Inbox(
                INBOX_FORMAT,
                snapshot.dump(inbox.gate),
                {s: _Mark(m.watermark, m.idle) for s, m in inbox.sources.items()},
                [p for pane, s, p in buffered if (pane, s) not in at],
                [(pane, s, *seen_of(m)) for pane, s, m in merged if (pane, s) not in at or not isinstance(m, Partial)],
                inbox.closed_until,
                (c.duplicates, c.conflicts, c.late_partials, c.late),
                names,
                refs(buffered),  # type: ignore[arg-type]  # buffered holds partials only
                refs(merged),
                breach_watch.dump(inbox.alerts),
                [p for box in (inbox.baseline, inbox.cross) for parts in box.panes.values() for p in parts.values()],
            )
        ),
        inbox_dictionary.INBOX_V1,
    )


def load_inbox(raw: bytes) -> tuple[GateInbox, Located, Located]:
    """The inbox ``dump_inbox`` wrote, and where the partials it holds by reference are: (buffered ones,
    merged ones), each (pane, source) -> offset; put each in with ``place`` once read. ValueError on bytes that
    are not an inbox."""
    what = "stage-2 gate inbox"
    snap = decode(_INBOX, inflate(raw, what), what, (FORMAT, INBOX_FORMAT))
    inbox = GateInbox(
        gate=snapshot.load(snap.gate),
        sources={s: SourceMark(m.watermark, m.idle) for s, m in snap.sources.items()},
        closed_until=snap.closed_until,
        counts=MergeCounts(*snap.counts),
        alerts=breach_watch.load(snap.alerts),
    )
    for p in snap.buffered:
        inbox.buffered.setdefault(p.pane, {})[p.source] = p
    for p in snap.baseline:
        box = inbox.cross if p.part == CROSS_REGION else inbox.baseline
        box.panes.setdefault(p.pane, {})[p.source] = p
    for pane, source, seq, digest, requests, late in snap.merged:
        inbox.merged.setdefault(pane, {})[source] = (seq, digest, requests, late)
    try:
        buffered = {(pane, snap.names[i]): offset for pane, refs in snap.buffered_at for i, offset in refs}
        merged = {(pane, snap.names[i]): offset for pane, refs in snap.merged_at for i, offset in refs}
    except IndexError:
        raise ValueError("not a stage-2 gate inbox: a partial refers to a source it does not name") from None
    return inbox, buffered, merged


def place(inbox: GateInbox, partial: Partial, merged: bool) -> None:
    """Put a partial read back from the panes topic where the snapshot had it (buffered, or merged)."""
    (inbox.merged if merged else inbox.buffered).setdefault(partial.pane, {})[partial.source] = partial


def read_back(ident: tuple[str, int, str], raw: bytes | None, where: tuple[str, int, int]) -> Partial:
    """The partial ``ident`` (gate, pane, source) a restored inbox holds by reference, from ``raw``: the panes
    record read back at ``where`` (topic, partition, offset; None: it could not be read). The record is a
    one-partial message or a batch (core/panes_batch.py), in which the reference names its partial by ``ident``
    (the gate's own evidence: located partials are never a slice's). ValueError naming the gate, the partial, the
    offset and the partition when it is missing, not a partial, or another one: the restore cannot go on without
    silently losing evidence."""
    gate, pane, source = ident
    topic, partition, offset = where
    at = f"gate {gate}: its partial (pane {pane}, source {source}) at offset {offset} of {topic} partition {partition}"
    if raw is None:
        raise ValueError(f"{at} could not be read back (past the topic's retention?)")
    try:
        partial = panes_batch.find(raw, ident)
    except PartialError as exc:
        raise ValueError(f"{at}: {exc}") from None
    if partial is None:
        raise ValueError(f"{at} is another message: the topic is not the one the state was written with")
    return partial
