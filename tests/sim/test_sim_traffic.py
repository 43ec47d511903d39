"""Request generation for one stream (rates, outcomes, latencies, episodes) and its JSON-lines encoding.

Statistical checks use fixed seeds and tolerances of about five standard deviations, so they hold for any
seed, not just the one chosen.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core.telemetry import Rejection
from gatekeeper.sim.traffic import MINUTE_MS, Requests, encode_jsonl, generate, rate_at

from .sim_support import DAY, HOUR, START_MS, make_stream, repo_decoder, repo_plan

Z99 = NormalDist().inv_cdf(0.99)


def _rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def _within(observed: float, expected: float, sd: float, k: float = 5.0) -> bool:
    return abs(observed - expected) <= k * sd


def test_generation_is_deterministic_for_a_seed() -> None:
    """The same stream, interval and seed give identical arrays; another seed gives other requests."""
    stream = make_stream()
    a = generate(stream, START_MS, START_MS, START_MS + 6 * HOUR, _rng(5))
    b = generate(stream, START_MS, START_MS, START_MS + 6 * HOUR, _rng(5))
    c = generate(stream, START_MS, START_MS, START_MS + 6 * HOUR, _rng(6))
    expected = (True, True, True, False)
    assert expected == (
        np.array_equal(a.ts_ms, b.ts_ms),
        np.array_equal(a.latency_ms, b.latency_ms),
        np.array_equal(a.status, b.status),
        np.array_equal(a.ts_ms[:100], c.ts_ms[:100]),
    )


@settings(max_examples=60, deadline=None)
@given(
    begin=st.integers(min_value=-HOUR, max_value=DAY),
    length=st.integers(min_value=0, max_value=3 * HOUR),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_events_are_sorted_inside_the_interval_and_the_stream(begin: int, length: int, seed: int) -> None:
    """Any interval (minute-aligned or not, partly outside the stream or empty) gives sorted event times
    inside both the interval and the stream's span, in whole milliseconds, with valid statuses."""
    stream = make_stream(begin="30m", end="20h")
    lo, hi = START_MS + begin, START_MS + begin + length
    req = generate(stream, START_MS, lo, hi, _rng(seed))
    ts = req.ts_ms
    lo_ok, hi_ok = max(lo, START_MS + stream.begin), min(hi, START_MS + stream.end)
    expected = (True, True, True, True)
    assert expected == (
        bool(np.all(np.diff(ts) >= 0)),
        bool(ts.size == 0 or (ts[0] >= lo_ok and ts[-1] < hi_ok)),
        bool(np.isin(req.status, [200, 500, 502, 503, 504]).all()),
        len(req) == req.latency_ms.size == req.status.size,
    )


def test_interval_outside_the_stream_is_empty() -> None:
    """Before its begin or after its end a stream sends nothing."""
    stream = make_stream(begin="2h", end="3h")
    before = generate(stream, START_MS, START_MS, START_MS + 2 * HOUR, _rng())
    after = generate(stream, START_MS, START_MS + 3 * HOUR, START_MS + DAY, _rng())
    expected = (0, 0)
    assert expected == (len(before), len(after))


def test_mean_rate_over_whole_days_is_rate_per_min() -> None:
    """Over whole days the daily sine averages out: 2 days at 50 req/min give 144 000 requests (Poisson)."""
    stream = make_stream(end="2d", rate_per_min=50, diurnal=0.3)
    n = len(generate(stream, START_MS, START_MS, START_MS + 2 * DAY, _rng(2)))
    mean = 50 * 2 * 1440
    assert _within(n, mean, math.sqrt(mean)), f"{n} requests, {mean} expected"


