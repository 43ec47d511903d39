"""``gatekeeper.core.otlp``: spans as baseline evidence (``service.version`` is the telemetry ``version``) and as
cross-region evidence (the opt-in client-region attribute is the telemetry ``client_region``), read the same from
protobuf and from OTLP/JSON."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from gatekeeper.core.otlp import OtlpDecoder
from gatekeeper.core.otlp_mapping import OtlpMapping
from otlp_batches import Encoding, attribute, encode

GATES = [("us-east", "canary"), ("eu-west", "canary")]
BASELINES = {("us-east", "2.3.0"): 2}  # slot key 2: us-east's baseline 2.3.0
CROSS = {0: 3}  # gate us-east/canary's cross-region slot: key 3
END_NS = 1_760_832_000_123_000_000
CLIENT = OtlpMapping(client_region_attribute="client.region", regions={"eu-west-1": "eu-west"})


def server(latency_ns: int = 10_000_000, client: str | int | None = None) -> Span:
    span = Span(kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=END_NS - latency_ns, end_time_unix_nano=END_NS)
    span.attributes.append(attribute("http.response.status_code", 200))
    if client is not None:
        span.attributes.append(attribute("client.region", client))
    return span


def resource(
    out: ExportTraceServiceRequest,
    *spans: Span,
    region: str = "us-east",
    tier: str | None = "canary",
    **attrs: str | int,
) -> None:
    rs = out.resource_spans.add()
    rs.resource.attributes.append(attribute("cloud.region", region))
    if tier is not None:
        rs.resource.attributes.append(attribute("rollout.tier", tier))
    rs.resource.attributes.extend(attribute(k.replace("_", "."), v) for k, v in attrs.items())
    rs.scope_spans.add().spans.extend(spans)


def decoder(mapping: OtlpMapping | None = None) -> OtlpDecoder:
    return OtlpDecoder(GATES, mapping, baselines=BASELINES, cross=CROSS)


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_baseline_version_spans_are_baseline_evidence_with_or_without_a_tier(encoding: Encoding) -> None:
    """A span whose service.version is its region's baseline goes to the baseline slot, tier or not; a tierless
    span of another version (or of a region without that baseline) is ``no_tier``; a canary version stays."""
    out = ExportTraceServiceRequest()
    resource(out, server(), tier=None, service_version="2.3.0")  # baseline fleet, no tier attribute
    resource(out, server(), tier="canary", service_version="2.3.0")  # labelled canary, but the baseline version
    resource(out, server(), tier="canary", service_version="2.4.0")  # the canary itself
    resource(out, server(), tier=None, service_version="2.4.0")  # tierless, not a baseline: unused
    resource(out, server(), region="eu-west", tier=None, service_version="2.3.0")  # no baseline in eu-west

    batch = decoder().decode([encode(out, encoding)])

    assert ([2, 2, 0], {"no_tier": 2}) == (batch.key.tolist(), dict(batch.ignored))


def test_version_attribute_is_configurable() -> None:
    """``version_attribute`` names where the version is read (here a deployment attribute)."""
    out = ExportTraceServiceRequest()
    resource(out, server(), tier=None, deployment_version="2.3.0", service_version="9.9.9")
    mapping = OtlpMapping(version_attribute="deployment.version")

    assert [2] == decoder(mapping).decode([out.SerializeToString()]).key.tolist()


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_version_values_are_translated_through_the_version_map(encoding: Encoding) -> None:
    """``versions`` maps version values as ``regions`` / ``tiers`` map theirs: a build of the baseline listed
    there is baseline evidence; one not listed is its own version (tierless, so ``no_tier``)."""
    out = ExportTraceServiceRequest()
    resource(out, server(), tier=None, service_version="2.3.0+b7")  # listed: the baseline
    resource(out, server(), tier=None, service_version="2.3.0+b8")  # not listed: another version
    resource(out, server(), tier="canary", service_version="2.4.0")  # the canary, unmapped

    batch = decoder(OtlpMapping(versions={"2.3.0+b7": "2.3.0"})).decode([encode(out, encoding)])

    assert ([2, 0], {"no_tier": 1}) == (batch.key.tolist(), dict(batch.ignored))


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_a_version_that_is_not_a_string_makes_its_resources_spans_unused(encoding: Encoding) -> None:
    """An integer ``service.version`` where the plan compares with baselines: whether the spans are baseline
    evidence cannot be told, so each server span of that resource is counted ``invalid_version`` (as contract v1
    rejects such a record), tier or not; the batch's other resources are used. Without baselines the version is
    not read, so the same spans count for their tier."""
    out = ExportTraceServiceRequest()
    resource(out, server(), server(), tier="canary", service_version=230)
    resource(out, server(), tier="canary", service_version="2.4.0")
    resource(out, server(), region="", tier="canary", service_version=230)  # no region: not ours at all

    batch = decoder().decode([encode(out, encoding)])
    plain = OtlpDecoder(GATES).decode([encode(out, encoding)])

    assert ([0], {"invalid_version": 2, "no_region": 1}) == (batch.key.tolist(), dict(batch.ignored))
    assert ([0, 0, 0], {"no_region": 1}) == (plain.key.tolist(), dict(plain.ignored))


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_tier_and_version_from_the_same_attribute(encoding: Encoding) -> None:
    """Tiers mapped from ``service.version`` (the tier attribute is the version attribute): the attribute is
    both, so the baseline version's spans are still baseline evidence and the canary's are the canary's."""
    out = ExportTraceServiceRequest()
    resource(out, server(), tier=None, service_version="2.3.0")
    resource(out, server(), tier=None, service_version="2.4.0")
    mapping = OtlpMapping(tier_attribute="service.version", tiers={"2.4.0": "canary"})

    batch = decoder(mapping).decode([encode(out, encoding)])

    assert ([2, 0], {}) == (batch.key.tolist(), dict(batch.ignored))


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_client_region_from_span_or_resource_mapped_through_the_region_map(encoding: Encoding) -> None:
    """A span whose client region (span attribute, else resource attribute, translated by ``regions``) is another
    region gets a copy keyed to its gate's cross-region slot right after it; same-region or unknown clients don't;
    ``record`` / ``span`` stay one per span."""
    out = ExportTraceServiceRequest()
    resource(out, server(client="eu-west-1"), server(client="us-east"), server())
    resource(out, server(latency_ns=5_000_000), client_region="eu-west")  # from the resource

    batch = decoder(CLIENT).decode([encode(out, encoding)])

    assert ([0, 3, 0, 0, 0, 3], 2) == (batch.key.tolist(), batch.copies)
    assert ([10.0, 10.0, 10.0, 10.0, 5.0, 5.0]) == batch.latency_ms.tolist()
    assert ([0, 0, 0, 0], [0, 1, 2, 3]) == (batch.record.tolist(), batch.span.tolist())


