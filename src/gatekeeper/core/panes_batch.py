"""The internal panes batch message: many partials of one source in one ``<app-id>-panes`` record, compact.

Stage 1 emits, per source partition and pane, a partial of every gate that had records there: unkeyed, that is
every gate on every partition, each partial summing a few requests when the input is thin, and as a JSON
message (streams/partial.v1.schema.json) each cost ~150-200 bytes plus its key, 2.4 % of the telemetry bytes
read at ~580 events/s (docs/benchmarks.md). So the worker's stage 1 sends the partials of one source that share
a panes partition (their gates' home) as ONE record: msgpack columns (latency buckets as differences from the
one before, panes as differences from the row before), deflated when that is shorter. Stage 2 reads both this
and the public one-partial JSON message, which edge publishers keep using (the batch is internal: its layout may
change with a new version byte, the JSON contract may not).

Layout (contract: streams/panes-batch.v1.md): ``MAGIC`` (``b"GKB"``, never the start of a JSON text), a version
byte (1), a flags byte (bit 0: the rest is deflated, zlib), then a msgpack array (``BatchBody``): the source, the
gate table (keys and slices), and per row (one partial) its gate-table index, pane, seq, requests, errors, late,
number of latency buckets; then every row's buckets (first absolute, the others as differences) and counts.
Decoding gives the same ``Partial`` values as the JSON messages of the same partials (same digest, so a
re-emitted partial is a duplicate whichever message carried it); within a batch a partial is named by its
(gate, pane, slice) (the source is the batch's), which is how a snapshot's reference finds it (``find``).
"""

from __future__ import annotations

import functools
import operator
import zlib
from collections.abc import Sequence
from itertools import accumulate
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core import partials as contract
from gatekeeper.core import sketch
from gatekeeper.core.partials import (
    SLICES,
    GateKey,
    Message,
    NonNegative,
    Partial,
    PartialBatch,
    PartialError,
    SourceId,
    slice_of,
)

MAGIC = b"GKB"
VERSION = 1
_DEFLATED = 0x01
MAX_ROWS = 2_000  # partials per message: keeps a record far below Kafka's default 1 MB limit
MAX_BUCKETS = 100_000  # latency buckets per message, for the same reason
MAX_INFLATED = 32 << 20  # a deflated body inflating past this is refused (not a batch this code wrote)
_SLICE_CODES: dict[str, int] = {"": 0} | {name: i + 1 for i, name in enumerate(SLICES)}

SliceCode = Annotated[int, msgspec.Meta(ge=0, le=len(SLICES))]


class BatchError(PartialError):
    """Bytes that are not a valid panes batch message (the reason names the field, and the row when it is one)."""


