"""Whole scenarios as JSON lines: determinism, arrival order, disorder, lateness, invalid records."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import numpy.typing as npt

from gatekeeper.core.telemetry import EventBatch, Rejection
from gatekeeper.sim.scenario import Scenario
from gatekeeper.sim.writer import simulate, write_scenario

from .sim_support import HOUR, START_MS, make_scenario, make_stream, repo_decoder, repo_plan

MINUTE = 60_000


def _two_streams(**fields: object) -> Scenario:
    streams = [
        make_stream(end="6h", rate_per_min=40),
        make_stream(region="eu-west", tier="rollout-75", begin="1h", end="5h", rate_per_min=25, diurnal_peak="9h"),
    ]
    return make_scenario(streams, **fields)


def _decode_all(scenario: Scenario) -> EventBatch:
    lines = [line for chunk in simulate(scenario) for line in chunk]
    return repo_decoder().decode(lines)


def _behind(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Per record (arrival order): how far its time is behind the newest time that arrived before it."""
    newest_before = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min // 2], ts[:-1]]))
    return np.maximum(newest_before - ts, 0)


def test_simulation_is_deterministic_for_a_seed() -> None:
    """The same scenario gives the same bytes twice; another seed gives other bytes."""
    scenario = _two_streams(ts_format="mixed", disorder="60s", malformed_share=0.01, late_share=0.01)
    first = list(simulate(scenario))
    again = list(simulate(scenario))
    other = list(simulate(scenario.model_copy(update={"seed": scenario.seed + 1})))
    expected = (True, False)
    assert expected == (first == again, first == other)


def test_an_explicit_generator_replaces_the_seed_deterministically() -> None:
    """Passing equal generators gives equal output, independent of the scenario's seed."""
    scenario = _two_streams()
    a = list(simulate(scenario, np.random.default_rng(99)))
    b = list(simulate(scenario.model_copy(update={"seed": 5}), np.random.default_rng(99)))
    assert a == b


def test_without_malformed_share_every_line_decodes() -> None:
    """Mixed formats, disorder and late deliveries are all valid contract v1: zero rejections, and every
    generated request arrives exactly once (request ids r-0 .. r-(n-1))."""
    scenario = _two_streams(ts_format="mixed", disorder="120s", late_share=0.01)
    lines = [line for chunk in simulate(scenario) for line in chunk]
    batch = repo_decoder().decode(lines)
    ids = sorted(int(line.split(b'"request_id":"r-')[1].split(b'"')[0]) for line in lines)
    expected: tuple[list[Rejection], int, list[int]] = ([], len(lines), list(range(len(lines))))
    assert expected == (batch.rejections, len(batch), ids)


def test_malformed_records_are_rejected_and_only_they() -> None:
    """With malformed_share 2 %, the decoder rejects exactly the injected records, for many reasons,
    and accepts every generated request."""
    scenario = _two_streams(malformed_share=0.02)
    summary = write_scenario(scenario, io.BytesIO())
    batch = _decode_all(scenario)
    codes = Counter(r.code for r in batch.rejections)
    expected = (summary.malformed, summary.valid, True, True)
    assert expected == (
        len(batch.rejections),
        len(batch),
        summary.malformed > 0.015 * summary.valid,
        len(codes) >= 10,
    )


def test_without_disorder_records_arrive_in_time_order() -> None:
    """With disorder 0 and no late share the streams are merged in event-time order."""
    ts = _decode_all(_two_streams()).ts_ms
    expected = 0
    assert expected == int(_behind(ts).max())


def test_disorder_never_exceeds_its_bound() -> None:
    """No record arrives more than ``disorder`` (90 s) after a record with a later time; the bound is used."""
    ts = _decode_all(_two_streams(disorder="90s")).ts_ms
    behind = _behind(ts)
    expected = (True, True)
    assert expected == (int(behind.max()) <= 90_000, int(behind.max()) > 60_000)


def test_late_records_arrive_between_one_and_two_late_delays_late() -> None:
    """A late_share (1 %) of records arrive 30-60 min after newer ones; every other record arrives in time
    order; ``late`` counts the late ones. (Only records at least an hour before the end are checked for
    being behind: at the very end nothing newer is left to arrive before a late record.)"""
    scenario = _two_streams(late_share=0.01, late_delay="30m")
    summary = write_scenario(scenario, io.BytesIO())
    ts = _decode_all(scenario).ts_ms
    behind = _behind(ts)
    head = ts < START_MS + 5 * HOUR
    late = behind[head] >= 29 * MINUTE
    n = summary.valid
    expected = (True, 0, True, True)
    assert expected == (
        int(behind.max()) <= 60 * MINUTE,
        int(((behind[head] > 0) & ~late).sum()),
        int(late.sum()) <= summary.late <= int(late.sum()) + int((~head).sum()),
        abs(summary.late - 0.01 * n) <= 5 * (0.01 * 0.99 * n) ** 0.5,
    )


def test_write_scenario_writes_one_line_per_record_and_summarises() -> None:
    """The file has one newline-terminated line per record; the summary counts the records per gate (as
    the decoder sees them), the injected invalid ones, and the time of the first event."""
    scenario = _two_streams(malformed_share=0.01)
    out = io.BytesIO()
    summary = write_scenario(scenario, out)
    data = out.getvalue()
    lines = data.split(b"\n")
    batch = repo_decoder().decode(lines[:-1])
    gates = [(r, t.name) for r, _p, t in repo_plan().gates()]
    decoded = {gates[key]: n for key, n in Counter(batch.key.tolist()).items()}
    expected = (True, summary.total, decoded, len(batch.rejections), True)
    assert expected == (
        data.endswith(b"\n"),
        len(lines) - 1,
        summary.events,
        summary.malformed,
        summary.first_ts_ms is not None and START_MS <= summary.first_ts_ms < START_MS + MINUTE,
    )


def test_chunks_stay_about_an_hour_of_traffic() -> None:
    """A three-week scenario arrives in chunks of about an hour each (bounded memory), never empty."""
    scenario = make_scenario([make_stream(end="3w", rate_per_min=5, diurnal=0.5)])
    sizes = [len(chunk) for chunk in simulate(scenario)]
    expected = (True, True, True)
    assert expected == (0 not in sizes, max(sizes) < 5 * 60 * 2, abs(len(sizes) - 3 * 7 * 24) <= 1)


def test_silence_episode_leaves_a_gap_in_the_output() -> None:
    """End to end, a silence episode leaves no event of its stream in its range."""
    stream = make_stream(end="4h", rate_per_min=40, episodes=[{"begin": "2h", "end": "3h", "silence": True}])
    ts = _decode_all(make_scenario([stream])).ts_ms
    expected = 0
    assert expected == int(((ts >= START_MS + 2 * HOUR) & (ts < START_MS + 3 * HOUR)).sum())
