"""The worker's poll with the telemetry records kept as fetched bytes (``shell/worker/raw_fetch.py``) against
aiokafka's own ``Fetcher.fetched_records`` over the same fetch results: the same records per partition (once
parsed), the same positions afterwards, at most ``max_records`` a poll, drained results deleted and the fetcher
woken, errors raised, and records of a partition moved meanwhile not returned."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.consumer.subscription_state import Assignment
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from kafka_batches import batch

from gatekeeper.shell.worker.raw_fetch import RawFetch, _KeptBytes, attach, batches
from gatekeeper.shell.worker.raw_records import RawRun, parse

T3, T5, PANES = TopicPartition("telemetry", 3), TopicPartition("telemetry", 5), TopicPartition("panes", 0)
FETCHED = {
    T3: (117, batch(100, list(range(40))) + batch(140, [0, 1, 5], last_delta=9) + batch(150, [0], control=True)),
    T5: (0, b"".join(batch(b, list(range(12))) for b in range(0, 96, 12)) + batch(96, [0, 1])[:-3]),
    PANES: (7, batch(7, [0, 1, 2, 3])),
}


class Fetcher:
    """The parts of aiokafka's ``Fetcher`` that ``fetched_records`` reads, over given fetch results."""

    def __init__(self, records: dict[TopicPartition, Any]) -> None:
        self._records = records
        self._subscriptions = SimpleNamespace(reassignment_in_progress=False)
        self._wait_consume_future = None
        self._closed, self._check_crcs = False, True
        self.woken = 0

    def _notify(self, _future: Any) -> None:
        self.woken += 1


def results(assignment: Assignment, *, kept: bool) -> dict[TopicPartition, Any]:
    """A fetch result per assigned partition of FETCHED, at its fetch offset (telemetry bytes kept when ``kept``)."""
    out = {}
    for tp in sorted(assignment.tps):
        offset, data = FETCHED[tp]
        assignment.state_value(tp).seek(offset)
        records = _KeptBytes(data) if kept and tp.topic == "telemetry" else MemoryRecords(data)
        partition = aiokafka_fetcher.PartitionRecords(
            tp, records, None, offset, None, None, True, aiokafka_fetcher.READ_UNCOMMITTED
        )
        out[tp] = aiokafka_fetcher.FetchResult(tp, assignment=assignment, partition_records=partition, backoff=0)
    return out


def records_of(drained: dict[TopicPartition, list[Any]], raw: list[RawRun]) -> dict[TopicPartition, list[Any]]:
    out = {tp: [(r.offset, r.value) for r in records] for tp, records in drained.items()}
    for run in raw:
        offsets, _keys, values = parse(run.data, run.fetch_offset, TopicPartition("telemetry", run.partition))
        out[TopicPartition("telemetry", run.partition)] = list(zip(offsets, values, strict=True))
    return out


async def both(max_records: int) -> tuple[Any, ...]:
    """Poll both ways until nothing is left: records per partition, poll sizes, positions, wake-ups."""
    out: list[Any] = []
    for kept in (False, True):
        assignment = Assignment(list(FETCHED))
        made = results(assignment, kept=kept)
        fetcher = Fetcher({tp: made[tp] for tp in FETCHED})  # in FETCHED's order
        raw_fetch = RawFetch(SimpleNamespace(_fetcher=fetcher), "telemetry")
        got: dict[TopicPartition, list[Any]] = {tp: [] for tp in FETCHED}
        sizes = []
        while True:
            if kept:
                drained, raw = await raw_fetch._fetched(0, max_records)
            else:
                drained, raw = await aiokafka_fetcher.Fetcher.fetched_records(fetcher, (), 0, max_records), []
            if not drained and not raw:
                break
            polled = records_of(drained, raw)
            sizes.append(sum(map(len, polled.values())))
            for tp, records in polled.items():
                got[tp] += records
        positions = {tp: assignment.state_value(tp).position for tp in FETCHED}
        out.append((got, sizes, positions, fetcher.woken, fetcher._records))
    return tuple(out)


