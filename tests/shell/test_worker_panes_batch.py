"""Stage 1's batch messages on the panes topic (core/panes_batch.py) through the worker's processor, without
Kafka: one record per (source, panes partition) carrying its gates' partials; stage 2 merges them beside the
public one-partial JSON messages (edge publishers), dead-letters only what it cannot merge, and a restore reads
each batch record once for every partial it holds of every gate."""

from __future__ import annotations

import json
from collections import Counter

import msgspec
import numpy as np
from test_worker_processor import (
    EIGHT,
    GLOBAL_PLAN,
    ONE,
    T0_S,
    Bus,
    by_key,
    expected,
    lines,
    read_with_restarts,
    records,
    spread,
)

from gatekeeper.core import inbox_snapshot, panes_batch, sketch
from gatekeeper.core import partials as contract
from gatekeeper.core.partials import Partial
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.routing import home_partition
from gatekeeper.shell.worker.state_entry import decode_entry

MINUTE = 60_000


def test_stage1_sends_one_batch_per_source_and_panes_partition() -> None:
    """One partition, both gates homed on the one panes partition: every partial goes out in a batch keyed by
    its source, each holding both gates' partials of the pane(s) it closes; together exactly the partials
    stage 1 counted."""
    bus = Bus(ONE)
    processor = bus.processor()
    source = records(lines(30))
    emitted = 0
    for i in range(0, len(source), 200):
        flush = processor.flush_polled([("telemetry", 0, source[i : i + 200])])
        emitted += flush.partials
        bus.apply(flush)
    values = [v for v in bus.panes[0] if panes_batch.is_batch(v)]
    batches = [panes_batch.decode(v) for v in values]
    assert emitted == sum(map(len, batches)) > 0
    assert {"us-east/canary", "eu-west/canary"} == {p.gate for p in batches[0]}
    assert all(len(b) >= 2 for b in batches)
    assert [] == [v for v in bus.panes[0] if not panes_batch.is_batch(v) and b'"kind":"partial"' in v]


class PoppingBus(Bus):
    """The runtime's read-back: the panes records the restored gate entries refer to are read once (by
    ``located_partials``) and each handed out once (popped), as ``runtime.py`` does."""

    shared: Counter[int]

    def processor(self) -> Processor:
        values: dict[tuple[int, int], bytes] = {}
        processor = Processor(self.plan, self.topics, self.gate_table.get, self.source_table.get,
                              pane_records=lambda q, offset: values.pop((q, offset), None))  # fmt: skip
        for q, offsets in processor.located_partials(self.gate_table).items():
            values.update({(q, o): self.panes[q][o] for o in offsets})
        refs = Counter[tuple[int, int]]()
        for key, raw in self.gate_table.items():
            if key.count(b"/") and not key.startswith(b"global/"):
                _inbox, buffered, merged = inbox_snapshot.load_inbox(decode_entry(raw)[1])
                refs.update((0, o) for o in [*buffered.values(), *merged.values()])
        self.shared.update(n for n in refs.values() if n > 1)  # records referred to by more than one partial
        return processor


def test_a_restore_reads_each_batch_once_for_all_the_partials_it_holds() -> None:
    """Two gates homed on one panes partition (a global tier), unkeyed over 8 partitions read at different
    speeds, a new processor restored after every third poll with each referred panes record handed out once:
    batch records referred to by several partials (of one gate or both) restore them all, and the decisions
    equal replay's with no conflict."""
    source = lines()
    bus = PoppingBus(EIGHT, GLOBAL_PLAN)
    bus.shared = Counter()
    read_with_restarts(bus, spread(source, 8, 4))
    assert by_key(expected(source, GLOBAL_PLAN)) == by_key(bus.decisions())
    assert (len(source), 0, 0) == (bus.totals["applied"], bus.totals["late"], bus.totals["conflicts"])
    assert bus.shared.total() > 0