class BatchBody(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """The msgpack array after the 5-byte header (inflated first when flags bit 0 is set), in this order:
    source; gate table: gates ("region/tier") and their slices (0: the gate's own evidence, 1: baseline,
    2: cross_region); per row (one partial, n rows): index into the gate table, pane start (ms; the first row's
    absolute, each later one's difference from the row before), seq, requests, errors, late, number of latency
    buckets; then every row's buckets in turn (each row's first absolute, the others differences from the one
    before: > 0) and their counts. Within a batch a (gate, slice, pane) appears once."""

    source: SourceId
    gates: list[GateKey]  # gate table: "region/tier" ...
    slices: list[SliceCode]  # ... and its slice (0: the gate's own evidence, then SLICES' order, from 1)
    gate: list[NonNegative]  # per row: index into the gate table
    pane: list[int]  # per row: the first pane start (ms), then differences from the row before
    seq: list[NonNegative]
    requests: list[NonNegative]
    errors: list[NonNegative]
    late: list[NonNegative]
    buckets: list[NonNegative]  # per row: how many latency buckets it has
    bins: list[int]  # every row's buckets in turn: a row's first absolute, then differences (ascending: > 0)
    counts: list[NonNegative]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(BatchBody)


def is_batch(raw: bytes) -> bool:
    """Whether a panes-topic value is a batch (else a JSON partial or watermark)."""
    return raw[: len(MAGIC)] == MAGIC


def encode(partials: Sequence[Partial]) -> list[bytes]:
    """The batch messages of ``partials`` (all of one source), in their order: one, or more when they are more
    than a message should hold (``MAX_ROWS`` partials, ``MAX_BUCKETS`` latency buckets)."""
    out: list[bytes] = []
    start = buckets = 0
    for i, p in enumerate(partials):
        if i > start and (i - start >= MAX_ROWS or buckets + len(p.bins) > MAX_BUCKETS):
            out.append(_encode_one(partials[start:i]))
            start, buckets = i, 0
        buckets += len(p.bins)
    if start < len(partials):
        out.append(_encode_one(partials[start:]))
    return out


def _encode_one(partials: Sequence[Partial]) -> bytes:
    source = partials[0].source
    table: dict[tuple[str, str], int] = {}
    rows = []
    bins: list[int] = []
    counts: list[int] = []
    pane_before = 0
    for p in partials:
        if p.source != source:
            raise ValueError(f"a panes batch holds one source's partials: {p.source!r} among {source!r}'s")
        rows.append((table.setdefault((p.gate, p.part), len(table)), p.pane - pane_before))
        pane_before = p.pane
        bins += map(operator.sub, p.bins, (0, *p.bins[:-1]))  # each bucket less the one before (the first: 0)
        counts += p.counts
    batch = BatchBody(
        source,
        [gate for gate, _part in table],
        [_SLICE_CODES[part] for _gate, part in table],
        [g for g, _pane in rows],
        [pane for _g, pane in rows],
        [p.seq for p in partials],
        [p.requests for p in partials],
        [p.errors for p in partials],
        [p.late for p in partials],
        [len(p.bins) for p in partials],
        bins,
        counts,
    )
    return _framed(_ENCODER.encode(batch))


def encode_groups(batch: PartialBatch, group: npt.NDArray[np.int64]) -> list[tuple[int, list[bytes]]]:
    """Per distinct ``group`` value (e.g. each row's panes partition), in order of first appearance: that value and
    ``encode(batch.rows(its rows))``, the same bytes, from the columns without a ``Partial`` per row (stage 1 of
    the worker sends every closed pane this way; on thin input a partial sums a few requests, so the objects
    and per-message numpy calls cost more than the counting). A group too big for one message (``MAX_ROWS``,
    ``MAX_BUCKETS``) goes the per-row way."""
    if not len(batch):
        return []
    values, first = np.unique(group, return_index=True)
    first_at = dict(zip(values.tolist(), first.tolist(), strict=True))
    order = np.argsort(group, kind="stable")  # each group's rows together, in their order: sliced below
    ends = np.searchsorted(group[order], values, side="right").tolist()
    slices: Sequence[str] = batch.slices or ("",) * len(batch.keys)
    gate = _first_alike(tuple(batch.keys), tuple(slices))[batch.gate[order]].tolist()
    sizes = (batch.offsets[1:] - batch.offsets[:-1])[order]
    at = contract.ragged(batch.offsets[:-1][order], sizes)
    bins = batch.bins[at]
    steps = np.diff(bins, prepend=0)  # each bucket less the one before, a row's first absolute
    heads = (np.cumsum(sizes) - sizes)[sizes > 0]
    steps[heads] = bins[heads]
    pane = batch.pane[order]
    pane_steps = np.diff(pane, prepend=0)  # each row's pane less the one before in its group, a group's first absolute
    starts = np.concatenate(([0], ends[:-1])).astype(np.int64)
    pane_steps[starts] = pane[starts]
    bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
    columns = (pane_steps, batch.seq[order], batch.requests[order], batch.errors[order], batch.late[order], sizes)
    panes, seq, requests, errors, late, counted = (c.tolist() for c in columns)
    all_steps, all_counts = steps.tolist(), batch.counts[at].tolist()
    out = []
    for value, lo, hi in sorted(zip(values.tolist(), [0, *ends[:-1]], ends, strict=True), key=lambda v: first_at[v[0]]):
        if hi - lo > MAX_ROWS or bounds[hi] - bounds[lo] > MAX_BUCKETS:
            out.append((value, encode(batch.rows(order[lo:hi]))))
            continue
        rows = gate[lo:hi]
        table = dict.fromkeys(rows)  # the gate table in order of first appearance
        rank = {g: r for r, g in enumerate(table)}
        body = BatchBody(
            batch.source,
            [batch.keys[g] for g in table],
            [_SLICE_CODES[slices[g]] for g in table],
            [rank[g] for g in rows],
            panes[lo:hi],
            seq[lo:hi],
            requests[lo:hi],
            errors[lo:hi],
            late[lo:hi],
            counted[lo:hi],
            all_steps[bounds[lo] : bounds[hi]],
            all_counts[bounds[lo] : bounds[hi]],
        )
        out.append((value, [_framed(_ENCODER.encode(body))]))
    return out


@functools.lru_cache(maxsize=16)
def _first_alike(keys: tuple[str, ...], slices: tuple[str, ...]) -> npt.NDArray[np.int64]:
    """Per gate index, the first index with the same (key, slice): one gate-table entry in a message."""
    first: dict[tuple[str, str], int] = {}
    return np.asarray([first.setdefault(pair, g) for g, pair in enumerate(zip(keys, slices, strict=True))], np.int64)


def _framed(body: bytes) -> bytes:
    """The header, then ``body`` deflated when that is shorter."""
    deflated = zlib.compress(body, 9)
    if len(deflated) < len(body):
        return MAGIC + bytes((VERSION, _DEFLATED)) + deflated
    return MAGIC + bytes((VERSION, 0)) + body


def decode(raw: bytes) -> list[Partial]:
    """The partials of a batch message, in its order; BatchError naming what is wrong (and where) otherwise."""
    if not is_batch(raw):
        raise BatchError(f"not a panes batch message: it does not start with {MAGIC!r}")
    if len(raw) < len(MAGIC) + 2:
        raise BatchError("panes batch message: truncated before its version and flags")
    version, flags = raw[len(MAGIC)], raw[len(MAGIC) + 1]
    if version != VERSION:
        raise BatchError(f"panes batch message version {version}; this version reads version {VERSION}")
    if flags & ~_DEFLATED:
        raise BatchError(f"panes batch message: unknown flags {flags:#04x}")
    body = raw[len(MAGIC) + 2 :]
    if flags & _DEFLATED:
        body = _inflate(body)
    try:
        batch = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BatchError(f"panes batch message: {exc}") from None
    return _partials(batch)


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, MAX_INFLATED)
    except zlib.error as exc:
        raise BatchError(f"panes batch message: its deflated body is corrupt ({exc})") from None
    if inflater.unconsumed_tail:
        raise BatchError(f"panes batch message: its body inflates past {MAX_INFLATED} bytes")
    if not inflater.eof:
        raise BatchError("panes batch message: its deflated body is truncated")
    return out


