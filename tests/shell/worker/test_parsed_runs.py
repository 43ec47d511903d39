"""Stage 1 over telemetry runs parsed in the decoding process (``records.ParsedRun``: offsets, and the key and
value of the records the decoder rejected) against the same records as ``Record`` lists: the same messages
(partials, watermarks, dead letters with their key, bytes and coordinates), the same counts."""

from __future__ import annotations

import numpy as np

from gatekeeper.core.plan import Plan
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import ParsedRun, Record
from gatekeeper.shell.worker.routing import Topics
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000
PLAN = Plan.model_validate(small_plan("parsed-runs", "1", [small_tier("canary", 5)]))
TOPICS = Topics("telemetry", "app-panes", "decisions", "breaches", "dlq", partitions=8)


def partition_records(partition: int, count: int, *, gaps: bool, seed: int) -> list[Record]:
    """``count`` records of one partition, a minute of event time apart per 30, every 37th invalid and keyed,
    offsets with gaps (compaction, transaction markers) when ``gaps``."""
    rng = np.random.default_rng(seed)
    offset, out = 1000, []
    for i in range(count):
        region = ("us-east", "eu-west")[i % 2]
        status = 503 if rng.random() < 0.05 else 200
        line = b'{"ts": %.3f, "region": "%s", "tier": "canary", "latency_ms": %d, "status": %d}' % (
            T0_S + i * 2 + rng.random(), region.encode(), int(rng.integers(5, 900)), status
        )  # fmt: skip
        key = None
        if i % 37 == 5:
            line, key = b"{oops %d" % i, b"bad-%d" % i
        out.append(Record("telemetry", partition, offset, key, line))
        offset += 1 + (int(rng.integers(0, 3)) if gaps else 0)
    return out


def parsed(processor: Processor, runs: list[tuple[int, list[Record]]]) -> Flush:
    """A poll as the runtime applies a parsed one: values decoded at once, runs as ``ParsedRun``s."""
    values = [r.value or b"" for _p, run in runs for r in run]
    batch = processor.partitions.decoder.decode(values, first_position=0)
    rejected = {rej.position for rej in batch.rejections}
    out, start = [], 0
    for p, run in runs:
        kept = {i: (r.key, r.value) for i, r in enumerate(run) if start + i in rejected}
        offsets = np.asarray([r.offset for r in run], dtype=np.int64)
        out.append(("telemetry", p, ParsedRun("telemetry", p, offsets, kept)))
        start += len(run)
    return processor.flush_polled(out, decoded=batch)


def test_parsed_runs_fold_as_their_records() -> None:
    """Three polls over two partitions (one with offset gaps), invalid records among them: every flush's
    messages and counts equal those of the same runs given as records."""
    a = partition_records(2, 900, gaps=False, seed=1)
    b = partition_records(5, 700, gaps=True, seed=2)
    polls = [[(p, run[s : s + 300]) for p, run in ((2, a), (5, b)) if run[s : s + 300]] for s in range(0, 900, 300)]
    none: dict[bytes, bytes] = {}  # no state to restore
    as_records, as_parsed = (Processor(PLAN, TOPICS, none.get, none.get) for _ in range(2))
    dead: list[tuple[bytes | None, bytes | None]] = []
    for poll in polls:
        expected = as_records.flush_polled([("telemetry", p, run) for p, run in poll])
        got = parsed(as_parsed, poll)
        assert expected.messages == got.messages
        assert (expected.applied, expected.late, expected.skipped) == (got.applied, got.late, got.skipped)
        assert expected.rejected == got.rejected
        dead += [(m.key, m.value) for m in got.messages if m.topic == "dlq"]
    assert sorted((r.key, r.value) for r in a + b if r.key is not None) == sorted(dead)


def test_a_parsed_run_reads_like_a_list_of_records() -> None:
    """Length, first and last record's offsets (negative positions), the kept key and value, slices."""
    run = ParsedRun("telemetry", 3, np.asarray([4, 5, 9], dtype=np.int64), {1: (b"k", b"v")})
    assert 3 == len(run)
    assert (4, 9) == (run[0].offset, run[-1].offset)
    assert Record("telemetry", 3, 5, b"k", b"v") == run[1]
    assert [9] == [r.offset for r in run[2:]]
