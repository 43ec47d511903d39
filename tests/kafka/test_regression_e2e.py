"""``no_regression`` through the real broker (issue 12 part 2): baseline-version telemetry goes through stage 1 as
``slice: baseline`` partials of the gates comparing with it, over the panes topic, and the worker's decisions equal
replay's, decision id for decision id.

Scenario (small plan: pane 1m, window 10m, lateness 2m, soak 1h, hold 30m), 150 minutes, 40 req/min a stream:
- us-east: the canary (version 2.0) at 3 % errors, within its own 5 % ceiling, against the baseline (version 1.0,
  tier label ``baseline``) at 0.2 %: more than the 0.5-point margin worse, so ``fail`` + ``hold`` on
  no_regression_error_rate, ``release``, and again.
- eu-west: canary and baseline alike (0.2 %): no fail; ``pass`` at the end of the soak.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import worker_harness as h

from gatekeeper.core import decision as decisions
from plans_for_tests import no_regression_criteria, small_plan, small_tier

pytestmark = pytest.mark.kafka

PLAN = small_plan("regression-e2e", "1.0", [small_tier("canary", 5, more_criteria=no_regression_criteria())])


def lines(minutes: int = 150, seed: int = 21) -> list[bytes]:
    """Telemetry JSON lines in arrival order (up to 20 s out of order)."""
    rng = np.random.default_rng(seed)
    streams = [  # region, tier label, version, error rate
        ("us-east", "canary", "2.0", 0.03),
        ("us-east", "baseline", "1.0", 0.002),
        ("eu-west", "canary", "2.0", 0.002),
        ("eu-west", "baseline", "1.0", 0.002),
    ]
    out: list[bytes] = []
    times = []
    for region, tier, version, error_rate in streams:
        n = int(rng.poisson(40 * minutes))
        ts = np.sort(rng.integers(0, minutes * 60_000, n, dtype=np.int64))
        latency = np.round(60 * np.exp(0.4 * rng.standard_normal(n)), 3)
        status = np.where(rng.random(n) < error_rate, 503, 200)
        for t, lat, st in zip(ts.tolist(), latency.tolist(), status.tolist(), strict=True):
            out.append(
                f'{{"ts": {h.T0_S + t / 1000:.3f}, "region": "{region}", "tier": "{tier}", "latency_ms": {lat}, '
                f'"status": {st}, "version": "{version}"}}'.encode()
            )
        times.append(ts)
    arrival = np.concatenate(times) + rng.integers(0, 20_000, len(out))
    return [out[i] for i in np.argsort(arrival, kind="stable").tolist()]


def test_worker_judges_no_regression_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Through the broker, with baseline partials on the panes topic, the worker gives exactly replay's
    decisions by decision id (and content): us-east's regression fails and holds it on no_regression_error_rate,
    eu-west passes; every record, baseline ones included, is applied and none rejected."""
    plan, names = h.write_plan(tmp_path, PLAN), h.Names()
    records = lines()
    expected = h.expected(plan, records)
    kinds = Counter((decisions.decode(v).region, decisions.decode(v).decision) for v in expected)
    assert 1 <= kinds[("us-east", "fail")] == kinds[("us-east", "hold")]
    assert (0, 1) == (kinds[("eu-west", "fail")], kinds[("eu-west", "pass")])
    failed = {c.name for v in expected for c in decisions.decode(v).criteria if c.verdict == "fail"}
    assert {"no_regression_error_rate"} == failed
    h.assert_decides_like_replay(kafka_bootstrap, plan, names, tmp_path, records, expected)
