"""The worker tests' input and what replay makes of it: a small plan, a seeded telemetry scenario, replay's
decisions and rejects over the same lines, and ways to compare decisions.

Timeline of the scenario (plan: pane 1m, window 10m, lateness 2m, stall_after 6m, soak 1h, hold 30m):
- us-east/canary: healthy all along -> ``pass`` at 01:00.
- eu-west/canary: 15 % errors from 00:20 to 00:40 -> ``fail`` + ``hold`` at 00:30 (window scope), ``release``
  at 01:00, then healthy -> ``pass`` at 02:00.
- us-east/ramp healthy -> ``pass``; eu-west/ramp slow (median 600 ms) from 00:10 to 00:45 -> latency
  ``fail`` + ``hold`` in that region only, ``release``, then ``pass``.
- us-east/thin: about one request a minute, never the 200 requests a verdict needs -> ``pending`` at the
  end of its soak (and, with ``early_stop``, its telemetry stops 40 min before the end: a stall that only
  the stream clock reports, at the end of the input).
Around 0.2 % of the records are delivered 5 min late (counted late by both replay and worker), the others
up to 20 s out of order; ``invalid`` malformed or off-plan records are mixed in.

``traffic``: plainer streams (steady error rate, a version, clients in another region) for the tests of one
criterion (no_regression, cross-region latency).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import yaml
from kafka_io import PARTITIONS

from gatekeeper.core import decision as decisions
from gatekeeper.core.plan import Plan
from gatekeeper.planfile import load_plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.worker.routing import home_partition
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000  # 2025-10-19T00:00:00Z
MINUTE_S = 60

TEST_PLAN: dict[str, Any] = small_plan(
    "worker-e2e",
    "1.0",
    [small_tier("canary", 5), small_tier("ramp", 20), small_tier("thin", 1, regions=["us-east"])],
)

# The same tiers, the canary naming both regions (and judging uptime): a global gate over them. In the
# scenario below: global/canary `hold` at 00:26 (eu-west held, its error test crossing mid-window), `release` at
# 01:00 (us-east passed, eu-west released and soaking again), `pass` at 02:00 (eu-west passed).
GLOBAL_PLAN: dict[str, Any] = small_plan(
    "global-e2e",
    "1.0",
    [
        small_tier("canary", 5, regions=["us-east", "eu-west"], more_criteria=[{"kind": "uptime", "at_least": "99%"}]),
        small_tier("ramp", 20),
        small_tier("thin", 1, regions=["us-east"]),
    ],
)

INVALID = [
    b'{"ts": 1760832600.5, "region": "us-east", "tier": "canary", "latency_ms": 12.0, "status": 200',
    b'{"ts": 1760832700, "region": "us-east", "tier": "canary", "status": 200}',
    b'{"ts": 1760832800, "region": "mars", "tier": "canary", "latency_ms": 10, "status": 200}',
    b'{"ts": 1760832900, "region": "eu-west", "tier": "thin", "latency_ms": 10, "status": 200}',
    b'{"ts": 1760833000, "region": "us-east", "tier": "canary", "latency_ms": -3, "status": 200}',
    b'{"ts": 1760833100, "region": "us-east", "tier": "ramp", "latency_ms": 10, "status": 777}',
    b"[1, 2, 3]",
    b"not json at all",
    b'{"ts": 99, "region": "us-east", "tier": "ramp", "latency_ms": 10, "status": 200}',
    b'{"ts": 1760833200, "region": "eu-west", "tier": "ramp", "latency_ms": 10}',
]


def write_plan(directory: Path, plan: dict[str, Any] | None = None) -> Path:
    """``plan`` (default: ``TEST_PLAN``) as a plan file in ``directory``."""
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(TEST_PLAN if plan is None else plan, sort_keys=False))
    return path


@dataclass(frozen=True, slots=True)
class _Stream:
    region: str
    tier: str
    per_minute: float
    end_min: int
    error_rate: float = 0.002
    median_ms: float = 60.0
    episode: tuple[int, int] | None = None  # minutes
    episode_error_rate: float | None = None
    episode_median_ms: float | None = None
    regular: bool = False  # evenly spaced (thin traffic without silent gaps) rather than Poisson


def scenario(
    *,
    minutes: int = 180,
    early_stop: bool = True,
    invalid: bool = True,
    late_share: float = 0.0,
    seed: int = 11,
) -> list[bytes]:
    """Telemetry JSON lines (no newline) in arrival order."""
    rng = np.random.default_rng(seed)
    streams = [
        _Stream("us-east", "canary", 40, minutes),
        _Stream("eu-west", "canary", 40, minutes, episode=(20, 40), episode_error_rate=0.15),
        _Stream("us-east", "ramp", 40, minutes),
        _Stream("eu-west", "ramp", 40, minutes, episode=(10, 45), episode_median_ms=600.0),
        _Stream("us-east", "thin", 1, minutes - 40 if early_stop else minutes, regular=True),
    ]
    times: list[np.ndarray[Any, Any]] = []
    lines: list[bytes] = []
    for s in streams:
        span_ms = s.end_min * MINUTE_S * 1000
        if s.regular:
            ts = np.arange(0, span_ms, 60_000, dtype=np.int64) + rng.integers(0, 20_000, span_ms // 60_000)
        else:
            n = int(rng.poisson(s.per_minute * s.end_min))
            ts = np.sort(rng.integers(0, span_ms, n, dtype=np.int64))
        minute = ts // 60_000
        inside = (
            np.zeros(ts.size, dtype=bool) if s.episode is None else (minute >= s.episode[0]) & (minute < s.episode[1])
        )
        error_rate = np.where(inside, s.episode_error_rate or s.error_rate, s.error_rate)
        median = np.where(inside, s.episode_median_ms or s.median_ms, s.median_ms)
        latency = np.round(median * np.exp(0.4 * rng.standard_normal(ts.size)), 3)
        status = np.where(rng.random(ts.size) < error_rate, 503, 200)
        for t, lat, st in zip(ts.tolist(), latency.tolist(), status.tolist(), strict=True):
            lines.append(
                f'{{"ts": {T0_S + t / 1000:.3f}, "region": "{s.region}", "tier": "{s.tier}", '
                f'"latency_ms": {lat}, "status": {st}}}'.encode()
            )
        times.append(ts)
    ts_all = np.concatenate(times)
    delay = rng.integers(0, 20_000, ts_all.size)
    late = rng.random(ts_all.size) < late_share
    delay[late] = 300_000 + rng.integers(0, 60_000, int(late.sum()))
    arrival = ts_all + delay
    if invalid:
        lines += INVALID
        arrival = np.concatenate([arrival, rng.integers(0, minutes * 60_000, len(INVALID))])
    order = np.argsort(arrival, kind="stable")
    return [lines[i] for i in order.tolist()]


@dataclass(frozen=True, slots=True)
class Traffic:
    """One stream of ``traffic``: 40 requests a minute, latency log-normal around 60 ms."""

    region: str
    tier: str
    error_rate: float = 0.002
    version: str | None = None  # the records' ``version`` field, when set
    away: float | None = None  # when set: that share of the requests from eu-west clients, 300 ms slower


def traffic(streams: list[Traffic], *, seed: int, minutes: int = 150) -> list[bytes]:
    """Telemetry JSON lines of ``streams`` in arrival order (up to 20 s out of order)."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    times = []
    for s in streams:
        n = int(rng.poisson(40 * minutes))
        ts = np.sort(rng.integers(0, minutes * 60_000, n, dtype=np.int64))
        # drawn only for a stream that has the share, so the other streams' draws stay as they were
        away = np.zeros(n, dtype=bool) if s.away is None else rng.random(n) < s.away
        latency = np.round(60 * np.exp(0.4 * rng.standard_normal(n)) + np.where(away, 300, 0), 3)
        status = np.where(rng.random(n) < s.error_rate, 503, 200)
        version = "" if s.version is None else f', "version": "{s.version}"'
        for t, lat, st, far in zip(ts.tolist(), latency.tolist(), status.tolist(), away.tolist(), strict=True):
            client = ', "client_region": "eu-west"' if far else ""
            out.append(
                f'{{"ts": {T0_S + t / 1000:.3f}, "region": "{s.region}", "tier": "{s.tier}", "latency_ms": {lat}, '
                f'"status": {st}{version}{client}}}'.encode()
            )
        times.append(ts)
    arrival = np.concatenate(times) + rng.integers(0, 20_000, len(out))
    return [out[i] for i in np.argsort(arrival, kind="stable").tolist()]


