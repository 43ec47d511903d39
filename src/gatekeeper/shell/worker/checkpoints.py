"""The order in which the worker makes its work durable: a poll's messages are acknowledged before its offsets
become committable (polls in order), the states they follow from are written after the messages, and offsets
are committed only once those states are acknowledged.

A committed offset therefore never passes what the changelogs hold; between checkpoints a crash only makes the
next owner read again what both stages absorb idempotently (at least once; decision ids are deterministic).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError

from gatekeeper.shell.worker.flush import Checkpoint
from gatekeeper.shell.worker.processor import Processor


class Checkpoints:
    """Polls' deliveries in flight, the offsets they make committable, and the checkpoint writing the states and
    committing those offsets (the caller holds the runtime's lock around every call)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        processor: Processor,
        changelogs: tuple[str, str],
        log: Any,
        fail: Callable[[BaseException, str], None],
        failed: Callable[[], bool],
    ) -> None:
        self.producer, self.consumer, self.processor, self.log = producer, consumer, processor, log
        self._fail, self._failed = fail, failed  # stop the worker; whether it is stopping after a failure
        self.changelog, self.aggregate_changelog = changelogs  # gate inboxes, stage-1 states
        self._uncommitted: dict[TopicPartition, int] = {}  # offsets applied, to commit at the next checkpoint
        self._committing: asyncio.Future[None] | None = None  # a checkpoint's state acks and commit, under way
        # per poll sent: its deliveries and the offsets it covers (oldest first)
        self._in_flight: deque[tuple[asyncio.Future[Any], dict[TopicPartition, int]]] = deque()

    def sent(self, acks: asyncio.Future[Any], offsets: dict[TopicPartition, int]) -> None:
        """A poll's deliveries are on their way; ``offsets`` become committable once they and every earlier
        poll's are acknowledged."""
        self._in_flight.append((acks, offsets))

    async def acked(self, keep: int) -> None:
        """Await the oldest polls' deliveries until at most ``keep`` are in flight, and the ones already done;
        in order, so an offset is committable only when everything sent before it is acknowledged. A failed
        delivery raises here (the worker stops, nothing after it committed)."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][0].done()):
            acks, offsets = self._in_flight[0]
            await acks
            self._in_flight.popleft()
            self._uncommitted.update(offsets)

    async def checkpoint(self, *, wait: bool = True) -> None:
        """Write the states changed since the last checkpoint, then, once they are acknowledged, commit the offsets
        applied since. ``wait=False`` (the loop's periodic checkpoints): the acknowledgements and the commit are
        awaited in the background while the next polls are applied (a few round trips a checkpoint); the next
        checkpoint, a revoke and the shutdown await them first, so commits stay in order and none is lost."""
        await self.committed()
        if self._failed():  # e.g. a state write failed: commit nothing after it
            return
        # The states are encoded now, as of every poll applied so far; they are written once those polls'
        # messages are acknowledged (before them, a crash could leave a state past partials never delivered),
        # which the background task awaits, so the loop does not stall a round trip at each checkpoint. Polls
        # applied meanwhile count for the next checkpoint, which awaits this one first: commits stay in order.
        flights, self._in_flight = self._in_flight, deque()
        offsets, self._uncommitted = self._uncommitted, {}
        saved = self.processor.checkpoint()
        self._committing = asyncio.ensure_future(self._write(flights, offsets, saved))
        if wait:
            await self.committed()

    async def committed(self) -> None:
        """Wait for the last checkpoint's states and commit (``checkpoint(wait=False)``)."""
        if self._committing is not None:
            await asyncio.shield(self._committing)
            self._committing = None

    async def settled(self) -> None:
        """Wait for a checkpoint under way to end, however it ends (a failure stopped the loop meanwhile)."""
        if self._committing is not None:
            await asyncio.wait([self._committing])

    async def _write(
        self,
        flights: deque[tuple[asyncio.Future[Any], dict[TopicPartition, int]]],
        offsets: dict[TopicPartition, int],
        saved: Checkpoint,
    ) -> None:
        """Await the polls' deliveries ``flights`` (in order: their offsets join ``offsets``), then write the
        states ``saved`` and, once they are acknowledged, commit ``offsets``; a failure stops the worker."""
        try:
            for acks, applied in flights:
                await acks
                offsets.update(applied)
            send = self.producer.send
            states = [
                await send(self.changelog, value, key=key, partition=self.processor.state_partition(key))
                for key, value in saved.gates.items()
            ]
            states += [
                await send(self.aggregate_changelog, value, key=key, partition=p)
                for p, (key, value) in saved.sources.items()
            ]
        except Exception as exc:  # a message or a state not delivered: stop rather than commit past it
            self._fail(exc, "worker failed; stopping")
            return
        await self._commit(states, offsets)

    async def _commit(self, states: list[asyncio.Future[Any]], offsets: dict[TopicPartition, int]) -> None:
        """Await the states' acknowledgements, then commit ``offsets``; a failure stops the worker."""
        try:
            await asyncio.gather(*states)
            if offsets:
                await self.consumer.commit(offsets)
        except CommitFailedError as exc:  # the group moved on: the next owner reads these records again
            self.log.warning("commit failed; the partitions' next owner reads these records again", error=str(exc))
        except Exception as exc:  # a state not written: stop rather than commit past it
            self._fail(exc, "worker failed; stopping")
