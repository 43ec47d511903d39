"""``gatekeeper worker`` on a real broker decides exactly what ``gatekeeper replay`` decides on the same
input.

Each test runs the worker as a subprocess (``python -m gatekeeper.shell.cli worker``) with its own app id and
topics, produces a seeded scenario (``worker_harness``), waits until the decisions topic holds the decisions
replay computes for the same lines, stops the worker and compares: the set of encoded decisions, and per
``region/tier`` key the decisions in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import worker_harness as h
from aiokafka import AIOKafkaConsumer

from gatekeeper.core import decision as decisions
from gatekeeper.shell.worker.topics import read_changelog

pytestmark = pytest.mark.kafka


def _values(records: list[h.Consumed]) -> list[bytes]:
    return [r.value for r in records]


@pytest.mark.parametrize("mode", ["keyed", "unkeyed", "region"])
def test_worker_decides_like_replay(kafka_bootstrap: str, tmp_path: Path, mode: h.Mode) -> None:
    """Keyed, unkeyed on one partition and keyed by region (all aggregated where they are read, nothing
    forwarded): the worker's decisions equal replay's -- pass, fail + hold + release on errors, a latency
    breach held in one region only, a thin tier pending, and the stall of a tier whose telemetry stops early,
    reported once the partitions without records are idle -- and the breaches topic holds replay's breach events.
    Stage 1 folds every valid record once; stage 2 sees no conflicting partial."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)
    kinds = Counter(decisions.decode(v).reason_code for v in expected)
    assert {"go": 4, "breach": 2, "hold": 2, "release": 2, "checkpoint:soak end": 1, "stalled": 1} == kinds
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, mode)

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(_values(got))
    assert h.by_key(expected) == h.by_key(_values(got))
    breaches = sorted(h.expected_breaches(plan, lines))  # burn-rate breach events, as replay's --breaches
    assert breaches == sorted(_values(h.read_topic(kafka_bootstrap, names.breaches)))
    (totals,) = workers[0].events("worker totals")
    valid = len(lines) - len(h.INVALID)
    assert (valid, 0, 0) == (totals["applied"], totals["conflicts"], totals["late_partials"])
    assert f"{names.app_id}-gates" not in h.topic_names(kafka_bootstrap)


def test_invalid_records_go_to_the_dlq_unchanged(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every record replay rejects lands on the DLQ with its original bytes, replay's reason code in
    ``gk.reason``, a message in ``gk.message`` and its telemetry coordinates in ``gk.source``; the worker
    keeps going and its decisions are those of the input without the invalid records."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(early_stop=False)
    clean = h.scenario(early_stop=False, invalid=False)
    expected = h.expected(plan, lines)
    assert sorted(h.expected(plan, clean)) == sorted(expected)
    rejects = h.replay_rejects(plan, lines)
    assert len(h.INVALID) == sum(rejects.values())
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        dead = h.wait_for(kafka_bootstrap, names.dlq, h.count_at_least(len(h.INVALID)), workers, settle=0.0)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(_values(got))
    headers = [dict(r.headers) for r in dead]
    assert rejects == Counter((r.value, hd["gk.reason"].decode()) for r, hd in zip(dead, headers, strict=True))
    assert all(hd["gk.message"] for hd in headers)
    telemetry = {(r.partition, r.offset): r for r in h.read_topic(kafka_bootstrap, names.telemetry)}
    for record, hd in zip(dead, headers, strict=True):
        topic, partition, offset = hd["gk.source"].decode().split("/")
        source = telemetry[(int(partition), int(offset))]
        assert (names.telemetry, source.value, source.key) == (topic, record.value, record.key)
    (totals,) = workers[0].events("worker totals")
    assert dict(Counter(code for _, code in rejects.elements())) == totals["rejected"]


def test_two_workers_split_the_partitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two workers in one consumer group (same app id) each own part of the partitions, and together
    produce exactly replay's decisions, each gate's decisions from the owner of its home partition."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(early_stop=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    first = h.Worker(kafka_bootstrap, plan, names, tmp_path, label="w1")
    second = h.Worker(kafka_bootstrap, plan, names, tmp_path, label="w2")

    with h.running(first, second) as workers:
        split = h.wait_split(workers)
        h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert [0, 0] == [w.stop() for w in workers]

    assert list(range(h.PARTITIONS)) == sorted(split[0] + split[1])
    assert sorted(expected) == sorted(_values(got))
    assert h.by_key(expected) == h.by_key(_values(got))
    applied = [w.events("worker totals")[-1]["applied"] for w in workers]
    homes = [{p for p in h.home_partitions() if p in owned} for owned in split]
    assert [bool(home) for home in homes] == [n > 0 for n in applied]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["keyed", "region"])