def expected(plan_path: Path, lines: list[bytes]) -> list[bytes]:
    """Replay's decisions (encoded, in order) over the same lines, without end-of-input flush."""
    sink = io.BytesIO()
    replay(load_plan(plan_path), io.BytesIO(b"\n".join(lines) + b"\n"), sink)
    return [line for line in sink.getvalue().split(b"\n") if line]


BREACH_PLAN: dict[str, Any] = small_plan(
    "breach-e2e",
    "1.0",
    [small_tier("canary", 5), small_tier("ramp", 20)],
    alerts={  # windows short enough for the three-hour scenario; the workbook's need days
        "rules": [
            {"severity": "page", "long": "20m", "short": "5m", "burn_rate": 2},
            {"severity": "ticket", "long": "2h", "short": "30m", "burn_rate": 2},
        ],
        "resolve_after": "20m",
        "min_requests": 50,
    },
)


def expected_breaches(plan_path: Path, lines: list[bytes]) -> list[bytes]:
    """Replay's breach events (encoded, in order) over the same lines, without end-of-input flush."""
    sink = io.BytesIO()
    replay(load_plan(plan_path), io.BytesIO(b"\n".join(lines) + b"\n"), io.BytesIO(), breaches=sink)
    return [line for line in sink.getvalue().split(b"\n") if line]


