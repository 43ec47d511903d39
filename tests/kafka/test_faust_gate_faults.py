"""The Faust gate engine (``--role gate --gate-engine faust``) under faults the default engine's tests cover: bad
messages in ``<app-id>-panes`` (the DLQ), two gate processes with one SIGKILLed, a broker outage; and one of its
own: a table changelog that ends in a transaction marker, which Faust's restore waits for forever. Each run is a
``--role aggregate`` worker beside the Faust gate process(es); deduplicated by ``decision_id`` the decisions are
replay's and no id has two contents."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
import worker_harness as h
from aiokafka import AIOKafkaProducer
from test_reliability import Restartable

from gatekeeper.core import panes_batch
from gatekeeper.core import partials as contract
from gatekeeper.shell.faust_gate.app import state_changelog_topic
from gatekeeper.shell.worker.routing import home_partition
from gatekeeper.shell.worker.topics import panes_topic

pytestmark = pytest.mark.kafka

FAST = ("--idle-after", "2", "--clock-interval", "0.2")
# idleness waits longer than a restart or a rebalance takes (test_faust_gate.py's QUICK)
QUICK = ("--session-timeout", "8", "--idle-after", "20", "--clock-interval", "0.2")
FAUST = ("--role", "gate", "--gate-engine", "faust")


def _checked(got: list[bytes], expected: list[bytes]) -> list[bytes]:
    """The decisions deduplicated by id, after checking that no id has two contents and they are replay's."""
    unique, conflicts = h.dedupe(got)
    assert {} == conflicts
    assert sorted(expected) == sorted(unique)
    assert h.by_key(expected) == h.by_key(unique)
    return unique


def test_faust_gate_dead_letters_bad_partials_once_each(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Four bad messages in ``<app-id>-panes`` before the processes start: not a partial (``{oops``), a JSON
    array, a partial of a gate the plan lacks, and on us-east/canary's home partition a batch of two partials of
    gates the plan lacks. Each record goes to the DLQ once with its bytes and the default engine's reason (the
    batch: ``partial_elsewhere``, "2 of its 2 partials not merged"), and the decisions are replay's."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    q = home_partition(b"us-east/canary", h.PARTITIONS)
    mars = contract.Partial(gate="mars/canary", pane=h.T0_S * 1000, source="telemetry:0", requests=1, errors=0,
                            bins=(9,), counts=(1,))  # fmt: skip
    (batch,) = panes_batch.encode([mars, msgspec.structs.replace(mars, gate="venus/canary")])
    bad = {
        b"{oops": ((q + 1) % h.PARTITIONS, "invalid_partial"),
        b"[1]": ((q + 2) % h.PARTITIONS, "invalid_partial"),
        contract.encode(mars): ((q + 3) % h.PARTITIONS, "partial_elsewhere"),
        batch: (q, "partial_elsewhere"),
    }
    h.produce_to(kafka_bootstrap, panes_topic(names.app_id), [(p, None, value) for value, (p, _code) in bad.items()])
    h.produce(kafka_bootstrap, names.telemetry, lines, "spread")
    aggregate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *FAST)
    gate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "gate", *FAUST, *FAST)
    began = time.monotonic()
    with h.running(aggregate, gate) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, 180, 1.0)
        assert (0, 0) == (workers[0].stop(), workers[1].stop())

    assert sorted(expected) == sorted(r.value for r in got)
    dead = h.read_topic(kafka_bootstrap, names.dlq)
    assert sorted((value, code) for value, (_p, code) in bad.items()) == sorted(
        (r.value, dict(r.headers)["gk.reason"].decode()) for r in dead
    )
    (why,) = [dict(r.headers)["gk.message"].decode() for r in dead if r.value == batch]
    assert why.startswith("2 of its 2 partials not merged: gate mars/canary: not a gate of the plan")
    (totals,) = gate.events("worker totals")
    assert {"invalid_partial": 2, "partial_elsewhere": 2} == totals["rejected"]
    print(f"\nfaust gate, bad partials: {time.monotonic() - began:.1f} s")


