"""The worker's two stages per poll (``gatekeeper.shell.worker.processor``) without Kafka: a small in-memory bus
carries the panes topic back into the processor. Decisions equal replay's whatever the batching and however the
records are spread over partitions; dead letters; idleness; restart from the tables; options."""

from __future__ import annotations

import argparse
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from gatekeeper.core import decision as decisions
from gatekeeper.core import inbox_snapshot
from gatekeeper.core import partials as contract
from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.shell.replay import replay
from gatekeeper.shell.worker.cli import configure, worker_options
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics, home_partition
from gatekeeper.shell.worker.state_entry import StateError, decode_entry, encode_entry
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000  # 2025-10-19T00:00:00Z
NO_ENTRIES: dict[bytes, bytes] = {}
PLAN = Plan.model_validate(small_plan("processor-test", "1", [small_tier("canary", 5)]))
# the canary naming both regions: a global gate over them (core/global_gate.py), with its multi-region uptime
UPTIME = {"kind": "uptime", "at_least": "99%"}
GLOBAL_PLAN = Plan.model_validate(
    small_plan("processor-test", "1", [small_tier("canary", 5, regions=["us-east", "eu-west"], more_criteria=[UPTIME])])
)
ONE = Topics("telemetry", "app-panes", "decisions", "breaches", "dlq", partitions=1)
EIGHT = Topics("telemetry", "app-panes", "decisions", "breaches", "dlq", partitions=8)


def test_home_partition_is_kafkas_default_partitioner() -> None:
    """A key's home partition is where aiokafka's default partitioner (Java murmur2) puts it."""
    keys = [f"{r}/{t}".encode() for r in ("us-east", "eu-west", "ap-south") for t in ("canary", "ramp-10", "x")]
    for n in (1, 3, 8, 12):
        assert [DefaultPartitioner()(k, list(range(n)), list(range(n))) for k in keys] == [
            home_partition(k, n) for k in keys
        ]


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


def expected(source: list[bytes], plan: Plan = PLAN) -> list[bytes]:
    sink = io.BytesIO()
    replay(plan, io.BytesIO(b"\n".join(source) + b"\n"), sink)
    return [line for line in sink.getvalue().splitlines() if line]


@dataclass
class Bus:
    """Kafka for one processor: telemetry partitions it reads in polls, the panes topic it writes and reads
    back, the tables its states go to, and everything else it produced."""

    topics: Topics
    plan: Plan = PLAN
    gate_table: dict[bytes, bytes] = field(default_factory=dict)
    source_table: dict[bytes, bytes] = field(default_factory=dict)
    panes: dict[int, list[bytes]] = field(default_factory=dict)
    read: dict[int, int] = field(default_factory=dict)  # panes partition -> records read
    out: list[tuple[str, int, bytes | None, bytes | None]] = field(default_factory=list)
    totals: Counter[str] = field(default_factory=Counter)

    def processor(self) -> Processor:
        return Processor(
            self.plan, self.topics, self.gate_table.get, self.source_table.get, pane_records=self.pane_record
        )

    def pane_record(self, q: int, offset: int) -> bytes | None:
        values = self.panes.get(q, [])
        return values[offset] if offset < len(values) else None

    def apply(self, flush: Flush) -> None:
        for m in flush.messages:
            if m.topic == self.topics.panes:
                assert m.value is not None
                self.panes.setdefault(m.partition, []).append(m.value)
            else:
                self.out.append((m.topic, m.partition, m.key, m.value))
        self.totals.update(applied=flush.applied, late=flush.late, skipped=flush.skipped,
                           duplicates=flush.duplicates, conflicts=flush.conflicts)  # fmt: skip

    def poll(self, processor: Processor, telemetry: list[tuple[int, list[Record]]]) -> None:
        """One poll: the given telemetry runs, then every panes record not read yet; then a checkpoint."""
        self.apply(processor.flush_polled([(self.topics.telemetry, p, run) for p, run in telemetry if run]))
        self.drain(processor)
        self.checkpoint(processor)

    def checkpoint(self, processor: Processor) -> None:
        saved = processor.checkpoint()
        self.gate_table.update(saved.gates)
        self.source_table.update(dict(saved.sources.values()))

    def drain(self, processor: Processor) -> None:
        while any(len(v) > self.read.get(q, 0) for q, v in self.panes.items()):
            runs = []
            for q, values in sorted(self.panes.items()):
                first = self.read.get(q, 0)
                runs.append((self.topics.panes, q, records(values[first:], self.topics.panes, q, first)))
                self.read[q] = len(values)
            self.apply(processor.flush_polled(runs))

    def decisions(self) -> list[bytes]:
        return [v for topic, _p, _k, v in self.out if topic == "decisions" and v is not None]


