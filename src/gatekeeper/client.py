"""A Python client of the decisions topic: typed decisions (contract v1), deduplicated by ``decision_id``.

    from gatekeeper.client import DecisionClient

    client = DecisionClient("kafka:9092")
    async for d in client.decisions(region="us-east"):        # every decision, oldest first, then live
        print(d.decision, d.tier, d.reasons[0])
    latest = await client.latest("us-east", "canary")           # the gate's newest decision (None: none yet)
    gate = await client.gate("us-east", "canary")               # its state: waiting/soaking/passed/held/pending
    gate = await client.gate("us-east", "canary", app_id="gatekeeper", plan=plan)  # + soak progress (gate.soak)
    passed = await client.wait_for_pass("us-east", "canary", timeout=3600)

Decisions are delivered at least once (a worker that restarts re-emits some with the same ids), so every
iterator here yields each ``decision_id`` once. The topic is read without a consumer group: nothing is
committed, and any number of clients can read it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gatekeeper.core.board import Board, GateView, step
from gatekeeper.core.decision import Decision, decode
from gatekeeper.core.plan import Plan
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics

__all__ = ["Decision", "DecisionClient", "GateHeldError", "GateView"]

POLL_MS = 250


class GateHeldError(Exception):
    """``wait_for_pass`` saw the gate fail (and be held) before it passed."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.key} failed at {decision.at}: {'; '.join(decision.reasons)}")
        self.decision = decision


