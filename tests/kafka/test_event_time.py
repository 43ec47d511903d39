"""Event time across partitions (issue 9) through the real broker: however producers spread a gate's records
over the 8 telemetry partitions (no key, keyed with another partitioner, one partition left empty, a producer
lagging behind), the worker aggregates each partition where it is read, closes panes on the slowest partition,
and decides what replay decides over the same lines (compared by ``decision_id`` and content), forwarding
nothing. Crashes: SIGKILL with a backlog produced while down, and one of two workers killed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import worker_harness as h

from gatekeeper.core import decision as decisions
from gatekeeper.core import panes_batch
from gatekeeper.core.partials import Watermark

pytestmark = pytest.mark.kafka

IDLE_AFTER_S = 2.0
FAST = ("--idle-after", str(IDLE_AFTER_S), "--clock-interval", "0.2")


QUICK = ("--session-timeout", "8", *FAST)  # crash tests: a killed worker's partitions move on in 8 s


def _ready(worker: h.Worker, timeout: float = 30.0) -> object:
    """The worker's /readyz body once it answers 200, or its last answer after ``timeout`` s."""
    (listening,) = worker.events("metrics listening")
    url = f"http://127.0.0.1:{listening['port']}/readyz"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def _values(records: list[h.Consumed]) -> list[bytes]:
    return [r.value for r in records]


def _crash_run(tmp_path: Path) -> tuple[Path, h.Names, list[bytes], list[bytes]]:
    """A crash test's plan, its topics' names, the scenario's valid lines and replay's decisions of them."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    return plan, names, lines, h.expected(plan, lines)


@pytest.mark.parametrize("mode", ["spread", "crc32"])
def test_backlog_spread_over_partitions_decides_like_replay(kafka_bootstrap: str, tmp_path: Path, mode: h.Mode) -> None:
    """The whole scenario (0.2 % of the records 5 min late) in the topic before the worker starts, unkeyed on
    random partitions or keyed with librdkafka's CRC32 partitioner: the same decisions as replay (a late
    record's count may join the gate a pane earlier or later than in replay, so ``late_events`` is compared
    in total: equal to replay's), every valid record aggregated once, no partial conflicts, nothing forwarded."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(late_share=0.002, invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, mode)

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(h.without_late_counts(expected)) == sorted(h.without_late_counts(_values(got)))
    assert h.by_key(h.without_late_counts(expected)) == h.by_key(h.without_late_counts(_values(got)))
    (totals,) = workers[0].events("worker totals")
    assert (h.replay_late(plan, lines), len(lines), 0) == (totals["late"], totals["applied"], totals["conflicts"])
    assert f"{names.app_id}-gates" not in h.topic_names(kafka_bootstrap)


def test_aggregate_and_gate_roles_in_two_processes_decide_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``--role aggregate`` and ``--role gate`` as two processes of one group (stage 1 reads the telemetry, stage 2
    the panes topic; the range assignor gives each the partitions of its one topic): an unkeyed backlog gives
    replay's decisions; stage 1 folded every record, counted replay's late records and nothing else (the gate
    process applied no telemetry), and stage 2 merged without a conflict. Each process's /readyz turns 200 once
    the partitions it owns (telemetry for stage 1, panes for stage 2) are read to their end."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(late_share=0.002, invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "spread")
    probe = ("--metrics-port", "0")
    aggregate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *FAST, *probe)
    gate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "gate", "--role", "gate", *FAST, *probe)
    with h.running(aggregate, gate) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        ready = [_ready(w) for w in workers]
        assert (0, 0) == (workers[0].stop(), workers[1].stop())

    assert [{"status": "ready", "assigned": True, "caught_up": True}] * 2 == ready

    assert sorted(h.without_late_counts(expected)) == sorted(h.without_late_counts(_values(got)))
    (stage1,) = workers[0].events("worker totals")
    (stage2,) = workers[1].events("worker totals")
    assert (h.replay_late(plan, lines), len(lines)) == (stage1["late"], stage1["applied"])
    assert (0, 0, {}) == (stage2["applied"], stage2["conflicts"], stage1["decisions"])
    assert stage2["decisions"] == dict(sorted(Counter(decisions.decode(v).decision for v in expected).items()))


def test_gate_process_sigkilled_and_restarted_beside_the_aggregate_process(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--role aggregate`` runs on while the ``--role gate`` process is SIGKILLed after its first decision; the
    other two thirds of the unkeyed records are produced while no gate process runs, then a new one starts: it
    restores the gate states and reads back the partials they refer to from the panes topic. Deduplicated by id,
    the decisions equal replay's, no id has two contents, no partial conflicts."""
    plan, names, lines, expected = _crash_run(tmp_path)
    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected, cut=len(lines) // 3, crash="stages", flags=QUICK
    )
    assert 0 == run.totals()["conflicts"]


