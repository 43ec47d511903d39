"""The demo's simulated rollout (sim/rollout.py): what it feeds the pipeline each simulated hour."""

from __future__ import annotations

from collections import Counter

from gatekeeper.core.plan import Plan
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.sim.rollout import Health, Rollout, Story
from plans_for_tests import small_plan, small_tier


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


def test_the_global_gate_passes_after_every_region_in_the_simulated_rollout() -> None:
    """A two-region tier naming its regions, eu-west erring on its first attempt: the controller holds and retries
    eu-west while us-east passes; the all-regions gate holds, is released, and passes once eu-west passed too,
    and the controller moves no region on a global decision."""
    raw = small_plan("demo-global", "1", [small_tier("canary", 5, regions=["us-east", "eu-west"])])
    story = Story(problems={("eu-west", "canary", 1): Health(error_rate=0.2)}, incidents=(), rate_per_min=60)
    rollout = Rollout(Plan.model_validate(raw), story, seed=3)
    for _tick in rollout.hours(limit_hours=12):
        pass
    east, west = rollout.regions[0].history, rollout.regions[1].history
    assert (["canary passed"], "canary held", "canary passed") == (east, west[0], west[-1])
    assert ("canary hold", "canary pass", 1) == (
        rollout.global_history[0],
        rollout.global_history[-1],
        rollout.global_history.count("canary pass"),
    )
