"""Stage 1 of the pipeline over one source (replay's file, the simulator's, the demo's): decode with the plan's
key space, fold each batch into closed panes and the source's watermark (``core/aggregate.py``). Its output,
``Folded``, is all that stage 2 (``core/pipeline.py``) needs, so the two stages can run in one process or in
two (``gatekeeper replay --jobs 2``: ``shell/child_stage.py``); stage 1 is a sequential fold of the source in
its order either way, so the decisions are the same.

Imports only what stage 1 needs (no gate, merge or scipy): replay forks its stage-1 process before stage 2's
modules are loaded, so their import overlaps decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.core import slot_routing
from gatekeeper.core.aggregate import Aggregator, SourceState
from gatekeeper.core.partials import PartialBatch, Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder

SOURCE = "input"  # replay's one source


@dataclass(frozen=True, slots=True)
class Folded:
    """Stage 1's output for one batch: the panes it closed, the source's watermark after it, the new requests
    it held (cross-region copies are no new requests) and the source's late records so far."""

    partials: PartialBatch
    watermark: Watermark
    events: int
    late: int


class SourceFold:
    """Stage 1 for ``plan`` over one source. Pure: the same batches in the same order give the same output,
    wherever they are cut."""

    def __init__(self, plan: Plan, source: str = SOURCE) -> None:
        self.plan = plan
        ev = plan.evaluation
        self.layout = slot_routing.layout(plan)  # the gates' keys, then baseline slots (no_regression)
        self.keys = self.layout.gates
        self.aggregator = Aggregator(self.layout.keys, ev.pane, ev.lateness, self.layout.fan())
        self.state: SourceState = self.aggregator.start(source)

    def decoder(self, now_ms: int | None = None) -> TelemetryDecoder:
        """A decoder for this plan's gates; given the shell's clock, it rejects records timestamped more than the
        plan's ``max_future_skew`` after it."""
        until = None if now_ms is None else now_ms + self.plan.evaluation.max_future_skew
        return TelemetryDecoder(self.keys, until, self.layout.baselines, self.layout.cross)

    def fold(self, batch: EventBatch) -> Folded:
        """Fold the source's next valid events (arrival order)."""
        self.state, partials, watermark = self.aggregator.fold_columns(self.state, batch)
        return Folded(partials, watermark, len(batch) - batch.copies, self.state.late)

    def finish(self) -> Folded:
        """End of input, on request only: treat the lateness as elapsed and emit every pane the data covers."""
        self.state, partials, watermark = self.aggregator.finish_columns(self.state)
        return Folded(partials, watermark, 0, self.state.late)
