"""The worker's telemetry records taken from aiokafka as fetched bytes and parsed where they are decoded
(``shell/worker/raw_fetch.py``, ``raw_records.py``), through a real broker: record batches as a transactional,
compressing producer writes them (a control batch after every transaction; gzip, lz4, zstd or snappy batches, the
codecs Kafka producers offer) give the decisions replay gives, whether the decoding runs in a child process
(``--jobs 2``) or in the worker's own (``--jobs 1``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import worker_harness as h
from aiokafka import AIOKafkaProducer
from kafka_io import record_key

from gatekeeper.shell.worker.raw_fetch import FALLBACK

pytestmark = pytest.mark.kafka
TRANSACTION = 300  # records per transaction: each commit puts a control batch (its marker) in every partition


def produce_in_transactions(bootstrap: str, topic: str, lines: list[bytes], codec: str) -> None:
    """``lines`` keyed ``region/tier``, compressed with ``codec``, in committed transactions of ``TRANSACTION``
    records."""

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=f"{topic}-producer", compression_type=codec, linger_ms=5
        )
        await producer.start()
        try:
            for start in range(0, len(lines), TRANSACTION):
                async with producer.transaction():
                    futures = [
                        await producer.send(topic, line, key=record_key(line, "keyed"))
                        for line in lines[start : start + TRANSACTION]
                    ]
                    await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("codec", "jobs"), [("gzip", "1"), ("gzip", "2"), ("lz4", "2"), ("zstd", "1"), ("snappy", "2")]
)
def test_transactional_compressed_telemetry_decides_like_replay(
    kafka_bootstrap: str, tmp_path: Path, codec: str, jobs: str
) -> None:
    """Committed transactions of compressed batches among which the brokers' commit markers sit, with each codec a
    producer may pick (lz4, zstd and snappy need cramjam, in the lock): the worker, parsing the fetched bytes (no
    fallback to aiokafka's records logged), decides what replay decides on the same lines, and applies every valid
    record exactly once."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    produce_in_transactions(kafka_bootstrap, names.telemetry, lines, codec)

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", "--jobs", jobs)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    values = [r.value for r in got]
    assert sorted(expected) == sorted(values)
    assert h.by_key(expected) == h.by_key(values)
    (totals,) = workers[0].events("worker totals")
    valid = len(lines) - len(h.INVALID)
    assert (valid, 0, 0) == (totals["applied"], totals["conflicts"], totals["late_partials"])
    assert [] == workers[0].events(FALLBACK)
