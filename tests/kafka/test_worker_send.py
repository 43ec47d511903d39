"""The worker's batched send on a real broker: a poll's messages go as one record batch per partition (a new one
when a batch is full) and arrive as one ``send`` per message would deliver them."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import worker_harness as h

from gatekeeper.core.pipeline import Pipeline
from gatekeeper.planfile import load_plan
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics
from gatekeeper.shell.worker.decoding import InlineDecoding
from gatekeeper.shell.worker.options import WorkerOptions
from gatekeeper.shell.worker.outgoing import Outgoing
from gatekeeper.shell.worker.runtime import Runtime
from gatekeeper.shell.worker.sending import HOOK_HEADER, PRODUCE_BATCH_BYTES

pytestmark = pytest.mark.kafka


def test_batched_messages_arrive_in_order_per_partition_with_keys_values_and_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Messages to several partitions and two topics, interleaved, one partition's more than a record batch holds
    (so its batch fills and a second one follows): each partition holds them in the order given, with their keys,
    values (a dead letter without a value too) and headers; decisions also carry the worker's hook header."""
    names = h.Names()
    h.create_topic(kafka_bootstrap, names.dlq, h.PARTITIONS)
    h.create_topic(kafka_bootstrap, names.decisions, h.PARTITIONS)
    topics = Topics(telemetry=names.telemetry, decisions=names.decisions, breaches=names.breaches, dlq=names.dlq)
    plan = load_plan(h.write_plan(tmp_path))
    options = WorkerOptions(app_id=names.app_id, jobs=1)
    big = b"x" * (PRODUCE_BATCH_BYTES // 3)  # three of them overflow one batch
    messages = [
        *(Outgoing(names.dlq, i % 3, b"k%d" % i, b"v%d" % i, (("gk.reason", b"r%d" % i),)) for i in range(300)),
        *(Outgoing(names.dlq, 5, b"big%d" % i, big + b"%d" % i) for i in range(5)),
        Outgoing(names.dlq, 1, b"no-value", None, (("gk.reason", b"empty"),)),
        *(Outgoing(names.decisions, i % 2, b"d%d" % i, b"decision %d" % i, (("ce_id", b"%d" % i),)) for i in range(9)),
    ]
    hook = (HOOK_HEADER, b"1234")

    async def send() -> None:
        settings = KafkaSettings(bootstrap=kafka_bootstrap, topics=topics)
        runtime = Runtime(plan, settings, options, logging.getLogger("test"), InlineDecoding(Pipeline(plan).decoder()))
        await runtime.producer.start()
        try:
            await asyncio.gather(*await runtime.sending.send_batched(messages, hook))
        finally:
            await runtime.producer.stop()

    asyncio.run(send())
    for topic in (names.dlq, names.decisions):
        expected = {
            p: [
                (m.key, m.value, (*m.headers, hook) if topic == names.decisions else m.headers)
                for m in messages
                if (m.topic, m.partition) == (topic, p)
            ]
            for p in range(h.PARTITIONS)
        }
        read = h.read_topic(kafka_bootstrap, topic)
        actual = {p: [(r.key, r.value, r.headers) for r in read if r.partition == p] for p in range(h.PARTITIONS)}
        assert expected == actual
