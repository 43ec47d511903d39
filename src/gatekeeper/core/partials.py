"""Partial contract v1: what stage 1 (aggregation where the records are) sends to stage 2 (the gate).

A ``Partial`` is one gate's pane as one source saw it: requests, errors, the sparse latency sketch bins of its
not-late records, and the records of that gate the source counted late while this pane was its first open
pane. It is identified by (gate, pane, source) and is the same whenever it is re-emitted, so stage 2 merges
it idempotently. ``seq`` versions it: a source that emits a pane early (it went idle) and then gets more
records for it emits the pane again, whole, with the next ``seq``; stage 2 keeps the highest. A ``Watermark``
says how far a source has come: every pane of that source ending at or before it has been emitted. A partial with
``slice: "baseline"`` carries the region's baseline-version telemetry for a gate with a ``no_regression``
criterion (core/regression.py), one with ``slice: "cross_region"`` copies of the gate's requests from clients
in other regions (core/cross_region.py): stage 2 keeps them apart from the gate's own, by (gate, pane, source,
slice). A service may pre-aggregate at the edge and publish both itself (streams/partial.v1.schema.json,
streams/watermark.v1.schema.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import UNSET, UnsetType

from gatekeeper.core import sketch

VERSION = 1

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
GateKey = Annotated[str, msgspec.Meta(min_length=3, max_length=129, pattern=r"^[^/]+/[^/]+$")]
SourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Bucket = Annotated[int, msgspec.Meta(ge=0, lt=sketch.NBINS)]


Slice = Literal["baseline", "cross_region"]
SLICES: tuple[Slice, ...] = ("baseline", "cross_region")


def slice_of(part: str) -> Slice | UnsetType:
    """The ``Partial.slice`` of a slice name ("" for the gate's own evidence: unset)."""
    for known in SLICES:
        if part == known:
            return known
    if part:
        raise ValueError(f"unknown partial slice {part!r}")
    return UNSET


class Partial(msgspec.Struct, frozen=True, kw_only=True, tag="partial", tag_field="kind"):
    """One (gate, pane, source) aggregate; ``bins``/``counts``: the non-empty latency sketch buckets,
    ascending (core/sketch.py's mapping), summing to ``requests``."""

    v: Annotated[int, msgspec.Meta(ge=1, le=VERSION)] = VERSION
    gate: GateKey  # "region/tier"
    pane: int  # pane start, ms since the epoch (a multiple of the plan's pane)
    source: SourceId  # e.g. "telemetry:3" (topic:partition) or an edge publisher's own id
    requests: NonNegative
    errors: NonNegative
    late: NonNegative = 0  # records of this gate this source counted late while this pane was its first open
    seq: NonNegative = 0  # version: a higher one replaces a lower one (cumulative, never added to it)
    bins: tuple[Bucket, ...] = ()
    counts: tuple[NonNegative, ...] = ()
    # which evidence of the gate: unset (never encoded) for its own telemetry; "baseline": its region's baseline
    # version's (core/regression.py); "cross_region": copies of its requests from clients in another region
    # (core/cross_region.py); both kept apart from its own in stage 2
    slice: Slice | UnsetType = UNSET

    @property
    def ident(self) -> tuple[str, int, str]:
        return (self.gate, self.pane, self.source)

    @property
    def part(self) -> str:
        """The slice, "" for the gate's own evidence."""
        return "" if self.slice is UNSET else str(self.slice)


class Watermark(msgspec.Struct, frozen=True, kw_only=True, tag="watermark", tag_field="kind"):
    """A source's progress: its newest event time minus the plan's lateness (ms), or None before its first
    record. ``idle``: read to its end with nothing new for ``idle_after`` (stage 2 then stops waiting for it)."""

    v: Annotated[int, msgspec.Meta(ge=1, le=VERSION)] = VERSION
    source: SourceId
    watermark: int | None
    idle: bool = False


Message = Partial | Watermark

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Message)


class PartialError(ValueError):
    """Bytes that are not a valid partial or watermark message (the reason names the field)."""


def encode(message: Message) -> bytes:
    return _ENCODER.encode(message)


