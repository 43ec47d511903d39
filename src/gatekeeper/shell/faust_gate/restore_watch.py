"""A stalled restore of the gate-state table: finished, sought again, or reported as a failure.

Faust restores a changelog partition by seeking it to the last record it applied and waiting until it has applied
the one before the partition's highwater. Records aiokafka has fetched, its position already past them, can still be
dropped on their way: ``Consumer.getmany`` stops handing out a fetched batch when the flow stops or the generation
changes (a rebalance), ``Consumer._drain_messages`` abandons a record while the flow is suspended or when it lies
below a read offset left from an earlier fetch. The restore then waits for records that never come (Faust repairs
a stall only for transactional apps, ``Recovery.detect_aborted_tx``). CI saw one: a Faust gate process taking over
a SIGKILLed one's partitions received no record of three of them for four minutes while aiokafka went on fetching
them, and decided nothing more.

A restore also waits forever when the partition ends with offsets that hold no record, transaction markers
(Faust takes the highwater's offset for the last record's): a changelog ever written transactionally.

So, while Faust restores, a partition with records left that received none for ``stall_after`` s is checked: the
process reads what is left up to the highwater with a consumer of its own (``FaustGate._records_left``). No
record: only markers are left, and the partition counts as restored. Records: it is sought again to the last record
applied, as Faust's restore seeks (``Consumer.seek_wait``, which also resets Faust's read offset; Faust applies an
offset only once, so a record read twice changes nothing). After ``attempts`` checks in one restore the process
gives up: it stops with exit 1 naming the partitions, and a supervisor's restart restores from the changelog
afresh. This module is the rule (when to check, when to give up); ``app.py`` does the reading and seeking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

STALL_AFTER_S = 20.0  # well past a healthy restore's gaps (Faust fetches a partition at least every second)
ATTEMPTS = 3

K = TypeVar("K")  # a partition (Faust's TP)


class RestoreStalledError(RuntimeError):
    """The restore of the gate-state table made no progress after ``attempts`` seeks."""


class RestoreWatch(Generic[K]):
    """Which partitions of the current restore to seek again, and when to give up (a pure rule: time passed in)."""

    def __init__(self, stall_after: float = STALL_AFTER_S, attempts: int = ATTEMPTS) -> None:
        self.stall_after, self.attempts = stall_after, attempts
        self._restore: float | None = None  # when the restore being watched started
        self._sought: dict[K, float] = {}  # when each partition was last sought again
        self.seeks = 0  # in the restore being watched

    def check(
        self, now: float, started: float | None, remaining: Mapping[K, int], received: Mapping[K, float]
    ) -> list[K]:
        """The partitions to seek again now, given when the restore ``started`` (None: Faust is not restoring),
        how many records each partition has ``remaining`` and when it last ``received`` one. Raises
        ``RestoreStalledError`` once ``attempts`` seeks in this restore have not ended it."""
        if started is None:
            self._restore, self._sought, self.seeks = None, {}, 0
            return []
        if started != self._restore:  # a new restore (a rebalance during one restarts it)
            self._restore, self._sought, self.seeks = started, {}, 0
        since = {k: max(received.get(k, started), self._sought.get(k, started)) for k in remaining}
        stalled = [k for k, left in remaining.items() if left > 0 and now - since[k] >= self.stall_after]
        if not stalled:
            return []
        if self.seeks >= self.attempts:
            left = ", ".join(f"{_name(k)} ({remaining[k]} records left)" for k in stalled)
            raise RestoreStalledError(
                f"the gate-state table's restore received nothing of {left} for {self.stall_after:g} s after "
                f"{self.seeks} seeks; stopping so that a restart restores it afresh"
            )
        self.seeks += 1
        self._sought.update(dict.fromkeys(stalled, now))
        return stalled


def _name(part: object) -> str:
    topic, partition = getattr(part, "topic", None), getattr(part, "partition", None)
    return f"{topic}[{partition}]" if topic is not None else str(part)
