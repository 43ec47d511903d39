"""The worker's buffering and flush logic (``gatekeeper.shell.worker.processor``) without Kafka: routing,
dead letters, idempotence by source offsets, restore from table entries, the stream clock, and decisions
equal to replay's whatever the batching."""

from __future__ import annotations

import argparse
import io
from collections import Counter
from typing import Any

import msgspec
import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from gatekeeper.core import decision as decisions
from gatekeeper.core import snapshot
from gatekeeper.core.gate import GateState
from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.shell.replay import replay
from gatekeeper.shell.worker.cli import configure, worker_options
from gatekeeper.shell.worker.processor import (
    Flush,
    Processor,
    Record,
    StateError,
    Topics,
    decode_entry,
    encode_entry,
    home_partition,
)
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000  # 2025-10-19T00:00:00Z
PLAN = Plan.model_validate(small_plan("processor-test", "1", [small_tier("canary", 5)]))
ONE = Topics("telemetry", "app-gates", "decisions", "breaches", "dlq", partitions=1)
EIGHT = Topics("telemetry", "app-gates", "decisions", "breaches", "dlq", partitions=8)


def lines(minutes: int = 150, *, stop_west: int | None = None, seed: int = 3) -> list[bytes]:
    """us-east healthy; eu-west with 15 % errors from minute 20 to 40 (fail, hold, release, pass), silent
    from ``stop_west`` on. About 30 requests a minute each, up to 20 s out of order."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, bytes]] = []
    for region, end in (("us-east", minutes), ("eu-west", stop_west or minutes)):
        ts = np.sort(rng.integers(0, end * 60_000, 30 * end))
        bad = (region == "eu-west") & (ts >= 20 * 60_000) & (ts < 40 * 60_000)
        status = np.where(rng.random(ts.size) < np.where(bad, 0.15, 0.002), 503, 200)
        latency = np.round(60 * np.exp(0.4 * rng.standard_normal(ts.size)), 3)
        for t, st, lat in zip(ts.tolist(), status.tolist(), latency.tolist(), strict=True):
            fields = f'"region": "{region}", "tier": "canary", "latency_ms": {lat}, "status": {st}'
            line = f'{{"ts": {T0_S + t / 1000:.3f}, {fields}}}'
            out.append((t + int(rng.integers(0, 20_000)), line.encode()))
    out.sort(key=lambda pair: pair[0])
    return [line for _, line in out]


def expected(source: list[bytes]) -> list[bytes]:
    sink = io.BytesIO()
    replay(PLAN, io.BytesIO(b"\n".join(source) + b"\n"), sink)
    return [line for line in sink.getvalue().splitlines() if line]


def records(values: list[bytes], topic: str = "telemetry", partition: int = 0, first: int = 0) -> list[Record]:
    return [Record(topic, partition, first + i, None, v) for i, v in enumerate(values)]


def decided(flush: Flush) -> list[bytes]:
    """The encoded decisions of a flush, in order (a decision message always has a value)."""
    return [m.value for m in flush.messages if m.topic == "decisions" and m.value is not None]


def run(processor: Processor, recs: list[Record], chunk: int) -> list[bytes]:
    """Flush ``recs`` in chunks; the encoded decisions in order."""
    out = []
    for i in range(0, len(recs), chunk):
        out += decided(processor.flush(recs[i : i + chunk]))
    return out


class Table(dict[bytes, bytes]):
    """The ``gate-state`` table: a dict the processor reads and the test writes flush results into."""

    def absorb(self, state: dict[bytes, bytes]) -> None:
        self.update(state)


def test_home_partition_is_kafkas_default_partitioner() -> None:
    """A key's home partition is where aiokafka's default partitioner (Java murmur2) puts it."""
    keys = [f"{r}/{t}".encode() for r in ("us-east", "eu-west", "ap-south") for t in ("canary", "ramp-10", "x")]
    for n in (1, 3, 8, 12):
        assert [DefaultPartitioner()(k, list(range(n)), list(range(n))) for k in keys] == [
            home_partition(k, n) for k in keys
        ]


@pytest.mark.parametrize("chunk", [1, 7, 500, 100_000])
def test_decisions_equal_replay_whatever_the_batching(chunk: int) -> None:
    """Records applied where they are read give replay's decisions, in order per key, for any batch size."""
    source = lines()
    want = expected(source)
    assert {"fail", "hold", "release", "pass"} <= {decisions.decode(v).decision for v in want}
    got = run(Processor(PLAN, ONE, Table().get), records(source), chunk)
    assert sorted(want) == sorted(got)
    by_key: dict[str, list[bytes]] = {}
    for value in want:
        by_key.setdefault(decisions.decode(value).key, []).append(value)
    assert by_key == {k: [v for v in got if decisions.decode(v).key == k] for k in by_key}


