"""``gatekeeper serve`` on a real broker: it materialises the decisions topic (duplicates included), answers
the same from two replicas, rebuilds the same state after a restart, follows new decisions live, and shows the
hold a worker decided in an end-to-end run (worker -> decisions -> serve)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import worker_harness as h
from golden_decisions import golden, keyed
from prometheus_client.parser import text_string_to_metric_families
from serve_harness import Serve, ready, serving

from gatekeeper.client import DecisionClient
from gatekeeper.core.decision import decode
from gatekeeper.planfile import load_plan
from gatekeeper.shell.kafka_settings import KafkaSettings, Topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "config" / "rollout-plan.yaml"


def gate(body: dict[str, Any]) -> dict[str, Any]:
    """A gate document without the serving wall clock (it differs between replicas by design)."""
    fresh = {k: v for k, v in body["freshness"].items() if k != "served_at"}
    return {**body, "freshness": fresh}


def test_serve_materialises_the_decisions_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two replicas read the same topic and answer the same; a restarted replica rebuilds the same state; a
    re-delivered decision is applied once; a decision produced later shows within seconds; /metrics counts."""
    names = h.Names()
    h.create_topic(kafka_bootstrap, names.decisions, h.PARTITIONS)
    breach, passed = golden("error-breach"), golden("healthy-canary")
    h.produce_pairs(kafka_bootstrap, names.decisions, keyed([*breach[:2], breach[0], *passed]))  # breach[0] twice

    one, two = (
        Serve(kafka_bootstrap, PLAN, names.decisions, tmp_path, "s1"),
        Serve(kafka_bootstrap, PLAN, names.decisions, tmp_path, "s2"),
    )
    with serving(one, two):
        for s in (one, two):
            s.wait(ready, "/readyz")
        _, held_one, _ = one.get("/v1/gates/us-east/ramp-10")
        _, held_two, _ = two.get("/v1/gates/us-east/ramp-10")
        assert gate(held_one) == gate(held_two)
        expected = ("held", "hold", "2025-11-04T01:00:00Z", False)
        assert expected == tuple(held_one[k] for k in ("state", "decision", "hold_until", "may_advance"))
        assert "pass" == one.get("/v1/gates/us-east/canary")[1]["decision"]
        # the breach's fail and hold, and the healthy canary's pending (awaiting its GO) and its pass
        assert (4, 1) == (one.get("/v1/gates")[1]["decisions_applied"], one.get("/v1/gates")[1]["duplicates_skipped"])

        assert 0 == one.stop()
        restarted = Serve(kafka_bootstrap, PLAN, names.decisions, tmp_path, "s1b")
        with serving(restarted):
            restarted.wait(ready, "/readyz")
            assert gate(held_one) == gate(restarted.get("/v1/gates/us-east/ramp-10")[1])

        h.produce_pairs(kafka_bootstrap, names.decisions, keyed(breach[2:]))  # release, then pass
        body = two.wait(lambda status, b: b.get("state") == "passed", "/v1/gates/us-east/ramp-10", timeout=30)
        assert (True, "pass") == (body["may_advance"], body["decision"])

        _, text, ctype = two.get("/metrics")
        assert ctype.startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        by_kind = {k: samples[("gatekeeper_serve_decisions_total", (("decision", k),))] for k in ("fail", "pass")}
        assert {"fail": 1.0, "pass": 2.0} == by_kind
        assert 1.0 == samples[("gatekeeper_serve_duplicate_decisions_total", ())]
        assert 1.0 == samples[("gatekeeper_gate_may_advance", (("region", "us-east"), ("tier", "ramp-10")))]