def test_sigkill_and_restart_keeps_decisions_exact(kafka_bootstrap: str, tmp_path: Path, mode: h.Mode) -> None:
    """SIGKILL the worker soon after its first decision, produce the rest, start a new worker: after
    deduplication by decision id the decisions equal replay's (same ids, same contents, same order per
    key), and no id ever maps to two different contents (re-deliveries re-emit identical decisions). The killed
    worker's decoding process (``--jobs 2``) exits by itself."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)

    @contextlib.contextmanager
    def decoder_dies_with(worker: h.Worker) -> Iterator[None]:
        assert worker.proc is not None
        children = psutil.Process(worker.proc.pid).children()
        assert 1 == len(children)  # the decoding process
        yield
        _, alive = psutil.wait_procs(children, timeout=10)
        assert [] == alive  # the decoding process does not outlive its worker

    quick = ("--session-timeout", "8", "--jobs", "2")  # the group waits 8 s for the killed worker
    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected,
        cut=int(len(lines) * 0.6), mode=mode, flags=quick, around_kill=decoder_dies_with,
    )  # fmt: skip
    assert h.by_key(expected) == h.by_key(run.unique)


def test_late_deliveries(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Records delivered after the lateness are late for replay and worker alike, and every decision is the
    same, ``metrics.late_events`` included (a decision counts only the late records that came before it)."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(late_share=0.002)
    expected = h.expected(plan, lines)
    assert any(decisions.decode(v).metrics.late_events for v in expected)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(_values(got))


def test_topic_with_another_partition_count_fails_the_start(kafka_bootstrap: str, tmp_path: Path) -> None:
    """An existing topic whose partition count differs from ``--partitions`` stops the worker at start with
    exit status 2 and one line naming the topic and both counts."""
    plan, names = h.write_plan(tmp_path), h.Names()
    h.create_topic(kafka_bootstrap, names.telemetry, partitions=3)
    done = h.run_once(h.Worker(kafka_bootstrap, plan, names, tmp_path).cmd)
    assert 2 == done.returncode
    (line,) = done.stderr.strip().splitlines()
    assert f"{names.telemetry} has 3" in line
    assert "configured 8" in line


def test_missing_topics_with_creation_off_fail_the_start(kafka_bootstrap: str, tmp_path: Path) -> None:
    """With ``--no-create-topics`` a missing topic stops the worker at start: exit 2, one line, no topic
    created."""
    plan, names = h.write_plan(tmp_path), h.Names()
    done = h.run_once([*h.Worker(kafka_bootstrap, plan, names, tmp_path).cmd, "--no-create-topics"])
    assert 2 == done.returncode
    (line,) = done.stderr.strip().splitlines()
    assert names.telemetry in line
    assert "--no-create-topics" in line
    assert names.telemetry not in h.topic_names(kafka_bootstrap)


def test_read_changelog_gives_the_latest_value_per_key_of_the_partitions_asked(kafka_bootstrap: str) -> None:
    """``read_changelog`` (the restore on assignment) reads the given partitions to their end: the last value
    of each key wins, a tombstone deletes its key, and other partitions are not read."""
    names = h.Names()
    h.create_topic(kafka_bootstrap, names.telemetry, partitions=3)
    h.produce_keyed(
        kafka_bootstrap,
        names.telemetry,
        [(0, b"a", b"a1"), (1, b"b", b"b1"), (0, b"a", b"a2"), (0, b"c", b"c1"), (0, b"c", None), (2, b"d", b"d1")],
    )

    async def read(*asks: list[int]) -> list[dict[bytes, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            return [await read_changelog(consumer, names.telemetry, partitions) for partitions in asks]
        finally:
            await consumer.stop()

    assert [{b"a": b"a2", b"b": b"b1"}, {}, {b"d": b"d1"}] == asyncio.run(read([0, 1], [], [2]))
