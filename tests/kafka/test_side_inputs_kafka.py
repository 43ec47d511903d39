"""Incidents, GO/NO-GO approvals and business metrics through the real broker: the worker reads the side topics,
forwards each valid record to its gates' home partitions and applies it where the gate state is, and decides
exactly what replay decides with the same records as side files, also when everything was produced before it
started (a backlog: the side partitions are watermark sources of their gates, so telemetry cannot overtake a side
record); bad records go to the DLQ with reasons.

Plan: the worker tests' plan (window 10m, soak 1h, hold 30m) where canary also requires zero critical incidents
over the soak, ramp's checkpoint "GO/NO-GO" (after 1h) requires approval and ramp has a revenue lift criterion
(lower bound > 0). Side records:
- critical incident INC-1 on us-east/canary, opened 00:25 and resolved 00:28 (two records, same id): the canary,
  healthy, fails and holds at 00:30 instead of passing at 01:00, then passes after the hold (02:00).
- a GO for us-east/ramp at 01:15: the ramp, healthy, awaits approval at 01:00, passes at 01:20.
- a NO-GO for eu-west/ramp at 02:05 (its soak restarted at 01:30 after a latency breach): fail + hold at 02:10.
- revenue for us-east (treatment on ramp +40 %, control) over the first 50 minutes: the lift passes by 01:00.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import worker_harness as h
import yaml

from gatekeeper.core import decision as decisions
from gatekeeper.core.timefmt import format_ms
from gatekeeper.planfile import load_plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.side_files import SideFile

pytestmark = pytest.mark.kafka

FAST = ("--idle-after", "2", "--clock-interval", "0.2")


def at(minutes: int) -> str:
    return format_ms((h.T0_S + minutes * 60) * 1000)


INCIDENTS = [
    {"id": "INC-1", "severity": "critical", "kind": "outage", "region": "us-east", "tier": "canary",
     "opened_at": at(25), "title": "checkout 503s"},
    {"id": "INC-1", "severity": "critical", "kind": "outage", "region": "us-east", "tier": "canary",
     "opened_at": at(25), "resolved_at": at(28), "title": "checkout 503s"},
]  # fmt: skip
APPROVALS = [
    {"checkpoint": "GO/NO-GO", "region": "us-east", "decision": "go", "by": "alice", "at": at(75), "note": "ok"},
    {"checkpoint": "GO/NO-GO", "region": "eu-west", "decision": "no-go", "by": "bob", "at": at(125),
     "note": "latency regressed in eu-west"},
]  # fmt: skip
BAD = [
    (b"incidents", b'{"id": "INC-2", "severity": "huge", "kind": "outage", "opened_at": 1760833000}'),
    (b"approvals", b'{"checkpoint": "launch", "decision": "go", "by": "eve", "at": 1760833000}'),
    (b"incidents", b"not json"),
]


LIFT = {"kind": "lift", "metric": "revenue", "pass_lower_above": 0, "fail_upper_below": 0, "tune_at": 800}


def write_plan(directory: Path) -> Path:
    plan: dict[str, Any] = copy.deepcopy(h.TEST_PLAN)
    plan["plan"] = "worker-side-inputs"
    tiers = plan["phases"][0]["tiers"]
    tiers[0]["criteria"].append({"kind": "no_incidents", "severities": ["critical"]})
    tiers[1]["checkpoints"] = [{"name": "GO/NO-GO", "after": "1h", "approval": True}]
    tiers[1]["criteria"].append(dict(LIFT))
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def lines(records: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def expected(plan: Path, telemetry: list[bytes], revenue: list[dict[str, Any]] | None = None) -> list[bytes]:
    side = [
        SideFile("incident", "incidents", io.BytesIO(b"\n".join(lines(INCIDENTS)))),
        SideFile("approval", "approvals", io.BytesIO(b"\n".join(lines(APPROVALS)))),
        SideFile("business", "business", io.BytesIO(b"\n".join(lines(revenue or [])))),
    ]
    sink = io.BytesIO()
    replay(load_plan(plan), io.BytesIO(b"\n".join(telemetry) + b"\n"), sink, side=side)
    return [line for line in sink.getvalue().split(b"\n") if line]


def shape(values: list[bytes], region: str, tier: str) -> list[tuple[str, str, str]]:
    out = [decisions.decode(v) for v in values]
    return [(d.decision, d.reason_code, d.at) for d in out if (d.region, d.tier) == (region, tier)]


def ids(values: list[bytes]) -> list[str]:
    return sorted(decisions.decode(v).decision_id for v in values)


def test_a_backlog_of_every_input_decides_as_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The whole scenario produced before the worker starts: telemetry spread over the 8 partitions, incidents,
    approvals (and bad records) and revenue. The worker reads it all as one backlog, the partitions in whatever
    order they come, and decides exactly what replay decides (by decision_id, and byte for byte): the incident
    fails and holds us-east/canary at 00:30, the GO releases us-east/ramp at 01:20 after it awaited approval at
    01:00, the NO-GO holds eu-west/ramp at 02:10; bad side records are in the DLQ with their reasons."""
    plan, names = write_plan(tmp_path), h.Names()
    telemetry = h.scenario(invalid=False)
    revenue = business("us-east", "ramp", 0.4, 1, control=True)
    want = expected(plan, telemetry, revenue)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, telemetry, "spread")
    h.produce_pairs(kafka_bootstrap, names.incidents, [(b"INC-1", v) for v in lines(INCIDENTS)])
    h.produce_pairs(kafka_bootstrap, names.approvals, [(None, v) for v in lines(APPROVALS)])
    h.produce_pairs(kafka_bootstrap, names.business, [(None, v) for v in lines(revenue)])
    topic = {b"incidents": names.incidents, b"approvals": names.approvals}
    for name, value in BAD:
        h.produce_pairs(kafka_bootstrap, topic[name], [(None, value)])
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(want)), workers)
        assert 0 == workers[0].stop()

    values = [r.value for r in got]
    assert ids(want) == ids(values)
    assert sorted(want) == sorted(values)
    assert [("fail", "breach", at(30)), ("hold", "hold", at(30)), ("release", "release", at(60)),
            ("pass", "go", at(120))] == shape(values, "us-east", "canary")  # fmt: skip
    assert [("pending", "approval", at(60)), ("pass", "go", at(80))] == shape(values, "us-east", "ramp")
    assert ("fail", "breach", at(130)) in shape(values, "eu-west", "ramp")
    dead = sorted(dict(r.headers)["gk.reason"].decode() for r in h.read_topic(kafka_bootstrap, names.dlq))
    assert ["invalid_field:severity", "malformed_json", "unknown_checkpoint"] == dead