def test_client_region_is_off_by_default() -> None:
    """Without a configured client-region attribute, no span is cross-region evidence (``cloud.region`` on a
    span names the server's region, not the client's)."""
    out = ExportTraceServiceRequest()
    resource(out, server(client="eu-west"))

    batch = decoder().decode([out.SerializeToString()])

    assert ([0], 0) == (batch.key.tolist(), batch.copies)


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_a_client_region_that_is_not_a_label_makes_the_span_unused(encoding: Encoding) -> None:
    """An integer, an empty or an over-64-character client region: the span is counted ``invalid_client_region``
    (as contract v1 rejects such a record) and its batch's other spans are used."""
    out = ExportTraceServiceRequest()
    resource(out, server(client=7), server(client=""), server(client="x" * 65), server(client="eu-west"))

    batch = decoder(CLIENT).decode([encode(out, encoding)])

    assert ([0, 3], {"invalid_client_region": 3}) == (batch.key.tolist(), dict(batch.ignored))
    assert ([0], [0]) == (batch.record.tolist(), batch.span.tolist())


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_a_resource_client_region_that_is_not_a_string_makes_its_spans_without_their_own_unused(
    encoding: Encoding,
) -> None:
    """An integer client region on the resource is not taken as absent: a span without its own client region
    is counted ``invalid_client_region``, as with the same value on the span; a span with its own is used."""
    out = ExportTraceServiceRequest()
    resource(out, server(client="eu-west-1"), server(), client_region=7)

    batch = decoder(CLIENT).decode([encode(out, encoding)])

    assert ([0, 3], {"invalid_client_region": 1}) == (batch.key.tolist(), dict(batch.ignored))


def test_contract_v1_records_among_batches_keep_their_copies_next_to_them() -> None:
    """A cross-region contract-v1 record between trace batches: both copies follow their events in record order,
    and ``record`` / ``span`` name the events only."""
    v1 = b'{"ts": 1760832001, "region": "us-east", "tier": "canary", "latency_ms": 7, "status": 200, '
    v1 += b'"client_region": "eu-west"}'
    first, last = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    resource(first, server(client="eu-west-1"), server())
    resource(last, server(client="us-east"))
    records = [first.SerializeToString(), v1, encode(last, "json")]

    batch = decoder(CLIENT).decode(records)

    assert ([0, 3, 0, 0, 3, 0], 2) == (batch.key.tolist(), batch.copies)
    assert ([10.0, 10.0, 10.0, 7.0, 7.0, 10.0]) == batch.latency_ms.tolist()
    assert ([0, 0, 1, 2], [0, 1, 0, 0]) == (batch.record.tolist(), batch.span.tolist())
