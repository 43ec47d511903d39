"""Idle reports of side partitions written before this process's assignment: stale, so not applied.

A gate restored from the table takes its side partitions for active again (``state.FaustGateState._inbox``, as the
default engine's ``SideStage.resumed``): their reader says idle anew once it has read them to their end for
``--idle-after``. But ``<app-id>-side`` may still hold idle reports the previous generation wrote after the
group's committed offset (a SIGKILLed process's last ones): read again after the restore, they would let the
gates close the backlog's panes past side records produced while no process read them (found by
tests/kafka/test_faust_gate_crashes.py). Every member forgets its idleness at an assignment and says idle only
``idle_after`` later, so an idle report below the end offsets of ``<app-id>-side`` taken at the assignment is
one of the previous generation's (were a member that slow to be assigned, a fresh report dropped only delays its
gates: the reader says idle again every ``idle_after``).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from gatekeeper.core import partials
from gatekeeper.core.partials import Watermark


class StaleIdle:
    """The offset of each ``<app-id>-side`` partition from which idle reports are this generation's."""

    def __init__(self) -> None:
        self.since: dict[int, int] = {}
        self.dropped = 0

    async def assigned(self, reader: AIOKafkaConsumer, topic: str, partitions: list[int]) -> None:
        """Partitions were assigned: the reports written so far are the previous generation's."""
        ends = await reader.end_offsets([TopicPartition(topic, q) for q in partitions]) if partitions else {}
        self.since = {tp.partition: int(offset) for tp, offset in ends.items()}

    def drop(self, q: int, offset: int, value: bytes | None) -> bool:
        """Whether the ``<app-id>-side`` message at ``q``/``offset`` is an idle report of the previous
        generation (its watermark is kept: it is the partition's, whoever read it)."""
        if offset >= self.since.get(q, 0) or not (value or b"").startswith(b"{"):
            return False
        try:
            message = partials.decode(value or b"")
        except partials.PartialError:
            return False  # refused where it is applied
        if not (isinstance(message, Watermark) and message.idle):
            return False
        self.dropped += 1
        return True
