"""Telemetry simulator: seeded, deterministic request streams from scenario files (config/scenarios/)."""

from gatekeeper.sim.scenario import (
    Episode,
    Latency,
    Scenario,
    ScenarioError,
    Stream,
    load_plan,
    load_scenario,
    plan_path,
)
from gatekeeper.sim.traffic import Requests, encode_jsonl, generate
from gatekeeper.sim.writer import SimSummary, simulate, write_scenario

__all__ = [
    "Episode",
    "Latency",
    "Requests",
    "Scenario",
    "ScenarioError",
    "SimSummary",
    "Stream",
    "encode_jsonl",
    "generate",
    "load_plan",
    "load_scenario",
    "plan_path",
    "simulate",
    "write_scenario",
]