def test_a_partition_without_records_does_not_hold_the_decisions(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Records on partitions 0-6 only, produced while the worker runs: partition 7 is reported idle, and every
    decision replay gives is sent within ``--idle-after`` (2 s) + 1 s of the worker having read the input's end
    (issue 9). Both ends are the worker's own clock (its records' CreateTime), so the bound tests the idleness
    rule, not how fast a loaded machine lets it read 28k records (printed beside, from the producer's end)."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        workers[0].wait_assigned()
        h.produce_to(kafka_bootstrap, names.telemetry, [(i % 7, None, line) for i, line in enumerate(lines)])
        produced = time.monotonic()
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, settle=0.0)
        delay = time.monotonic() - produced
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()
    read_end_ms, idle = _stage_one_progress(h.read_topic(kafka_bootstrap, f"{names.app_id}-panes"))
    after_end_s = (max(r.timestamp for r in got) - max(read_end_ms.values())) / 1000

    print(f"\nlast decision sent {after_end_s:.2f} s after the worker read the input's end, {delay:.1f} s after "
          f"the producer's end (idle_after {IDLE_AFTER_S:g} s)")  # fmt: skip
    assert sorted(expected) == sorted(_values(got))
    assert (list(range(7)), True) == (sorted(read_end_ms), 7 in idle)
    assert after_end_s < IDLE_AFTER_S + 1.0


def _stage_one_progress(panes: list[h.Consumed]) -> tuple[dict[int, int], set[int]]:
    """From the worker's stage-1 messages: per telemetry partition, when (CreateTime, ms) it last sent a watermark
    that is not an idle report, i.e. advanced while reading (the partition's last pane entered: at most that
    pane's ~25 records before its end, so the time is at or just before the worker read the end); and which
    partitions it reported idle."""
    read: dict[int, int] = {}
    idle: set[int] = set()
    for record in panes:
        for message in panes_batch.read(record.value):
            if isinstance(message, Watermark):
                p = int(message.source.rpartition(":")[2])
                if message.idle:
                    idle.add(p)
                elif message.watermark is not None:  # not the "active, nothing read yet" of an assignment
                    read[p] = max(read.get(p, 0), record.timestamp)
    return read, idle


def test_a_lagging_producer_within_any_lag_gives_no_late_record(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two producers live, one on partitions 0-3, the other on 4-7 and 3 minutes of event time behind (more
    than the plan's 2 min lateness): each partition is in order, so nothing is late and the decisions equal
    replay's of the lines in their original order."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    lag_s = 180
    tagged = []
    for i, line in enumerate(lines):
        behind = i % 2 == 1
        ts = float(line.split(b'"ts": ', 1)[1].split(b",", 1)[0])
        tagged.append((ts + (lag_s if behind else 0), 4 + i % 4 if behind else i % 4, line))
    order: list[tuple[int, bytes | None, bytes]] = [
        (p, None, line) for _at, p, line in sorted(tagged, key=lambda t: t[0])
    ]
    h.create_topics(kafka_bootstrap, names)
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        workers[0].wait_assigned()
        h.produce_to(kafka_bootstrap, names.telemetry, order)
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(_values(got))
    (totals,) = workers[0].events("worker totals")
    assert 0 == totals["late"]


def test_sigkill_with_two_hours_produced_while_down(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Unkeyed records on random partitions: the first hour is produced, the worker is SIGKILLed soon after
    its first decision (in the middle of catching up), the next two hours are produced while it is down, a
    new worker is started: after deduplication by id the decisions equal replay's, no id has two contents,
    no partial conflicts."""
    plan, names, lines, expected = _crash_run(tmp_path)
    run = h.crash_and_recover(kafka_bootstrap, plan, names, tmp_path, lines, expected, cut=len(lines) // 3, flags=QUICK)
    assert h.by_key(expected) == h.by_key(run.unique)
    assert 0 == run.totals()["conflicts"]


def test_one_of_two_workers_killed(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two workers share the partitions; unkeyed records on random partitions, produced as soon as the workers
    have their partitions (before any partition is idle: with two workers, a partition woken from idleness
    races the other worker's watermarks, see docs/reliability.md); one worker is SIGKILLed after the first
    decision: the other takes its partitions over (restoring both stages' state from the changelogs) and the
    decisions, deduplicated by id, equal replay's."""
    plan, names, lines, expected = _crash_run(tmp_path)
    quick = ("--session-timeout", "8", "--idle-after", "10", "--clock-interval", "0.2")
    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected, cut=len(lines) // 2, crash="pair", flags=quick
    )
    assert {"pass", "fail", "hold", "release", "pending"} == {decisions.decode(v).decision for v in run.unique}
