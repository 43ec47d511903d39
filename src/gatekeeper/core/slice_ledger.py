"""Stage 2's keeping of a gate's slice evidence (``no_regression``'s baseline, core/regression.py; cross-region
latency, core/cross_region.py): the partials of open panes (``BaselineInbox``: newest ``seq`` per (pane, source),
as the gate's own), handed as panes close to the gate state's ``BaselineLedger`` per window, and the ledger's
changelog snapshot. The gate folds a window into the soak when it closes that window (the soak restarts with the
gate's own after a hold) and hands the criterion a ``BaselineLook``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np

from gatekeeper.core import sketch
from gatekeeper.core.partials import Partial


# What this module reads of its callers' types (structural, so it imports none of gate or merge).
class _Mark(Protocol):
    watermark: int | None


class _Counts(Protocol):
    duplicates: int
    conflicts: int
    late_partials: int


# -- stage 2: the inbox's baseline partials ------------------------------------------------------------------
@dataclass(slots=True)
class BaselineInbox:
    """A gate's baseline partials of open panes: pane -> source -> the newest version."""

    panes: dict[int, dict[str, Partial]] = field(default_factory=dict)


def on_partial(
    box: BaselineInbox, p: Partial, closed_until: int | None, mark: _Mark | None, pane: int, counts: _Counts
) -> None:
    """Buffer a baseline partial; one for a closed pane is a re-delivery (its source passed it) or late, and
    changes nothing (the baseline's late records are not the gate's)."""
    if closed_until is not None and p.pane + pane <= closed_until:
        if mark is not None and mark.watermark is not None and p.pane + pane <= mark.watermark:
            counts.duplicates += 1
        else:
            counts.late_partials += 1
        return
    slot = box.panes.setdefault(p.pane, {})
    before = slot.get(p.source)
    if before is None or p.seq > before.seq:
        slot[p.source] = p
    elif p.seq < before.seq or before == p:
        counts.duplicates += 1
    else:
        counts.conflicts += 1


def close(box: BaselineInbox, ledger: BaselineLedger, until: int, pane: int, window: int) -> None:
    """Hand the baseline panes ending at or before ``until`` to the gate's ledger, by window."""
    for start in sorted(p for p in box.panes if p + pane <= until):
        for p in box.panes.pop(start).values():
            bins = sketch.from_sparse(list(p.bins), list(p.counts))
            ledger.add(start - start % window, p.requests, p.errors, bins)


# -- the gate's baseline evidence -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class Sample:
    """Counts and latency sketch of one side (duck-typed like ``criteria.Evidence``). Immutable: the ledger
    replaces a sample as evidence arrives, so a look handed to a judge never changes under it."""

    requests: int = 0
    errors: int = 0
    bins: sketch.Bins = field(default_factory=lambda: sketch.EMPTY)  # the shared read-only empty sketch

    def __eq__(self, other: object) -> bool:  # the sketch compared by value (snapshot round trips)
        if not isinstance(other, Sample):
            return NotImplemented
        return (self.requests, self.errors) == (other.requests, other.errors) and bool(
            np.array_equal(self.bins, other.bins)
        )

    __hash__ = None  # type: ignore[assignment]  # the sketch is an array


_NOTHING = Sample()  # a closed window without evidence (immutable, so one instance serves every such close)


@dataclass(frozen=True, slots=True)
class BaselineLook:
    """The baseline as of a window's close: that window, the soak so far, and the look's number in the soak."""

    window: Sample
    soak: Sample
    looks: int


@dataclass(slots=True)
class BaselineLedger:
    """A gate's baseline: open windows (start -> sample) and the soak so far."""

    open: dict[int, Sample] = field(default_factory=dict)
    soak: Sample = field(default_factory=Sample)
    looks: int = 0

    def add(self, window_start: int, requests: int, errors: int, bins: sketch.Bins) -> None:
        s = self.open.get(window_start, _NOTHING)
        self.open[window_start] = Sample(s.requests + requests, s.errors + errors, s.bins + bins)

    def close(self, window_start: int, fold: bool) -> BaselineLook:
        """Close a window; ``fold``: add it to the soak (not while the gate is held)."""
        w = self.open.pop(window_start, None) if self.open else None
        if fold:
            if w is not None:  # else nothing to add (most gates have no such evidence): the soak's sample stays
                self.soak = Sample(
                    self.soak.requests + w.requests, self.soak.errors + w.errors, self.soak.bins + w.bins
                )
            self.looks += 1
        return BaselineLook(w or _NOTHING, self.soak, self.looks)

    def drop_ended(self, until: int, window: int) -> None:
        """Forget windows ending at or before ``until`` that no look will take (the gate was not soaking)."""
        if not self.open:  # most gates have no such evidence: this ran twice a window close
            return
        for start in [s for s in self.open if s + window <= until]:
            del self.open[start]

    def restart(self) -> None:
        """A new soak (after a hold): the baseline is compared over the same span as the gate's own."""
        self.soak, self.looks = Sample(), 0


class _Side(msgspec.Struct, array_like=True):
    requests: int
    errors: int
    indices: list[int]
    counts: list[int]


class _Ledger(msgspec.Struct, array_like=True):
    open: dict[int, _Side]
    soak: _Side
    looks: int


def _side(s: Sample) -> _Side:
    return _Side(s.requests, s.errors, *sketch.to_sparse(s.bins))


def _sample(s: _Side) -> Sample:
    return Sample(s.requests, s.errors, sketch.from_sparse(s.indices, s.counts))


def dump_ledger(ledger: BaselineLedger) -> bytes:
    """Empty for a gate that never saw baseline evidence (older snapshots have none)."""
    if not ledger.open and not ledger.soak.requests and not ledger.looks:
        return b""
    return msgspec.msgpack.encode(
        _Ledger({w: _side(s) for w, s in ledger.open.items()}, _side(ledger.soak), ledger.looks)
    )


def load_ledger(raw: bytes) -> BaselineLedger:
    if not raw:
        return BaselineLedger()
    try:
        snap = msgspec.msgpack.decode(raw, type=_Ledger)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a baseline ledger: {exc}") from None
    return BaselineLedger({w: _sample(s) for w, s in snap.open.items()}, _sample(snap.soak), snap.looks)
