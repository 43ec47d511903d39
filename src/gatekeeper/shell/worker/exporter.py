"""The worker's ``--metrics-port``: Prometheus metrics (``prometheus_client``) and the probes, over HTTP.

Kept apart from the runtime so the runtime only reports what happened (``sync``, ``polled``, ``delivered``)
and says whether it is ready; the names follow Prometheus conventions (``_total``, ``_seconds``):

- ``gatekeeper_records_total``, ``gatekeeper_late_events_total``, ``gatekeeper_rejected_total{reason}``,
  ``gatekeeper_decisions_total{decision}``, and the applied / forwarded / duplicate record counters;
- ``gatekeeper_consumer_lag_records{topic,partition}``: records behind the partition's high watermark after
  the latest poll of that partition;
- ``gatekeeper_decision_delay_seconds``: from receiving the record that closed a decision to the broker's
  acknowledgement of the decision.

``/healthz`` answers 200 while the process runs; ``/readyz`` 200 once the worker holds partitions and has
read them to their end (503 before, with a JSON body saying which is missing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TOTALS = (
    ("records", "gatekeeper_records", "Telemetry records consumed (telemetry and gates topics)."),
    ("applied", "gatekeeper_applied", "Valid records applied to their gate."),
    ("forwarded", "gatekeeper_forwarded", "Valid records forwarded to their gate's home partition."),
    ("duplicates", "gatekeeper_duplicates", "Re-delivered records skipped (already applied)."),
    ("late", "gatekeeper_late_events", "Events that arrived after their pane closed (counted, not used)."),
)


class WorkerExporter:
    """The worker's metrics registry and, once started, its HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.totals = {key: Counter(name, text, registry=r) for key, name, text in _TOTALS}
        self.rejected = Counter(
            "gatekeeper_rejected", "Invalid records sent to the DLQ, by reason.", ["reason"], registry=r
        )
        self.decisions = Counter("gatekeeper_decisions", "Decisions emitted, by kind.", ["decision"], registry=r)
        self.lag = Gauge(
            "gatekeeper_consumer_lag_records", "Records behind the high watermark.", ["topic", "partition"], registry=r
        )
        self.delay = Histogram(
            "gatekeeper_decision_delay_seconds",
            "From receiving the record that closed a decision to the decision's acknowledgement by the broker.",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self._seen: dict[tuple[str, str], int] = {}
        self._runner: Any = None

    def sync(self, totals: Mapping[str, int], rejected: Mapping[str, int], decided: Mapping[str, int]) -> None:
        """Bring the counters up to the runtime's running totals (they only grow)."""
        for key, counter in self.totals.items():
            self._advance(("total", key), totals.get(key, 0), counter)
        for reason, count in rejected.items():
            self._advance(("rejected", reason), count, self.rejected.labels(reason=reason))
        for kind, count in decided.items():
            self._advance(("decided", kind), count, self.decisions.labels(decision=kind))

    def _advance(self, key: tuple[str, str], total: int, counter: Any) -> None:
        step = total - self._seen.get(key, 0)
        if step > 0:
            counter.inc(step)
            self._seen[key] = total

    def polled(self, runs: Iterable[tuple[str, int, Sequence[Any]]], highwater: Callable[[Any], int | None]) -> None:
        """Lag of each partition in a poll: its high watermark minus the offset after the poll's last record."""
        from aiokafka import TopicPartition

        for topic, partition, batch in runs:
            high = highwater(TopicPartition(topic, partition))
            if high is not None and batch:
                self.lag.labels(topic=topic, partition=str(partition)).set(max(0, high - batch[-1].offset - 1))

    def delivered(self, count: int, wall_ms: int) -> None:
        """``count`` decisions acknowledged now, closed by a record received at ``wall_ms``."""
        delay = max(0.0, time.time() - wall_ms / 1000)
        for _ in range(count):
            self.delay.observe(delay)

    async def start(self, host: str, port: int, ready: Callable[[], dict[str, bool]]) -> int:
        """Serve /metrics, /healthz and /readyz on host:port; returns the bound port."""
        from aiohttp import web

        async def metrics(request: web.Request) -> web.Response:
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "alive"})

        async def readyz(request: web.Request) -> web.Response:
            state = ready()
            ok = all(state.values())
            body = {"status": "ready" if ok else "not_ready", **state}
            return web.Response(text=json.dumps(body), status=200 if ok else 503, content_type="application/json")

        async def missing(request: web.Request) -> web.Response:
            body = {"status": 404, "error": "not_found", "message": f"{request.path}: try /metrics, /healthz, /readyz"}
            return web.json_response(body, status=404)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_route("*", "/{tail:.*}", missing)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        addresses = self._runner.addresses
        return int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