def test_a_batch_with_a_partial_it_cannot_merge_merges_the_others() -> None:
    """A batch on us-east/canary's home partition also holding a partial of a gate the plan does not have: the
    us-east partial is merged (its gate's entry refers to it at that offset), and the record goes once to the DLQ
    saying which of its partials was not merged and why."""
    q = home_partition(b"us-east/canary", 8)
    ours = Partial(gate="us-east/canary", pane=T0_S * 1000, source="telemetry:0", requests=1, errors=0, bins=(9,),
                   counts=(1,))  # fmt: skip
    (raw,) = panes_batch.encode([ours, msgspec.structs.replace(ours, gate="mars/canary")])
    processor = Bus(EIGHT).processor()
    flush = processor.flush_polled([("app-panes", q, records([raw], "app-panes", q, 41))])
    (dead,) = flush.messages
    headers = dict(dead.headers)
    assert (raw, b"partial_elsewhere", b"app-panes/%d/41" % q) == (dead.value, headers["gk.reason"],
                                                                    headers["gk.source"])  # fmt: skip
    why = "1 of its 2 partials not merged: gate mars/canary: not a gate of the plan"
    assert why == headers["gk.message"].decode()
    entry = processor.checkpoint().gates[b"us-east/canary"]
    _inbox, buffered, _merged = inbox_snapshot.load_inbox(decode_entry(entry)[1])
    assert {(ours.pane, ours.source): 41} == buffered


def edge_partial(gate: str, pane_ms: int, taken: list[bytes]) -> bytes:
    """What an edge publisher sends for the records ``taken`` (all of ``gate`` in the pane at ``pane_ms``): the
    public one-partial JSON message, source ``edge-1``."""
    rows = [json.loads(line) for line in taken]
    buckets, counts = np.unique(sketch.bucket_of(np.asarray([r["latency_ms"] for r in rows], np.float64)),
                                return_counts=True)  # fmt: skip
    return contract.encode(Partial(gate=gate, pane=pane_ms, source="edge-1", requests=len(rows),
                                   errors=sum(r["status"] >= 500 for r in rows), bins=tuple(buckets.tolist()),
                                   counts=tuple(counts.tolist())))  # fmt: skip


def split_off(source: list[bytes], region: str, minute: int) -> tuple[list[bytes], list[bytes]]:
    """(the lines without ``region``'s records of event-time minute ``minute``, those records)."""
    start, end = T0_S + minute * 60, T0_S + (minute + 1) * 60
    mine = [b'"region": "%s"' % region.encode() in line and start <= json.loads(line)["ts"] < end for line in source]
    return [v for v, m in zip(source, mine, strict=True) if not m], [v for v, m in zip(source, mine, strict=True) if m]


def test_an_edge_partial_is_merged_beside_stage_1s_batches() -> None:
    """eu-west's records of its breaching minute 25 published at the edge as one JSON partial (on its gate's
    panes partition, before the rest), the others unkeyed over 8 partitions through stage 1's batches: the
    decisions equal replay's of all the records."""
    source = lines()
    rest, taken = split_off(source, "eu-west", 25)
    assert len(taken) > 10
    q = home_partition(b"eu-west/canary", 8)
    bus = Bus(EIGHT)
    bus.panes[q] = [edge_partial("eu-west/canary", (T0_S + 25 * 60) * 1000, taken)]
    processor = bus.processor()
    parts = spread(rest, 8, 2)
    cursors = dict.fromkeys(parts, 0)
    while any(cursors[p] < len(parts[p]) for p in parts):
        bus.poll(processor, [(p, recs[cursors[p] : cursors[p] + 40 * (p + 1)]) for p, recs in parts.items()])
        for p in parts:
            cursors[p] += 40 * (p + 1)
    assert by_key(expected(source)) == by_key(bus.decisions())
    assert (len(rest), 0, 0) == (bus.totals["applied"], bus.totals["conflicts"], bus.totals["duplicates"])
    assert by_key(expected(source)) != by_key(expected(rest))  # the edge partial's records change the decisions
