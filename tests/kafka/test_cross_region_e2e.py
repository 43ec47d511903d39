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

from pathlib import Path

import pytest
import worker_harness as h

from plans_for_tests import small_plan, small_tier

pytestmark = pytest.mark.kafka

CROSS = {"kind": "latency", "quantile": 0.99, "pass_below_ms": 200, "fail_above_ms": 200,
         "requests": "cross_region", "min_requests_to_fail": 30, "min_requests": 100}  # fmt: skip
PLAN = small_plan("cross-region-e2e", "1.0", [small_tier("canary", 5, more_criteria=[CROSS])])

# eu-west's share is drawn (the scenario's seed fixes the other draws) but zero: no client_region at all
STREAMS = [h.Traffic("us-east", "canary", away=0.2), h.Traffic("eu-west", "canary", away=0.0)]


def test_worker_judges_cross_region_latency_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Through the broker, with cross-region partials on the panes topic, the worker gives exactly replay's
    decisions by decision id (and content): us-east fails and holds on p99_latency_ms_cross_region only, eu-west
    never fails; every record is applied once (the cross-region copies are not counted) and none conflicts."""
    story = h.replay_story(tmp_path, PLAN, h.traffic(STREAMS, seed=31))
    assert 1 <= story.kinds[("us-east", "fail")] == story.kinds[("us-east", "hold")]
    assert 0 == story.kinds[("eu-west", "fail")]
    assert {"p99_latency_ms_cross_region"} == story.failed
    h.assert_decides_like_replay(kafka_bootstrap, story.plan, h.Names(), tmp_path, story.records, story.expected)
