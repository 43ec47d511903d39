"""Both stages over one source: stage 1 (``core/source_fold.py``: ``aggregate``) folds each batch into partials
and a watermark, stage 2 (``merge``) merges them into the gates. Replay, the simulator and the demo run this, the
partials going from one stage to the other as columns (``PartialBatch``); the worker runs the same two stages with
Kafka between them, one ``Partial`` per message, so their decisions agree by construction.

The seam: ``ingest`` = stage 1's ``SourceFold.fold`` then stage 2's ``take``. ``gatekeeper replay --jobs 2`` runs
stage 1 in a child process and hands each ``Folded`` to ``take`` here (``shell/child_stage.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatekeeper.core.breach import Breach
from gatekeeper.core.decision import Decision
from gatekeeper.core.global_gate import GlobalGates, TierFold, drain
from gatekeeper.core.merge import GateInbox, Merger
from gatekeeper.core.output_order import gate_ranks, in_time_order
from gatekeeper.core.partial_buffer import PartialBuffer
from gatekeeper.core.partials import PartialBatch, Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.core.side_inputs import Routed, SideRouter, apply
from gatekeeper.core.source_fold import SOURCE, Folded, SourceFold
from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder


@dataclass(slots=True)
class PipelineStats:
    events: int = 0
    late: int = 0
    decisions: int = 0
    partials: int = 0
    breaches: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Pipeline:
    """Pure and deterministic: the same plan and the same events in the same order give the same decisions,
    wherever the batches are cut, and in the same order (``core/output_order.py``)."""

    def __init__(self, plan: Plan, source: str = SOURCE, stage1: SourceFold | None = None) -> None:
        self.plan = plan
        # stage 1 over ``source`` (``ingest``); only its layout is used when stage 1 runs elsewhere (``take``)
        self.stage1 = SourceFold(plan, source) if stage1 is None else stage1
        self.layout = self.stage1.layout
        self.keys = self.stage1.keys
        self.merger = Merger(plan, (source,))
        self._source_late = 0  # stage 1's late count, as its last ``Folded`` gave it
        self.inboxes: dict[str, GateInbox] = self.merger.start_all()
        self.stats = PipelineStats()
        self._breaches: list[Breach] = []
        self._flushed = False
        self.side_router = SideRouter(plan)
        self.globals = GlobalGates(plan)  # the all-regions gates, after the regional ones (core/global_gate.py)
        self.global_states = {tier: TierFold() for tier in self.globals.specs}
        for key in self.globals.region_keys_all():
            self.merger.gate(key, self.inboxes[key]).down_sink = []  # their panes, for the multi-region uptime
        self.ranks = gate_ranks(self.inboxes, self.globals.specs)
        self._held = PartialBuffer()  # stage 1's output not merged yet (``ingest(merge=False)``)

    def apply_side(self, routed: Routed, source: str, position: int) -> None:
        """A valid side record (incident, approval, business metric) into the ledgers of the gates it concerns;
        it counts at the windows closing after its time (core/side_inputs.py)."""
        for key in routed.gates:
            apply(self.inboxes[key].gate.side, routed.value, source, position, self.plan.evaluation.window)

    def decoder(self, now_ms: int | None = None) -> TelemetryDecoder:
        """Stage 1's decoder (``SourceFold.decoder``)."""
        return self.stage1.decoder(now_ms)

    def ingest(self, batch: EventBatch, *, merge: bool = True) -> list[Decision]:
        """Apply a batch of valid events (arrival order) and return the decisions it triggers. With ``merge``
        False, stage 1 folds it but stage 2 waits (``settle``): the same decisions, made later and in fewer,
        cheaper closes (``core/partial_buffer.py``)."""
        if self._flushed:
            raise RuntimeError("flush() ended the input: this pipeline takes no more events")
        return self.take(self.stage1.fold(batch), merge=merge)

    def take(self, folded: Folded, *, merge: bool = True) -> list[Decision]:
        """Stage 2 alone: take stage 1's output for the source's next batch (from ``self.stage1`` or a stage 1
        run elsewhere over the same source, in order); ``merge`` as for ``ingest``."""
        self.stats.events += folded.events
        self._source_late = folded.late
        self._held.add(folded.partials, folded.watermark)
        return self.settle() if merge else []

    def settle(self) -> list[Decision]:
        """Merge what ``ingest(merge=False)`` held back; the decisions it triggers."""
        taken = self._held.take()
        return [] if taken is None else self._merge(*taken)

    def flush(self) -> list[Decision]:
        """End of input, on request only: treat the lateness as elapsed and close what the data covers."""
        self._flushed = True
        return self.take(self.stage1.finish())

    def observe_stream_time(self, newest_ts_ms: int) -> list[Decision]:
        """Report stalls and releases as of an event time no record carried (the demo's hours without traffic),
        without closing anything: records up to the lateness behind the last one still count."""
        out = self.settle()
        watermark = newest_ts_ms - self.plan.evaluation.lateness
        pane = self.plan.evaluation.pane
        newest: dict[str, int] = {}  # end of each gate's newest pane not closed yet, in either stage
        for index, start in self.stage1.state.panes:
            if index >= len(self.keys):
                continue  # a baseline slot: not a gate's own telemetry
            key = self.stage1.aggregator.keys[index]
            newest[key] = max(newest.get(key, 0), start + pane)
        for key, inbox in self.inboxes.items():
            ends = [start + pane for start in inbox.buffered]
            gate = self.merger.gate(key, inbox)
            gate.on_stream_clock(watermark, max([newest.get(key, 0), *ends]), out)
        out += self._global(out)
        self._count(out)
        return in_time_order(out, self.ranks)

    def take_breaches(self) -> list[Breach]:
        """The breach alert events (``core/breach_watch.py``) made since the last call (each gate's in event time)."""
        out, self._breaches = self._breaches, []
        return in_time_order(out, self.ranks)

    def _merge(self, partials: PartialBatch, watermark: Watermark) -> list[Decision]:
        before = len(self._breaches)
        out = self.merger.apply_columns(self.inboxes, partials, watermark, self._breaches)
        self.stats.breaches += len(self._breaches) - before
        self.stats.partials += len(partials)
        self.stats.late = self._source_late + sum(i.counts.late for i in self.inboxes.values())
        out += self._global(out)
        self._count(out)
        return in_time_order(out, self.ranks)

    def _global(self, regional: list[Decision]) -> list[Decision]:
        """The global decisions that ``regional`` and the regional gates' progress make."""
        out: list[Decision] = []
        for tier, state in self.global_states.items():
            keys = self.globals.region_keys(tier)
            closed = [self.inboxes[k].closed_until for k in keys]
            progress = None if None in closed else min(c for c in closed if c is not None)
            panes = {k.split("/")[0]: drain(self.merger.gate(k, self.inboxes[k])) for k in keys}
            out += self.globals.fold(tier, state, (d for d in regional if d.tier == tier), progress, panes)
        return out

    def _count(self, out: list[Decision]) -> None:
        self.stats.decisions += len(out)
        for d in out:
            self.stats.by_kind[d.decision] = self.stats.by_kind.get(d.decision, 0) + 1
