"""The demo's simulated rollout (sim/rollout.py): what it feeds the pipeline each simulated hour."""

from __future__ import annotations

from collections import Counter

from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.sim.rollout import Rollout, Story


def test_the_regions_hours_reach_the_pipeline_in_event_time_order() -> None:
    """Three regions send every simulated hour; their requests go to the pipeline interleaved in event time, as one
    telemetry stream carries them. Over the first two days (canaries in all three regions, healthy) no event is
    counted late and no gate reports stalled telemetry. (Region after region, an hour each, put most of the later
    regions' records an hour behind the watermark: half of the demo's events were counted late, and their gates
    reported "no telemetry" every hour.)"""
    rollout = Rollout(load_plan(default_plan()), Story(problems={}), seed=7)
    kinds: Counter[str] = Counter()
    for hour, tick in enumerate(rollout.hours()):
        kinds.update(d.decision for d in tick.decisions)
        if hour == 47:
            break
    running = sorted(p.region for p in rollout.regions if p.state == "running")
    assert (["eu-west", "us-east", "us-west"], 0, 0) == (running, rollout.engine.stats.late, kinds["pending"])
    assert rollout.events > 100_000