def decode(raw: bytes) -> Message:
    """A message from its JSON bytes; PartialError with the reason when invalid."""
    try:
        message = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PartialError(str(exc)) from None
    if isinstance(message, Partial):
        check(message)
    return message


def check(p: Partial) -> None:
    """The rules a schema cannot say: bins ascending and distinct, one count each, counts summing to the
    requests, errors within them."""
    if len(p.bins) != len(p.counts):
        raise PartialError(f"partial {p.ident}: {len(p.bins)} bins but {len(p.counts)} counts")
    if any(b <= a for a, b in zip(p.bins, p.bins[1:], strict=False)):
        raise PartialError(f"partial {p.ident}: bins must be ascending and distinct")
    if sum(p.counts) != p.requests:
        raise PartialError(f"partial {p.ident}: bin counts sum to {sum(p.counts)}, requests is {p.requests}")
    if p.errors > p.requests:
        raise PartialError(f"partial {p.ident}: {p.errors} errors in {p.requests} requests")


@dataclass(frozen=True, slots=True)
class PartialBatch:
    """Partials of one source as columns, row i one (gate, pane) in emission order: how stage 1 hands its
    partials to a stage 2 in the same process (replay) without a ``Partial`` object per row, which cost ~25 us
    each on sparse input. ``rows()`` gives the public ``Partial``s for the Kafka wire, identical to those of the
    per-row path. Bins of row i: ``bins[offsets[i]:offsets[i + 1]]`` (ascending), with their ``counts``."""

    source: str
    keys: Sequence[str]  # gate index -> "region/tier"
    gate: npt.NDArray[np.int64]
    pane: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    requests: npt.NDArray[np.int64]
    errors: npt.NDArray[np.int64]
    late: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    bins: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    slices: Sequence[str] = ()  # gate index -> slice ("" or none: the gate's own; core/slot_routing.py)

    def __len__(self) -> int:
        return int(self.gate.size)

    def rows(self, which: npt.NDArray[np.int64] | None = None) -> list[Partial]:
        """The rows (``which``: only those, in that order) as ``Partial``s."""
        pick = slice(None) if which is None else which
        if which is None:
            bounds = self.offsets.tolist()
            bins, counts = self.bins.tolist(), self.counts.tolist()
            lows, highs = bounds[:-1], bounds[1:]
        else:  # only the chosen rows' bins (replay's few baseline rows of a batch of ~180k bins)
            starts, sizes = self.offsets[:-1][which], self.offsets[1:][which] - self.offsets[:-1][which]
            at = ragged(starts, sizes)
            bins, counts = self.bins[at].tolist(), self.counts[at].tolist()
            ends = np.cumsum(sizes).tolist()
            lows, highs = [0, *ends][: len(ends)], ends
        columns = zip(self.gate[pick].tolist(), self.pane[pick].tolist(), self.seq[pick].tolist(),
                      self.requests[pick].tolist(), self.errors[pick].tolist(), self.late[pick].tolist(), lows, highs,
                      strict=True)  # fmt: skip
        source, keys = self.source, self.keys
        slices: Sequence[str] = self.slices or [""] * len(keys)
        return [
            Partial(
                gate=keys[g],
                pane=pane,
                source=source,
                requests=n,
                errors=k,
                late=late,
                seq=seq,
                bins=tuple(bins[lo:hi]),
                counts=tuple(counts[lo:hi]),
                slice=slice_of(slices[g]),
            )
            for g, pane, seq, n, k, late, lo, hi in columns
        ]


def ragged(starts: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Indices of the ranges ``starts[i] .. starts[i] + sizes[i]``, one after the other (a ragged gather)."""
    ends = np.cumsum(sizes)
    return np.arange(int(ends[-1]) if ends.size else 0, dtype=np.int64) + np.repeat(starts - ends + sizes, sizes)


@dataclass(frozen=True, slots=True)
class Closing:
    """The panes one close merges, as columns: per pane (ascending) its summed requests, errors and late
    records; per latency bin entry its pane, bucket and count."""

    panes: npt.NDArray[np.int64]
    requests: npt.NDArray[np.int64]
    errors: npt.NDArray[np.int64]
    late: npt.NDArray[np.int64]
    bin_pane: npt.NDArray[np.int64]
    buckets: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
