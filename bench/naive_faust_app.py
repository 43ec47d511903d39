"""The NAIVE Faust baseline of bench/kafka_bench.py: what a first Faust version of the gate would look like.

For every telemetry event: decode its JSON, read the (region, tier) entry of a Faust Table holding the most
recent latencies, append, write it back (one changelog record per event), and compute the P99 with
``numpy.percentile`` over that list. No batching, no sketches, no event time: the per-event cost of the
obvious design, for comparison with the gatekeeper worker.

Run by the benchmark as a subprocess (configuration through the environment)::

    GK_NAIVE_BROKER=127.0.0.1:9092 GK_NAIVE_TOPIC=telemetry GK_NAIVE_APP_ID=naive-1 \\
        python bench/naive_faust_app.py worker -l warn --without-web

The consumer group is the app id; the benchmark measures throughput from the group's committed offsets.
Records should be keyed by ``region/tier`` so that each gate's table entry lives on one partition.
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust
import numpy as np

WINDOW = int(os.environ.get("GK_NAIVE_WINDOW", "1000"))  # latencies kept per (region, tier)

app = faust.App(
    os.environ.get("GK_NAIVE_APP_ID", "gatekeeper-naive"),
    broker=f"kafka://{os.environ.get('GK_NAIVE_BROKER', '127.0.0.1:9092')}",
    store="memory://",
    topic_partitions=int(os.environ.get("GK_NAIVE_PARTITIONS", "8")),
    datadir=os.environ.get("GK_NAIVE_DATADIR", "naive-faust-data"),
    web_enabled=False,
)
telemetry = app.topic(
    os.environ.get("GK_NAIVE_TOPIC", "telemetry"), key_type=bytes, value_type=bytes, value_serializer="raw"
)
latencies = app.Table("latencies", default=list)


@app.agent(telemetry)
async def naive_gate(stream: Any) -> None:
    async for raw in stream:
        record = json.loads(raw)
        key = f"{record['region']}/{record['tier']}"
        recent = latencies[key]
        recent.append(float(record["latency_ms"]))
        if len(recent) > WINDOW:
            del recent[:-WINDOW]
        latencies[key] = recent  # a changelog record per event
        np.percentile(recent, 99)


if __name__ == "__main__":
    app.main()
