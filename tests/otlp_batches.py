"""OTLP trace batches built with the official classes (``opentelemetry-proto``) from contract-v1 telemetry lines,
so that a test can compare what gatekeeper decides on the batches with what it decides on the lines.

Each line becomes one SERVER span ending at its ``ts`` and lasting its ``latency_ms``, in a resource with
``cloud.region`` and ``rollout.tier``; a 5xx is ``http.response.status_code`` (and, every other one, span status
ERROR too, so both ways of saying "error" are exercised). ``client_spans`` adds that many CLIENT spans per batch
(to be ignored). A record's ``version`` is its resource's ``service.version``, its ``client_region`` its span's
``client.region``; ``tierless``: records of that tier get no ``rollout.tier`` (baseline fleets often have none).
Batches hold ``per_batch`` consecutive lines, grouped by resource in order of first appearance,
so each gate's spans keep their order.
"""

from __future__ import annotations

import base64
import json
from typing import Literal

import numpy as np
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

Encoding = Literal["proto", "json"]


def attribute(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span_of(record: dict[str, object], n: int) -> Span:
    """The SERVER span of one contract-v1 record (``n`` numbers it, for ids and the status variant)."""
    end = round(float(str(record["ts"])) * 1000) * 1_000_000
    start = end - round(float(str(record["latency_ms"])) * 1_000_000)
    code = int(str(record.get("status", 200)))
    span = Span(
        trace_id=n.to_bytes(16, "big"),
        span_id=(n + 1).to_bytes(8, "big"),
        name="POST /v1/analyze",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[attribute("http.request.method", "POST"), attribute("http.response.status_code", code)],
    )
    if "client_region" in record:
        span.attributes.append(attribute("client.region", str(record["client_region"])))
    if code >= 500 and n % 2:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="upstream failed"))
    return span


def request_of(
    lines: list[bytes], first: int = 0, client_spans: int = 0, tierless: str | None = None
) -> ExportTraceServiceRequest:
    """One ExportTraceServiceRequest holding the spans of ``lines`` (numbered from ``first``)."""
    request = ExportTraceServiceRequest()
    by_resource: dict[tuple[str, str, str | None], ResourceSpans] = {}
    for i, line in enumerate(lines):
        record = json.loads(line)
        resource = (str(record["region"]), str(record["tier"]), record.get("version"))
        if resource not in by_resource:
            rs = request.resource_spans.add()
            rs.resource.attributes.extend(
                [attribute("service.name", "learner-analyzer"), attribute("cloud.region", resource[0])]
            )
            if resource[1] != tierless:
                rs.resource.attributes.append(attribute("rollout.tier", resource[1]))
            if resource[2] is not None:
                rs.resource.attributes.append(attribute("service.version", str(resource[2])))
            rs.scope_spans.add().scope.name = "opentelemetry.instrumentation.flask"
            by_resource[resource] = rs
        by_resource[resource].scope_spans[0].spans.append(span_of(record, first + i))
    if client_spans and request.resource_spans:
        scope = request.resource_spans[0].scope_spans[0]
        reference = scope.spans[0]
        for k in range(client_spans):
            client = Span(kind=Span.SPAN_KIND_CLIENT, name="SELECT", span_id=(k + 7).to_bytes(8, "big"))
            client.start_time_unix_nano = reference.start_time_unix_nano
            client.end_time_unix_nano = reference.end_time_unix_nano
            scope.spans.append(client)
    return request


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as the Collector writes it: lowerCamelCase, int64 as strings, enums as integers, hex ids."""
    document = MessageToDict(request, use_integers_for_enums=True)
    for rs in document.get("resourceSpans", []):
        for scope in rs.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for name in ("traceId", "spanId"):
                    if name in span:
                        span[name] = _hex_of_base64(span[name])
    return json.dumps(document, separators=(",", ":")).encode()


def _hex_of_base64(text: str) -> str:
    return base64.b64decode(text).hex()


def encode(request: ExportTraceServiceRequest, encoding: Encoding) -> bytes:
    return request.SerializeToString() if encoding == "proto" else otlp_json(request)


def batches(
    lines: list[bytes], per_batch: int, encoding: Encoding, client_spans: int = 0, tierless: str | None = None
) -> list[bytes]:
    """``lines`` as encoded trace batches of ``per_batch`` spans each (the last one may hold fewer)."""
    return [
        encode(request_of(lines[i : i + per_batch], i, client_spans, tierless), encoding)
        for i in range(0, len(lines), per_batch)
    ]


def telemetry_lines(t0_s: int, minutes: int = 150, seed: int = 5) -> list[bytes]:
    """Contract-v1 lines for ``plans_for_tests.small_plan`` with one tier ``canary``: us-east healthy, eu-west
    with 15 % errors from minute 20 to 40 (a fail, a hold, a release); ~30 requests a minute each, in event order."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, bytes]] = []
    for region in ("us-east", "eu-west"):
        ts = np.sort(rng.integers(0, minutes * 60_000, 30 * minutes))
        bad = (region == "eu-west") & (ts >= 20 * 60_000) & (ts < 40 * 60_000)
        status = np.where(rng.random(ts.size) < np.where(bad, 0.15, 0.002), 503, 200)
        latency = np.round(60 * np.exp(0.4 * rng.standard_normal(ts.size)), 3)
        for t, st, lat in zip(ts.tolist(), status.tolist(), latency.tolist(), strict=True):
            text = f'{{"ts": {t0_s + t / 1000:.3f}, "region": "{region}", "tier": "canary", "latency_ms": {lat}, '
            out.append((t, f'{text}"status": {st}}}'.encode()))
    out.sort(key=lambda pair: pair[0])
    return [line for _, line in out]
