"""How the worker sends what a poll produced: one record batch per partition, acknowledgements not awaited.

A poll's messages (partials, watermarks, dead letters, decisions, breaches) go as one record batch per partition
and poll, in their order (a full batch goes and the next one starts): hundreds of partials and watermarks cost a
batch each, not a ``send`` and an acknowledgement future each. Their acknowledgements are not awaited: up to
``IN_FLIGHT_POLLS`` polls' deliveries travel while the next polls are applied (waiting for each poll's acks cost
the worker half its throughput); a poll's offsets become committable only once its deliveries and all earlier
ones are acknowledged (``checkpoints``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from gatekeeper.shell.worker.checkpoints import Checkpoints
from gatekeeper.shell.worker.exporter import WorkerExporter
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.outgoing import Outgoing
from gatekeeper.shell.worker.processor import Processor

HOOK_HEADER = "gk-closed-wall-ms"  # on decisions: wall time (epoch ms) the worker got the record that closed it
IN_FLIGHT_POLLS = 4  # polls whose messages may await their acknowledgements while the next ones are applied
PRODUCE_BATCH_BYTES = 1 << 20  # a poll's messages to one partition in one record batch (aiokafka: 16 KiB)


class Sending:
    """Sends each poll's messages, hands their acknowledgements to the checkpoints, counts what was applied."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        hooked: tuple[str, ...],
        checkpoints: Checkpoints,
        processor: Processor,
        exporter: WorkerExporter,
        totals: Counter[str],
        log: Any,
    ) -> None:
        self.producer, self.checkpoints, self.processor = producer, checkpoints, processor
        self.exporter, self.totals, self.log = exporter, totals, log
        self._hooked = hooked  # the topics whose messages carry the hook header (decisions, breaches)

    async def deliver(self, flush: Flush, wall_ms: int, offsets: dict[TopicPartition, int]) -> None:
        """Send the messages without waiting for their acknowledgements (the caller holds the runtime's lock):
        the next poll is applied while they travel. ``offsets`` become committable once this poll's messages and
        every earlier one's are acknowledged (``Checkpoints.acked``), at the latest at the next checkpoint."""
        hook = (HOOK_HEADER, str(wall_ms).encode())
        pending = await self.send_batched(flush.messages, hook)
        acks = asyncio.gather(*pending)
        if flush.decisions:  # the delay is observed when the broker acknowledges, not when the acks are drained
            acks.add_done_callback(partial(self._observe_delay, len(flush.decisions), wall_ms))
        self.checkpoints.sent(acks, offsets)
        await self.checkpoints.acked(IN_FLIGHT_POLLS)
        self.totals.update(
            applied=flush.applied,
            skipped=flush.skipped,
            partials=flush.partials,
            late=flush.late,
            duplicates=flush.duplicates,
            conflicts=flush.conflicts,
            late_partials=flush.late_partials,
        )
        self.exporter.sync(self.totals, self.processor.rejected, self.processor.decided)
        for d in flush.decisions:
            self.log.debug("decision", key=d.key, decision=d.decision, at=d.at, id=d.decision_id)

    async def send_batched(self, messages: Sequence[Outgoing], hook: tuple[str, bytes]) -> list[asyncio.Future[Any]]:
        """Send ``messages`` as one record batch per partition (in their order; a full batch goes and the next one
        starts). Decisions and breaches get the ``hook`` header."""
        batches: dict[tuple[str, int], Any] = {}
        sent = []
        for m in messages:
            headers = [*m.headers, hook] if m.topic in self._hooked else m.headers
            at = (m.topic, m.partition)
            batch = batches.get(at)
            if batch is not None and batch.append(timestamp=None, key=m.key, value=m.value, headers=list(headers)):
                continue
            if batch is not None:  # full: it goes, a new one starts (a first record always fits)
                sent.append(await self.producer.send_batch(batch, m.topic, partition=m.partition))
            batch = batches[at] = self.producer.create_batch()
            batch.append(timestamp=None, key=m.key, value=m.value, headers=list(headers))
        for (topic, partition), batch in batches.items():
            sent.append(await self.producer.send_batch(batch, topic, partition=partition))
        return sent

    def _observe_delay(self, decided: int, wall_ms: int, acks: asyncio.Future[Any]) -> None:
        if not acks.cancelled() and acks.exception() is None:
            self.exporter.delivered(decided, wall_ms)