def _partials(b: BatchBody) -> list[Partial]:
    n = len(b.gate)
    columns = {"pane": b.pane, "seq": b.seq, "requests": b.requests, "errors": b.errors, "late": b.late,
               "buckets": b.buckets}  # fmt: skip
    for name, column in columns.items():
        if len(column) != n:
            raise BatchError(f"panes batch message: {n} rows but {len(column)} values of {name}")
    if len(b.slices) != len(b.gates):
        raise BatchError(f"panes batch message: {len(b.gates)} gates but {len(b.slices)} slices")
    if sum(b.buckets) != len(b.bins) or len(b.bins) != len(b.counts):
        raise BatchError(
            f"panes batch message: its rows have {sum(b.buckets)} latency buckets, it holds {len(b.bins)} buckets "
            f"and {len(b.counts)} counts"
        )
    out: list[Partial] = []
    seen: set[tuple[int, int]] = set()
    at = 0
    slices = [slice_of(SLICES[code - 1] if code else "") for code in b.slices]
    for i, (g, pane, seq, requests, errors, late, size) in enumerate(
        zip(b.gate, accumulate(b.pane), b.seq, b.requests, b.errors, b.late, b.buckets, strict=True)
    ):
        if g >= len(b.gates):
            raise BatchError(f"panes batch message row {i}: gate index {g}, the table has {len(b.gates)}")
        if (g, pane) in seen:
            raise BatchError(f"panes batch message row {i}: a second partial of gate {b.gates[g]}, pane {pane}")
        seen.add((g, pane))
        steps = b.bins[at : at + size]
        bins = tuple(accumulate(steps))
        if size > 1 and min(steps[1:]) <= 0:
            raise BatchError(f"panes batch message row {i} (gate {b.gates[g]}, pane {pane}): latency buckets not "
                             "ascending and distinct")  # fmt: skip
        if bins and not (bins[0] >= 0 and bins[-1] < sketch.NBINS):
            raise BatchError(f"panes batch message row {i} (gate {b.gates[g]}, pane {pane}): a latency bucket "
                             f"outside 0..{sketch.NBINS - 1}")  # fmt: skip
        p = Partial(gate=b.gates[g], pane=pane, source=b.source, requests=requests, errors=errors, late=late, seq=seq,
                    bins=bins, counts=tuple(b.counts[at : at + size]), slice=slices[g])  # fmt: skip
        at += size
        if sum(p.counts) != requests or errors > requests:  # the rest of ``contract.check`` holds by the above
            try:
                contract.check(p)
            except PartialError as exc:
                raise BatchError(f"panes batch message row {i}: {exc}") from None
        out.append(p)
    return out


def read(raw: bytes) -> list[Message]:
    """A panes-topic value of either kind as its messages: a batch's partials, or the one JSON partial or
    watermark. PartialError (BatchError for a batch) when it is neither."""
    return list(decode(raw)) if is_batch(raw) else [contract.decode(raw)]


def find(raw: bytes, ident: tuple[str, int, str]) -> Partial | None:
    """The partial of the gate's own evidence identified by ``ident`` (gate, pane, source) in a panes-topic
    value of either kind, None when it holds no such partial; PartialError when it is neither kind. A batch read
    back for a restore is referred to by every partial of it a gate holds: decoded once (a few recent ones kept)."""
    if is_batch(raw):
        return _index(raw).get(ident)
    message = contract.decode(raw)
    return message if isinstance(message, Partial) and not message.part and message.ident == ident else None


@functools.lru_cache(maxsize=16)
def _index(raw: bytes) -> dict[tuple[str, int, str], Partial]:
    return {p.ident: p for p in decode(raw) if not p.part}
