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

from pathlib import Path

import pytest
import worker_harness as h

from plans_for_tests import no_regression_criteria, small_plan, small_tier

pytestmark = pytest.mark.kafka

PLAN = small_plan("regression-e2e", "1.0", [small_tier("canary", 5, more_criteria=no_regression_criteria())])
STREAMS = [
    h.Traffic("us-east", "canary", 0.03, version="2.0"),
    h.Traffic("us-east", "baseline", version="1.0"),
    h.Traffic("eu-west", "canary", version="2.0"),
    h.Traffic("eu-west", "baseline", version="1.0"),
]


def test_worker_judges_no_regression_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Through the broker, with baseline partials on the panes topic, the worker gives exactly replay's
    decisions by decision id (and content): us-east's regression fails and holds it on no_regression_error_rate,
    eu-west passes; every record, baseline ones included, is applied and none rejected."""
    story = h.replay_story(tmp_path, PLAN, h.traffic(STREAMS, seed=21))
    assert 1 <= story.kinds[("us-east", "fail")] == story.kinds[("us-east", "hold")]
    assert (0, 1) == (story.kinds[("eu-west", "fail")], story.kinds[("eu-west", "pass")])
    assert {"no_regression_error_rate"} == story.failed
    h.assert_decides_like_replay(kafka_bootstrap, story.plan, h.Names(), tmp_path, story.records, story.expected)
