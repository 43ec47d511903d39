"""What a user would write instead of gatekeeper with quixstreams 3.x: per region/tier and event-time minute, the
request and error counts and the P99 latency (bench/kafka_bench.py's (q) baseline).

The records' own ``ts`` is their event time; a tumbling one-minute window with a grace of the plan's lateness
(5 min) emits each minute's result once it closes. Unkeyed telemetry is first regrouped by ``region/tier``
(``group_by``: through a repartition topic, as quixstreams requires for state per key); keyed telemetry is
aggregated where it is. The P99 is ``numpy.percentile`` over the minute's latencies, kept in the window state.

Run by the benchmark as a subprocess (configuration through the environment)::

    GK_QUIX_BROKER=127.0.0.1:9092 GK_QUIX_TOPIC=telemetry GK_QUIX_APP_ID=quix-1 GK_QUIX_KEYED=1 \\
        python bench/quix_app.py

The consumer group is the app id; the benchmark measures throughput from its committed offsets.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import numpy as np
from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Collect, Count, Sum

LATENESS = timedelta(minutes=5)


def event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """The record's ``ts`` (epoch seconds) in ms: windows follow event time, not the broker's clock."""
    return int(float(value["ts"]) * 1000)


def gate_of(value: dict[str, Any]) -> str:
    return f"{value['region']}/{value['tier']}"


def summary(window: dict[str, Any]) -> dict[str, Any]:
    latencies = window.pop("latencies")
    window["p99"] = float(np.percentile(latencies, 99)) if latencies else None
    return window


def main() -> None:
    app = Application(
        broker_address=os.environ.get("GK_QUIX_BROKER", "127.0.0.1:9092"),
        consumer_group=os.environ.get("GK_QUIX_APP_ID", "quix-gate"),
        auto_offset_reset="earliest",
        state_dir=os.environ.get("GK_QUIX_STATE", "quix-state"),
        commit_interval=1.0,
        loglevel="WARNING",
    )
    topic = app.topic(os.environ.get("GK_QUIX_TOPIC", "telemetry"), value_deserializer="json",
                      timestamp_extractor=event_time)  # fmt: skip
    sdf = app.dataframe(topic)
    if os.environ.get("GK_QUIX_KEYED", "1") != "1":
        sdf = sdf.group_by(gate_of, name="gate")
    sdf = sdf.apply(lambda v: {**v, "error": int(v.get("status") or 0) >= 500})
    sdf = (
        sdf.tumbling_window(timedelta(minutes=1), grace_ms=LATENESS)
        .agg(requests=Count(), errors=Sum("error"), latencies=Collect("latency_ms"))
        .final()
    )
    sdf = sdf.apply(summary)
    app.run()


if __name__ == "__main__":
    main()
