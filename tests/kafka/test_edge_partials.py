"""Edge publishers through the real broker: a service that pre-aggregates publishes the public one-partial JSON
message (streams/partial.v1.schema.json) on ``<app-id>-panes``, while the worker's stage 1 sends its partials as
batch messages (core/panes_batch.py) on the same topic; stage 2 merges both, and the decisions are replay's of
all the records (the edge's included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import worker_harness as h

from gatekeeper.core import panes_batch, sketch
from gatekeeper.core import partials as contract
from gatekeeper.planfile import load_plan
from gatekeeper.shell.worker.routing import home_partition

pytestmark = pytest.mark.kafka

FAST = ("--idle-after", "2", "--clock-interval", "0.2")
GATE = "eu-west/canary"


def test_an_edge_partial_is_merged_beside_the_workers_batches(kafka_bootstrap: str, tmp_path: Path) -> None:
    """eu-west/canary's records of one minute of its error episode are taken out of the telemetry and published
    at the edge as one JSON partial (source ``edge-1``) on the gate's panes partition; the rest is an unkeyed
    backlog. The worker's decisions equal replay's of all the records (and differ from replay's without the
    edge's), every telemetry record is applied once, no partial conflicts, and stage 1's partials went over
    the panes topic as batch messages, the edge's as the one JSON partial there."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    pane = load_plan(plan).evaluation.pane
    rows = [json.loads(line) for line in lines]
    start = (h.T0_S + 25 * 60) * 1000
    taken = [f"{r['region']}/{r['tier']}" == GATE and start <= r["ts"] * 1000 < start + pane for r in rows]
    edge = [r for r, t in zip(rows, taken, strict=True) if t]
    rest = [line for line, t in zip(lines, taken, strict=True) if not t]
    assert len(edge) > 20
    buckets, counts = np.unique(sketch.bucket_of(np.asarray([r["latency_ms"] for r in edge], np.float64)),
                                return_counts=True)  # fmt: skip
    partial = contract.Partial(gate=GATE, pane=start, source="edge-1", requests=len(edge),
                               errors=sum(r["status"] >= 500 for r in edge), bins=tuple(buckets.tolist()),
                               counts=tuple(counts.tolist()))  # fmt: skip
    expected = h.expected(plan, lines)
    assert sorted(expected) != sorted(h.expected(plan, rest))

    h.create_topics(kafka_bootstrap, names)
    panes = f"{names.app_id}-panes"
    q = home_partition(GATE.encode(), h.PARTITIONS)
    h.produce_to(kafka_bootstrap, panes, [(q, GATE.encode(), contract.encode(partial))])
    h.produce(kafka_bootstrap, names.telemetry, rest, "spread")
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(r.value for r in got)
    (totals,) = workers[0].events("worker totals")
    assert (len(rest), 0) == (totals["applied"], totals["conflicts"])
    values = [r.value for r in h.read_topic(kafka_bootstrap, panes)]
    json_partials = [
        v for v in values if not panes_batch.is_batch(v) and isinstance(contract.decode(v), contract.Partial)
    ]
    assert [contract.encode(partial)] == json_partials
    assert sum(len(panes_batch.decode(v)) for v in values if panes_batch.is_batch(v)) == totals["partials"]