def test_records_off_their_home_partition_are_forwarded_unchanged() -> None:
    """A valid record read from another partition than its gate's home goes, original bytes, to the gates
    topic on the home partition, keyed ``region/tier``, with its source in ``gk.source``; nothing applied."""
    value = lines()[0]
    key = b"us-east/canary" if b"us-east" in value else b"eu-west/canary"
    home = home_partition(key, 8)
    elsewhere = (home + 1) % 8
    flush = Processor(PLAN, EIGHT, Table().get).flush([Record("telemetry", elsewhere, 41, b"whatever", value)])
    ((message),) = flush.messages
    source = f"telemetry/{elsewhere}/41".encode()
    assert ("app-gates", home, key, value, (("gk.source", source),)) == (
        message.topic,
        message.partition,
        message.key,
        message.value,
        message.headers,
    )
    assert (1, 0, {}) == (flush.forwarded, flush.applied, flush.state)


def test_forwarded_records_apply_with_their_source_offsets() -> None:
    """Records of the gates topic are applied and remembered under their original source partition."""
    source = lines()[:50]
    recs = [
        Record("app-gates", 0, i, None, v, (("gk.source", f"telemetry/3/{1000 + i}".encode()),))
        for i, v in enumerate(source)
    ]
    flush = Processor(PLAN, ONE, Table().get).flush(recs)
    assert 50 == flush.applied
    offsets = {decode_entry(raw)[2]["telemetry:3"] for raw in flush.state.values()}
    assert max(offsets) == 1049


def test_invalid_records_become_dead_letters() -> None:
    """An invalid record becomes a DLQ message with its original key and bytes and reason headers; the
    valid records around it are applied as usual. From the gates topic, the source is the original one."""
    good = lines()[:3]
    bad = b'{"ts": 1760832000, "region": "mars", "tier": "canary", "latency_ms": 5, "status": 200}'
    recs = [*records(good[:2]), Record("telemetry", 0, 2, b"k", bad), *records(good[2:], first=3)]
    forwarded = Record("app-gates", 0, 9, b"us-east/canary", b"{oops", (("gk.source", b"telemetry/5/77"),))
    processor = Processor(PLAN, ONE, Table().get)
    flush = processor.flush(recs)
    ((dead),) = [m for m in flush.messages if m.topic == "dlq"]
    headers = dict(dead.headers)
    assert (b"k", bad, b"unknown_region", b"telemetry/0/2") == (
        dead.key,
        dead.value,
        headers["gk.reason"],
        headers["gk.source"],
    )
    assert b"mars" in headers["gk.message"]
    assert 3 == flush.applied
    ((dead),) = processor.flush([forwarded]).messages
    assert (b"malformed_json", b"telemetry/5/77") == (
        dict(dead.headers)["gk.reason"],
        dict(dead.headers)["gk.source"],
    )
    assert Counter({"unknown_region": 1, "malformed_json": 1}) == processor.rejected


