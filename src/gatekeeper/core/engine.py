"""The engine: routes columnar event batches to their gates in event time and collects decisions.

Per gate, the watermark is its newest event time minus the allowed lateness. A pane (default 1 min) closes
when the watermark passes its end; an event arriving for a closed pane is *late*: counted, never used.
Everything a gate decides depends only on its own events (and, for the stall check, the stream's newest
event time), so a gate decides the same on one process or split across Kafka partitions.

Not what gatekeeper runs: replay, the simulator and the worker run core/pipeline.py (two stages, panes closed on
the slowest source's watermark rather than on each gate's own). This former per-gate engine is kept as the core
of bench/kafka_stub_worker.py (``kafka_bench.py --worker stub``, a reference to compare the worker with) and as a
light driver of ``Gate`` in tests/core/test_engine.py and test_snapshot.py. No test compares it with the
pipeline, so it is no oracle of it: the two agree on in-step input (the worker tests' scenario, the core tests'
rich one), but a gate whose events lag the stream's closes its panes at other times under each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch
from gatekeeper.core.aggregate import group_values
from gatekeeper.core.decision import Decision
from gatekeeper.core.gate import Gate, GateSpec, GateState
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder

SUBCHUNK_PANES = 1440  # bounds the panes and windows one vectorised step may open (a day of 1-min panes)


@dataclass(slots=True)
class EngineStats:
    events: int = 0
    late: int = 0
    decisions: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Engine:
    """Pure and deterministic: the same plan and the same events in the same order give the same decisions."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        ev = plan.evaluation
        self._pane, self._window, self._lateness = ev.pane, ev.window, ev.lateness
        keys = plan.gates()
        self.gates = [
            Gate(GateSpec.of(region, phase, tier, ev, plan.plan_version, len(keys))) for region, phase, tier in keys
        ]
        self.keys = [(g.spec.region, g.spec.tier.name) for g in self.gates]
        self.stream_max: int | None = None
        self.stats = EngineStats()
        self._flushed = False

    def decoder(self, now_ms: int | None = None) -> TelemetryDecoder:
        """A decoder for this plan's gates; given the shell's clock, it rejects records timestamped more than the
        plan's ``max_future_skew`` after it."""
        skew = self.plan.evaluation.max_future_skew
        return TelemetryDecoder(self.keys, None if now_ms is None else now_ms + skew)

    def ingest(self, batch: EventBatch) -> list[Decision]:
        """Apply a batch of valid events (arrival order) and return the decisions it triggers."""
        if self._flushed:
            raise RuntimeError("flush() ended the input: this engine takes no more events")
        out: list[Decision] = []
        if len(batch):
            narrow = batch.key.astype(np.uint8 if len(self.gates) <= 255 else np.int32)
            order = np.argsort(narrow, kind="stable")  # radix sort for uint8: linear
            keys = batch.key[order]
            cuts = np.flatnonzero(np.diff(keys)) + 1
            buckets = sketch.bucket_of(batch.latency_ms)
            for seg in np.split(order, cuts):
                gate = self.gates[int(batch.key[seg[0]])]
                self._ingest_gate(gate, batch.ts_ms[seg], buckets[seg], batch.error[seg], out)
            newest = int(batch.ts_ms.max())
            self.stream_max = newest if self.stream_max is None else max(self.stream_max, newest)
            self.stats.events += len(batch)
        self._check_stalls(out)
        self._count(out)
        return out

    def flush(self) -> list[Decision]:
        """End of input, on request only: treat the lateness as elapsed and close what the data covers."""
        out: list[Decision] = []
        self._flushed = True
        if self.stream_max is not None:
            for gate in self.gates:
                if gate.state.max_ts is not None:
                    self._advance(gate, self.stream_max, out)
        self._count(out)
        return out

    def state_of(self, index: int) -> GateState:
        return self.gates[index].state

    def restore(self, index: int, state: GateState) -> None:
        """Replace a gate's state (e.g. from a changelog snapshot) before feeding it more events."""
        self.gates[index].state = state

    def observe_stream_time(self, newest_ts_ms: int) -> list[Decision]:
        """Advance the stream-wide clock without events (e.g. from other partitions) and run the stall check."""
        self.stream_max = newest_ts_ms if self.stream_max is None else max(self.stream_max, newest_ts_ms)
        out: list[Decision] = []
        self._check_stalls(out)
        self._count(out)
        return out

    # -- internals ---------------------------------------------------------------------------------------
    def _ingest_gate(
        self,
        gate: Gate,
        ts: npt.NDArray[np.int64],
        buckets: npt.NDArray[np.int64],
        errors: npt.NDArray[np.bool_],
        out: list[Decision],
    ) -> None:
        st = gate.state
        running = np.maximum.accumulate(ts)
        if st.max_ts is not None:
            running = np.maximum(running, st.max_ts)
        span = SUBCHUNK_PANES * self._pane
        start, n = 0, ts.size
        while start < n:
            stop = max(start + 1, int(np.searchsorted(running, running[start] + span, side="right")))
            before = np.empty(stop - start, dtype=np.int64)  # newest event time before each event
            before[0] = st.max_ts if st.max_ts is not None else np.iinfo(np.int64).min // 2
            before[1:] = running[start : stop - 1]
            watermark = before - self._lateness
            closed_until = watermark - watermark % self._pane
            accepted = ts[start:stop] >= closed_until
            # A decision must not count late events that arrive after its pane closed: end the step at the
            # first late event that follows a pane close within it (same result as one event at a time).
            after = running[start:stop] - self._lateness
            closing = np.flatnonzero(after - after % self._pane > closed_until[0])
            if closing.size:
                late_after = np.flatnonzero(~accepted[closing[0] + 1 :])
                if late_after.size:
                    stop = start + int(closing[0]) + 1 + int(late_after[0])
                    accepted = accepted[: stop - start]
            chunk = slice(start, stop)
            late = int(accepted.size - np.count_nonzero(accepted))
            if late:
                st.late_events += late
                self.stats.late += late
            self._add(gate, ts[chunk][accepted], buckets[chunk][accepted], errors[chunk][accepted])
            st.max_ts = int(running[stop - 1])
            self._advance(gate, st.max_ts - self._lateness, out)
            start = stop

    def _add(
        self,
        gate: Gate,
        ts: npt.NDArray[np.int64],
        buckets: npt.NDArray[np.int64],
        errors: npt.NDArray[np.bool_],
    ) -> None:
        if ts.size == 0:
            return
        panes, inverse = group_values(ts // self._pane)
        counts = np.bincount(inverse, minlength=panes.size)
        failed = np.bincount(inverse[errors], minlength=panes.size)
        panes *= self._pane
        open_panes = gate.state.open_panes
        for pane, requests, errs in zip(panes.tolist(), counts.tolist(), failed.tolist(), strict=True):
            slot = open_panes.get(pane)
            if slot is None:
                open_panes[pane] = [requests, errs]
            else:
                slot[0] += requests
                slot[1] += errs
        windows, w_inverse = group_values(ts // self._window)
        windows *= self._window
        grid = np.bincount(w_inverse * sketch.NBINS + buckets, minlength=windows.size * sketch.NBINS)
        for window, row in zip(windows.tolist(), grid.reshape(windows.size, sketch.NBINS), strict=True):
            gate.add_bins(window, row)

    def _advance(self, gate: Gate, watermark: int, out: list[Decision]) -> None:
        open_panes = gate.state.open_panes
        closing = sorted(p for p in open_panes if p + self._pane <= watermark)
        if closing:
            counts = np.asarray([open_panes.pop(p) for p in closing], dtype=np.int64)
            gate.on_panes(np.asarray(closing, dtype=np.int64), counts[:, 0], counts[:, 1], out)
        gate.close_windows_until(watermark, out)

    def _check_stalls(self, out: list[Decision]) -> None:
        if self.stream_max is None:
            return
        stream_watermark = self.stream_max - self._lateness
        for gate in self.gates:
            newest = gate.state.max_ts
            if newest is not None:
                gate.on_stream_clock(stream_watermark, newest - newest % self._pane + self._pane, out)

    def _count(self, out: list[Decision]) -> None:
        self.stats.decisions += len(out)
        for d in out:
            self.stats.by_kind[d.decision] = self.stats.by_kind.get(d.decision, 0) + 1
