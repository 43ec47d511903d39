"""``gatekeeper.core.otlp``: one SERVER span is one request, read the same from protobuf and from OTLP/JSON
(messages built with the official ``opentelemetry-proto`` classes)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from gatekeeper.core.otlp import OtlpDecoder
from gatekeeper.core.otlp_mapping import OtlpMapping
from otlp_batches import Encoding, attribute, encode

GATES = [("us-east", "canary"), ("eu-west", "canary")]
END_NS = 1_760_832_000_123_000_000


def request(*spans: Span, region: str = "us-east", tier: str | None = "canary") -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    rs = out.resource_spans.add()
    rs.resource.attributes.append(attribute("cloud.region", region))
    if tier is not None:
        rs.resource.attributes.append(attribute("rollout.tier", tier))
    rs.scope_spans.add().spans.extend(spans)
    return out


def server(
    latency_ns: int = 42_500_000,
    code: int | None = 200,
    status: int = 0,
    kind: Span.SpanKind.ValueType = Span.SPAN_KIND_SERVER,
) -> Span:
    span = Span(kind=kind, start_time_unix_nano=END_NS - latency_ns, end_time_unix_nano=END_NS)
    span.attributes.append(attribute("url.path", "/v1/analyze"))
    if code is not None:
        span.attributes.append(attribute("http.response.status_code", code))
    span.status.CopyFrom(Status(code=status))  # type: ignore[arg-type]
    return span


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_latency_time_error_and_gate_of_server_spans(encoding: Encoding) -> None:
    """Latency end - start, event time the end, error by status ERROR or by a 5xx code, never by a 4xx."""
    spans = [
        server(),
        server(latency_ns=1_000, code=503),
        server(code=None, status=Status.STATUS_CODE_ERROR),
        server(code=404),
        server(code=599),
        server(code=500, status=Status.STATUS_CODE_OK),
    ]
    batch = OtlpDecoder(GATES).decode([encode(request(*spans), encoding)])

    expected = ([42.5, 0.001, 42.5, 42.5, 42.5, 42.5], [False, True, True, False, True, True])
    assert expected == (batch.latency_ms.tolist(), batch.error.tolist())
    assert ([1_760_832_000_123] * 6, [0] * 6) == (batch.ts_ms.tolist(), batch.key.tolist())
    assert ([0] * 6, list(range(6))) == (batch.record.tolist(), batch.span.tolist())


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_a_client_span_with_a_5xx_does_not_make_its_neighbour_an_error(encoding: Encoding) -> None:
    """The 5xx found in a batch's bytes is attributed to the span that holds it (here an ignored CLIENT span)."""
    spans = [server(), server(code=502, kind=Span.SPAN_KIND_CLIENT), server()]

    batch = OtlpDecoder(GATES).decode([encode(request(*spans), encoding)])

    assert ([False, False], {"not_server": 1}) == (batch.error.tolist(), dict(batch.ignored))


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_spans_not_used_are_counted_by_reason(encoding: Encoding) -> None:
    """No tier, a region or tier the plan lacks, a negative duration: counted, and the batch's other spans used."""
    records = [
        encode(request(server(), tier=None), encoding),
        encode(request(server(), region="mars"), encoding),
        encode(request(server(), tier="ramp"), encoding),
        encode(request(server(latency_ns=-5), server()), encoding),
    ]

    batch = OtlpDecoder(GATES).decode(records)

    counted = {"no_tier": 1, "unknown_region": 1, "unknown_tier": 1, "invalid_duration": 1}
    assert ([3], counted, []) == (batch.record.tolist(), dict(batch.ignored), batch.rejections)


def test_mapping_translates_attribute_values_and_names() -> None:
    """Region and tier attributes are configurable and their values translated (e.g. from service.version)."""
    out = ExportTraceServiceRequest()
    rs = out.resource_spans.add()
    rs.resource.attributes.extend([attribute("region", "eu-west-1"), attribute("service.version", "2.4.0")])
    rs.scope_spans.add().spans.append(server())
    mapping = OtlpMapping("region", "service.version", regions={"eu-west-1": "eu-west"}, tiers={"2.4.0": "canary"})

    batch = OtlpDecoder(GATES, mapping).decode([out.SerializeToString()])

    assert [1] == batch.key.tolist()


def test_contract_v1_records_mixed_in_keep_their_order_and_reasons() -> None:
    """A contract-v1 record between batches is one event in record order; an invalid one is rejected as in v1."""
    v1 = b'{"ts": 1760832001, "region": "eu-west", "tier": "canary", "latency_ms": 7, "status": 200}'
    records = [encode(request(server()), "proto"), v1, b'{"ts": 1}', encode(request(server(), server()), "json")]

    batch = OtlpDecoder(GATES).decode(records, first_position=10)

    assert ([0, 1, 3, 3], [0, 0, 0, 1]) == (batch.record.tolist(), batch.span.tolist())
    assert [(12, "invalid_field:ts")] == [(r.position, r.code) for r in batch.rejections]


def test_future_spans_are_not_used() -> None:
    """Spans ending after the rejection clock are counted ``invalid_time``."""
    batch = OtlpDecoder(GATES, not_after_ms=1_760_832_000_000).decode([encode(request(server()), "proto")])

    assert (0, {"invalid_time": 1}) == (len(batch), dict(batch.ignored))