@pytest.mark.parametrize("max_records", [1, 30, 1000])
def test_raw_polls_return_aiokafkas_records_and_positions(max_records: int) -> None:
    """Polled to the end with any ``max_records``: each partition's records and position as aiokafka's, every
    result drained and deleted with one wake-up each, no poll above ``max_records`` (but a first batch alone)."""
    theirs, ours = asyncio.run(both(max_records))
    assert theirs[0] == ours[0]
    assert theirs[2] == ours[2]
    assert (3, {}) == (ours[3], ours[4])
    assert theirs[3:] == ours[3:]
    assert all(size <= max(max_records, 40) for size in ours[1])
    assert sum(ours[1]) == sum(theirs[1])


def test_a_partition_moved_since_its_fetch_returns_nothing_and_is_dropped() -> None:
    """A telemetry partition seeked elsewhere after its fetch: no run, its result deleted, the fetcher woken,
    its position where the seek put it (aiokafka's ``check_assignment``)."""

    async def run() -> tuple[Any, ...]:
        assignment = Assignment([T3])
        fetcher = Fetcher({T3: results(assignment, kept=True)[T3]})
        assignment.state_value(T3).seek(5)
        drained, raw = await RawFetch(SimpleNamespace(_fetcher=fetcher), "telemetry")._fetched(0, 100)
        return drained, raw, fetcher._records, fetcher.woken, assignment.state_value(T3).position

    assert ({}, [], {}, 1, 5) == asyncio.run(run())


def test_a_fetch_error_is_raised_once_the_records_before_it_are_returned() -> None:
    """An error result after a telemetry result: the records first, the error on the next poll, as aiokafka."""

    async def run() -> tuple[list[int], type[BaseException] | None]:
        assignment = Assignment([T3, T5])
        fetched = results(assignment, kept=True)
        error = aiokafka_fetcher.FetchError(error=TopicAuthorizationFailedError("telemetry"), backoff=0)
        fetcher = Fetcher({T3: fetched[T3], T5: error})
        raw_fetch = RawFetch(SimpleNamespace(_fetcher=fetcher), "telemetry")
        _drained, raw = await raw_fetch._fetched(0, 1000)
        try:
            await raw_fetch._fetched(0, 1000)
        except TopicAuthorizationFailedError as exc:
            return [run.partition for run in raw], type(exc)
        return [run.partition for run in raw], None

    assert ([3], TopicAuthorizationFailedError) == asyncio.run(run())


def test_batches_reads_the_headers_aiokafka_reads() -> None:
    """Each complete batch's end and next offset as aiokafka's ``MemoryRecords`` walks them; records counted
    from the header (none in a control batch); a batch cut off by the fetch size left out."""
    _offset, data = FETCHED[T3]
    walked = MemoryRecords(data + data[:30])
    expected = []
    while walked.has_next():
        expected.append(walked.next_batch().next_offset)
    assert expected == [after for _b, _e, after, _n in batches(data + data[:30])]
    assert [40, 3, 0] == [n for _b, _e, _a, n in batches(data)]
    assert len(data) == list(batches(data))[-1][1]


def test_attach_falls_back_on_another_aiokafka_or_missing_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another aiokafka version, or a consumer without the fetcher internals used: no raw path, and why."""
    consumer = SimpleNamespace(_fetcher=Fetcher({}))
    monkeypatch.setattr(aiokafka, "__version__", "0.15.0")
    assert (None, "aiokafka 0.15.0 (checked: 0.14.0)") == attach(consumer, "telemetry")
    monkeypatch.setattr(aiokafka, "__version__", "0.14.0")
    fetch, why = attach(consumer, "telemetry")
    assert fetch is None
    assert why.startswith("aiokafka internals missing: _closed, _coordinator")
