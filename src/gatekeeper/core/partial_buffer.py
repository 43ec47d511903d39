"""Stage 1's output held back from stage 2 within one process (replay): the partials of several folded batches
joined into one ``PartialBatch`` with the newest watermark. Stage 2's cost is mostly per close (each gate's
windows, alerts and decisions), not per pane, so merging less often saves most of it; stage 1 still folds
small batches, so decoded events never pile up, only their partials. Merging the joined batch with the newest
watermark is what merging each with its own would give: one source's watermark only grows, and the panes it
emits after a watermark all end after it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gatekeeper.core.partials import PartialBatch, Watermark


@dataclass(slots=True)
class PartialBuffer:
    batches: list[PartialBatch] = field(default_factory=list)
    watermark: Watermark | None = None

    def add(self, batch: PartialBatch, watermark: Watermark) -> None:
        if len(batch) or not self.batches:
            self.batches.append(batch)
        self.watermark = watermark

    def take(self) -> tuple[PartialBatch, Watermark] | None:
        """Everything added since the last ``take``, as one batch and the newest watermark; None if nothing."""
        if self.watermark is None:
            return None
        batch, watermark = join(self.batches), self.watermark
        self.batches, self.watermark = [], None
        return batch, watermark


def join(batches: list[PartialBatch]) -> PartialBatch:
    """One source's batches, in order, as one (the same gate keys and slices: one stage 1's output)."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    for b in batches[1:]:
        if b.source != first.source or list(b.keys) != list(first.keys) or list(b.slices) != list(first.slices):
            raise ValueError("partial batches of different sources or gate layouts cannot be joined")
    shifts = np.cumsum([0, *(b.bins.size for b in batches[:-1])])
    offsets = np.concatenate([first.offsets[:1], *(b.offsets[1:] + s for b, s in zip(batches, shifts, strict=True))])

    def column(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in batches]).astype(np.int64, copy=False)

    return PartialBatch(
        first.source, first.keys, column("gate"), column("pane"), column("seq"), column("requests"),
        column("errors"), column("late"), offsets.astype(np.int64, copy=False), column("bins"), column("counts"),
        first.slices,
    )  # fmt: skip
