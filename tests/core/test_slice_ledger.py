"""Stage 2's keeping of slice evidence (core/slice_ledger.py): a gate's baseline ledger and an inbox's buffered
baseline partials through the changelog snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from gatekeeper.core import inbox_snapshot, partials, sketch, slice_ledger

from .baseline_scenario import interleaved, replayed
from .helpers import MINUTE, T0


def test_the_baseline_survives_snapshots() -> None:
    """A gate's baseline (open windows, soak, looks) and an inbox's buffered baseline partials round-trip through
    the changelog snapshots; a gate that never saw a baseline writes nothing for it."""
    _, pipeline = replayed(interleaved()[:12_000], 3_000)
    inbox = pipeline.inboxes["us-east/canary"]
    ledger = inbox.gate.baseline
    assert ledger.looks > 0
    assert ledger == slice_ledger.load_ledger(slice_ledger.dump_ledger(ledger))
    assert b"" == slice_ledger.dump_ledger(slice_ledger.BaselineLedger())
    held = partials.Partial(gate="us-east/canary", pane=T0 + 600 * MINUTE, source="input", requests=1, errors=0,
                            bins=(5,), counts=(1,), slice="baseline")  # fmt: skip
    inbox.baseline.panes = {held.pane: {"input": held}}
    restored, _, _ = inbox_snapshot.load_inbox(inbox_snapshot.dump_inbox(inbox))
    assert {held.pane: {"input": held}} == restored.baseline.panes
    assert ledger == restored.gate.baseline


def test_windows_without_evidence_close_empty_and_apart() -> None:
    """A window closed without evidence gives an empty sample and leaves the soak as it was; evidence added to
    another window later (a new sample, from the shared empty one) changes neither that look nor a new empty one."""
    ledger = slice_ledger.BaselineLedger()
    bins = sketch.from_sparse([3], [2])
    ledger.add(0, 2, 1, bins)
    ledger.close(0, fold=True)
    empty = ledger.close(MINUTE, fold=True)
    ledger.add(2 * MINUTE, 5, 0, bins)
    later = ledger.close(2 * MINUTE, fold=True)
    assert (slice_ledger.Sample(), 2) == (empty.window, empty.looks)
    assert slice_ledger.Sample(2, 1, bins) == empty.soak
    assert slice_ledger.Sample(7, 1, 2 * bins) == later.soak
    assert slice_ledger.Sample() == ledger.close(3 * MINUTE, fold=False).window
    assert 0 == int(np.count_nonzero(sketch.EMPTY))


def test_a_look_does_not_change_as_evidence_arrives() -> None:
    """Samples are immutable: evidence added to an open window after a look was taken (the same window reopened
    after a hold, or the shared empty sample) replaces the ledger's sample and leaves the look's as it was; a
    sample refuses an in-place update."""
    ledger = slice_ledger.BaselineLedger()
    bins = sketch.from_sparse([3], [2])
    ledger.add(0, 2, 1, bins)
    look = ledger.close(0, fold=True)
    empty = ledger.close(MINUTE, fold=True)
    ledger.add(0, 5, 0, bins)
    ledger.add(MINUTE, 5, 0, bins)
    assert (slice_ledger.Sample(2, 1, bins), slice_ledger.Sample(2, 1, bins)) == (look.window, look.soak)
    assert slice_ledger.Sample() == empty.window
    assert slice_ledger.Sample(5, 0, bins) == ledger.open[MINUTE]
    with pytest.raises(AttributeError):
        empty.window.requests = 1  # type: ignore[misc]
