"""OpenTelemetry traces as telemetry: OTLP trace batches (``ExportTraceServiceRequest``, protobuf or OTLP/JSON,
as the OpenTelemetry Collector's kafkaexporter writes them) decoded into the same columns as contract v1.

Each SERVER span is one request:
- latency: ``end_time_unix_nano - start_time_unix_nano``; event time: the span's end (when its outcome is known);
- error: span status ERROR, or ``http.response.status_code`` (``http.status_code`` in older conventions) >= 500;
- region: the attribute ``cloud.region`` (``OtlpMapping.region_attribute``), tier: ``rollout.tier``
  (``OtlpMapping.tier_attribute``), each looked up on the span first, then on its resource, and translated
  through ``OtlpMapping.regions`` / ``tiers`` when the value is listed there (e.g. ``us-east-1 -> us-east``, or
  ``service.version`` values -> tiers).

Spans that are not used are counted by reason in ``SpanBatch.ignored`` and never reject their batch: other kinds
(``not_server``), server spans without a region or tier (``no_region``, ``no_tier``, e.g. other services in the
same Collector pipeline), with a region/tier the plan does not gate (``unknown_region``, ``unknown_tier``,
``unknown_gate``), with a negative or over-a-day duration (``invalid_duration``) or an event time outside
2000..2100 or beyond the rejection clock (``invalid_time``). A record that is not a trace batch at all
(undecodable protobuf or JSON) is rejected whole, like a malformed contract-v1 record, with reason
``otlp:malformed``. Records that are contract-v1 JSON objects are decoded as such (one event each), so one
decoder reads a topic or file that holds either.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gatekeeper.core.telemetry import EPOCH_MAX_S, EPOCH_MIN_S, MAX_LATENCY_MS, EventBatch, Rejection, TelemetryDecoder

SPAN_KIND_SERVER = 2
STATUS_CODE_ERROR = 2
STATUS_KEYS = ("http.response.status_code", "http.status_code")
MALFORMED = "otlp:malformed"
_NS_PER_MS = 1_000_000
_JSON_KINDS = {2: 2, "2": 2, "SPAN_KIND_SERVER": 2}
_JSON_ERRORS = {2: True, "2": True, "STATUS_CODE_ERROR": True}


@dataclass(frozen=True, slots=True)
class OtlpMapping:
    """Where a span's region and tier come from, and how attribute values translate to the plan's names."""

    region_attribute: str = "cloud.region"
    tier_attribute: str = "rollout.tier"
    regions: Mapping[str, str] = field(default_factory=dict)  # attribute value -> plan region (others as they are)
    tiers: Mapping[str, str] = field(default_factory=dict)  # attribute value -> plan tier (others as they are)


@dataclass(slots=True)
class SpanBatch(EventBatch):
    """An ``EventBatch`` whose events come from multi-event records: ``record[i]`` is the index (in the decoded
    list) of event i's record and ``span[i]`` its rank among that record's used events; rejections carry record
    positions. ``ignored``: spans not used, by reason."""

    record: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    span: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    ignored: Counter[str] = field(default_factory=Counter)


# OTLP/JSON: lowerCamelCase, 64-bit integers as decimal strings (strict=False turns them into ints), enums as
# integers (names accepted too). Only what is read is declared; unknown fields are ignored.
class _Value(msgspec.Struct, gc=False):
    stringValue: str | None = None  # noqa: N815 - OTLP/JSON field names
    intValue: int | None = None  # noqa: N815


class _KeyValue(msgspec.Struct, gc=False):
    key: str
    value: _Value | None = None


class _Status(msgspec.Struct, gc=False):
    code: int | str = 0


class _Span(msgspec.Struct, gc=False):
    startTimeUnixNano: int  # noqa: N815
    endTimeUnixNano: int  # noqa: N815
    kind: int | str = 0
    status: _Status | None = None
    attributes: list[_KeyValue] = []


class _ScopeSpans(msgspec.Struct, gc=False):
    spans: list[_Span] = []


class _Resource(msgspec.Struct, gc=False):
    attributes: list[_KeyValue] = []


class _ResourceSpans(msgspec.Struct, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans] = []  # noqa: N815


class _Request(msgspec.Struct, gc=False):
    resourceSpans: list[_ResourceSpans]  # noqa: N815


_JSON_REQUEST = msgspec.json.Decoder(_Request, strict=False)


def is_otlp_json(raw: bytes) -> bool:
    """An OTLP/JSON batch (its one top-level member is ``resourceSpans``), as opposed to a contract-v1 object."""
    return b'"resourceSpans"' in raw[:64]


def is_json_object(raw: bytes) -> bool:
    return raw.lstrip()[:1] == b"{"


@dataclass(slots=True)
class _Columns:
    """Used spans of the records decoded so far, as Python lists (turned into numpy columns once)."""

    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    error: list[bool] = field(default_factory=list)
    runs: list[tuple[str, str, int, int]] = field(default_factory=list)  # region, tier, record, spans: a resource


class OtlpDecoder(TelemetryDecoder):
    """Decodes OTLP trace batches (protobuf or JSON, told apart per record) and contract-v1 records against the
    plan's (region, tier) key space; same interface as ``TelemetryDecoder`` (``decode`` returns a
    ``SpanBatch``), so the worker's decoding and replay use either."""

    def __init__(
        self, gates: list[tuple[str, str]], mapping: OtlpMapping | None = None, not_after_ms: int | None = None
    ) -> None:
        super().__init__(gates, not_after_ms)
        self.mapping = mapping or OtlpMapping()

    def decode(
        self, records: list[bytes], first_position: int = 1, positions: Sequence[int] | None = None
    ) -> SpanBatch:
        """Decode records (each one trace batch or one contract-v1 object); positions as ``TelemetryDecoder``."""
        if positions is None:
            positions = range(first_position, first_position + len(records))
        cols = _Columns()
        ignored: Counter[str] = Counter()
        rejections: list[Rejection] = []
        plain: list[int] = []  # records that are contract-v1 objects
        for index, raw in enumerate(records):
            if is_json_object(raw) and not is_otlp_json(raw):
                plain.append(index)
                continue
            mark = len(cols.start)
            try:
                if is_json_object(raw):
                    self._json_spans(raw, index, cols, ignored)
                else:
                    self._proto_spans(raw, index, cols, ignored)
            except (DecodeError, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError) as exc:
                _truncate(cols, mark, index)
                what = "OTLP/JSON" if is_json_object(raw) else "protobuf ExportTraceServiceRequest"
                rejections.append(Rejection(positions[index], MALFORMED, f"not a valid {what}: {exc}", raw))
        spans = self._span_columns(cols, ignored)
        if not plain:
            spans.rejections = rejections
            return spans
        v1 = super().decode([records[i] for i in plain], positions=[positions[i] for i in plain])
        rejected = {r.position for r in v1.rejections}
        used = np.asarray([i for i in plain if positions[i] not in rejected], dtype=np.int64)
        merged = _merge(spans, v1, used)
        merged.rejections = sorted([*rejections, *v1.rejections], key=lambda r: r.position)
        return merged

    def _proto_spans(self, raw: bytes, index: int, cols: _Columns, ignored: Counter[str]) -> None:
        request = ExportTraceServiceRequest.FromString(raw)
        # Reading every attribute of every span through the protobuf objects costs ~1 us per attribute; the
        # status-code attributes >= 500 are found in the bytes instead, and mapped to their spans only in a
        # batch that has one at all.
        five_xx = _five_xx_spans(raw)
        region_key, tier_key = self.mapping.region_attribute, self.mapping.tier_attribute
        starts, ends, errors = cols.start.append, cols.end.append, cols.error.append
        n = -1  # index of the span among all spans of the batch, in wire order
        for resource_spans in request.resource_spans:
            region, tier = _resource_labels(resource_spans.resource.attributes, region_key, tier_key)
            labelled = bool(region and tier)
            used = other = 0
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    n += 1
                    if span.kind != SPAN_KIND_SERVER:
                        other += 1
                    elif labelled:
                        starts(span.start_time_unix_nano)
                        ends(span.end_time_unix_nano)
                        errors(span.status.code == STATUS_CODE_ERROR or n in five_xx)
                        used += 1
                    else:
                        used -= 1  # counted as unlabelled below
            self._run(cols, ignored, index, region, tier, used, other)

    def _json_spans(self, raw: bytes, index: int, cols: _Columns, ignored: Counter[str]) -> None:
        request = _JSON_REQUEST.decode(raw)
        scan = _JSON_5XX.search(raw) is not None  # else no span can be a 5xx: skip reading attributes
        region_key, tier_key = self.mapping.region_attribute, self.mapping.tier_attribute
        for resource_spans in request.resourceSpans:
            attributes = resource_spans.resource.attributes if resource_spans.resource else []
            region, tier = _text_attributes(attributes, region_key, tier_key)
            labelled = bool(region and tier)
            used = other = 0
            for scope in resource_spans.scopeSpans:
                for span in scope.spans:
                    if _JSON_KINDS.get(span.kind) != SPAN_KIND_SERVER:
                        other += 1
                        continue
                    if not labelled:
                        used -= 1
                        continue
                    error = span.status is not None and _JSON_ERRORS.get(span.status.code, False)
                    if not error and scan:
                        error = any(
                            kv.key in STATUS_KEYS and kv.value is not None and (kv.value.intValue or 0) >= 500
                            for kv in span.attributes
                        )
                    cols.start.append(span.startTimeUnixNano)
                    cols.end.append(span.endTimeUnixNano)
                    cols.error.append(error)
                    used += 1
            self._run(cols, ignored, index, region, tier, used, other)

    @staticmethod
    def _run(
        cols: _Columns, ignored: Counter[str], index: int, region: str | None, tier: str | None, used: int, other: int
    ) -> None:
        """Close one resource's spans: ``used`` labelled server spans (negative: that many unlabelled ones)."""
        if other:
            ignored["not_server"] += other
        if used < 0:
            ignored["no_region" if not region else "no_tier"] += -used
        elif used and region and tier:
            cols.runs.append((region, tier, index, used))

    def _span_columns(self, cols: _Columns, ignored: Counter[str]) -> SpanBatch:
        """Columns of the labelled server spans; those the plan does not gate or with impossible times are
        counted in ``ignored``."""
        regions = [self.mapping.regions.get(run[0], run[0]) for run in cols.runs]
        tiers = [self.mapping.tiers.get(run[1], run[1]) for run in cols.runs]
        sizes = np.asarray([run[3] for run in cols.runs], dtype=np.int64)
        run_of = np.repeat(np.arange(len(cols.runs)), sizes)
        keys = self._keys_of(regions, tiers)[run_of]
        start = np.asarray(cols.start, dtype=np.int64)
        end = np.asarray(cols.end, dtype=np.int64)
        latency_ms = (end - start) / _NS_PER_MS
        ts_ms = end // _NS_PER_MS
        not_after = min(round(EPOCH_MAX_S * 1000), self.not_after_ms)
        good_time = (ts_ms >= round(EPOCH_MIN_S * 1000)) & (ts_ms <= not_after)
        good_duration = (latency_ms >= 0) & (latency_ms <= MAX_LATENCY_MS)
        ok = (keys >= 0) & good_time & good_duration
        if not ok.all():
            for i in np.flatnonzero(~ok).tolist():
                run = int(run_of[i])
                ignored[self._why(regions[run], tiers[run], int(keys[i]), bool(good_duration[i]))] += 1
        record = np.repeat(np.asarray([run[2] for run in cols.runs], dtype=np.int64), sizes)[ok]
        return SpanBatch(
            ts_ms=ts_ms[ok],
            key=keys[ok],
            latency_ms=latency_ms[ok],
            error=np.asarray(cols.error, dtype=np.bool_)[ok],
            record=record,
            span=_ranks(record),
            ignored=ignored,
        )

    def _why(self, region: str, tier: str, key: int, good_duration: bool) -> str:
        if key < 0:
            if region not in self._region_code:
                return "unknown_region"
            return "unknown_tier" if tier not in self._tier_code else "unknown_gate"
        return "invalid_time" if good_duration else "invalid_duration"

    def decode_block(self, block: bytes, first_position: int = 1) -> SpanBatch:
        """Newline-separated records (OTLP/JSON lines, as the Collector's file exporter writes, or contract v1)."""
        return self.decode(block.split(b"\n"), first_position)


