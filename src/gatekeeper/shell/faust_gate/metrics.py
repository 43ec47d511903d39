"""``--metrics-port`` for the Faust gate engine: the default worker's exporter (``worker/exporter.py``: the same
endpoints, names and probes), fed from the agent instead of the poll loop.

What a stage-2-only process can report: decisions by kind, dead letters by reason, duplicate partials, the lag
of each partition held (panes and side topics: messages after the last one the agent handled, every
``--clock-interval``), and the decision delay (from reading the message that closed a decision to the broker's
acknowledgement of the decision). /readyz is 200 once the process holds partitions and has handled every message
in them.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.shell.faust_gate.state import Totals
from gatekeeper.shell.worker.exporter import WorkerExporter


class FaustMetrics:
    """What the agent reports to the exporter."""

    def __init__(self, totals: Totals) -> None:
        self.exporter = WorkerExporter()
        self.totals = totals
        self.owned = 0  # panes and side partitions held
        self.caught_up = False

    def read(self) -> None:
        """A message was handled (what it made is sent): the counters."""
        self.exporter.sync({"duplicates": self.totals.duplicates}, self.totals.rejected, self.totals.decided)

    def behind(self, lags: dict[tuple[str, int], int | None]) -> None:
        """The partitions held, each with the messages after the last one handled (None: not known yet)."""
        for (topic, partition), lag in lags.items():
            if lag is not None:
                self.exporter.lag.labels(topic=topic, partition=str(partition)).set(lag)
        self.owned = len(lags)
        self.caught_up = all(lag == 0 for lag in lags.values())

    def acked(self, sent: Any, wall_ms: int) -> None:
        """A decision's delivery finished (``sent``: its future); counted when the broker acknowledged it."""
        if not sent.cancelled() and sent.exception() is None:
            self.exporter.delivered(1, wall_ms)

    def readiness(self) -> dict[str, bool]:
        return {"assigned": self.owned > 0, "caught_up": self.owned > 0 and self.caught_up}
