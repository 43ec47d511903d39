"""Gate state snapshots for changelogs: exact round trip, and an engine restored from them decides as if it
had never stopped."""

from __future__ import annotations

import dataclasses
import math

import msgspec
import numpy as np
import pytest

from gatekeeper.core import snapshot
from gatekeeper.core.decision import decode
from gatekeeper.core.engine import Engine
from gatekeeper.core.gate import GateState
from gatekeeper.core.sequential import Restarts
from gatekeeper.core.telemetry import EventBatch

from .helpers import (
    EAST,
    HOUR,
    MINUTE,
    T0,
    WEST,
    breach_then_healthy,
    by_time,
    chunks,
    concat,
    encoded,
    healthy,
    make_engine,
    rich_events,
    rich_plan,
    run,
    take,
)


def states_along_a_run() -> list[GateState]:
    """Every gate's state after each 500-event batch of the rich run (waiting, soaking, held, passed...)."""
    engine, states = make_engine(rich_plan()), [GateState()]
    for part in chunks(rich_events(), 500):
        engine.ingest(part)
        states.extend(dataclasses.replace(g.state) for g in engine.gates)
    return states


def differing_fields(a: GateState, b: GateState) -> set[str]:
    """Names of the GateState fields whose values differ (arrays and dicts of arrays compared by value)."""
    names = set()
    for f in dataclasses.fields(GateState):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            same = bool(np.array_equal(x, y))
        elif isinstance(x, dict):
            same = sorted(x) == sorted(y) and all(np.array_equal(x[k], y[k]) for k in x)
        else:
            same = x == y
        if not same:
            names.add(f.name)
    return names


def test_round_trip() -> None:
    """load(dump(state)) equals the state, field for field, at every point of a run."""
    states = states_along_a_run()
    assert {"waiting", "soaking", "held", "passed"} <= {s.status for s in states}
    lost = set().union(*(differing_fields(s, snapshot.load(snapshot.dump(s))) for s in states))
    assert set() == lost


def restart(engine: Engine, events: EventBatch, cut_ms: int) -> tuple[list[bytes], list[bytes]]:
    """Feed ``events`` before ``cut_ms`` to ``engine``; restore a new engine from its gates' snapshots and its
    stream clock; feed both the rest. The decisions after the cut: (uninterrupted, restored)."""
    cut = int(np.searchsorted(events.ts_ms, cut_ms))
    first, rest = take(events, slice(0, cut)), take(events, slice(cut, None))
    run(engine, first)
    restored = Engine(engine.plan)
    for index in range(len(engine.gates)):
        restored.restore(index, snapshot.load(snapshot.dump(engine.state_of(index))))
    after = restored.observe_stream_time(int(first.ts_ms.max()))
    after += run(restored, rest, flush=True)
    return encoded(run(engine, rest, flush=True)), encoded(after)


def test_restored_engine_decides_the_same() -> None:
    """Stopping after the first hour of the rich run, restoring every gate from its snapshot (and the stream
    clock) into a new engine and feeding the rest gives the decisions the uninterrupted engine gives."""
    uninterrupted, restored = restart(make_engine(rich_plan()), rich_events(), T0 + 60 * MINUTE)
    assert uninterrupted
    assert uninterrupted == restored


def test_restored_held_gate_is_not_released_twice() -> None:
    """us-east fails at 00:10 and goes silent at 00:20; eu-west's traffic moves the stream clock past the
    hold (00:40), which reports the release. Restarting from snapshots at 00:50 must not report it again
    (regression: the snapshot lost ``release_reported_for``)."""
    events = by_time(
        concat(
            breach_then_healthy(EAST, end_min=20),
            healthy(EAST, 60, 90, seed=13),
            healthy(WEST, 0, 90, seed=2),
        )
    )
    uninterrupted, restored = restart(make_engine(), events, T0 + 50 * MINUTE)
    assert "release" not in {decode(raw).decision for raw in uninterrupted}
    assert uninterrupted == restored


@pytest.mark.parametrize("raw", [b"", b"\x00\x01", msgspec.msgpack.encode({"status": "held"})])
def test_load_rejects_garbage(raw: bytes) -> None:
    """Bytes that are not a snapshot raise ValueError saying so."""
    with pytest.raises(ValueError, match="not a gate snapshot"):
        snapshot.load(raw)


def test_load_rejects_another_format() -> None:
    """A snapshot of another format version is refused, naming both versions."""
    fields = msgspec.msgpack.decode(snapshot.dump(GateState()))
    fields[0] = snapshot.FORMAT + 1
    with pytest.raises(ValueError, match=f"format {snapshot.FORMAT + 1}"):
        snapshot.load(msgspec.msgpack.encode(fields))


def test_snapshots_written_before_stalled_time_was_kept_still_load() -> None:
    """``stalled_ms`` (soak time not counted) round-trips; a format-2 snapshot written before the field existed
    (five elements shorter: nor ``restarts``, ``side``, ``baseline`` nor ``cross``) loads with nothing discounted."""
    state = GateState(status="soaking", soak_start=T0, stalled_ms=30 * MINUTE)
    assert 30 * MINUTE == snapshot.load(snapshot.dump(state)).stalled_ms
    older = msgspec.msgpack.encode(msgspec.msgpack.decode(snapshot.dump(state))[:-5])
    assert snapshot.dump(dataclasses.replace(state, stalled_ms=0)) == snapshot.dump(snapshot.load(older))


def test_restarted_tests_round_trip_and_older_snapshots_load_without_them() -> None:
    """The sequential method's restarted tests (log sums, including -inf, and the run's counts) round-trip; a
    snapshot written before they existed (four elements shorter: nor ``side``, ``baseline`` nor ``cross``) loads
    with none, i.e. empty restarted tests."""
    restarts = {"error_rate": Restarts([-math.inf, -3.5, 0.25, 7.0], T0 + HOUR, 2400, 5)}
    state = GateState(status="soaking", soak_start=T0, restarts=restarts)
    assert restarts == snapshot.load(snapshot.dump(state)).restarts
    older = msgspec.msgpack.encode(msgspec.msgpack.decode(snapshot.dump(state))[:-4])
    assert {} == snapshot.load(older).restarts