def _aggregate_and_two_gates(
    bootstrap: str, tmp_path: Path
) -> tuple[h.Names, list[bytes], list[bytes], tuple[h.Worker, h.Worker, h.Worker]]:
    """The scenario, replay's decisions of it, the topics created, and three processes not started yet: a ``--role
    aggregate`` worker and two Faust gate processes, ``gate1`` and ``gate2``."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(bootstrap, names)
    aggregate = h.Worker(bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *QUICK)
    first, second = (h.Worker(bootstrap, plan, names, tmp_path, label, *FAUST, *QUICK) for label in ("gate1", "gate2"))
    return names, lines, expected, (aggregate, first, second)


def test_two_faust_gate_processes_one_sigkilled(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two Faust gate processes split the panes partitions; after the first decision the second is SIGKILLed and
    the rest of the telemetry produced: the first takes its partitions over (after the session timeout),
    restoring their gates from the table's changelog. Deduplicated by id the decisions are replay's, no id has
    two contents."""
    names, lines, expected, (aggregate, first, second) = _aggregate_and_two_gates(kafka_bootstrap, tmp_path)
    began = time.monotonic()
    with h.running(aggregate, first, second) as workers:
        aggregate.wait_assigned()
        split = h.wait_split((first, second), 120)
        h.produce(kafka_bootstrap, names.telemetry, lines[: len(lines) // 3], "spread")
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(1), workers, 180, settle=0.0)
        assert -signal.SIGKILL == second.stop(signal.SIGKILL)
        h.produce(kafka_bootstrap, names.telemetry, lines[len(lines) // 3 :], "spread")
        done = h.distinct_ids_at_least(len(expected))
        got = h.wait_for(kafka_bootstrap, names.decisions, done, (aggregate, first), 240)
        assert [0, 0] == [first.stop(), aggregate.stop()]

    _checked([r.value for r in got], expected)
    assert list(range(h.PARTITIONS)) == first.events("partitions assigned")[-1]["partitions"]
    print(f"\nfaust gates split {split}, one SIGKILLed: {len(got)} decision records for {len(expected)} ids, "
          f"{time.monotonic() - began:.1f} s")  # fmt: skip


def _rewrite_in_a_transaction(bootstrap: str, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
    """``key``/``value`` again to ``topic``/``partition`` in a committed transaction: a record, then its marker."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-rewriter")
        await producer.start()
        try:
            async with producer.transaction():
                await (await producer.send(topic, value, key=key, partition=partition))
        finally:
            await producer.stop()

    asyncio.run(run())


def test_faust_gate_restores_a_changelog_ending_in_a_transaction_marker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A third of the telemetry through a Faust gate process, stopped; the last record of its fullest table
    changelog partition written again in a committed transaction (the table's state unchanged, the partition now
    ending in a marker: Faust's restore waits for that offset forever); the rest produced and a new gate process
    started. It finds after 20 s that no record is left to restore there, logs so, restores and decides: the
    decisions are replay's."""
    names, lines, expected, (aggregate, first, again) = _aggregate_and_two_gates(kafka_bootstrap, tmp_path)
    changelog = state_changelog_topic(names.app_id)
    began = time.monotonic()
    with h.running(aggregate, first) as workers:
        h.produce(kafka_bootstrap, names.telemetry, lines[: len(lines) // 3], "spread")
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(1), workers, 180, settle=0.0)
        assert 0 == first.stop()
        state = h.read_topic(kafka_bootstrap, changelog)
        ((q, _n),) = Counter(r.partition for r in state).most_common(1)
        last = max((r for r in state if r.partition == q), key=lambda r: r.offset)
        _rewrite_in_a_transaction(kafka_bootstrap, changelog, q, last.key, last.value)
        h.produce(kafka_bootstrap, names.telemetry, lines[len(lines) // 3 :], "spread")
        with h.running(again):
            done = h.distinct_ids_at_least(len(expected))
            got = h.wait_for(kafka_bootstrap, names.decisions, done, (aggregate, again), 240)
            assert [0, 0] == [again.stop(), aggregate.stop()]

    _checked([r.value for r in got], expected)
    restored = again.events("gate state restore: no record left to read, the rest are offsets without one; restored")
    assert [[q]] == [e["partitions"] for e in restored]
    assert [] == again.events("gate state restore stalled; seeking again")
    print(f"\nfaust gate, changelog partition {q} ending in a marker: restored, {len(got)} decision records for "
          f"{len(expected)} ids, {time.monotonic() - began:.1f} s")  # fmt: skip


OUTAGE_S = 15.0


@pytest.mark.slow
def test_faust_gate_through_a_broker_outage(kafka_broker: Restartable, tmp_path: Path) -> None:
    """The telemetry in four bursts; right after the second (the processes busy with it) the broker is stopped
    for 15 s and restarted on the same ports and data, then the last two bursts are produced. The Faust gate
    process recovers by itself or exits 1 (a supervisor restarts it: here the test does); deduplicated by id the
    decisions are replay's, no id has two contents."""
    bootstrap = kafka_broker.bootstrap
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    bursts = [lines[i * len(lines) // 4 : (i + 1) * len(lines) // 4] for i in range(4)]
    h.create_topics(bootstrap, names)
    aggregate = h.Worker(bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *QUICK)
    gate = h.Worker(bootstrap, plan, names, tmp_path, "gate", *FAUST, *QUICK)
    again = h.Worker(bootstrap, plan, names, tmp_path, "again", *FAUST, *QUICK)
    began = time.monotonic()
    with h.running(aggregate, gate) as workers:
        for w in workers:
            w.wait_assigned(120)
        h.produce(bootstrap, names.telemetry, bursts[0], "spread")
        h.wait_for(bootstrap, names.decisions, h.count_at_least(1), workers, 120, settle=0.0)
        h.produce(bootstrap, names.telemetry, bursts[1], "spread")
        kafka_broker.stop()
        time.sleep(OUTAGE_S)
        kafka_broker.restart()
        for burst in bursts[2:]:
            h.produce(bootstrap, names.telemetry, burst, "spread")
        aggregate.check_alive()
        assert gate.proc is not None
        exited = gate.proc.poll()
        with h.running(*([again] if exited is not None else [])) as restarted:  # as a supervisor would
            assert exited in (None, 1)
            live = (aggregate, *restarted) if restarted else workers
            got = h.wait_for(bootstrap, names.decisions, h.distinct_ids_at_least(len(expected)), live, 240)
            assert [0] * len(live) == [w.stop() for w in live]

    _checked([r.value for r in got], expected)
    print(f"\nfaust gate through a {OUTAGE_S:g} s broker outage: gate exit {exited}, {len(got)} decision records for "
          f"{len(expected)} ids, {time.monotonic() - began:.1f} s")  # fmt: skip