def by_key(values: list[bytes]) -> dict[str, list[bytes]]:
    """Encoded decisions grouped by ``region/tier``, in order (the order across gates is not a contract)."""
    out: dict[str, list[bytes]] = {}
    for value in values:
        out.setdefault(decisions.decode(value).key, []).append(value)
    return out


def records(values: list[bytes], topic: str = "telemetry", partition: int = 0, first: int = 0) -> list[Record]:
    return [Record(topic, partition, first + i, None, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("chunk", [1, 7, 500, 100_000])
def test_decisions_equal_replay_whatever_the_batching(chunk: int) -> None:
    """One partition polled in chunks of 1 to all records: the decisions equal replay's, in order."""
    source = lines(90) if chunk == 1 else lines()
    bus = Bus(ONE)
    processor = bus.processor()
    recs = records(source)
    for i in range(0, len(recs), chunk):
        bus.poll(processor, [(0, recs[i : i + chunk])])
    assert by_key(expected(source)) == by_key(bus.decisions())
    assert (len(source), 0, 0) == (bus.totals["applied"], bus.totals["late"], bus.totals["conflicts"])


def spread(source: list[bytes], partitions: int, seed: int) -> dict[int, list[Record]]:
    """Unkeyed records as a producer's default partitioner spreads them: each to a random partition, each
    partition keeping their order."""
    owner = np.random.default_rng(seed).integers(0, partitions, len(source))
    return {p: records([v for v, o in zip(source, owner.tolist(), strict=True) if o == p], partition=p)
            for p in range(partitions)}  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
def test_unkeyed_over_eight_partitions_read_at_different_speeds_equals_replay(seed: int) -> None:
    """Unkeyed records over 8 partitions, the partitions read in polls of different sizes (partition p in
    chunks of 40 * (p + 1), so partition 0 is far behind partition 7 in event time): the decisions equal
    replay's, no record is late, no partial conflicts."""
    source = lines()
    parts = spread(source, 8, seed)
    bus = Bus(EIGHT)
    processor = bus.processor()
    cursors = dict.fromkeys(parts, 0)
    while any(cursors[p] < len(parts[p]) for p in parts):
        polled = []
        for p, recs in parts.items():
            size = 40 * (p + 1)
            polled.append((p, recs[cursors[p] : cursors[p] + size]))
            cursors[p] += size
        bus.poll(processor, polled)
    assert by_key(expected(source)) == by_key(bus.decisions())
    assert (len(source), 0, 0) == (bus.totals["applied"], bus.totals["late"], bus.totals["conflicts"])


def test_restarts_restore_partials_held_by_reference_from_the_panes_topic() -> None:
    """Unkeyed over 8 partitions read at different speeds (so panes wait for the slowest partition with partials
    buffered), a new processor restored from the tables after every third poll: the gate entries hold their
    partials as offsets in the panes topic, not whole, and the restored processors read them back from it; the
    decisions equal replay's, with no partial conflict."""
    source = lines()
    parts = spread(source, 8, 4)
    bus = Bus(EIGHT)
    processor = bus.processor()
    cursors = dict.fromkeys(parts, 0)
    held = Counter[str]()
    polls = 0
    while any(cursors[p] < len(parts[p]) for p in parts):
        polled = []
        for p, recs in parts.items():
            polled.append((p, recs[cursors[p] : cursors[p] + 40 * (p + 1)]))
            cursors[p] += 40 * (p + 1)
        bus.poll(processor, polled)
        for raw in bus.gate_table.values():
            inbox, buffered, merged = inbox_snapshot.load_inbox(decode_entry(raw)[1])
            held.update(inline=sum(map(len, inbox.buffered.values())), buffered=len(buffered), merged=len(merged))
        polls += 1
        if polls % 3 == 0:
            processor = restart(bus, cursors)
    assert by_key(expected(source)) == by_key(bus.decisions())
    assert (len(source), 0, 0) == (bus.totals["applied"], bus.totals["late"], bus.totals["conflicts"])
    assert 0 == held["inline"]
    assert 0 < min(held["buffered"], held["merged"])


def restart(bus: Bus, cursors: dict[int, int]) -> Processor:
    """A new processor restored from the tables, each partition's cursor moved where it resumes (as the runtime
    seeks the consumer there): stage 1 folds the records read since its last whole snapshot again."""
    processor = bus.processor()
    for p, cursor in list(cursors.items()):
        resume = processor.resume(p)
        cursors[p] = cursor if resume is None else resume
    return processor


def read_with_restarts(bus: Bus, parts: dict[int, list[Record]]) -> None:
    """Partition p read in polls of 40 * (p + 1) records, a new processor restored from the tables after every
    third poll."""
    processor = bus.processor()
    cursors = dict.fromkeys(parts, 0)
    polls = 0
    while any(cursors[p] < len(parts[p]) for p in parts):
        bus.poll(processor, [(p, recs[cursors[p] : cursors[p] + 40 * (p + 1)]) for p, recs in parts.items()])
        for p in parts:
            cursors[p] += 40 * (p + 1)
        polls += 1
        if polls % 3 == 0:
            processor = restart(bus, cursors)


@pytest.mark.parametrize("seed", [4, 5])
def test_the_global_gate_decides_like_replay_across_partitions_and_restarts(seed: int) -> None:
    """A tier naming both regions: its regional gates are homed with ``global/canary`` (one panes partition),
    and the global decisions, folded in-process from them, equal replay's (same ids) though the 8 partitions
    are read at different speeds and a new processor is restored from the tables after every third poll; the
    fold's state goes to the gate table under ``global/canary``."""
    source = lines()
    parts = spread(source, 8, seed)
    bus = Bus(EIGHT, GLOBAL_PLAN)
    read_with_restarts(bus, parts)
    want = by_key(expected(source, GLOBAL_PLAN))
    assert ["hold", "release", "pass"] == [decisions.decode(v).decision for v in want["global/canary"]]
    assert want == by_key(bus.decisions())
    home = home_partition(b"global/canary", 8)
    assert {home} == {q for topic, q, _k, _v in bus.out if topic == "decisions"}
    assert b"global/canary" in bus.gate_table


def test_a_partial_missing_from_the_panes_topic_stops_the_restore() -> None:
    """A gate entry referring to a panes record that cannot be read back (gone past the retention) raises
    StateError naming the gate, the pane, the offset and the likely cause."""
    parts = spread(lines(30), 8, 5)
    bus = Bus(EIGHT)
    bus.poll(bus.processor(), [(p, recs[: len(recs) // 2]) for p, recs in parts.items()])
    bus.panes = {q: [] for q in bus.panes}  # the topic's records are gone; the tables remain
    fresh = bus.processor()
    mark = contract.encode(contract.Watermark(source="telemetry:0", watermark=0))
    every = [("app-panes", q, [Record("app-panes", q, 9999, b"telemetry:0", mark)]) for q in range(EIGHT.partitions)]
    with pytest.raises(StateError, match=r"gate .*: its partial \(pane \d+, source telemetry:\d\) at offset \d+ .*"
                       r"could not be read back \(past the topic's retention\?\)"):  # fmt: skip
        fresh.flush_polled(every)


def test_a_partition_without_records_holds_the_gates_until_idle() -> None:
    """Partition 7 gets no record: no decision until it is reported idle; then replay's decisions. The idle
    report is sent once."""
    source = lines()
    parts = spread(source, 7, 3)
    bus = Bus(EIGHT)
    processor = bus.processor()
    bus.poll(processor, list(parts.items()))
    assert [] == bus.decisions()
    bus.apply(processor.mark_idle([7]))
    bus.drain(processor)
    assert by_key(expected(source)) == by_key(bus.decisions())
    assert [] == processor.mark_idle([7]).messages


def test_watermarks_go_to_every_panes_partition_on_each_new_pane_only() -> None:
    """A partition's watermark is sent to all 8 panes partitions when it enters a new pane, not for every
    poll: records 10 s apart in one pane give one report."""
    processor = Bus(EIGHT).processor()
    line = '{{"ts": {ts}, "region": "us-east", "tier": "canary", "latency_ms": 5, "status": 200}}'
    one = [Record("telemetry", 3, 0, None, line.format(ts=T0_S + 200).encode())]
    two = [Record("telemetry", 3, 1, None, line.format(ts=T0_S + 210).encode())]
    first = processor.flush_polled([("telemetry", 3, one)])
    again = processor.flush_polled([("telemetry", 3, two)])
    marks = [m for m in first.messages if m.topic == "app-panes"]
    assert (list(range(8)), []) == ([m.partition for m in marks], [m for m in again.messages if m.topic == "app-panes"])
    mark = contract.decode(marks[0].value or b"")
    assert contract.Watermark(source="telemetry:3", watermark=(T0_S + 200) * 1000 - 120_000) == mark


def test_invalid_records_and_partials_become_dead_letters() -> None:
    """An invalid telemetry record goes to the DLQ with its bytes, reason, message and coordinates; so does
    a partial that is not one, or whose gate is not in the plan; the valid ones around them are used."""
    processor = Bus(ONE).processor()
    good = lines(3)
    recs = records([good[0], b"{oops", good[1]], first=40)
    flush = processor.flush_polled([("telemetry", 0, recs)])
    (dead,) = [m for m in flush.messages if m.topic == "dlq"]
    assert (b"{oops", (b"malformed_json", b"telemetry/0/41")) == (
        dead.value,
        (dict(dead.headers)["gk.reason"], dict(dead.headers)["gk.source"]),
    )
    assert 2 == flush.applied
    stranger = contract.encode(contract.Partial(gate="mars/canary", pane=0, source="edge", requests=0, errors=0))
    flush = processor.flush_polled([("app-panes", 0, records([b"[1]", stranger], "app-panes"))])
    assert [b"invalid_partial", b"partial_elsewhere"] == [dict(m.headers)["gk.reason"] for m in flush.messages]
    assert {"malformed_json": 1, "invalid_partial": 1, "partial_elsewhere": 1} == processor.rejected


def stopped_at_60_percent(recs: list[Record]) -> tuple[Bus, int, Processor, int]:
    """Partition 0 read in polls of 300 up to 60 % of ``recs`` (the cut), then a new processor restored from the
    tables: (the bus, the cut, the new processor, the offset it resumes from)."""
    cut = int(len(recs) * 0.6)
    bus = Bus(ONE)
    before = bus.processor()
    for i in range(0, cut, 300):
        bus.poll(before, [(0, recs[i : min(i + 300, cut)])])
    after = bus.processor()
    resume = after.resume(0)
    assert resume is not None
    return bus, cut, after, resume


def test_restart_from_the_tables_reproduces_the_same_decisions() -> None:
    """Stop after 60 % of the records, start a new processor on the tables as they were written, and give it
    the records again from well before the stop (as after a crash before a commit): records before its last whole
    snapshot are skipped, those read since are folded again without being counted, the rest continue; all
    decisions equal replay's, with no conflicting partial, and every record is counted applied once."""
    source = lines()
    recs = records(source)
    bus, cut, after, resume = stopped_at_60_percent(recs)
    assert cut - 1000 <= resume < cut  # the last whole snapshot: the table holds how far it was read after it
    for i in range(cut - 1000, len(recs), 300):
        bus.poll(after, [(0, recs[i : i + 300])])
    assert by_key(expected(source)) == by_key(bus.decisions())
    skipped = resume - (cut - 1000)
    assert (skipped, 0, len(source)) == (bus.totals["skipped"], bus.totals["conflicts"], bus.totals["applied"])


def test_records_folded_again_after_a_restart_send_no_dead_letter_again() -> None:
    """Invalid records among those read since the last whole snapshot went to the DLQ before the restart: folded
    again after it they are not sent again, nor counted; each invalid record is dead-lettered exactly once and
    every valid one counted applied once."""
    source = lines()
    source = [b"not json" if i % 50 == 7 else line for i, line in enumerate(source)]
    recs = records(source)
    bus, cut, after, resume = stopped_at_60_percent(recs)
    assert resume < cut  # records read since the snapshot are folded again
    for i in range(resume, len(recs), 300):
        bus.poll(after, [(0, recs[i : i + 300])])
    invalid = sum(1 for line in source if line == b"not json")
    dead = [v for topic, _p, _k, v in bus.out if topic == "dlq"]
    assert (invalid, len(source) - invalid) == (len(dead), bus.totals["applied"])


def test_state_of_another_plan_version_is_not_restored() -> None:
    """Table entries written under another plan version are ignored with a warning: the gate and the
    partition start afresh."""
    bus = Bus(ONE)
    bus.poll(bus.processor(), [(0, records(lines(30)))])
    stale = {k: encode_entry("other", decode_entry(v)[1]) for k, v in bus.gate_table.items()}
    warnings: list[str] = []
    processor = Processor(PLAN, ONE, stale.get, {b"telemetry:0": encode_entry("other", b"")}.get, warn=warnings.append)
    assert None is processor.resume(0)
    processor.flush_polled([("app-panes", 0, records([], "app-panes"))])
    processor.mark_idle([0])
    assert 1 <= len(warnings)
    assert "plan version other" in warnings[0]


def test_unreadable_state_stops_the_worker() -> None:
    """A table entry that is not a snapshot raises StateError naming the gate or partition, never a
    traceback of the decoder."""
    processor = Processor(PLAN, ONE, NO_ENTRIES.get, {b"telemetry:0": b"\x00garbage"}.get)
    with pytest.raises(StateError, match="not a state entry"):
        processor.resume(0)
    processor = Processor(PLAN, ONE, NO_ENTRIES.get, {b"telemetry:0": encode_entry(PLAN.plan_version, b"\x00")}.get)
    with pytest.raises(StateError, match="telemetry partition 0"):
        processor.resume(0)


def test_a_damaged_stage_1_change_names_the_partition_and_key() -> None:
    """A stage-1 change record that cannot be read stops the restore with a StateError naming the telemetry
    partition, the changelog key and the change."""
    bus = Bus(ONE)
    bus.poll(bus.processor(), [(0, records(lines(30)))])
    table = dict(bus.source_table) | {b"telemetry:0/1": encode_entry(PLAN.plan_version, b"\x94\x05")}
    processor = Processor(PLAN, ONE, NO_ENTRIES.get, table.get)
    with pytest.raises(StateError, match=r"telemetry partition 0 \(changelog key telemetry:0\).*change 1"):
        processor.resume(0)


def test_an_idle_partitions_sealed_panes_are_written_whole() -> None:
    """Sealing an idle partition's panes depends on the wall clock, so folding again cannot reproduce it: the
    next checkpoint writes the state whole (key ``telemetry:0``), not how far it was read."""
    bus = Bus(ONE)
    processor = bus.processor()
    recs = records(lines(30))
    bus.poll(processor, [(0, recs[:10])])
    bus.poll(processor, [(0, recs[10:20])])
    assert {b"telemetry:0", b"telemetry:0/1"} == set(bus.source_table)  # a whole state, then how far it was read
    bus.apply(processor.mark_idle([0]))
    assert [b"telemetry:0"] == [key for key, _v in processor.checkpoint().sources.values()]


def test_records_rejected_by_the_clock_make_the_state_written_whole() -> None:
    """Records rejected for a timestamp in the future of the wall clock would be accepted when folded again later:
    the next checkpoint writes the state whole (key ``telemetry:0``), not how far it was read."""
    bus = Bus(ONE)
    processor = bus.processor()
    recs = records(lines(30))
    bus.poll(processor, [(0, recs[:10])])
    ts = json.loads(recs[15].value or b"")["ts"]
    now_ms = round(ts * 1000) - PLAN.evaluation.max_future_skew - 1  # the 16th record and later are in the future
    bus.apply(processor.flush_polled([("telemetry", 0, recs[10:20])], now_ms))
    assert 0 < processor.rejected["invalid_field:ts"]
    assert [b"telemetry:0"] == [key for key, _v in processor.checkpoint().sources.values()]


def test_revoke_forgets_the_state_of_the_revoked_partitions() -> None:
    """After a revoke the processor reads a partition's state from the table again (here empty: afresh)."""
    processor = Processor(PLAN, ONE, NO_ENTRIES.get, NO_ENTRIES.get)
    processor.flush_polled([("telemetry", 0, records(lines(10)))])
    kept = processor.resume(0)
    processor.revoke([0], [0])
    assert (len(lines(10)), None) == (kept, processor.resume(0))


def test_worker_options_from_flags_and_environment() -> None:
    """Flags win over GATEKEEPER_* variables; the report interval is 30 s unless set; bad values are one-line
    UserErrors."""
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--batch", "50"])
    env: dict[str, Any] = {
        "GATEKEEPER_BATCH": "7",
        "GATEKEEPER_APP_ID": "gk-1",
        "GATEKEEPER_CLOCK_INTERVAL": "0.5",
        "GATEKEEPER_IDLE_AFTER": "2.5",
        "GATEKEEPER_REPORT_INTERVAL": "5",
    }
    options = worker_options(args, env)
    assert (50, "gk-1", 0.5, 2.5) == (options.batch, options.app_id, options.clock_interval, options.idle_after)
    assert (5.0, 30.0) == (options.report_interval, worker_options(parser.parse_args([]), {}).report_interval)
    for bad in (
        {"GATEKEEPER_APP_ID": "no spaces"},
        {"GATEKEEPER_BATCH": "0"},
        {"GATEKEEPER_CLOCK_INTERVAL": "nan"},
        {"GATEKEEPER_IDLE_AFTER": "0"},
        {"GATEKEEPER_REPORT_INTERVAL": "0"},
    ):
        with pytest.raises(UserError):
            worker_options(parser.parse_args([]), bad)


CROSS = {"kind": "latency", "quantile": 0.99, "pass_below_ms": 200, "fail_above_ms": 200,
         "requests": "cross_region", "min_requests_to_fail": 30, "min_requests": 100}  # fmt: skip
CROSS_PLAN = Plan.model_validate(small_plan("processor-test", "1", [small_tier("canary", 5, more_criteria=[CROSS])]))


def cross_lines(seed: int = 6) -> list[bytes]:
    """``lines()`` with a client_region on every record: a fifth of us-east's from eu-west clients, 300 ms slower;
    eu-west's from eu-west."""
    rng = np.random.default_rng(seed)
    out = []
    for line in lines(90):
        rec = json.loads(line)
        away = rec["region"] == "us-east" and rng.random() < 0.2
        rec["client_region"] = "eu-west" if away else rec["region"]
        rec["latency_ms"] += 300 if away else 0
        out.append(json.dumps(rec).encode())
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_cross_region_requests_decide_like_replay_across_partitions_and_restarts(seed: int) -> None:
    """A tier with a cross-region P99 criterion, a fifth of us-east's requests from eu-west clients and slow:
    over 8 partitions read at different speeds, a new processor restored from the tables after every third
    poll, the decisions equal replay's (us-east fails on the cross-region criterion), and the copies are not
    counted as applied records."""
    source = cross_lines()
    parts = spread(source, 8, seed)
    bus = Bus(EIGHT, CROSS_PLAN)
    read_with_restarts(bus, parts)
    want = by_key(expected(source, CROSS_PLAN))
    fails = [decisions.decode(v) for v in want["us-east/canary"] if decisions.decode(v).decision == "fail"]
    assert fails
    assert "p99_latency_ms_cross_region" in {c.name for c in fails[0].criteria if c.verdict == "fail"}
    assert want == by_key(bus.decisions())
    assert (len(source), 0) == (bus.totals["applied"], bus.totals["conflicts"])


def test_a_run_of_panes_records_merges_as_record_by_record() -> None:
    """In one run of panes records, the watermarks of all 8 sources pass pane P0 (its close waits for the run's
    end), then partials of P0 come, from an edge publisher (late, as if P0 had closed on arrival) and again from
    a source whose watermark passed it (a duplicate), and one of the next pane (buffered): the same counts,
    decisions and gate state as when each record is a run of its own."""
    pane = PLAN.evaluation.pane
    p0 = T0_S * 1000 // pane * pane
    key = b"us-east/canary"
    q = home_partition(key, 8)

    def partial(start: int, source: int | str) -> bytes:
        name = source if isinstance(source, str) else f"telemetry:{source}"
        return contract.encode(contract.Partial(gate=key.decode(), pane=start, source=name, requests=3, errors=1,
                                                bins=(10,), counts=(3,)))  # fmt: skip

    marks = [contract.encode(contract.Watermark(source=f"telemetry:{s}", watermark=p0 + pane)) for s in range(8)]
    values = [partial(p0, 0), partial(p0 - pane, 2), *marks, partial(p0, "edge"), partial(p0, 0), partial(p0 + pane, 1)]
    records = [Record("app-panes", q, offset, key, v) for offset, v in enumerate(values)]
    together, apart = Bus(EIGHT).processor(), Bus(EIGHT).processor()
    one = together.flush_polled([("app-panes", q, records)])
    each = [apart.flush_polled([("app-panes", q, [r])]) for r in records]
    counts = [(f.partials, f.late_partials, f.duplicates, f.conflicts, len(f.decisions)) for f in (one, *each)]
    summed = tuple(sum(c[i] for c in counts[1:]) for i in range(5))
    assert (1, 1, 0) == counts[0][1:4]  # the edge's P0 partial is late, source 0's again a duplicate
    assert counts[0] == summed
    assert together.checkpoint().gates == apart.checkpoint().gates


def test_records_with_offset_gaps_are_folded_as_without_gaps() -> None:
    """A compacted or transactional topic leaves gaps in a partition's offsets: the records decide as replay
    does, and a restart that reads the last records again counts, skips and folds again quietly exactly as it
    does for the same records without gaps."""
    source = lines()
    totals = []
    for gaps in (False, True):  # offsets 0, 1, 2, ... or 0, 4, 6, 10, ...
        bus = Bus(ONE)
        processor = bus.processor()
        recs = [Record("telemetry", 0, 3 * i + i % 2 if gaps else i, None, v) for i, v in enumerate(source)]
        for i in range(0, len(recs), 500):
            bus.poll(processor, [(0, recs[i : i + 500])])
        bus.poll(bus.processor(), [(0, recs[-700:])])  # restarted from the tables: the last 700 come again
        assert by_key(expected(source)) == by_key(bus.decisions())
        totals.append((bus.totals["applied"], bus.totals["skipped"], bus.totals["late"]))
    assert totals[0] == totals[1]
    assert len(source) == totals[1][0]