def test_empty_side_topics_do_not_hold_a_live_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Live, with nothing on the side topics though the plan's canary and ramp wait for their partitions:
    telemetry produced to the running worker is decided as replay decides, the last decision within idle_after
    (2 s) + 1 s + 2 s (to read what was produced) of the last record produced: the empty side partitions,
    idle, hold nothing."""
    plan, names = write_plan(tmp_path), h.Names()
    telemetry = h.scenario(invalid=False)
    sink = io.BytesIO()
    replay(load_plan(plan), io.BytesIO(b"\n".join(telemetry) + b"\n"), sink)
    want = [line for line in sink.getvalue().split(b"\n") if line]
    h.create_topics(kafka_bootstrap, names)
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        workers[0].wait_assigned()
        h.produce(kafka_bootstrap, names.telemetry, telemetry, "spread")
        produced_ms = time.time() * 1000
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(want)), workers)
        assert 0 == workers[0].stop()

    assert ids(want) == ids([r.value for r in got])
    decided_ms = max(int(dict(r.headers)["gk-closed-wall-ms"]) for r in got)
    delay = (decided_ms - produced_ms) / 1000
    print(f"last decision {delay:.2f} s after the last record produced")
    assert delay <= 2 + 1 + 2


def business(region: str, tier: str, lift: float, seed: int, control: bool) -> list[dict[str, Any]]:
    """400 treatment values (gamma, CV 0.5, mean 10 (1 + lift)) over the first 50 minutes, and as many control
    values (mean 10) if ``control``, in time order, as a service emits them live: side records more than the
    plan's lateness out of order within a partition count at a later window close than in replay
    (docs/reliability.md), and shuffled over 50 minutes they made the lift test's decisions depend on how the
    worker's polls split the business backlog (a fresh-clone CI run: 145 treatment records at 00:20 where replay
    had 147)."""
    rng = np.random.default_rng(seed)
    out = []
    arms = (("treatment", 10 * (1 + lift)), ("control", 10.0))
    for cohort, mean in arms if control else arms[:1]:
        minutes, values = rng.integers(0, 50, 400).tolist(), rng.gamma(4.0, mean / 4, 400).tolist()
        for i, (minute, value) in enumerate(zip(minutes, values, strict=True)):
            record = {"ts": at(minute), "region": region, "learner_id": f"{cohort}-{i}", "cohort": cohort,
                      "metric": "revenue", "value": round(value, 3)}  # fmt: skip
            if cohort == "treatment":
                record["tier"] = tier
            out.append(record)
    return sorted(out, key=lambda r: str(r["ts"]))


def test_lift_passes_or_blocks_a_tier_as_in_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Revenue through the business-metrics topic, lift criteria on canary and ramp (pass: lower bound > 0;
    fail: upper bound < 0): us-east/ramp at +40% passes when its soak ends (01:00) as without the criterion;
    us-east/canary at -40% fails and holds, though its telemetry is healthy; the worker, reading everything as a
    backlog (produced before it started, telemetry first), decides as replay does."""
    raw: dict[str, Any] = copy.deepcopy(h.TEST_PLAN)
    raw["plan"] = "worker-lift"
    for tier in raw["phases"][0]["tiers"][:2]:
        tier["criteria"].append(dict(LIFT))
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    names = h.Names()
    telemetry = h.scenario(invalid=False)
    # one control for both tiers of us-east (a control record serves every tier of its region); the two series
    # merged in time order: one after the other, the canary's records came up to 50 minutes behind the ramp's in
    # each business partition, more than the lateness, so the worker counted them at whichever window close its
    # polls reached them by (a fresh-clone CI run: 142 canary treatment records at 00:20 where replay had 147)
    ramp = business("us-east", "ramp", 0.4, 1, control=True)
    records = sorted(ramp + business("us-east", "canary", -0.4, 2, control=False), key=lambda r: str(r["ts"]))
    values = lines(records)
    sink = io.BytesIO()
    side = [SideFile("business", "business", io.BytesIO(b"\n".join(values)))]
    replay(load_plan(plan), io.BytesIO(b"\n".join(telemetry) + b"\n"), sink, side=side)
    want = [line for line in sink.getvalue().split(b"\n") if line]
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, telemetry, "spread")  # a backlog: telemetry first
    h.produce_pairs(kafka_bootstrap, names.business, [(None, v) for v in values])
    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(want)), workers)
        assert 0 == workers[0].stop()

    got_values = [r.value for r in got]
    assert sorted(want) == sorted(got_values)
    assert ("pass", "go", at(60)) in shape(got_values, "us-east", "ramp")
    canary = shape(got_values, "us-east", "canary")
    assert ["fail", "hold"] == [kind for kind, _code, _at in canary[:2]]
    assert "revenue_lift" in next(
        c.name for d in map(decisions.decode, got_values) if d.decision == "fail" and d.tier == "canary"
        for c in d.criteria if c.verdict == "fail"
    )  # fmt: skip


