"""Breach alerts in stage 2 (core/breach_watch.py): what the pipeline's gates feed the burn-rate rules (errors,
requests slower than the latency ceiling), time moving on without data, the related fail decision, the same
events whatever the batches, and the alert state surviving a snapshot."""

from __future__ import annotations

from typing import Any

import msgspec

from gatekeeper.core import breach, changelog_record, inbox_snapshot
from gatekeeper.core.breach import Breach
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.telemetry import EventBatch
from gatekeeper.core.timefmt import parse_instant

from .helpers import EAST, MINUTE, T0, WEST, by_time, chunks, concat, make_plan, plan_dict, traffic

# Short windows so a breach plays out in hours: page over 20 m / 5 m at 5x, ticket over 2 h / 30 m at 2x.
ALERTS: dict[str, Any] = {
    "rules": [
        {"severity": "page", "long": "20m", "short": "5m", "burn_rate": 5},
        {"severity": "ticket", "long": "2h", "short": "30m", "burn_rate": 2},
    ],
    "resolve_after": "20m",
    "min_requests": 50,
}


def pipeline() -> Pipeline:
    """The base plan (error ceiling 5 %, P99 ceiling 800 ms; us-east and eu-west canary) with ``ALERTS``."""
    return Pipeline(make_plan(plan_dict(alerts=ALERTS)))


def run(events: EventBatch, size: int | None = None) -> tuple[list[Breach], Pipeline]:
    engine = pipeline()
    out: list[Breach] = []
    for part in chunks(events, size or len(events)):
        engine.ingest(part)
        out += engine.take_breaches()
    return out, engine


def minutes(text: str) -> float:
    return (parse_instant(text) - T0) / MINUTE


def west_healthy(end_min: int) -> EventBatch:
    """eu-west healthy all along: its events move the stream's watermark while us-east is silent."""
    return traffic(WEST, T0, T0 + end_min * MINUTE, 60, error_rate=0.001, seed=5)


def episode(start_min: int, end_min: int, total_min: int, stop: bool = False, **burst: Any) -> EventBatch:
    """us-east at 60 requests a minute, healthy (0.1 % errors) except ``burst`` (``error_rate``, ``median_ms``,
    ``sigma``) over [start_min, end_min), silent after it with ``stop``; eu-west healthy up to ``total_min``."""

    def minute(m: int) -> int:
        return T0 + m * MINUTE

    parts = [
        traffic(EAST, T0, minute(start_min), 60, error_rate=0.001, seed=1),
        traffic(EAST, minute(start_min), minute(end_min), 60, seed=2, **({"error_rate": 0.001} | burst)),
        west_healthy(total_min),
    ]
    if not stop:
        parts.append(traffic(EAST, minute(end_min), minute(total_min), 60, error_rate=0.001, seed=3))
    return by_time(concat(*parts))


def test_an_error_burst_pages_then_resolves_after_the_quiet_time() -> None:
    """us-east: an hour healthy, 20 minutes at 50 % errors (10x the 5 % budget), then healthy. The error-rate
    breach pages once the 20-minute window has burnt 5x (10 minutes at 10x), and resolves once the page rules
    have been quiet for 20 minutes: one breach, opened once and resolved once, on us-east only."""
    events = episode(60, 80, 240, error_rate=0.5)
    breaches, _ = run(events)
    assert [("opened", "page"), ("resolved", "page")] == [(b.change, b.severity) for b in breaches]
    opened, resolved = breaches
    assert ("us-east/canary", "error_rate", 1) == (opened.key, opened.slo, len({b.breach_id for b in breaches}))
    assert 60 + 10 <= minutes(opened.at) <= 60 + 12
    assert 80 + 20 <= minutes(resolved.at) <= 80 + 20 + 20