def replay_late(plan_path: Path, lines: list[bytes]) -> int:
    """The number of records replay counts late over the same lines."""
    summary = replay(load_plan(plan_path), io.BytesIO(b"\n".join(lines) + b"\n"), io.BytesIO())
    return summary.late


def replay_rejects(plan_path: Path, lines: list[bytes]) -> Counter[tuple[bytes, str]]:
    """(original bytes, reason code) of every record replay rejects."""
    rejects = io.BytesIO()
    replay(load_plan(plan_path), io.BytesIO(b"\n".join(lines) + b"\n"), io.BytesIO(), rejects=rejects)
    found: Counter[tuple[bytes, str]] = Counter()
    for line in rejects.getvalue().splitlines():
        record = json.loads(line)
        found[(record["raw"].encode("latin-1"), record["code"])] += 1
    return found


def by_key(values: list[bytes]) -> dict[str, list[bytes]]:
    """Encoded decisions grouped by their ``region/tier`` key, in order."""
    out: dict[str, list[bytes]] = {}
    for value in values:
        out.setdefault(decisions.decode(value).key, []).append(value)
    return out


def dedupe(values: list[bytes]) -> tuple[list[bytes], dict[str, set[bytes]]]:
    """First occurrence of every decision id, in order; and every id seen with more than one content."""
    seen: dict[str, set[bytes]] = {}
    first: list[bytes] = []
    for value in values:
        did = decisions.decode(value).decision_id
        if did not in seen:
            first.append(value)
        seen.setdefault(did, set()).add(value)
    return first, {k: v for k, v in seen.items() if len(v) > 1}


def without_late_counts(values: list[bytes]) -> list[bytes]:
    """The decisions with ``metrics.late_events`` zeroed (see the late-delivery test)."""
    out = []
    for value in values:
        d = decisions.decode(value)
        out.append(
            decisions.encode(msgspec.structs.replace(d, metrics=msgspec.structs.replace(d.metrics, late_events=0)))
        )
    return out


def home_partitions() -> set[int]:
    """Home partitions of the test plan's gates."""
    plan = Plan.model_validate(TEST_PLAN)
    return {home_partition(f"{region}/{tier.name}".encode(), PARTITIONS) for region, _, tier in plan.gates()}
