"""Vectorised request generation for one stream, and its encoding as contract-v1 JSON lines.

Arrivals are a Poisson process whose rate is constant within each UTC minute (the stream's mean rate times
a daily sine). Within ``[begin, end)`` each minute (or the part of it inside the interval) gets a Poisson
count and uniform times, so generating ``[a, b)`` then ``[b, c)`` has exactly the distribution of ``[a, c)``.
Latencies and outcomes are drawn per request, independently of each other and of other requests, and
episodes are applied by event time. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.sim.scenario import DAY_MS, Stream

MINUTE_MS = 60_000
ERROR_STATUSES = np.array([500, 502, 503, 504], dtype=np.int64)
ERROR_WEIGHTS = np.array([0.40, 0.20, 0.25, 0.15])
OUTAGE_STATUS = 503
DEFAULT_LEARNERS = 10_000
TsFormat = Literal["epoch", "rfc3339", "mixed"]
_OFFSETS_MIN = np.array([0, 60, 120, -300, -420, 330], dtype=np.int64)  # UTC offsets used by "mixed"


@dataclass(frozen=True, slots=True, eq=False)
class Requests:
    """Requests of one stream as columns, sorted by event time (compare with ``np.array_equal``)."""

    ts_ms: npt.NDArray[np.int64]
    latency_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    @property
    def errors(self) -> npt.NDArray[np.bool_]:
        """Which requests failed (contract v1: status >= 500)."""
        return self.status >= 500

    @staticmethod
    def empty() -> Requests:
        return Requests(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))

    @staticmethod
    def concat(parts: list[Requests]) -> Requests:
        """The parts one after another (sorted when the parts are consecutive in time)."""
        if not parts:
            return Requests.empty()
        return Requests(
            np.concatenate([p.ts_ms for p in parts]),
            np.concatenate([p.latency_ms for p in parts]),
            np.concatenate([p.status for p in parts]),
        )


def rate_at(stream: Stream, ts_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Expected requests per minute at each instant (before episodes): mean rate times the daily sine."""
    phase = 2 * np.pi * ((ts_ms - stream.diurnal_peak) % DAY_MS) / DAY_MS
    return stream.rate_per_min * (1 + stream.diurnal * np.cos(phase))