def test_redelivered_records_are_skipped() -> None:
    """Records at or below a gate's applied offset for their source are duplicates: not applied again."""
    recs = records(lines())
    processor = Processor(PLAN, ONE, Table().get)
    first = processor.flush(recs)
    again = processor.flush(recs[len(recs) // 2 :])
    assert (len(recs), len(recs) - len(recs) // 2, [], {}) == (
        first.applied,
        again.duplicates,
        again.messages,
        again.state,
    )


def test_restart_from_the_table_reproduces_the_same_decisions() -> None:
    """A crash: the table holds the state of an earlier flush and the records since are delivered again.
    The new processor restores each gate from the table, skips what it holds and re-emits the decisions of
    the rest with the same ids and contents; after dedup by id the decisions equal replay's."""
    source = lines()
    recs = records(source)
    table_then, table_now = Table(), Table()
    before = Processor(PLAN, ONE, table_now.get)
    emitted: list[bytes] = []
    for i in range(0, len(recs), 1000):
        flush = before.flush(recs[i : i + 1000])
        emitted += decided(flush)
        table_now.absorb(flush.state)
        if i == 2000:
            table_then.update(table_now)  # the changelog as the crash left it
    after = Processor(PLAN, ONE, table_then.get)
    emitted += run(after, recs[2500:], 333)  # re-delivery from an older commit
    first: dict[str, bytes] = {}
    contents: dict[str, set[bytes]] = {}
    for value in emitted:
        did = decisions.decode(value).decision_id
        first.setdefault(did, value)
        contents.setdefault(did, set()).add(value)
    assert {} == {k: v for k, v in contents.items() if len(v) > 1}
    assert sorted(expected(source)) == sorted(first.values())
    assert len(emitted) > len(first)  # the redelivered decisions really were emitted again


def test_state_of_another_plan_version_is_not_restored() -> None:
    """A table entry written under another plan version is ignored with a warning: the gate starts afresh."""
    warnings: list[str] = []
    key = b"us-east/canary"
    stale = encode_entry("0+other", snapshot.dump(GateState(status="held", hold_until=1)), {"telemetry:0": 10**9})
    processor = Processor(PLAN, ONE, {key: stale}.get, warn=warnings.append)
    value = next(v for v in lines() if b"us-east" in v)
    assert 1 == processor.flush(records([value])).applied
    assert ["0+other"] == [w.split("plan version ")[1].split(",")[0] for w in warnings]


def test_unreadable_state_stops_the_worker() -> None:
    """A table entry that is not a gate-state entry raises StateError rather than starting afresh."""
    processor = Processor(PLAN, ONE, {b"us-east/canary": b"\x00garbage"}.get)
    value = next(v for v in lines() if b"us-east" in v)
    with pytest.raises(StateError, match=r"not a gate-state entry"):
        processor.flush(records([value]))


def test_entries_round_trip() -> None:
    """An entry is a msgpack map {v, s, o} and decodes to what was encoded."""
    raw = encode_entry("1+abc", b"snap", {"telemetry:3": 12})
    assert {"v": "1+abc", "s": b"snap", "o": {"telemetry:3": 12}} == msgspec.msgpack.decode(raw)
    assert ("1+abc", b"snap", {"telemetry:3": 12}) == decode_entry(raw)


def test_revoke_forgets_the_gates_of_the_revoked_partitions() -> None:
    """After ``revoke`` of a gate's home partition its engine is gone: the same records apply afresh (a gate
    homed elsewhere would keep its state); revoking another partition changes nothing."""
    processor = Processor(PLAN, ONE, Table().get)
    recs = records(lines()[:100])
    processor.flush(recs[:50])
    processor.revoke([3])
    assert 50 == processor.flush(recs[:50]).duplicates  # not revoked: the gates remember what they applied
    processor.revoke([0])
    assert 50 == processor.flush(recs[:50]).applied  # the gates were forgotten: applied afresh


def test_flush_polled_equals_flush() -> None:
    """A poll given as (topic, partition, records) runs gives what ``flush`` gives for the same records in
    the same order: messages, states and counts, forwards and dead letters included."""
    good = lines()[:400]
    recs = [Record("telemetry", i % 3, i, None, v) for i, v in enumerate(good)]
    recs[7] = Record("telemetry", 1, 7, None, b"{oops")
    recs.append(Record("app-gates", 2, 0, b"us-east/canary", good[0], (("gk.source", b"telemetry/5/77"),)))
    runs: dict[tuple[str, int], list[Record]] = {}
    for r in recs:
        runs.setdefault((r.topic, r.partition), []).append(r)
    polled = [(topic, partition, run) for (topic, partition), run in runs.items()]
    in_runs = [r for _t, _p, run in polled for r in run]
    one, other = Processor(PLAN, EIGHT, Table().get), Processor(PLAN, EIGHT, Table().get)
    expected, actual = one.flush(in_runs, now_ms=T0_S * 1000), other.flush_polled(polled, now_ms=T0_S * 1000)
    assert (expected.messages, expected.state) == (actual.messages, actual.state)
    assert (1, 1) == (actual.rejected.total(), sum(m.topic == "dlq" for m in actual.messages))
    assert actual.forwarded > 0


def test_records_from_several_partitions_in_one_flush_apply_per_source() -> None:
    """One flush may carry several partitions' records (a whole poll): each record is applied or forwarded by
    its own partition, and duplicates are told per source partition."""
    processor = Processor(PLAN, EIGHT, Table().get)
    value = next(v for v in lines() if b"us-east" in v)
    home = home_partition(b"us-east/canary", 8)
    other = (home + 1) % 8
    flush = processor.flush([Record("telemetry", home, 5, None, value), Record("telemetry", other, 5, None, value)])
    assert (1, 1) == (flush.applied, flush.forwarded)
    again = processor.flush([Record("telemetry", home, 5, None, value), Record("telemetry", home, 6, None, value)])
    assert (1, 1) == (again.duplicates, again.applied)


def test_stream_clock_reports_the_stall_replay_reports() -> None:
    """A gate whose telemetry stops while it soaks is reported stalled by replay's stream clock at the end;
    the processor's per-gate engines do not report it from their own events, ``observe_clock`` does -- the
    same decision -- and the state that records it is written."""
    source = lines(stop_west=90)
    want = expected(source)
    stalls = [v for v in want if decisions.decode(v).reason_code == "stalled"]
    assert 1 == len(stalls)
    processor = Processor(PLAN, ONE, Table().get)
    got = run(processor, records(source), 500)
    assert sorted(set(want) - set(stalls)) == sorted(got)
    clock = processor.observe_clock([0])
    assert stalls == [m.value for m in clock.messages]
    assert [b"eu-west/canary"] == list(clock.state)
    assert [] == processor.observe_clock([0]).messages  # reported once


def test_worker_options_from_flags_and_environment() -> None:
    """Flags win over GATEKEEPER_* variables; bad values are one-line UserErrors."""
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--batch", "50"])
    env: dict[str, Any] = {
        "GATEKEEPER_BATCH": "7",
        "GATEKEEPER_APP_ID": "gk-1",
        "GATEKEEPER_CLOCK_INTERVAL": "0.5",
    }
    options = worker_options(args, env)
    assert (50, "gk-1", 0.5) == (options.batch, options.app_id, options.clock_interval)
    for bad in (
        {"GATEKEEPER_APP_ID": "no spaces"},
        {"GATEKEEPER_BATCH": "0"},
        {"GATEKEEPER_CLOCK_INTERVAL": "nan"},
    ):
        with pytest.raises(UserError):
            worker_options(parser.parse_args([]), bad)
