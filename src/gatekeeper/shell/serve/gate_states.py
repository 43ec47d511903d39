"""Reads the worker's gate states into the board: a gate soaking before its first decision shows ``soaking``.

The worker's stage 2 writes every touched gate's state to the compacted ``<app-id>-gate-state-changelog`` at
each checkpoint (key ``region/tier``; value: the plan version and ``inbox_snapshot.dump_inbox``). Serving it
is Kafka Streams' "interactive queries over the changelog": ``gatekeeper serve`` reads that topic too, from
the beginning and without a consumer group, and folds each gate's status and soak progress in with
``Board.observe``. The decisions topic stays the source of truth for verdicts (see ``core.board``). The topic
may not exist yet (no worker ran): the reader waits for it, like for the decisions topic.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.core import global_gate, inbox_snapshot
from gatekeeper.core.board import Board
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.serve.promserve import ServeMetrics
from gatekeeper.shell.serve.reader import TopicReader
from gatekeeper.shell.worker.state_entry import StateError, decode_entry
from gatekeeper.shell.worker.topics import changelog_topic


def observe_entry(board: Board, key: bytes, value: bytes) -> str:
    """Fold one changelog entry into ``board``: "observed", "stale" (older than what the board knows, or a
    gate not on it), "other-plan" (written for another plan version; any version when the board has none),
    or ValueError naming why the bytes are not a gate state."""
    try:
        version, raw = decode_entry(value)
    except StateError as exc:
        raise ValueError(str(exc)) from None
    if board.plan_version and version != board.plan_version:
        return "other-plan"
    if key.startswith(f"{global_gate.REGION}/".encode()):
        return "stale"  # a global gate's fold (core/global_gate.py): its decisions tell the board all it has
    gate = inbox_snapshot.load_inbox(raw)[0].gate
    # windows closed up to ``window_start``: the state's event time, and the soak time observed so far
    observed = board.observe(
        key.decode(errors="replace"),
        gate.status,
        soak_start_ms=gate.soak_start,
        soak_requests=gate.soak_requests + gate.window_requests,
        event_time_ms=gate.window_start,
        soak_elapsed_ms=gate.window_start - gate.soak_start - gate.stalled_ms,
    )
    return "observed" if observed else "stale"


class GateStateReader(TopicReader):
    """Reads ``<app_id>-gate-state-changelog`` into ``board`` (soak progress between decisions)."""

    what = "gate states"

    def __init__(self, settings: KafkaSettings, board: Board, metrics: ServeMetrics, log: Any, app_id: str) -> None:
        super().__init__(settings, board, metrics, log, changelog_topic(app_id))

    def _apply(self, record: Any, now_ms: float) -> None:
        if record.key is None or record.value is None:  # a tombstone: the gate's state is gone; keep what we know
            return
        try:
            outcome = observe_entry(self.board, record.key, record.value)
        except ValueError as exc:
            outcome = "invalid"
            where = {"topic": self.topic, "partition": record.partition, "offset": record.offset}
            self.log.warning("not a gate state; skipped", **where, error=str(exc))
        self.metrics.gate_states.labels(outcome=outcome).inc()