SMALL_SCENARIO = {
    "name": "side-small",
    "seed": 5,
    "start": "2025-10-19T00:00:00Z",
    "plan": str(Path(__file__).resolve().parents[2] / "config" / "rollout-plan.yaml"),
    "streams": [
        {
            "region": "us-east",
            "tier": "canary",
            "end": "2h",
            "rate_per_min": 2,
            "latency": {"median_ms": 10, "sigma": 0.2},
        }
    ],
    "incidents": [{"id": "INC-1", "severity": "critical", "region": "us-east", "opened": "10m", "resolved": "20m"}],
    "approvals": [{"checkpoint": "GO/NO-GO Nov 15", "decision": "go", "by": "board", "at": "1h"}],
    "revenue": [
        {
            "region": "us-east",
            "tier": "canary",
            "end": "2h",
            "lift": "6%",
            "treatment_learners": 30,
            "control_learners": 40,
            "period": "1h",
        }
    ],
}


def test_simulate_sends_the_side_inputs_to_their_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``gatekeeper simulate --bootstrap`` writes a scenario's incidents, approvals and business metrics to their
    topics, exactly the lines ``--side-dir`` writes to files."""
    names = h.Names()
    path = tmp_path / "side-small.yaml"
    path.write_text(yaml.safe_dump(SMALL_SCENARIO, sort_keys=False))
    files = tmp_path / "side"
    cmd = [sys.executable, "-m", "gatekeeper.shell.cli", "simulate", "--scenario", str(path)]
    cmd += ["--output", str(tmp_path / "t.jsonl"), "--side-dir", str(files), "--bootstrap", kafka_bootstrap]
    cmd += names.flags()[2:]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert 0 == run.returncode, run.stderr[-3000:]
    topics = {"incidents.jsonl": names.incidents, "approvals.jsonl": names.approvals, "business.jsonl": names.business}
    expected = {name: sorted((files / name).read_bytes().splitlines()) for name in topics}
    actual = {name: sorted(r.value for r in h.read_topic(kafka_bootstrap, topic)) for name, topic in topics.items()}
    assert expected == actual
    # opened + resolved; one GO; 70 learners, each one value an hour from its own phase (the second is after 2h)
    assert (2, 1, 70) == tuple(len(expected[name]) for name in topics)


def test_a_side_partition_gained_in_a_rebalance_is_reported_active_again(kafka_bootstrap: str, tmp_path: Path) -> None:
    """w1 alone reads the first half of the telemetry; its side partitions, empty, are reported idle. w2 joins (a
    rebalance): before reading them, w2 reports each side partition it gained active again on every partition of
    ``<app-id>-side``, behind w1's idle reports (so the gates those partitions concern hold, as at start-up, until
    w2 reports them idle), as w1 did at its start; then the two decide the whole telemetry as replay does (the
    holds end: no gate waits for ever)."""
    plan, names = write_plan(tmp_path), h.Names()
    telemetry = h.scenario(invalid=False)
    sink = io.BytesIO()
    replay(load_plan(plan), io.BytesIO(b"\n".join(telemetry) + b"\n"), sink)
    want = [line for line in sink.getvalue().split(b"\n") if line]
    side_topic = f"{names.app_id}-side"
    kinds = (names.incidents, names.approvals, names.business)

    def reports(source: str) -> list[tuple[object, bool]]:
        """What ``<app-id>-side`` partition 0 says of side partition ``source``, in order."""
        found = []
        for r in h.read_topic(kafka_bootstrap, side_topic):
            if r.partition == 0 and r.key == source.encode():
                message = json.loads(r.value)
                found.append((message["watermark"], message["idle"]))
        return found

    h.create_topics(kafka_bootstrap, names)
    half = len(telemetry) // 2
    first = h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *FAST)
    second = h.Worker(kafka_bootstrap, plan, names, tmp_path, "w2", *FAST)
    with h.running(first) as (w1,):
        w1.wait_assigned()
        h.produce(kafka_bootstrap, names.telemetry, telemetry[:half], "spread")
        deadline = time.monotonic() + 60
        while (None, True) not in reports(f"{names.incidents}:7") and time.monotonic() < deadline:
            time.sleep(0.5)
        with h.running(second) as (w2,):
            split = h.wait_split((w1, w2))
            gained = [f"{t}:{p}" for t in kinds for p in split[1]]
            h.produce(kafka_bootstrap, names.telemetry, telemetry[half:], "spread")
            got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(want)), (w1, w2))
            seen = {source: reports(source) for source in gained}
            assert [0, 0] == [w2.stop(), w1.stop()]

    assert ids(want) == ids([r.value for r in got])
    # each partition w2 gained, its reports (repeats dropped): w1's start-up report (active, nothing known), w1's
    # idle one, then w2's active one (before it read anything) and w2's idle one
    active, idle = (None, False), (None, True)
    changes = {source: [s for i, s in enumerate(said) if i == 0 or said[i - 1] != s] for source, said in seen.items()}
    assert {source: [active, idle, active, idle] for source in gained} == {s: c[:4] for s, c in changes.items()}


@pytest.mark.parametrize("engine", ["aiokafka", "faust"])
def test_progress_names_the_side_partitions_a_quiet_gate_waits_for(
    kafka_bootstrap: str, tmp_path: Path, engine: str
) -> None:
    """The telemetry backlog and INC-1 produced, nothing else on the side topics, and ``--idle-after 600`` so no
    partition is said idle during the test: us-east/canary (no_incidents) closes no pane while 7 incidents
    partitions have said nothing (and none past INC-1's watermark, 00:25 less the 2 m lateness). With
    ``--report-interval 1`` a ``worker progress`` line soon says why, under ``waiting``: those 7 partitions
    (nothing heard yet, one entry: 0-3,5-7) and INC-1's (4) at 00:23; the ramp (approvals, business metrics)
    waits for those topics' partitions, never for the incidents; thin waits for no side partition at all. The
    same with the Faust gate engine beside a ``--role aggregate`` worker."""
    plan, names = write_plan(tmp_path), h.Names()
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, h.scenario(invalid=False), "spread")
    h.produce_pairs(kafka_bootstrap, names.incidents, [(b"INC-1", v) for v in lines(INCIDENTS)])
    [inc] = {r.partition for r in h.read_topic(kafka_bootstrap, names.incidents)}
    slow = ("--idle-after", "600", "--clock-interval", "0.2", "--report-interval", "1")
    if engine == "faust":
        started = [
            h.Worker(kafka_bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *slow),
            h.Worker(kafka_bootstrap, plan, names, tmp_path, "gate", "--role", "gate", "--gate-engine", "faust", *slow),
        ]
    else:
        started = [h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", *slow)]
    with h.running(*started) as workers:
        gate, deadline, waiting = workers[-1], time.monotonic() + 120, dict[str, Any]()
        while not {"us-east/canary", "us-east/ramp", "us-east/thin"} <= set(waiting):
            assert time.monotonic() < deadline, f"no progress line named the gates; log:\n{gate.log()[-3000:]}"
            for w in workers:
                w.check_alive()
            time.sleep(0.5)
            waiting = next((e["waiting"] for e in reversed(gate.events("worker progress")) if e["waiting"]), {})
        assert [0] * len(workers) == [w.stop() for w in workers]

    def side(gate: str, topic: str) -> list[str]:
        return sorted(w for w in waiting.get(gate, {}).get("waiting_for", []) if w.startswith(f"{topic}:"))

    canary = waiting["us-east/canary"]
    assert 4 == inc  # the Java client's partitioner: murmur2(b"INC-1") % 8
    expected = [f"{names.incidents}:0-3,5-7 at nothing yet", f"{names.incidents}:4 at {at(23)}"]
    assert expected == side("us-east/canary", names.incidents)
    assert None is canary["closed_until"]  # the partitions not heard from hold every pane
    assert [] == side("us-east/ramp", names.incidents)
    approvals = [f"{names.approvals}:0-{h.PARTITIONS - 1} at nothing yet"]
    assert approvals == side("us-east/ramp", names.approvals)
    thin = waiting["us-east/thin"]["waiting_for"]
    assert [] != thin
    assert [] == [w for w in thin if not w.startswith(f"{names.telemetry}:")]
