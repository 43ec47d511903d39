"""Materialises the decisions topic into a ``Board``: every partition from the beginning, no consumer group.

The topic is the source of truth, so any number of ``gatekeeper serve`` replicas answer the same and a
restarted one rebuilds its board by reading the topic again. ``caught_up`` turns true once every partition
is read up to the end offsets found at start; that is what ``/readyz`` reports.

``TopicReader`` is the reading loop (retries, resume positions, lag); ``DecisionReader`` folds decisions in,
``gate_states.GateStateReader`` the worker's gate states (soak progress between decisions).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec

from gatekeeper.core.board import Board
from gatekeeper.core.decision import decode
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.serve.promserve import ServeMetrics

CLOSED_HEADER = "gk-closed-wall-ms"  # set by the worker: when it got the record that closed the decision
POLL_MS = 500
RETRY_S = 2.0


class TopicReader:
    """Reads every partition of ``topic`` from the beginning into ``board`` until ``stop``, waiting for the
    topic while it does not exist; survives broker outages by retrying. Subclasses fold records in."""

    what = "records"  # what the topic holds, for the logs

    def __init__(self, settings: KafkaSettings, board: Board, metrics: ServeMetrics, log: Any, topic: str) -> None:
        self.settings, self.board, self.metrics, self.log, self.topic = settings, board, metrics, log, topic
        self.caught_up = False
        self.connected = False
        self.skipped = 0
        self.positions: dict[int, int] = {}  # next offset to read per partition: a restart resumes here
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        from aiokafka.errors import KafkaError

        from gatekeeper.shell.kafka_admin import describe_error

        while not self._stop.is_set():
            try:
                await self._read()
            except (KafkaError, OSError) as exc:
                self.connected = False
                self.log.warning(f"reading {self.what} failed; retrying", error=describe_error(exc))
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), RETRY_S)

    async def _partitions(self) -> int:
        from gatekeeper.shell.kafka_admin import topic_partitions

        topic = self.topic
        while not self._stop.is_set():
            count = await topic_partitions(self.settings, topic)
            if count:
                return count
            self.log.info(f"waiting for the {self.what} topic", topic=topic, bootstrap=self.settings.bootstrap)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RETRY_S)
        return 0

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.topic
        count = await self._partitions()
        if not count:
            return
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(count)]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in self.positions:
                    consumer.seek(tp, self.positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
            remaining = {tp.partition: end for tp, end in ends.items() if self.positions.get(tp.partition, 0) < end}
            self.connected = True
            self.log.info(f"reading {self.what}", topic=topic, partitions=count, to_catch_up=sum(remaining.values()))
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=POLL_MS)
                now_ms = time.time() * 1000
                for tp, records in batches.items():
                    for record in records:
                        self._apply(record, now_ms)
                    if records:
                        self.positions[tp.partition] = records[-1].offset + 1
                self._progress(consumer, tps, remaining)
        finally:
            await consumer.stop()

    def _progress(self, consumer: Any, tps: list[Any], remaining: dict[int, int]) -> None:
        """Lag per partition; ``caught_up`` once every partition reached its end offset found at start."""
        for tp in tps:
            position = self.positions.get(tp.partition, 0)
            if tp.partition in remaining and position >= remaining[tp.partition]:
                del remaining[tp.partition]
            high = consumer.highwater(tp)
            if high is not None:
                self._lag(tp.partition, max(0, high - position))
        if not remaining and not self.caught_up:
            self.caught_up = True
            self._caught_up()

    def _lag(self, partition: int, lag: int) -> None:
        """Records left to read in ``partition``."""

    def _caught_up(self) -> None:
        self.log.info(f"{self.what}: caught up")

    def _apply(self, record: Any, now_ms: float) -> None:
        raise NotImplementedError


class DecisionReader(TopicReader):
    """Reads ``settings.topics.decisions`` into ``board`` (the source of truth for verdicts)."""

    what = "decisions"

    def __init__(self, settings: KafkaSettings, board: Board, metrics: ServeMetrics, log: Any) -> None:
        super().__init__(settings, board, metrics, log, settings.topics.decisions)

    def _lag(self, partition: int, lag: int) -> None:
        self.metrics.lag.labels(partition=str(partition)).set(lag)

    def _caught_up(self) -> None:
        self.log.info("caught up", decisions=self.board.applied, duplicates=self.board.duplicates)

    def _apply(self, record: Any, now_ms: float) -> None:
        try:
            decision = decode(record.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.skipped += 1
            self.metrics.skipped.inc()
            where = {"partition": record.partition, "offset": record.offset}
            self.log.warning("not a decision; skipped", **where, error=str(exc))
            return
        if not self.board.apply(decision, record.timestamp):
            self.metrics.duplicates.inc()
            return
        self.metrics.decisions.labels(decision=decision.decision).inc()
        for name, value in record.headers or ():
            if name == CLOSED_HEADER:
                with contextlib.suppress(ValueError):
                    self.metrics.delay.observe(max(0.0, (now_ms - int(value)) / 1000))
