"""The shipped scenarios, run through the real engine, give the decisions their headers promise (slow:
about a million events each). A failure here means the engine, the plan or the simulator changed behaviour:
read the scenario's header before "fixing" the expectation."""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass, field

import pytest

from gatekeeper.core.decision import Decision
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.shell.side_files import SideFile, load_side_files
from gatekeeper.sim.scenario import load_plan, load_scenario, plan_path
from gatekeeper.sim.side_inputs import side_lines
from gatekeeper.sim.writer import simulate, write_scenario

from .sim_support import SCENARIO_DIR

Row = tuple[str, str, str, str, str]  # decision, region, tier, at, reason_code


@dataclass
class Run:
    decisions: list[Decision] = field(default_factory=list)
    events: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    late: int = 0

    @property
    def rows(self) -> list[Row]:
        return [(d.decision, d.region, d.tier, d.at, d.reason_code) for d in self.decisions]


def _run(name: str) -> Run:
    path = SCENARIO_DIR / f"{name}.yaml"
    scenario = load_scenario(path)
    engine = Pipeline(load_plan(plan_path(scenario, path)))
    # the scenario's incidents, approvals and revenue too, as replay reads them (the plan's criteria need them)
    side = [SideFile(kind, kind, io.BytesIO(b"\n".join(lines))) for kind, lines in side_lines(scenario).items()]
    load_side_files(engine, side)
    decoder = engine.decoder()
    run = Run()
    for chunk in simulate(scenario):
        batch = decoder.decode(chunk)
        run.events += len(chunk)
        run.rejections.update(r.code for r in batch.rejections)
        run.decisions += engine.ingest(batch)
    run.late = engine.stats.late
    return run


@pytest.mark.slow
def test_healthy_canary_passes_after_its_three_week_soak() -> None:
    """A healthy canary (revenue +6 % over control) is never failed: when its 3-week soak is complete it is pending
    once (awaiting the GO/NO-GO checkpoint's approval, which stands for the soak-end checkpoint too), then passes
    at the first window close after the GO of Nov 15; no false fail in the week after."""
    run = _run("healthy-canary")
    expected = [
        ("pending", "us-east", "canary", "2025-11-09T00:00:00Z", "approval"),
        ("pass", "us-east", "canary", "2025-11-15T01:00:00Z", "go"),
    ]
    assert expected == run.rows


@pytest.mark.slow
def test_error_breach_fails_holds_releases_then_passes() -> None:
    """A 1.5 % error episode fails ramp-10 in its first hour (at the minute that proves it: error rate read after
    every pane), holds it two weeks from the end of that hour, then the fresh one-week soak passes."""
    run = _run("error-breach")
    expected = [
        ("fail", "us-east", "ramp-10", "2025-10-21T00:36:00Z", "breach"),
        ("hold", "us-east", "ramp-10", "2025-10-21T00:36:00Z", "hold"),
        ("release", "us-east", "ramp-10", "2025-11-04T01:00:00Z", "release"),
        ("pass", "us-east", "ramp-10", "2025-11-11T01:00:00Z", "go"),
    ]
    assert expected == run.rows


@pytest.mark.slow
def test_latency_breach_holds_only_its_region() -> None:
    """A latency regression in eu-west fails and holds eu-west on P99 latency; us-east and us-west pass."""
    run = _run("latency-breach-one-region")
    fail = next(d for d in run.decisions if d.decision == "fail")
    expected = (
        [
            ("fail", "eu-west", "rollout-75", "2025-10-21T01:00:00Z", "breach"),
            ("hold", "eu-west", "rollout-75", "2025-10-21T01:00:00Z", "hold"),
            ("pass", "us-east", "rollout-75", "2025-10-26T00:00:00Z", "go"),
            ("pass", "us-west", "rollout-75", "2025-10-26T00:00:00Z", "go"),
            ("release", "eu-west", "rollout-75", "2025-10-28T01:00:00Z", "release"),
        ],
        ["p99_latency_ms"],
    )
    assert expected == (run.rows, [c.name for c in fail.criteria if c.verdict == "fail"])


@pytest.mark.slow
def test_thin_traffic_is_only_ever_pending() -> None:
    """A trickle of telemetry is never passed nor failed: a soak end short of min_requests, and a stall only for
    a silence far longer than the trickle's own gaps (stall_mean_gaps), not after every 15-minute gap."""
    run = _run("thin-traffic")
    codes = Counter(d.reason_code for d in run.decisions)
    soak_end = [r for r in run.rows if r[4] == "checkpoint:soak end"]
    expected = (
        {"pending"},
        True,
        [("pending", "us-west", "rollout-90", "2025-12-28T00:00:00Z", "checkpoint:soak end")],
    )
    assert expected == (
        {d.decision for d in run.decisions},
        codes["stalled"] <= 3,
        soak_end,
    )


@pytest.mark.slow
def test_stall_is_reported_while_the_silence_lasts() -> None:
    """Two silent hours of us-east give one stalled pending 15 min into the silence, and nothing else."""
    run = _run("stall")
    expected = [("pending", "us-east", "ramp-25", "2025-11-26T02:15:00Z", "stalled")]
    assert expected == run.rows


@pytest.mark.slow
def test_mixed_input_rejects_exactly_the_invalid_records_and_counts_the_late_ones() -> None:
    """Disordered, mixed-format input with invalid and late records: no decisions, one rejection per injected
    invalid record (of every kind), and every late delivery counted late by the engine."""
    with open(os.devnull, "wb") as sink:
        summary = write_scenario(load_scenario(SCENARIO_DIR / "mixed-input.yaml"), sink)
    run = _run("mixed-input")
    expected: tuple[list[Row], int, int, bool] = ([], summary.malformed, summary.late, True)
    assert expected == (
        run.rows,
        sum(run.rejections.values()),
        run.late,
        len(run.rejections) >= 10,
    )
