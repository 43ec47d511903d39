"""When the Faust gate process says a side-input partition is idle: read to its end for ``--idle-after`` s (the
time counting from the first check that saw it there), and again every ``idle_after`` while it stays so (a gate
stops counting a partition idle when another one wakes up) — the default worker's rule (``runtime._clock``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

Part = tuple[str, int]  # (topic, partition)


class IdleWatch:
    def __init__(self, idle_after: float) -> None:
        self.idle_after = idle_after
        self._since: dict[Part, float] = {}  # at its end since (monotonic s)
        self._said: dict[Part, float] = {}  # last said idle

    def due(self, watched: Iterable[Part], at_end: set[Part], now: float) -> list[Part]:
        """The ``watched`` partitions to report idle now, ``at_end`` being those read to their end."""
        for part in watched:
            if part in at_end:
                self._since.setdefault(part, now)
            else:
                self._since.pop(part, None)
        idle = sorted(p for p in at_end if p in self._since and now - self._since[p] >= self.idle_after)
        self._said = {p: t for p, t in self._said.items() if p in idle}
        due = [p for p in idle if now - self._said.get(p, -math.inf) >= self.idle_after]
        self._said.update(dict.fromkeys(due, now))
        return due

    def forget(self) -> None:
        """A rebalance: nothing is known to be idle."""
        self._since.clear()
        self._said.clear()
