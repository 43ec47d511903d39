"""OTLP trace batches in the worker: one Kafka record holds many requests, while the processor routes, forwards,
dead-letters and deduplicates one request per record. ``expand`` turns a decoded poll of batches into one
record per request before the processor sees it, so the processor stays as it is:

- a request from record (partition p, offset o) gets the offset ``o * SPAN_SLOTS + k``, k its rank among the
  record's used spans: a gate's requests from one source still have strictly increasing offsets, which is what
  the processor's idempotence needs (the gate-state changelog keeps these offsets; committed offsets stay the
  records' own, taken by the runtime from the poll itself);
- its value, read only when the processor forwards it to its gate's home partition, is the request as a
  contract-v1 record (exact: the event time in ms and the latency round-trip through JSON), which the receiving
  worker's decoder reads like any other forward;
- a malformed batch stays one record, rejected whole (the processor sends its original bytes to the DLQ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
import numpy as np

from gatekeeper.core.otlp import SpanBatch
from gatekeeper.core.telemetry import EventBatch, Rejection, Telemetry

SPAN_SLOTS = 1 << 20  # more requests than fit in one 1 MB Kafka record (a span is > 30 bytes on the wire)

Runs = list[tuple[str, int, Sequence[Any]]]
_ENCODER = msgspec.json.Encoder()


class _Request(NamedTuple):
    """One request of a trace batch, as a consumed record for the processor (``value`` built on demand). A tuple:
    one is made per request, and a frozen dataclass costs several times more to build."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    ts_ms: int
    latency_ms: float
    error: bool
    gate: tuple[str, str]

    @property
    def value(self) -> bytes:
        region, tier = self.gate
        record = Telemetry(self.ts_ms / 1000, region, tier, self.latency_ms, error=self.error)
        return _ENCODER.encode(record)


def expand(runs: Runs, batch: SpanBatch, telemetry: str, gates: Sequence[tuple[str, str]]) -> tuple[Runs, EventBatch]:
    """The poll ``runs`` (topic, partition, records), whose values decoded to ``batch``, as runs of one record per
    request and the matching ``EventBatch`` (rejections at their positions in the new runs)."""
    rejected = {r.position: r for r in batch.rejections}
    first_event = np.searchsorted(batch.record, np.arange(sum(len(records) for _t, _p, records in runs) + 1))
    ts, latency, error, key, rank = (
        c.tolist() for c in (batch.ts_ms, batch.latency_ms, batch.error, batch.key, batch.span)
    )
    out: Runs = []
    rejections: list[Rejection] = []
    index = position = 0
    for topic, partition, records in runs:
        expanded: list[Any] = []
        for record in records:
            if index in rejected:
                rejections.append(_moved(rejected[index], position + len(expanded)))
                expanded.append(record)
            elif topic != telemetry:  # a forward: already one request
                expanded.extend(record for _ in range(first_event[index], first_event[index + 1]))
            else:
                base, record_key = record.offset * SPAN_SLOTS, record.key
                expanded += [
                    _Request(
                        topic, partition, base + rank[e], record_key, (), ts[e], latency[e], error[e], gates[key[e]]
                    )
                    for e in range(first_event[index], first_event[index + 1])
                ]
            index += 1
        position += len(expanded)
        out.append((topic, partition, expanded))
    events = EventBatch(batch.ts_ms, batch.key, batch.latency_ms, batch.error, rejections)
    return out, events


def _moved(rejection: Rejection, position: int) -> Rejection:
    return Rejection(position, rejection.code, rejection.message, rejection.raw)