def test_slow_requests_open_a_latency_breach() -> None:
    """Latency objective: a P99 ceiling of 800 ms leaves 1 % of requests to be slower. A median of 2 s makes
    nearly all of them slower: a latency breach (not an error-rate one) pages."""
    events = episode(60, 90, 90, median_ms=2000, sigma=0.1)
    breaches, _ = run(events)
    assert [("opened", "page", "latency", "p99_latency_ms <= 800 ms")] == [
        (b.change, b.severity, b.slo, b.objective) for b in breaches
    ]
    assert 60 < minutes(breaches[0].at) <= 65


def test_a_breach_resolves_when_its_traffic_stops() -> None:
    """us-east burns 12x for 15 minutes then goes silent (rolled back) while eu-west keeps the watermark moving:
    the breach still moves on in event time without data. The page drops to a ticket 20 minutes after the 5-minute
    window emptied (the 2-hour ticket window still burns), and resolves 20 minutes after the 30-minute ticket
    window emptied."""
    events = episode(30, 45, 180, stop=True, error_rate=0.6)
    breaches, _ = run(events)
    assert [("opened", "page"), ("deescalated", "ticket"), ("resolved", "ticket")] == [
        (b.change, b.severity) for b in breaches
    ]
    assert [45 + 5 + 20, 45 + 30 + 20] == [minutes(b.at) + 1 for b in breaches[1:]]


def test_events_after_a_fail_name_the_fail_decision() -> None:
    """The gate fails the burst too (its sequential test): breach events at or after that fail carry its
    ``decision_id``; an event before it carries none."""
    events = episode(60, 90, 200, stop=True, error_rate=0.5)
    engine = pipeline()
    decisions = engine.ingest(events)
    breaches = engine.take_breaches()
    fail = next(d for d in decisions if d.decision == "fail" and d.region == "us-east")
    expected = [fail.decision_id if parse_instant(b.at) >= parse_instant(fail.at) else None for b in breaches]
    assert expected == [b.decision_id for b in breaches]
    assert fail.decision_id in expected


def test_the_same_events_whatever_the_batches() -> None:
    """Breach events depend on event time only: the input in one batch or in batches of 997 events gives the
    same events, byte for byte."""
    events = episode(60, 100, 300, error_rate=0.4)
    whole, _ = run(events)
    assert len(whole) >= 2
    assert [breach.encode(b) for b in whole] == [breach.encode(b) for b in run(events, 997)[0]]


def test_the_alert_state_survives_a_snapshot() -> None:
    """An inbox snapshotted mid-breach and restored goes on to the same events as one never snapshotted (the
    open breach resolves once, with the same breach_id)."""
    events = episode(60, 80, 240, error_rate=0.5)
    first, rest = chunks(events, 85 * 60 * 2)[0], chunks(events, 85 * 60 * 2)[1:]
    expected, _ = run(events, 85 * 60 * 2)

    engine = pipeline()
    engine.ingest(first)
    got = engine.take_breaches()
    assert ["opened"] == [b.change for b in got]
    engine.inboxes = {k: inbox_snapshot.load_inbox(inbox_snapshot.dump_inbox(v))[0] for k, v in engine.inboxes.items()}
    for part in rest:
        engine.ingest(part)
        got += engine.take_breaches()
    assert expected == got


def test_an_inbox_snapshotted_before_alerts_loads_with_a_fresh_alert_state() -> None:
    """Snapshots written before breach alerts existed (format 1: no partial references, no alert field) load,
    with an empty alert state."""
    engine = pipeline()
    engine.ingest(west_healthy(30))
    inbox = engine.inboxes["eu-west/canary"]
    raw = inbox_snapshot.dump_inbox(inbox)
    fields = msgspec.msgpack.decode(changelog_record.inflate(raw, "inbox"))  # deflated; the legacy one was not
    legacy = msgspec.msgpack.encode([inbox_snapshot.FORMAT, *fields[1:-4]])  # format 1: the first 7 fields
    restored, _, _ = inbox_snapshot.load_inbox(legacy)
    assert ({}, None, inbox.closed_until) == (restored.alerts.burn, restored.alerts.last_fail, restored.closed_until)