def _text_attributes(attributes: Iterable[_KeyValue], region_key: str, tier_key: str) -> tuple[str | None, str | None]:
    region = tier = None
    for kv in attributes:
        if kv.value is not None and kv.key == region_key:
            region = kv.value.stringValue
        elif kv.value is not None and kv.key == tier_key:
            tier = kv.value.stringValue
    return region, tier


def _resource_labels(attributes: Iterable[Any], region_key: str, tier_key: str) -> tuple[str | None, str | None]:
    """Region and tier attribute values of a protobuf resource."""
    region = tier = None
    for kv in attributes:
        if kv.key == region_key:
            region = kv.value.string_value
        elif kv.key == tier_key:
            tier = kv.value.string_value
    return region, tier


# A KeyValue on the wire: field 1 (key, tag 0x0a) with its length, then field 2 (value, tag 0x12) holding an
# AnyValue of 3 bytes: int_value (field 3, tag 0x18) as a 2-byte varint, 500..511 (f4..ff 03) or 512..599 (80..d7 04).
_WIRE_5XX = re.compile(
    b"(?:"
    + b"|".join(re.escape(b"\x0a" + bytes([len(k)]) + k.encode()) for k in STATUS_KEYS)
    + rb")(?=\x12\x03\x18(?:[\xf4-\xff]\x03|[\x80-\xd7]\x04))"
)
_JSON_5XX = re.compile(rb'"intValue"\s*:\s*"?5[0-9][0-9]\b')


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the position after it; IndexError when the buffer ends inside it."""
    value = shift = 0
    while True:
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


def _five_xx_spans(raw: bytes) -> set[int]:
    """Indices (wire order, over all spans of the batch) of spans holding a status-code attribute >= 500."""
    hits = [match.start() for match in _WIRE_5XX.finditer(raw)]
    if not hits:
        return set()
    starts = _span_starts(raw)
    return {bisect.bisect_right(starts, hit) - 1 for hit in hits} - {-1}


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message in ``buf[start:end]``."""
    at = start
    while at < end:
        tag, at = _varint(buf, at)
        wire = tag & 7
        if wire == 2:
            length, at = _varint(buf, at)
            yield tag >> 3, at, at + length
            at += length
        elif wire == 0:
            at = _varint(buf, at)[1]
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected wire type {wire} at byte {at}")