def test_serve_shows_the_hold_a_worker_decided(kafka_bootstrap: str, tmp_path: Path) -> None:
    """End to end: telemetry -> gatekeeper worker -> decisions -> gatekeeper serve. The first 50 minutes of
    the worker scenario hold eu-west/canary (errors) and eu-west/ramp (latency); serve shows both held with
    their hold_until, and us-east still waiting; Argo's verdict field says hold."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(minutes=50, early_stop=False, invalid=False)
    expected = [decode(v) for v in h.expected(plan, lines)]
    holds = {d.key: d.hold_until for d in expected if d.decision == "hold"}
    assert {"eu-west/canary", "eu-west/ramp"} == set(holds)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
    with (
        h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers,
        serving(Serve(kafka_bootstrap, plan, names.decisions, tmp_path)) as (server,),
    ):
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, settle=0.5)
        board = server.wait(lambda status, b: b["counts"]["held"] == 2)
        assert 0 == workers[0].stop()
    states = {f"{g['region']}/{g['tier']}": (g["state"], g["decision"], g["hold_until"]) for g in board["gates"]}
    assert ("held", "hold", holds["eu-west/canary"]) == states["eu-west/canary"]
    assert ("held", "hold", holds["eu-west/ramp"]) == states["eu-west/ramp"]
    assert ("waiting", "pending", None) == states["us-east/canary"]
    (tmp_path / "board.json").write_text(json.dumps(board))


def test_serve_shows_a_soaking_gate_before_its_first_decision(kafka_bootstrap: str, tmp_path: Path) -> None:
    """End to end: after 30 minutes of the worker scenario us-east/canary (healthy, 1 h soak) has no decision
    yet; serve reads the worker's gate-state changelog (``--app-id``) and shows it soaking with its progress,
    while the decided holds stay held; so does the client's gate() given the app id. A serve started before
    the worker tolerates the missing topic."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(minutes=30, early_stop=False, invalid=False)
    expected = [decode(v) for v in h.expected(plan, lines)]
    assert "us-east/canary" not in {d.key for d in expected}
    h.create_topic(kafka_bootstrap, names.decisions, h.PARTITIONS)
    server = Serve(kafka_bootstrap, plan, names.decisions, tmp_path, "s1", "--app-id", names.app_id)
    with serving(server):
        server.wait(ready, "/readyz")  # the changelog topic does not exist yet: serve answers regardless
        assert "waiting" == server.get("/v1/gates/us-east/canary")[1]["state"]
        h.create_topics(kafka_bootstrap, names)
        h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
        with h.running(h.Worker(kafka_bootstrap, plan, names, tmp_path)) as workers:
            h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, settle=0.5)
            canary = server.wait(
                lambda status, b: b.get("state") == "soaking" and b["soak"]["elapsed_seconds"] >= 1200,
                "/v1/gates/us-east/canary",
                timeout=60,
            )
            board = server.wait(lambda status, b: b["counts"]["held"] == 2)
            settings = KafkaSettings(bootstrap=kafka_bootstrap, topics=Topics(decisions=names.decisions))
            client = DecisionClient(settings=settings)
            by_client = asyncio.run(client.gate("us-east", "canary", app_id=names.app_id, plan=load_plan(plan)))
            without = asyncio.run(client.gate("us-east", "canary"))
            assert 0 == workers[0].stop()
    assert ("soaking", "waiting") == (by_client.state, without.state)
    assert by_client.soak is not None
    assert ("2025-10-19T00:00:00Z", 3_600_000) == (by_client.soak.since, by_client.soak.length_ms)
    soak = canary["soak"]
    assert ("soaking", "pending", False, None) == (
        canary["state"],
        canary["decision"],
        canary["may_advance"],
        canary["latest"],
    )
    assert ("2025-10-19T00:00:00Z", 3600.0) == (soak["since"], soak["length_seconds"])
    assert soak["requests"] > 0
    assert canary["why"].startswith(f"soaking since 2025-10-19T00:00:00Z: {soak['requests']} requests, ")
    states = {f"{g['region']}/{g['tier']}": g["state"] for g in board["gates"]}
    assert "held" == states["eu-west/canary"]
