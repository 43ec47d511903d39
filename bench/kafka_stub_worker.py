"""The reference worker of bench/kafka_bench.py (``--worker stub``): run by the bench itself as
``kafka_bench.py --stub-worker ...``, to compare (c) and (d) against, and to show the delay hook."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.kafka_measure import HOOK_HEADER
from gatekeeper.core import decision as decisions
from gatekeeper.core.decision import Decision
from gatekeeper.core.engine import Engine
from gatekeeper.planfile import load_plan


async def stub_worker(args: argparse.Namespace) -> None:
    """core.Engine behind one plain aiokafka consumer (group ``--group``): decode a fetched batch, ingest it,
    produce its decisions (with the delay hook header), commit. One process, no Faust, no state store."""
    engine = Engine(load_plan(args.plan))
    decoder = engine.decoder()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        args.telemetry_topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=20_000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=20_000)
            consumed_ms = f"{time.time() * 1000:.3f}".encode()
            out: list[Decision] = []
            for records in batches.values():
                out += engine.ingest(decoder.decode([r.value for r in records]))
            headers = [(HOOK_HEADER, consumed_ms)]
            futures = [
                await producer.send(args.decisions_topic, decisions.encode(d), key=d.key.encode(), headers=headers)
                for d in out
            ]
            await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