def _span_starts(raw: bytes) -> list[int]:
    """Byte offset of every span (ExportTraceServiceRequest.resource_spans[].scope_spans[].spans[]), wire order."""
    return [
        span_at
        for number, rs_at, rs_end in _fields(raw, 0, len(raw))
        if number == 1
        for number2, ss_at, ss_end in _fields(raw, rs_at, rs_end)
        if number2 == 2
        for number3, span_at, _span_end in _fields(raw, ss_at, ss_end)
        if number3 == 2
    ]


def _truncate(cols: _Columns, start: int, record: int) -> None:
    """Drop the spans of a record that turned out to be malformed half-way (a batch is used whole or not)."""
    del cols.start[start:], cols.end[start:], cols.error[start:]
    while cols.runs and cols.runs[-1][2] == record:
        cols.runs.pop()


def _ranks(record: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Rank of each event among the events of its record (records are contiguous and ascending)."""
    if not record.size:
        return np.empty(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], record[1:] != record[:-1])))
    first = np.repeat(starts, np.diff(np.concatenate((starts, [record.size]))))
    return np.arange(record.size, dtype=np.int64) - first


def _merge(spans: SpanBatch, v1: EventBatch, v1_records: npt.NDArray[np.int64]) -> SpanBatch:
    """Span events and contract-v1 events in record order (each v1 record is one event of rank 0)."""
    record = np.concatenate((spans.record, v1_records))
    order = np.argsort(record, kind="stable")
    return SpanBatch(
        ts_ms=np.concatenate((spans.ts_ms, v1.ts_ms))[order],
        key=np.concatenate((spans.key, v1.key))[order],
        latency_ms=np.concatenate((spans.latency_ms, v1.latency_ms))[order],
        error=np.concatenate((spans.error, v1.error))[order],
        record=record[order],
        span=np.concatenate((spans.span, np.zeros(len(v1), np.int64)))[order],
        ignored=spans.ignored,
    )


def frames(data: bytes) -> Iterator[bytes]:
    """Messages of a length-prefixed stream (4-byte big-endian length, then the message), as the Collector's
    file exporter writes with ``format: proto``; ValueError on a truncated frame."""
    at = 0
    while at < len(data):
        if at + 4 > len(data):
            raise ValueError(f"truncated length prefix at byte {at}")
        size = int.from_bytes(data[at : at + 4], "big")
        if at + 4 + size > len(data):
            raise ValueError(f"frame at byte {at} announces {size} bytes, {len(data) - at - 4} remain")
        yield data[at + 4 : at + 4 + size]
        at += 4 + size
