"""Cross-region latency through the real broker (issue 12 part 3): records whose ``client_region`` is another region
go through stage 1 as ``slice: cross_region`` partials of their gate, over the panes topic, and the worker's
decisions equal replay's, decision id for decision id.

Scenario (small plan: pane 1m, window 10m, lateness 2m, soak 1h, hold 30m; the canary with a cross-region P99
below 200 ms besides its ordinary criteria), 150 minutes, 40 req/min a region:
- us-east: a fifth of the requests from eu-west clients, 300 ms slower: ``fail`` + ``hold`` on
  p99_latency_ms_cross_region, while its ordinary P99 over all requests stays within its 800 ms ceiling.
- eu-west: no client_region: no cross-region request, never fails.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import worker_harness as h

from gatekeeper.core import decision as decisions
from plans_for_tests import small_plan, small_tier

pytestmark = pytest.mark.kafka

CROSS = {"kind": "latency", "quantile": 0.99, "pass_below_ms": 200, "fail_above_ms": 200,
         "requests": "cross_region", "min_requests_to_fail": 30, "min_requests": 100}  # fmt: skip
PLAN = small_plan("cross-region-e2e", "1.0", [small_tier("canary", 5, more_criteria=[CROSS])])


def lines(minutes: int = 150, seed: int = 31) -> list[bytes]:
    """Telemetry JSON lines in arrival order (up to 20 s out of order)."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    times = []
    for region in ("us-east", "eu-west"):
        n = int(rng.poisson(40 * minutes))
        ts = np.sort(rng.integers(0, minutes * 60_000, n, dtype=np.int64))
        away = (rng.random(n) < 0.2) & (region == "us-east")
        latency = np.round(60 * np.exp(0.4 * rng.standard_normal(n)) + np.where(away, 300, 0), 3)
        status = np.where(rng.random(n) < 0.002, 503, 200)
        for t, lat, st, far in zip(ts.tolist(), latency.tolist(), status.tolist(), away.tolist(), strict=True):
            client = ', "client_region": "eu-west"' if far else ""
            out.append(
                f'{{"ts": {h.T0_S + t / 1000:.3f}, "region": "{region}", "tier": "canary", "latency_ms": {lat}, '
                f'"status": {st}{client}}}'.encode()
            )
        times.append(ts)
    arrival = np.concatenate(times) + rng.integers(0, 20_000, len(out))
    return [out[i] for i in np.argsort(arrival, kind="stable").tolist()]


def test_worker_judges_cross_region_latency_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Through the broker, with cross-region partials on the panes topic, the worker gives exactly replay's
    decisions by decision id (and content): us-east fails and holds on p99_latency_ms_cross_region only, eu-west
    never fails; every record is applied once (the cross-region copies are not counted) and none conflicts."""
    plan, names = h.write_plan(tmp_path, PLAN), h.Names()
    records = lines()
    expected = h.expected(plan, records)
    kinds = Counter((decisions.decode(v).region, decisions.decode(v).decision) for v in expected)
    assert 1 <= kinds[("us-east", "fail")] == kinds[("us-east", "hold")]
    assert 0 == kinds[("eu-west", "fail")]
    failed = {c.name for v in expected for c in decisions.decode(v).criteria if c.verdict == "fail"}
    assert {"p99_latency_ms_cross_region"} == failed
    h.assert_decides_like_replay(kafka_bootstrap, plan, names, tmp_path, records, expected)
