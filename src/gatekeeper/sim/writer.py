"""A whole scenario as a stream of JSON lines in arrival order, produced in bounded memory.

Event time is cut into chunks (default one hour). Per chunk, every stream's requests are generated and
encoded, then each record gets an *arrival key*: its event time plus a uniform delay in ``[0, disorder]``,
or, for a ``late_share`` of them, a delay of ``late_delay`` to twice that. Invalid records (a
``malformed_share`` per valid record) get keys uniform in the chunk. Records are released in key order once
no later chunk can produce a smaller key; the rest wait for the next chunk. So an on-time record arrives at
most ``disorder`` after any record with a later timestamp, and memory is one chunk plus what is in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from gatekeeper.sim.faults import malformed
from gatekeeper.sim.scenario import Scenario
from gatekeeper.sim.traffic import encode_jsonl, generate

HOUR_MS = 3_600_000


@dataclass(slots=True)
class SimSummary:
    """What a simulation produced."""

    scenario: str
    events: dict[tuple[str, str], int] = field(default_factory=dict)  # valid records per (region, tier)
    malformed: int = 0  # invalid records injected
    late: int = 0  # valid records delivered ``late_delay`` or more after their event time
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None

    @property
    def valid(self) -> int:
        return sum(self.events.values())

    @property
    def total(self) -> int:
        """Records written, valid and invalid."""
        return self.valid + self.malformed


@dataclass(slots=True)
class _InFlight:
    """Records generated but not yet delivered, with their arrival keys."""

    keys: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    lines: list[bytes] = field(default_factory=list)

    def release(self, keys: npt.NDArray[np.int64], lines: list[bytes], until: int | None) -> list[bytes]:
        """Add records; return, in arrival order, those with a key below ``until`` (all when None)."""
        all_keys = np.concatenate([self.keys, keys])
        all_lines = self.lines + lines
        order = np.argsort(all_keys, kind="stable")
        cut = order.size if until is None else int(np.searchsorted(all_keys[order], until))
        ready, rest = order[:cut].tolist(), order[cut:]
        self.keys = all_keys[rest]
        self.lines = [all_lines[i] for i in rest.tolist()]
        return [all_lines[i] for i in ready]


def _rngs(scenario: Scenario, rng: np.random.Generator | None) -> list[np.random.Generator]:
    """One independent generator per stream, then one for encoding and one for delivery."""
    count = len(scenario.streams) + 2
    if rng is not None:
        return rng.spawn(count)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(scenario.seed).spawn(count)]


def _delays(scenario: Scenario, n: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], int]:
    """Arrival delay per record (ms) and how many of them are late deliveries."""
    delays = np.zeros(n, dtype=np.int64)
    if scenario.disorder > 0:
        delays = rng.integers(0, scenario.disorder + 1, n, dtype=np.int64)
    late = 0
    if scenario.late_share > 0:
        which = np.flatnonzero(rng.random(n) < scenario.late_share)
        delays[which] = scenario.late_delay + rng.integers(0, scenario.late_delay + 1, which.size, dtype=np.int64)
        late = int(which.size)
    return delays, late


def _run(
    scenario: Scenario, rng: np.random.Generator | None, chunk_ms: int
) -> Iterator[tuple[list[bytes], SimSummary]]:
    """Yield (records released, counts generated) per chunk; a last item flushes what is in flight."""
    *stream_rngs, encode_rng, deliver_rng = _rngs(scenario, rng)
    start = scenario.start_ms
    first, last = scenario.span_ms
    gates = list(dict.fromkeys((s.region, s.tier) for s in scenario.streams))
    in_flight = _InFlight()
    next_id = 0
    for a in range(start + first, start + last, chunk_ms):
        b = min(a + chunk_ms, start + last)
        counts = SimSummary(scenario.name)
        lines: list[bytes] = []
        times: list[npt.NDArray[np.int64]] = []
        for stream, stream_rng in zip(scenario.streams, stream_rngs, strict=True):
            req = generate(stream, start, a, b, stream_rng)
            if not len(req):
                continue
            lines += encode_jsonl(req, stream.region, stream.tier, scenario.ts_format, encode_rng, first_id=next_id,
                                  version=stream.version, away=stream.away_clients)  # fmt: skip
            next_id += len(req)
            times.append(req.ts_ms)
            gate = (stream.region, stream.tier)
            counts.events[gate] = counts.events.get(gate, 0) + len(req)
        ts = np.concatenate(times) if times else np.empty(0, np.int64)
        delays, counts.late = _delays(scenario, ts.size, deliver_rng)
        keys = ts + delays
        if ts.size:
            counts.first_ts_ms, counts.last_ts_ms = int(ts.min()), int(ts.max())
        if scenario.malformed_share > 0 and ts.size:
            counts.malformed = int(deliver_rng.binomial(ts.size, scenario.malformed_share))
            bad_ts = a + deliver_rng.integers(0, b - a, counts.malformed, dtype=np.int64)
            lines += malformed(bad_ts, gates, deliver_rng)
            keys = np.concatenate([keys, bad_ts])
        yield in_flight.release(keys, lines, until=b), counts
    yield in_flight.release(np.empty(0, np.int64), [], until=None), SimSummary(scenario.name)


def simulate(
    scenario: Scenario, rng: np.random.Generator | None = None, *, chunk_ms: int = HOUR_MS
) -> Iterator[list[bytes]]:
    """The scenario's records (JSON bytes, no newline) in arrival order, in chunks of about ``chunk_ms`` of
    event time. Seeded by ``scenario.seed`` unless ``rng`` is given; the same seed gives the same bytes."""
    for lines, _counts in _run(scenario, rng, chunk_ms):
        if lines:
            yield lines


def _merge(total: SimSummary, part: SimSummary) -> None:
    for gate, n in part.events.items():
        total.events[gate] = total.events.get(gate, 0) + n
    total.malformed += part.malformed
    total.late += part.late
    if part.first_ts_ms is not None and (total.first_ts_ms is None or part.first_ts_ms < total.first_ts_ms):
        total.first_ts_ms = part.first_ts_ms
    if part.last_ts_ms is not None and (total.last_ts_ms is None or part.last_ts_ms > total.last_ts_ms):
        total.last_ts_ms = part.last_ts_ms


def write_scenario(
    scenario: Scenario, out: BinaryIO, rng: np.random.Generator | None = None, *, chunk_ms: int = HOUR_MS
) -> SimSummary:
    """Write the scenario as JSON lines (one record per line, newline-terminated) and summarise it."""
    summary = SimSummary(scenario.name)
    for lines, counts in _run(scenario, rng, chunk_ms):
        if lines:
            out.write(b"\n".join(lines) + b"\n")
        _merge(summary, counts)
    return summary