def test_diurnal_modulation_follows_the_daily_sine() -> None:
    """Requests per UTC hour of day match the integral of the modulated rate, hour by hour; with amplitude
    0.5 the two hours around the 15:00 UTC peak carry about 3x the two hours around the 03:00 trough."""
    stream = make_stream(end="4d", rate_per_min=40, diurnal=0.5)
    ts = generate(stream, START_MS, START_MS, START_MS + 4 * DAY, _rng(3)).ts_ms
    observed = np.bincount(((ts - START_MS) % DAY) // HOUR, minlength=24)
    mids = np.arange(0, DAY, MINUTE_MS, dtype=np.int64) + START_MS + MINUTE_MS // 2
    per_hour = 4 * rate_at(stream, mids).reshape(24, 60).sum(axis=1)
    ratio = (observed[14] + observed[15]) / (observed[2] + observed[3])
    expected = ([True] * 24, True)
    assert expected == (
        [_within(o, e, math.sqrt(e)) for o, e in zip(observed, per_hour, strict=True)],
        2.7 < ratio < 3.3,
    )


def test_error_share_matches_error_rate() -> None:
    """2 % of 144 000 requests fail (binomial), each with a 5xx status; the rest are 200."""
    stream = make_stream(rate_per_min=100, error_rate="2%")
    req = generate(stream, START_MS, START_MS, START_MS + DAY, _rng(4))
    n, errors = len(req), int(req.errors.sum())
    statuses = set(np.unique(req.status).tolist())
    expected = (True, {200, 500, 502, 503, 504})
    assert expected == (
        _within(errors, 0.02 * n, math.sqrt(n * 0.02 * 0.98)),
        statuses,
    )


def test_latency_is_lognormal_with_the_given_median_and_sigma() -> None:
    """Median and P99 of the latencies match median_ms and median_ms * exp(2.326 sigma) within 2 %."""
    stream = make_stream(rate_per_min=100, latency={"median_ms": 18, "sigma": 0.3})
    lat = generate(stream, START_MS, START_MS, START_MS + DAY, _rng(5)).latency_ms
    p50, p99 = np.quantile(lat, [0.5, 0.99])
    expected = (True, True)
    assert expected == (abs(p50 / 18 - 1) < 0.02, abs(p99 / (18 * math.exp(Z99 * 0.3)) - 1) < 0.02)


def test_tail_mix_sends_the_tail_share_to_the_slow_mode() -> None:
    """With tail_share 5 % around 200 ms (sigma 0.2), 5 % of requests are slower than 100 ms."""
    stream = make_stream(
        rate_per_min=100, latency={"median_ms": 20, "sigma": 0.2, "tail_share": 0.05, "tail_median_ms": 200}
    )
    lat = generate(stream, START_MS, START_MS, START_MS + DAY, _rng(6)).latency_ms
    n, slow = lat.size, int((lat > 100).sum())
    assert _within(slow, 0.05 * n, math.sqrt(n * 0.05 * 0.95))


def _episode_stream(**episode: object) -> Requests:
    stream = make_stream(rate_per_min=60, error_rate=0, episodes=[{"begin": "6h", "end": "12h", **episode}])
    return generate(stream, START_MS, START_MS, START_MS + DAY, _rng(7))


def _inside(req: Requests) -> np.ndarray:
    return (req.ts_ms >= START_MS + 6 * HOUR) & (req.ts_ms < START_MS + 12 * HOUR)


def test_error_episode_applies_only_inside_its_time_range() -> None:
    """An error_rate episode over [6h, 12h) makes half the requests fail there and none outside."""
    req = _episode_stream(error_rate=0.5)
    inside = _inside(req)
    n_in, err_in = int(inside.sum()), int(req.errors[inside].sum())
    expected = (0, True)
    assert expected == (int(req.errors[~inside].sum()), _within(err_in, n_in / 2, math.sqrt(n_in / 4)))


def test_latency_episode_multiplies_latency_only_inside_its_time_range() -> None:
    """A latency_multiplier of 3 triples the median latency inside the episode and leaves it alone outside."""
    req = _episode_stream(latency_multiplier=3)
    inside = _inside(req)
    med_in, med_out = np.median(req.latency_ms[inside]), np.median(req.latency_ms[~inside])
    expected = (True, True)
    assert expected == (abs(med_in / 54 - 1) < 0.03, abs(med_out / 18 - 1) < 0.03)


def test_outage_fails_every_request_with_503_only_inside() -> None:
    """An outage episode answers every request in its range with 503; outside, all succeed."""
    req = _episode_stream(outage=True)
    inside = _inside(req)
    expected = ({503}, {200})
    assert expected == (set(req.status[inside].tolist()), set(req.status[~inside].tolist()))


def test_silence_yields_no_events() -> None:
    """A silence episode removes every request in its range; the hours around it carry normal traffic."""
    req = _episode_stream(silence=True)
    hour_before = (req.ts_ms >= START_MS + 5 * HOUR) & (req.ts_ms < START_MS + 6 * HOUR)
    hour_after = (req.ts_ms >= START_MS + 12 * HOUR) & (req.ts_ms < START_MS + 13 * HOUR)
    expected = (0, True, True)
    assert expected == (int(_inside(req).sum()), hour_before.sum() > 1000, hour_after.sum() > 1000)


def test_incremental_generation_matches_one_long_interval() -> None:
    """Generating two days in odd-sized steps (37 min 123 ms, cutting minutes) with one generator gives
    sorted, gap-free coverage with the same request count and error share as one call over the two days."""
    stream = make_stream(end="2d", rate_per_min=50, error_rate="1%")
    rng = _rng(8)
    step = 37 * MINUTE_MS + 123
    edges = [*range(START_MS, START_MS + 2 * DAY, step), START_MS + 2 * DAY]
    parts = [generate(stream, START_MS, a, b, rng) for a, b in itertools.pairwise(edges)]
    joined = Requests.concat(parts)
    whole = generate(stream, START_MS, START_MS, START_MS + 2 * DAY, _rng(9))
    mean = 50 * 2 * 1440
    n, m = len(joined), len(whole)
    share = float(joined.errors.mean())
    expected = (True, True, True, True)
    assert expected == (
        bool(np.all(np.diff(joined.ts_ms) >= 0)),
        _within(n, mean, math.sqrt(mean)),
        _within(n - m, 0, math.sqrt(2 * mean)),
        _within(share, 0.01, math.sqrt(0.01 * 0.99 / n)),
    )


# -- encoding ------------------------------------------------------------------------------------------------
def _requests() -> Requests:
    stream = make_stream(rate_per_min=20, error_rate="5%", end="3h")
    return generate(stream, START_MS, START_MS, START_MS + 3 * HOUR, _rng(10))


@pytest.mark.parametrize("ts_format", ["epoch", "rfc3339", "mixed"])
def test_encoded_lines_decode_with_the_telemetry_decoder(ts_format: str) -> None:
    """Every encoded record is valid contract v1: zero rejections, and the decoded times (to the ms),
    latencies (to the µs), outcomes and gate are those generated."""
    req = _requests()
    lines = encode_jsonl(req, "us-west", "ramp-25", ts_format, _rng(11))  # type: ignore[arg-type]
    decoder = repo_decoder()
    batch = decoder.decode(lines)
    gate = [(r, t.name) for r, _p, t in repo_plan().gates()].index(("us-west", "ramp-25"))
    expected: tuple[list[Rejection], int, bool, bool, bool, set[int]] = (
        [],
        len(req),
        True,
        True,
        True,
        {gate},
    )
    assert expected == (
        batch.rejections,
        len(batch),
        np.array_equal(batch.ts_ms, req.ts_ms),
        bool(np.allclose(batch.latency_ms, req.latency_ms, atol=5e-4, rtol=0)),
        np.array_equal(batch.error, req.errors),
        set(batch.key.tolist()),
    )


def test_request_ids_count_from_first_id_and_learners_are_in_range() -> None:
    """request_id is r-<first_id + i> in order; learner_id is an integer in 1..learners."""
    req = _requests()
    lines = encode_jsonl(req, "us-east", "canary", "epoch", _rng(12), first_id=1000, learners=50)
    records = [msgspec.json.decode(line) for line in lines]
    expected = ([f"r-{1000 + i}" for i in range(len(req))], True)
    assert expected == (
        [r["request_id"] for r in records],
        all(1 <= r["learner_id"] <= 50 for r in records),
    )


@pytest.mark.parametrize("ts_format", ["epoch", "rfc3339"])
def test_status_always_and_error_never_outside_mixed(ts_format: str) -> None:
    """Outside the mixed format every record carries ``status`` and none carries ``error``; ts is a number
    for epoch and RFC 3339 UTC text for rfc3339."""
    lines = encode_jsonl(_requests(), "us-east", "canary", ts_format, _rng(13))  # type: ignore[arg-type]
    records = [msgspec.json.decode(line) for line in lines]
    ts_types = {type(r["ts"]) for r in records}
    expected = (True, False, {float} if ts_format == "epoch" else {str})
    assert expected == (
        all("status" in r for r in records),
        any("error" in r for r in records),
        ts_types,
    )


def test_mixed_format_mixes_timestamps_and_outcome_fields() -> None:
    """In the mixed format each record has exactly one of ``status`` / ``error`` (about a fifth ``error``),
    and timestamps come as numbers, RFC 3339 UTC text and RFC 3339 text with an offset."""
    lines = encode_jsonl(_requests(), "us-east", "canary", "mixed", _rng(14))
    records = [msgspec.json.decode(line) for line in lines]
    n = len(records)
    with_error = sum("error" in r for r in records)
    kinds = {
        "number" if isinstance(r["ts"], float) else ("utc" if r["ts"].endswith("Z") else "offset") for r in records
    }
    expected = (True, True, {"number", "utc", "offset"})
    assert expected == (
        all(("status" in r) != ("error" in r) for r in records),
        _within(with_error, 0.2 * n, math.sqrt(n * 0.2 * 0.8)),
        kinds,
    )


def test_encoding_an_empty_batch_gives_no_lines() -> None:
    """No requests, no lines (and no draws needed)."""
    expected: list[bytes] = []
    assert expected == encode_jsonl(Requests.empty(), "us-east", "canary", "mixed", _rng())