def _arrivals(stream: Stream, lo: int, hi: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    minutes = np.arange(lo - lo % MINUTE_MS, hi, MINUTE_MS, dtype=np.int64)
    seg_lo = np.maximum(minutes, lo)
    span = np.minimum(minutes + MINUTE_MS, hi) - seg_lo
    counts = rng.poisson(rate_at(stream, minutes + MINUTE_MS // 2) * (span / MINUTE_MS))
    n = int(counts.sum())
    offsets = np.floor(rng.random(n) * np.repeat(span, counts)).astype(np.int64)
    ts: npt.NDArray[np.int64] = np.repeat(seg_lo, counts) + offsets
    ts.sort()
    return ts


def _latencies(stream: Stream, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    lat = stream.latency
    spread = np.exp(lat.sigma * rng.standard_normal(n))
    if lat.tail_share > 0 and lat.tail_median_ms is not None:
        median = np.where(rng.random(n) < lat.tail_share, lat.tail_median_ms, lat.median_ms)
        return median * spread
    return lat.median_ms * spread


def generate(stream: Stream, start_ms: int, begin_ms: int, end_ms: int, rng: np.random.Generator) -> Requests:
    """The stream's requests with event times in ``[begin_ms, end_ms)`` (epoch ms), sorted by time.

    ``start_ms`` is the scenario start: the stream's own ``begin``/``end`` and its episodes are offsets from
    it, and the interval is clipped to the stream's active span. Consecutive intervals may be generated one
    after another with the same ``rng`` (e.g. hour by hour) with the same statistics as one long interval.
    """
    lo, hi = max(begin_ms, start_ms + stream.begin), min(end_ms, start_ms + stream.end)
    if hi <= lo:
        return Requests.empty()
    ts = _arrivals(stream, lo, hi, rng)
    n = ts.size
    latency = _latencies(stream, n, rng)
    p_error: float | npt.NDArray[np.float64] = stream.error_rate
    u_error = rng.random(n)
    codes = ERROR_STATUSES[np.searchsorted(np.cumsum(ERROR_WEIGHTS), rng.random(n) * ERROR_WEIGHTS.sum())]
    outage = np.zeros(n, dtype=np.bool_)
    keep: npt.NDArray[np.bool_] | None = None
    for ep in stream.episodes:
        i, j = np.searchsorted(ts, [start_ms + ep.begin, start_ms + ep.end])
        if i == j:
            continue
        if ep.error_rate is not None:
            if not isinstance(p_error, np.ndarray):
                p_error = np.full(n, p_error)
            p_error[i:j] = ep.error_rate
        if ep.latency_multiplier is not None:
            latency[i:j] *= ep.latency_multiplier
        outage[i:j] |= ep.outage
        if ep.silence:
            keep = np.ones(n, dtype=np.bool_) if keep is None else keep
            keep[i:j] = False
    failed = u_error < p_error
    status = np.where(failed, codes, 200)
    status[outage] = OUTAGE_STATUS
    if keep is not None:
        return Requests(ts[keep], latency[keep], status[keep])
    return Requests(ts, latency, status)


# -- encoding ------------------------------------------------------------------------------------------------
class _Record(msgspec.Struct, omit_defaults=True):
    """Contract v1 field order; ``status`` / ``error`` are omitted when None."""

    ts: float | str
    region: str
    tier: str
    latency_ms: float
    status: int | None = None
    error: bool | None = None
    request_id: str = ""
    learner_id: int = 0
    version: str | None = None
    client_region: str | None = None


_ENCODER = msgspec.json.Encoder()


def rfc3339(ts_ms: npt.NDArray[np.int64], offset_min: npt.NDArray[np.int64] | None = None) -> list[str]:
    """RFC 3339 text with milliseconds: ``Z`` (UTC), or the given UTC offsets in minutes."""
    if offset_min is None:
        return [f"{t}Z" for t in np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms").tolist()]
    local = np.datetime_as_string((ts_ms + offset_min * MINUTE_MS).astype("datetime64[ms]"), unit="ms").tolist()
    signs = np.where(offset_min < 0, "-", "+").tolist()
    hours, mins = np.divmod(np.abs(offset_min), 60)
    return [f"{t}{s}{h:02d}:{m:02d}" for t, s, h, m in zip(local, signs, hours.tolist(), mins.tolist(), strict=True)]


def encode_jsonl(
    requests: Requests,
    region: str,
    tier: str,
    ts_format: TsFormat,
    rng: np.random.Generator,
    *,
    first_id: int = 0,
    learners: int = DEFAULT_LEARNERS,
    version: str | None = None,
    away: str | None = None,
) -> list[bytes]:
    """One contract-v1 JSON object (bytes, no newline) per request, in the order given.

    ``request_id`` is ``r-<first_id + i>``; ``learner_id`` an integer drawn from ``1..learners``. ``ts`` is
    epoch seconds with milliseconds ("epoch"), RFC 3339 UTC text ("rfc3339"), or a per-record mix of both
    plus RFC 3339 with UTC offsets ("mixed"). Records carry ``status``; in "mixed" a fifth of them carry
    ``"error": true/false`` instead. ``away``: every tenth request (by position, no random draw) comes from a
    client in that region (``client_region``), the others from ``region`` (a cross-region criterion's evidence).
    """
    n = len(requests)
    if n == 0:
        return []
    learner = rng.integers(1, learners + 1, n).tolist()
    ids = [f"r-{i}" for i in range(first_id, first_id + n)]
    latency = (np.rint(requests.latency_ms * 1000) / 1000).tolist()
    status: list[int | None] = requests.status.tolist()
    error: list[bool | None] = [None] * n
    ts: list[float | str]
    if ts_format == "epoch":
        ts = (requests.ts_ms / 1000).tolist()
    elif ts_format == "rfc3339":
        ts = list(rfc3339(requests.ts_ms))
    else:
        ts, status, error = _mixed(requests, rng)
    records = list(
        map(
            _Record,
            ts,
            itertools.repeat(region),
            itertools.repeat(tier),
            latency,
            status,
            error,
            ids,
            learner,
            itertools.repeat(version),
            itertools.repeat(None) if away is None else [away if i % 10 == 9 else region for i in range(n)],
        )
    )
    lines = _ENCODER.encode_lines(records).split(b"\n")
    lines.pop()  # encode_lines ends every record with a newline
    return lines


def _mixed(
    requests: Requests, rng: np.random.Generator
) -> tuple[list[float | str], list[int | None], list[bool | None]]:
    """Half epoch numbers, a third RFC 3339 UTC, the rest RFC 3339 with an offset; a fifth use ``error``."""
    n = len(requests)
    kind = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    offsets = _OFFSETS_MIN[rng.integers(0, _OFFSETS_MIN.size, n)]
    ts = np.empty(n, dtype=object)
    ts[:] = (requests.ts_ms / 1000).tolist()
    utc, zoned = np.flatnonzero(kind == 1), np.flatnonzero(kind == 2)
    ts[utc] = rfc3339(requests.ts_ms[utc])
    ts[zoned] = rfc3339(requests.ts_ms[zoned], offsets[zoned])
    use_flag = (rng.random(n) < 0.2).tolist()
    pairs = zip(use_flag, requests.status.tolist(), requests.errors.tolist(), strict=True)
    status: list[int | None] = []
    error: list[bool | None] = []
    for flag, code, failed in pairs:
        status.append(None if flag else code)
        error.append(failed if flag else None)
    return ts.tolist(), status, error
