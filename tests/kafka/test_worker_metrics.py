"""The worker's ``--metrics-port`` on a real broker, tested by scraping: records in, rejected by reason,
decisions by kind, consumer lag per partition, the decision delay histogram; and the probes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import worker_harness as h
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper.core.decision import decode

pytestmark = pytest.mark.kafka

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) -> value


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(url: str) -> Samples:
    status, body = http_get(url + "/metrics")
    assert 200 == status
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def labelled(samples: dict[Any, float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name and v}


def probe(worker: h.Worker) -> tuple[tuple[int, bytes], Samples, tuple[int, bytes]]:
    """The worker's /readyz once 200 (or after 30 s), its metrics, its /healthz."""
    (listening,) = worker.events("metrics listening")
    url = f"http://127.0.0.1:{listening['port']}"
    deadline = time.monotonic() + 30
    while (ready := http_get(url + "/readyz"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    return ready, scrape(url), http_get(url + "/healthz")


def test_worker_metrics_port(kafka_bootstrap: str, tmp_path: Path) -> None:
    """After the scenario: the counters equal what replay counts on the same lines, every partition's lag
    is 0, one delay observation per decision, and /readyz is 200 (assigned and caught up)."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)
    rejects = Counter(reason for (_raw, reason), n in h.replay_rejects(plan, lines).items() for _ in range(n))
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
    worker = h.Worker(kafka_bootstrap, plan, names, tmp_path, "w1", "--metrics-port", "0")
    with h.running(worker) as workers:
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, settle=1.0)
        ready, samples, health = probe(worker)
        assert 0 == worker.stop()

    assert (200, {"status": "ready", "assigned": True, "caught_up": True}) == (ready[0], json.loads(ready[1]))
    assert (200, {"status": "alive"}) == (health[0], json.loads(health[1]))
    assert len(lines) == samples[("gatekeeper_records_total", ())]
    assert dict(rejects) == labelled(samples, "gatekeeper_rejected_total", "reason")
    kinds = Counter(decode(v).decision for v in expected)
    assert dict(kinds) == labelled(samples, "gatekeeper_decisions_total", "decision")
    lags = {labels: v for (n, labels), v in samples.items() if n == "gatekeeper_consumer_lag_records"}
    assert lags, "no lag gauge"
    assert {0.0} == set(lags.values())
    assert len(expected) == samples[("gatekeeper_decision_delay_seconds_count", ())]
