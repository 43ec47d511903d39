"""Small builders shared by the core tests: synthetic plans with short durations, EventBatch columns,
telemetry records and their decoder, and ways to feed an engine."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gatekeeper.core import slot_routing
from gatekeeper.core.aggregate import Aggregator
from gatekeeper.core.decision import Decision, encode
from gatekeeper.core.engine import Engine
from gatekeeper.core.gate import Gate, GateSpec
from gatekeeper.core.merge import Merger
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder
from gatekeeper.core.timefmt import format_ms
from plans_for_tests import small_plan, small_tier

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
T0 = 1_760_832_000_000  # 2025-10-19T00:00:00Z, a whole number of hours since the epoch
T0_TEXT = "2025-10-19T00:00:00Z"

# The shared small plan (tests/plans_for_tests.py) with one tier, which also asks for 90 % uptime.
BASE_PLAN: dict[str, Any] = small_plan(
    "test-plan",
    "1.0",
    [small_tier("canary", 1, more_criteria=[{"kind": "uptime", "at_least": "90%"}])],
    stall_mean_gaps=0,  # a fixed stall threshold here; test_gate.py covers the thin-traffic rule
)


def plan_dict(**evaluation: Any) -> dict[str, Any]:
    """A deep copy of ``BASE_PLAN`` with some ``evaluation`` keys replaced."""
    raw = copy.deepcopy(BASE_PLAN)
    raw["evaluation"].update(evaluation)
    return raw


def tier_of(raw: dict[str, Any], phase: int = 0, tier: int = 0) -> dict[str, Any]:
    """The tier dict at (phase, tier) of a plan dict, for editing in place."""
    result: dict[str, Any] = raw["phases"][phase]["tiers"][tier]
    return result


def make_plan(raw: dict[str, Any] | None = None) -> Plan:
    """A validated Plan from a plan dict (default: ``BASE_PLAN``)."""
    return Plan.model_validate(copy.deepcopy(BASE_PLAN) if raw is None else raw)


def make_engine(raw: dict[str, Any] | None = None) -> Engine:
    return Engine(make_plan(raw))


def make_gate(raw: dict[str, Any] | None = None, region: str = "us-east") -> Gate:
    """A lone Gate for (region, the plan's first tier), outside any engine."""
    plan = make_plan(raw)
    _, phase, tier = next(g for g in plan.gates() if g[0] == region)
    return Gate(GateSpec.of(region, phase, tier, plan.evaluation, plan.plan_version, len(plan.gates())))


def gate_key(engine: Engine, region: str, tier: str = "canary") -> int:
    """The EventBatch ``key`` of a (region, tier) gate."""
    return engine.keys.index((region, tier))


def batch(
    ts_ms: Sequence[int] | npt.NDArray[np.int64],
    key: Sequence[int] | npt.NDArray[np.int64] | int,
    latency_ms: Sequence[float] | npt.NDArray[np.float64] | float = 10.0,
    error: Sequence[bool] | npt.NDArray[np.bool_] | bool = False,
) -> EventBatch:
    """EventBatch columns with the right dtypes; scalars are broadcast to every event."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    n = ts.size
    return EventBatch(
        ts_ms=ts,
        key=np.broadcast_to(np.asarray(key, dtype=np.int64), (n,)).copy(),
        latency_ms=np.broadcast_to(np.asarray(latency_ms, dtype=np.float64), (n,)).copy(),
        error=np.broadcast_to(np.asarray(error, dtype=np.bool_), (n,)).copy(),
    )


def traffic(
    key: int,
    start: int,
    end: int,
    per_minute: int,
    error_rate: float = 0.0,
    seed: int = 0,
    median_ms: float = 50.0,
    sigma: float = 0.5,
) -> EventBatch:
    """Evenly spaced requests of one gate in [start, end): errors at ``error_rate``, lognormal latencies."""
    rng = np.random.default_rng(seed)
    step = MINUTE // per_minute
    ts = np.arange(start, end, step, dtype=np.int64)
    errors = rng.random(ts.size) < error_rate
    latencies = rng.lognormal(np.log(median_ms), sigma, ts.size)
    return batch(ts, key, latencies, errors)


def concat(*batches: EventBatch) -> EventBatch:
    return EventBatch(
        ts_ms=np.concatenate([b.ts_ms for b in batches]),
        key=np.concatenate([b.key for b in batches]),
        latency_ms=np.concatenate([b.latency_ms for b in batches]),
        error=np.concatenate([b.error for b in batches]),
    )


def take(events: EventBatch, index: npt.NDArray[np.intp] | slice) -> EventBatch:
    """The events at ``index``, in that order."""
    return EventBatch(events.ts_ms[index], events.key[index], events.latency_ms[index], events.error[index])


def by_time(events: EventBatch) -> EventBatch:
    """The events in event-time order (stable), as a perfectly ordered stream would deliver them."""
    return take(events, np.argsort(events.ts_ms, kind="stable"))


def chunks(events: EventBatch, size: int) -> list[EventBatch]:
    """Consecutive batches of at most ``size`` events, in arrival order."""
    return [take(events, slice(i, i + size)) for i in range(0, len(events), size)]


def run(engine: Engine, events: EventBatch, size: int | None = None, flush: bool = False) -> list[Decision]:
    """Feed ``events`` in batches of ``size`` (default: one batch) and collect every decision."""
    out: list[Decision] = []
    for part in chunks(events, size or max(1, len(events))):
        out.extend(engine.ingest(part))
    if flush:
        out.extend(engine.flush())
    return out


EAST, WEST = 0, 1  # gate keys of the base plan: (us-east, canary), (eu-west, canary)


def at(minutes: int) -> str:
    """RFC 3339 text of T0 + ``minutes``."""
    return format_ms(T0 + minutes * MINUTE)


def healthy(
    key: int,
    start_min: int = 0,
    end_min: int = 180,
    per_minute: int = 20,
    seed: int = 0,
) -> EventBatch:
    """Steady traffic at 0.5 % errors and ~50 ms latency over [T0 + start_min, T0 + end_min)."""
    start, end = T0 + start_min * MINUTE, T0 + end_min * MINUTE
    return traffic(key, start, end, per_minute, error_rate=0.005, seed=seed)


def breach_then_healthy(key: int, end_min: int = 180) -> EventBatch:
    """10 minutes at 30 % errors, then healthy traffic."""
    return concat(
        traffic(key, T0, T0 + 10 * MINUTE, 20, error_rate=0.3, seed=11),
        traffic(key, T0 + 10 * MINUTE, T0 + end_min * MINUTE, 20, error_rate=0.005, seed=12),
    )


def rich_events() -> EventBatch:
    """us-east breaches, is held, released and passes; eu-west goes silent for 30 minutes (a stall)."""
    return by_time(
        concat(
            breach_then_healthy(EAST, end_min=150),
            healthy(WEST, 0, 30, seed=1),
            healthy(WEST, 60, 150, seed=2),
        )
    )


def rich_plan() -> dict[str, Any]:
    """The base plan with a 'half-time' checkpoint 30 minutes into the soak."""
    raw = plan_dict()
    tier_of(raw)["checkpoints"] = [{"name": "half-time", "after": "30m"}]
    return raw


def rich_run() -> list[Decision]:
    """A run with every kind of decision: fail, hold, release, pass, pending (checkpoint and stall)."""
    return run(make_engine(rich_plan()), rich_events(), flush=True)


def summary(decisions: Iterable[Decision]) -> list[tuple[str, str, str, str]]:
    """(region, decision, reason_code, at) of each decision, in order: the shape of a run."""
    return [(d.region, d.decision, d.reason_code, d.at) for d in decisions]


def of(decisions: Iterable[Decision], kind: str, region: str | None = None) -> list[Decision]:
    return [d for d in decisions if d.decision == kind and (region is None or d.region == region)]


def encoded(decisions: Iterable[Decision]) -> list[bytes]:
    """The decisions as sorted encoded bytes: equal for equal sets of decisions, whatever their order."""
    return sorted(encode(d) for d in decisions)


def record(**fields: Any) -> bytes:
    """A telemetry record as JSON bytes; ``None`` values are left out."""
    base: dict[str, Any] = {
        "ts": 1_760_832_000.25,
        "region": "us-east",
        "tier": "canary",
        "latency_ms": 12.5,
        "status": 200,
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


# The telemetry tests' decoder and a record it accepts.
GATES = [("us-east", "canary"), ("us-east", "ramp-10"), ("eu-west", "canary")]  # ramp-10 only in us-east
DECODER = TelemetryDecoder(GATES)
VALID = record()


def columns(batch: EventBatch) -> tuple[list[int], list[int], list[float], list[bool]]:
    return batch.ts_ms.tolist(), batch.key.tolist(), batch.latency_ms.tolist(), batch.error.tolist()


def per_partial_path(plan: Plan, lines: list[bytes], size: int = 3_000) -> list[Decision]:
    """``lines`` through both stages the worker's way: stage 1 per batch of ``size``, stage 2 fed one ``Partial``
    per message (``Merger.apply``), with the plan's baseline and cross-region slots."""
    lay = slot_routing.layout(plan)
    aggregator = Aggregator(lay.keys, plan.evaluation.pane, plan.evaluation.lateness, lay.fan())
    decoder = TelemetryDecoder(lay.gates, None, lay.baselines, lay.cross)
    merger = Merger(plan, ("input",))
    inboxes, state, out = merger.start_all(), aggregator.start("input"), []
    for i in range(0, len(lines), size):
        state, rows, mark = aggregator.fold(state, decoder.decode(lines[i : i + size]))
        out += merger.apply(inboxes, [*rows, mark])
    state, rows, mark = aggregator.finish(state)
    return out + merger.apply(inboxes, [*rows, mark])


def replay_lines(plan: Plan, lines: list[bytes], size: int) -> tuple[list[Decision], Pipeline]:
    """``lines`` (all valid) through one ``Pipeline`` in batches of ``size``, then its flush."""
    pipeline = Pipeline(plan)
    decoder, out = pipeline.decoder(), []
    for i in range(0, len(lines), size):
        batch = decoder.decode(lines[i : i + size])
        assert [] == batch.rejections
        out += pipeline.ingest(batch)
    return out + pipeline.flush(), pipeline
