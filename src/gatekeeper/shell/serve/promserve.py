"""Prometheus metrics of ``gatekeeper serve``: what it read, and one gauge family per gate quantity.

Gate gauges are produced at scrape time from the board (a custom collector), so a scrape never shows a gate
state older than the board. Names follow Prometheus conventions: base units (``_seconds``, ``_ratio``),
counters ``_total``. A Flagger ``MetricTemplate`` on Prometheus can query them, e.g.
``max(gatekeeper_gate_error_rate_upper_ratio{region="us-east",tier="canary"})``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gatekeeper.core.board import STATES, Board, hold_seconds_left

DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _GateCollector(Collector):
    def __init__(self, board: Board, ready: Callable[[], bool]) -> None:
        self.board, self.ready = board, ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["region", "tier"]
        state = GaugeMetricFamily(
            "gatekeeper_gate_state", "1 for the gate's current state, 0 for the others.", labels=[*labels, "state"]
        )
        advance = GaugeMetricFamily("gatekeeper_gate_may_advance", "1 when the tier passed (GO).", labels=labels)
        error = GaugeMetricFamily(
            "gatekeeper_gate_error_rate_upper_ratio",
            "Upper confidence bound of the error rate in the latest decision (absent without data).",
            labels=labels,
        )
        p99 = GaugeMetricFamily(
            "gatekeeper_gate_p99_upper_seconds",
            "Upper confidence bound of the P99 latency in the latest decision (absent without data).",
            labels=labels,
        )
        hold = GaugeMetricFamily(
            "gatekeeper_gate_hold_remaining_seconds",
            "Hold time left, at the newest decision's event time (0 when not held).",
            labels=labels,
        )
        soak = GaugeMetricFamily(
            "gatekeeper_gate_soak_elapsed_ratio",
            "Share of the tier's soak elapsed, from the worker's gate state (absent when not soaking).",
            labels=labels,
        )
        for view in self.board.views():
            values = [view.region, view.tier]
            if view.soak is not None and view.soak.fraction is not None:
                soak.add_metric(values, view.soak.fraction)
            for name in STATES:
                state.add_metric([*values, name], 1.0 if view.state == name else 0.0)
            advance.add_metric(values, 1.0 if view.may_advance else 0.0)
            hold.add_metric(values, hold_seconds_left(view, self.board.clock))
            m = view.latest.metrics if view.latest is not None else None
            if m is not None and m.error_rate_upper is not None:
                error.add_metric(values, m.error_rate_upper)
            if m is not None and m.p99_upper_ms is not None:
                p99.add_metric(values, m.p99_upper_ms / 1000)
        ready = GaugeMetricFamily("gatekeeper_serve_caught_up", "1 once the decisions topic is read to its end.")
        ready.add_metric([], 1.0 if self.ready() else 0.0)
        yield from (state, advance, error, p99, hold, soak, ready)


class ServeMetrics:
    """The registry of one ``gatekeeper serve`` process (its own, so tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "gatekeeper_serve_decisions", "Decisions read from the decisions topic, by kind.", ["decision"], registry=r
        )
        self.duplicates = Counter(
            "gatekeeper_serve_duplicate_decisions", "Re-delivered decisions skipped (same decision_id).", registry=r
        )
        self.skipped = Counter("gatekeeper_serve_invalid_records", "Records that are not decisions.", registry=r)
        self.gate_states = Counter(
            "gatekeeper_serve_gate_states",
            "Gate states read from the worker's gate-state changelog, by outcome "
            "(observed, stale, other-plan, invalid).",
            ["outcome"],
            registry=r,
        )
        self.lag = Gauge(
            "gatekeeper_serve_lag_records", "Decisions not yet read, per partition.", ["partition"], registry=r
        )
        self.delay = Histogram(
            "gatekeeper_serve_decision_delay_seconds",
            "From the worker getting the record that closed a decision to this server reading the decision.",
            buckets=DELAY_BUCKETS,
            registry=r,
        )

    def watch(self, board: Board, ready: Callable[[], bool]) -> None:
        self.registry.register(_GateCollector(board, ready))
