"""Burn-rate breach alerts end to end through a real broker: the worker writes breach events (contract v2) to
``breaches``, the same events replay writes with ``--breaches`` for the same telemetry, each breach opened once
and resolved once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import worker_harness as h

from gatekeeper.core import breach

pytestmark = pytest.mark.kafka


def test_breach_events_on_the_breaches_topic_match_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """eu-west/ramp is slow from 00:10 to 00:45 and eu-west/canary fails 15 % of requests from 00:20 to 00:40
    (plan: a page rule over 20 m / 5 m at 2x, a ticket rule over 2 h / 30 m at 2x, resolve after 20 m quiet).
    The worker's ``breaches`` topic holds exactly replay's breach events (deduplicated by ``event_id``); each
    breach is opened once and resolved once, and only the two troubled gates breach."""
    plan, names = h.write_plan(tmp_path, h.BREACH_PLAN), h.Names()
    lines = h.scenario(invalid=False, early_stop=False)
    expected = h.expected_breaches(plan, lines)
    decided = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "unkeyed")

    with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(decided)), workers)
        got = h.wait_for(kafka_bootstrap, names.breaches, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    events = {breach.decode(r.value).event_id: r.value for r in got}
    assert sorted(expected) == sorted(events.values())
    breaches = [breach.decode(v) for v in expected]
    opened = Counter(b.breach_id for b in breaches if b.change == "opened")
    resolved = Counter(b.breach_id for b in breaches if b.change == "resolved")
    assert ({"eu-west/canary", "eu-west/ramp"}, 1, 1) == (
        {b.key for b in breaches},
        max(opened.values()),
        max(resolved.values()),
    )
    assert set(opened) == set(resolved)
    assert all(r.key == breach.decode(r.value).key.encode() for r in got)
