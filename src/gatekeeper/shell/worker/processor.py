"""The worker's per-poll processing, without any Kafka client (unit-testable): both stages of the pipeline over
the owned partitions, composed from ``partition_stage.py`` (stage 1, per telemetry partition: partials and
watermarks to ``<app-id>-panes``), ``gate_stage.py`` (stage 2, per panes partition: gate inboxes, decisions,
breach alerts; the global gates of ``global_stage.py``) and the side inputs' stage (``side.py``), if read.

Order of I/O (``runtime.py``): the messages are sent and acknowledged before the states are written, and the
offsets are committed only once the states are acknowledged. The producer is idempotent, so a partition's
partials stay ahead of the watermark sent after them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch
from gatekeeper.shell.worker.flush import Checkpoint, Flush
from gatekeeper.shell.worker.gate_stage import GateStage
from gatekeeper.shell.worker.partition_stage import PartitionStage
from gatekeeper.shell.worker.records import Consumed
from gatekeeper.shell.worker.routing import Homes, Topics
from gatekeeper.shell.worker.side import SideStage


class Processor:
    """Both stages for the owned partitions; ``gates`` / ``sources``: the restored table entries."""

    def __init__(
        self,
        plan: Plan,
        topics: Topics,
        gates: Callable[[bytes], bytes | None],
        sources: Callable[[bytes], bytes | None],
        *,
        warn: Callable[[str], None] | None = None,
        pane_records: Callable[[int, int], bytes | None] | None = None,
    ) -> None:
        """``pane_records(q, offset)``: the value of a record of the panes topic read back for a restore."""
        self.plan, self.topics = plan, topics
        self.homes = Homes(plan, topics.partitions)
        self.keys, self.home = self.homes.keys, self.homes.home
        self.partitions = PartitionStage(plan, topics, self.homes, sources, warn)
        self.gates = GateStage(plan, topics, self.homes, gates, warn, pane_records)
        self.rejected: Counter[str] = Counter()
        self.decided: Counter[str] = Counter()

    @property
    def side(self) -> SideStage | None:
        """Incidents, approvals, business metrics (worker/side.py), if read; hooked to ``gates``."""
        return self.gates.side

    @side.setter
    def side(self, side: SideStage | None) -> None:
        self.gates.side = side

    def source_id(self, partition: int) -> str:
        return self.topics.source_id(partition)

    def open_panes(self) -> int:
        """How many (gate, pane) partials stage 1 holds open over the owned partitions (its memory)."""
        return self.partitions.open_panes()

    def not_after(self, now_ms: int) -> int:
        """The newest event time accepted when the wall clock reads ``now_ms``."""
        return self.partitions.not_after(now_ms)

    # -- assignment --------------------------------------------------------------------------------------
    def resume(self, partition: int) -> int | None:
        """Restore telemetry partition ``partition``'s stage-1 state; the offset to read it from (None: from
        the committed offset, there being no state)."""
        return self.partitions.resume(partition)

    def resumed(self, partitions: Iterable[int]) -> Flush:
        """Telemetry partitions just gained: each reported as not idle, at its restored watermark."""
        return self.partitions.resumed(partitions)

    def checkpoint(self) -> Checkpoint:
        """Encode the states changed since the last checkpoint (each once, however many polls changed it)."""
        return Checkpoint(gates=self.gates.checkpoint(), sources=self.partitions.checkpoint())

    def revoke(self, sources: Iterable[int], gates: Iterable[int]) -> None:
        """Forget the stage-1 state of telemetry partitions ``sources`` and the inboxes of the gates homed at
        panes partitions ``gates`` (their next owner restores them from the tables)."""
        self.partitions.revoke(sources)
        self.gates.revoke(gates)

    def state_partition(self, key: bytes) -> int:
        """The gate-state changelog partition of ``key`` (a gate's or a global gate's): its home."""
        return self.homes.state_partition(key)

    def located_partials(self, entries: Mapping[bytes, bytes]) -> dict[int, set[int]]:
        """The panes-topic offsets, by partition, of the partials the restored gate entries ``entries`` hold by
        reference: what to read back before their gates can be restored."""
        return self.gates.located_partials(entries)

    # -- flushing ----------------------------------------------------------------------------------------
    def flush_polled(
        self,
        polled: Sequence[tuple[str, int, Sequence[Consumed]]],
        now_ms: int | None = None,
        decoded: EventBatch | None = None,
    ) -> Flush:
        """One poll's records, as (topic, partition, records) runs in fetch order: stage 1 over the telemetry
        runs (``decoded``: their values decoded already, in run order), then stage 2 over the panes runs."""
        out = Flush()
        telemetry = [run for run in polled if run[0] == self.topics.telemetry]
        if telemetry:
            self.partitions.fold(telemetry, now_ms, decoded, out)
        for topic, partition, records in polled:
            if topic == self.topics.panes and records:
                self.gates.merge(partition, records, out)
        if self.side is not None:
            self.side.flush(polled, out)
        self.rejected.update(out.rejected)
        self.decided.update(d.decision for d in out.decisions)
        return out

    def mark_idle(self, partitions: Iterable[int], *, again: bool = False) -> Flush:
        """Telemetry partitions read to their end and silent for ``idle_after``: their open panes sealed and
        their idleness said to every gate, once (``again``: once more)."""
        return self.partitions.mark_idle(partitions, again=again)