class DecisionClient:
    """Reads the decisions topic. ``bootstrap``: host:port[,...]; or pass full ``settings`` (TLS, SASL)."""

    def __init__(
        self, bootstrap: str | None = None, *, topic: str = "decisions", settings: KafkaSettings | None = None
    ) -> None:
        if settings is None:
            if bootstrap is None:
                raise ValueError("DecisionClient needs bootstrap='host:port' or settings=KafkaSettings(...)")
            settings = KafkaSettings(bootstrap=bootstrap, topics=Topics(decisions=topic))
        self.settings = settings
        self.topic = settings.topics.decisions
        self.skipped = 0  # records on the topic that are not decisions

    async def decisions(
        self,
        *,
        plan: Plan | str | None = None,
        region: str | None = None,
        tier: str | None = None,
        from_beginning: bool = True,
        follow: bool = True,
    ) -> AsyncIterator[Decision]:
        """Each decision once (by ``decision_id``), filtered by plan (a Plan or its ``plan_version``), region
        and tier; per gate in the order decided. ``follow=False`` ends at the topic's end as of now."""
        version = plan.plan_version if isinstance(plan, Plan) else plan
        seen: set[str] = set()
        async for d in self._read(from_beginning=from_beginning, follow=follow):
            if d is None or d.decision_id in seen:
                continue
            seen.add(d.decision_id)
            if (
                (version is None or d.plan_version == version)
                and (region is None or d.region == region)
                and (tier is None or d.tier == tier)
            ):
                yield d

    async def latest(self, region: str, tier: str) -> Decision | None:
        """The gate's newest decision on the topic now (None: it has none yet)."""
        found = None
        async for d in self.decisions(region=region, tier=tier, follow=False):
            found = d
        return found

    async def gate(self, region: str, tier: str, *, app_id: str | None = None, plan: Plan | None = None) -> GateView:
        """The gate's state now, folded from its decisions (``gatekeeper.core.board``).

        ``app_id``: also read the workers' gate-state changelog (``<app_id>-gate-state-changelog``), so a gate
        soaking towards its first decision is ``soaking`` with its progress in ``soak`` (as ``gatekeeper
        serve`` shows it; decisions keep precedence). ``plan``: the plan the workers run, for the soak's
        length (``soak.fraction``) and to skip entries of other plan versions."""
        board = Board.of(plan) if plan is not None else Board("", "")
        if board.get(region, tier) is None:
            board.add(GateView(region, tier, ""))
        async for d in self.decisions(region=region, tier=tier, follow=False):
            board.apply(d)
        if app_id is not None:
            from gatekeeper.shell.serve.gate_states import observe_entry

            entry = (await self._gate_states(app_id)).get(f"{region}/{tier}".encode())
            if entry is not None:
                with contextlib.suppress(ValueError):  # not a gate state: the decisions alone say
                    observe_entry(board, f"{region}/{tier}".encode(), entry)
        view = board.get(region, tier)
        assert view is not None  # added above
        return view

    async def _gate_states(self, app_id: str) -> dict[bytes, bytes]:
        """The latest entry of every gate on the workers' gate-state changelog ({} while it does not exist)."""
        from aiokafka import AIOKafkaConsumer

        from gatekeeper.shell.kafka_admin import topic_partitions
        from gatekeeper.shell.worker.topics import changelog_topic, read_changelog

        topic = changelog_topic(app_id)
        count = await topic_partitions(self.settings, topic)
        if not count:
            return {}
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            return await read_changelog(consumer, topic, range(count))
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def wait_for_pass(
        self, region: str, tier: str, timeout: float | None = None, *, through_holds: bool = False
    ) -> Decision:
        """The gate's ``pass`` decision, as soon as it is on the topic (at once if it already is).

        The gate is judged as it stands once the topic is read to its end, then on every new decision: passed
        returns its pass; held raises ``GateHeldError`` (unless ``through_holds``: then it waits for the pass
        after the hold's release and a fresh soak). ``TimeoutError`` after ``timeout`` seconds."""

        async def wait() -> Decision:
            view, seen, caught_up = GateView(region, tier, ""), set[str](), False
            async for d in self._read(from_beginning=True, follow=True):
                if d is not None and d.key == view.key and d.decision_id not in seen:
                    seen.add(d.decision_id)
                    view = step(view, d)
                caught_up = caught_up or d is None
                if caught_up and view.latest is not None:  # judge the gate as it stands now, not its history
                    if view.state == "passed":
                        return view.latest
                    if view.state == "held" and not through_holds:
                        raise GateHeldError(_last_fail(view) or view.latest)
            raise TimeoutError(f"{region}/{tier}: the decisions topic ended without a pass")

        return await asyncio.wait_for(wait(), timeout)

    async def _read(self, *, from_beginning: bool, follow: bool) -> AsyncIterator[Decision | None]:
        """Decisions in partition order; ``None`` once, when every partition reached its end offset at start."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        count = await self._partitions(follow)
        if not count:
            return
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(count)]
            consumer.assign(tps)
            if from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp: end for tp, end in ends.items() if await consumer.position(tp) < end}
            if not remaining:
                yield None
            while follow or remaining:
                batches = await consumer.getmany(timeout_ms=POLL_MS)
                for records in batches.values():
                    for record in records:
                        decision = self._decode(record.value)
                        if decision is not None:
                            yield decision
                if remaining and await _reached(consumer, remaining):
                    yield None  # read up to the end offsets of when it started: "now"
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _partitions(self, follow: bool) -> int:
        """The topic's partition count; while following, waits for the topic to exist (0: it does not)."""
        from gatekeeper.shell.kafka_admin import topic_partitions

        count = await topic_partitions(self.settings, self.topic)
        while not count and follow:
            await asyncio.sleep(1.0)
            count = await topic_partitions(self.settings, self.topic)
        return count or 0

    def _decode(self, value: bytes | None) -> Decision | None:
        try:
            return decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.skipped += 1
            return None


def _last_fail(view: GateView) -> Decision | None:
    return next((d for d in reversed(view.recent) if d.decision == "fail"), None)


async def _reached(consumer: Any, remaining: dict[Any, int]) -> bool:
    """Drop the partitions read up to their end offset from ``remaining``; True once it is empty."""
    for tp in list(remaining):
        if await consumer.position(tp) >= remaining[tp]:
            del remaining[tp]
    return not remaining
