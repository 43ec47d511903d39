"""OpenTelemetry traces as telemetry: OTLP trace batches (``ExportTraceServiceRequest``, protobuf or OTLP/JSON,
as the OpenTelemetry Collector's kafkaexporter writes them) decoded into the same columns as contract v1.

Each SERVER span is one request:
- latency: ``end_time_unix_nano - start_time_unix_nano``; event time: the span's end (when its outcome is known);
- error: span status ERROR, or ``http.response.status_code`` (``http.status_code`` in older conventions) >= 500;
- region: the resource attribute ``cloud.region`` (``OtlpMapping.region_attribute``), tier: ``rollout.tier``
  (``OtlpMapping.tier_attribute``), each translated through ``OtlpMapping.regions`` / ``tiers`` when the value
  is listed there (e.g. ``us-east-1 -> us-east``, or ``service.version`` values -> tiers); a value that is not a
  string counts as none (``no_region`` / ``no_tier``);
- version: the resource attribute ``service.version`` (``OtlpMapping.version_attribute``), translated through
  ``OtlpMapping.versions`` when listed there (e.g. ``2.3.0+build.7 -> 2.3.0``), the telemetry ``version``: a span
  whose region and version are a ``no_regression`` criterion's ``baseline_version`` there is baseline evidence
  (core/regression.py), whatever its tier, and needs no tier attribute (baseline fleets often carry none). When
  the plan compares with baselines, a version attribute whose value is not a string makes its resource's server
  spans unused (``invalid_version``), as contract v1 rejects such a record: whether they are baseline evidence
  cannot be told (without baselines the version is not read);
- client region (opt-in, ``OtlpMapping.client_region_attribute``, off by default: OpenTelemetry has no stable
  convention for it, and ``cloud.region`` names the server's region): looked up on the span, then on its
  resource, translated through ``OtlpMapping.regions``; a span whose client region differs from its region is
  also cross-region evidence of its gate (core/cross_region.py). A value that is not a string of 1..64
  characters, on the span or (for a span without its own) on the resource, makes the span unused
  (``invalid_client_region``), as contract v1 rejects such a record.

Spans that are not used are counted by reason in ``SpanBatch.ignored`` and never reject their batch: other kinds
(``not_server``), server spans without a region or tier (``no_region``, ``no_tier``: a tierless span that is not
baseline evidence, e.g. other services in the
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import msgspec
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gatekeeper.core.cross_region import copy_mask
from gatekeeper.core.otlp_mapping import (
    ABSENT,
    OtlpMapping,
    is_client_region,
    json_attributes,
    json_span_label,
    proto_attributes,
    proto_span_label,
    resource_labels,
    unused_reason,
)
from gatekeeper.core.otlp_sniff import is_json_object, is_otlp_json
from gatekeeper.core.telemetry import (
    EPOCH_MAX_S,
    EPOCH_MIN_S,
    MAX_LATENCY_MS,
    EventBatch,
    Rejection,
    TelemetryDecoder,
    with_copies,
)

SPAN_KIND_SERVER = 2
STATUS_CODE_ERROR = 2
STATUS_KEYS = ("http.response.status_code", "http.status_code")
MALFORMED = "otlp:malformed"
_NS_PER_MS = 1_000_000
_JSON_KINDS = {2: 2, "2": 2, "SPAN_KIND_SERVER": 2}
_JSON_ERRORS = {2: True, "2": True, "STATUS_CODE_ERROR": True}


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


@dataclass(slots=True)
class _Columns:
    """Used spans of the records decoded so far, as Python lists (turned into numpy columns once)."""

    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    error: list[bool] = field(default_factory=list)
    runs: list[tuple[str, str, str | None, int, int]] = field(default_factory=list)  # region, tier ("" none),
    # version, record, spans: a resource
    client: list[str | None] = field(default_factory=list)  # per span, only with a client-region attribute


class OtlpDecoder(TelemetryDecoder):
    """Decodes OTLP trace batches (protobuf or JSON, told apart per record) and contract-v1 records against the
    plan's (region, tier) key space; same interface as ``TelemetryDecoder`` (``decode`` returns a
    ``SpanBatch``), so the worker's decoding and replay use either."""

    def __init__(
        self,
        gates: list[tuple[str, str]],
        mapping: OtlpMapping | None = None,
        not_after_ms: int | None = None,
        baselines: Mapping[tuple[str, str], int] | None = None,
        cross: Mapping[int, int] | None = None,
    ) -> None:
        """``baselines`` and ``cross``: the plan's baseline and cross-region slots, as ``TelemetryDecoder``."""
        super().__init__(gates, not_after_ms, baselines, cross)
        self.mapping = mapping or OtlpMapping()
        self._copy_slots = frozenset(self._cross.values())

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
        merged = _merge(spans, v1, used, self._copy_slots)
        merged.rejections = sorted([*rejections, *v1.rejections], key=lambda r: r.position)
        return merged

    def _proto_spans(self, raw: bytes, index: int, cols: _Columns, ignored: Counter[str]) -> None:
        request = ExportTraceServiceRequest.FromString(raw)
        # Reading every attribute of every span through the protobuf objects costs ~1 us per attribute; the
        # status-code attributes >= 500 are found in the bytes instead, and mapped to their spans only in a
        # batch that has one at all.
        five_xx = _five_xx_spans(raw)
        keys = self.mapping.keys()
        client_key = self.mapping.client_region_attribute
        starts, ends, errors = cols.start.append, cols.end.append, cols.error.append
        n = -1  # index of the span among all spans of the batch, in wire order
        for resource_spans in request.resource_spans:
            values = proto_attributes(resource_spans.resource.attributes, keys)
            region, tier, version, unused = resource_labels(values, bool(self._baselines))
            used = other = 0
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    n += 1
                    if span.kind != SPAN_KIND_SERVER:
                        other += 1
                    elif unused:
                        used -= 1  # counted as ``unused`` below
                    elif client_key and not _client(
                        cols, ignored, proto_span_label(span.attributes, client_key, values[3])
                    ):
                        continue
                    else:
                        starts(span.start_time_unix_nano)
                        ends(span.end_time_unix_nano)
                        errors(span.status.code == STATUS_CODE_ERROR or n in five_xx)
                        used += 1
            self._run(cols, ignored, index, (region, tier, version), used, other, unused)

    def _json_spans(self, raw: bytes, index: int, cols: _Columns, ignored: Counter[str]) -> None:
        request = _JSON_REQUEST.decode(raw)
        scan = _JSON_5XX.search(raw) is not None  # else no span can be a 5xx: skip reading attributes
        keys = self.mapping.keys()
        client_key = self.mapping.client_region_attribute
        for resource_spans in request.resourceSpans:
            attributes = resource_spans.resource.attributes if resource_spans.resource else []
            values = json_attributes(attributes, keys)
            region, tier, version, unused = resource_labels(values, bool(self._baselines))
            used = other = 0
            for scope in resource_spans.scopeSpans:
                for span in scope.spans:
                    if _JSON_KINDS.get(span.kind) != SPAN_KIND_SERVER:
                        other += 1
                        continue
                    if unused:
                        used -= 1
                        continue
                    if client_key and not _client(
                        cols, ignored, json_span_label(span.attributes, client_key, values[3])
                    ):
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
            self._run(cols, ignored, index, (region, tier, version), used, other, unused)

    @staticmethod
    def _run(
        cols: _Columns,
        ignored: Counter[str],
        index: int,
        labels: tuple[str | None, str | None, str | None],
        used: int,
        other: int,
        unused: str | None,
    ) -> None:
        """Close one resource's spans: ``used`` labelled server spans (negative: that many not used, for the
        reason ``unused``)."""
        region, tier, version = labels
        if other:
            ignored["not_server"] += other
        if used < 0:
            ignored[unused or "no_region"] += -used
        elif used and region:
            cols.runs.append((region, tier or "", version, index, used))

    def _span_columns(self, cols: _Columns, ignored: Counter[str]) -> SpanBatch:
        """Columns of the labelled server spans; those the plan does not gate or with impossible times are
        counted in ``ignored``."""
        regions = [self.mapping.regions.get(run[0], run[0]) for run in cols.runs]
        tiers = [self.mapping.tiers.get(run[1], run[1]) for run in cols.runs]
        sizes = np.asarray([run[4] for run in cols.runs], dtype=np.int64)
        run_of = np.repeat(np.arange(len(cols.runs)), sizes)
        run_keys = self._keys_of(regions, tiers)
        if self._baselines:  # a baseline version's spans are its region's baseline evidence, whatever their tier
            versions = self.mapping.versions
            for i, (_region, _tier, version, _record, _size) in enumerate(cols.runs):
                slot = self._baselines.get((regions[i], versions.get(version, version))) if version else None
                run_keys[i] = run_keys[i] if slot is None else slot
        keys = run_keys[run_of]
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
                ignored[
                    unused_reason(
                        regions[run],
                        tiers[run],
                        int(keys[i]),
                        bool(good_duration[i]),
                        self._region_code,
                        self._tier_code,
                    )
                ] += 1
        record = np.repeat(np.asarray([run[3] for run in cols.runs], dtype=np.int64), sizes)[ok]
        batch = SpanBatch(
            ts_ms=ts_ms[ok],
            key=keys[ok],
            latency_ms=latency_ms[ok],
            error=np.asarray(cols.error, dtype=np.bool_)[ok],
            record=record,
            span=_ranks(record),
            ignored=ignored,
        )
        if not (self._cross and cols.client):
            return batch
        # A cross-region span gets a copy keyed to its gate's slot; ``record`` and ``span`` stay one per span.
        clients = [c if c is None else self.mapping.regions.get(c, c) for c in cols.client]
        away = np.fromiter((c is not None and c != regions[r] for c, r in zip(clients, run_of.tolist(), strict=True)),
                           np.bool_, len(clients))  # fmt: skip
        return cast("SpanBatch", with_copies(batch, away[ok], self._cross))  # ``replace``: the same class

    def decode_block(
        self, block: bytes, first_position: int = 1, ends: npt.NDArray[np.intp] | None = None
    ) -> SpanBatch:
        """Newline-separated records (OTLP/JSON lines, as the Collector's file exporter writes, or contract v1);
        ``ends`` (the newlines' positions) is not needed here."""
        return self.decode(block.split(b"\n"), first_position)


def _client(cols: _Columns, ignored: Counter[str], value: object) -> bool:
    """Record a used span's client region; False (the span is not used) when the value is not a label."""
    if value is ABSENT:
        cols.client.append(None)
        return True
    if not is_client_region(value):
        ignored["invalid_client_region"] += 1
        return False
    cols.client.append(cast("str", value))
    return True


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
    del cols.start[start:], cols.end[start:], cols.error[start:], cols.client[start:]
    while cols.runs and cols.runs[-1][3] == record:
        cols.runs.pop()


def _ranks(record: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Rank of each event among the events of its record (records are contiguous and ascending)."""
    if not record.size:
        return np.empty(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], record[1:] != record[:-1])))
    first = np.repeat(starts, np.diff(np.concatenate((starts, [record.size]))))
    return np.arange(record.size, dtype=np.int64) - first


def _merge(spans: SpanBatch, v1: EventBatch, v1_records: npt.NDArray[np.int64], slots: frozenset[int]) -> SpanBatch:
    """Span events and contract-v1 events in record order (each v1 record is one event of rank 0); a
    cross-region copy stays right after its event, and ``record`` / ``span`` stay one per event (no copies)."""
    rank = np.concatenate((spans.span, np.zeros(len(v1_records), np.int64)))
    record = np.concatenate((spans.record, v1_records))
    if spans.copies or v1.copies:  # the copies' rows take their events' record and rank, to sort with them
        at = np.concatenate((_event_of(spans.key, slots), len(spans.record) + _event_of(v1.key, slots)))
        record, rank = record[at], rank[at]
    order = np.argsort(record, kind="stable")
    key = np.concatenate((spans.key, v1.key))[order]
    event = ~copy_mask(key, slots) if spans.copies or v1.copies else slice(None)
    return SpanBatch(
        ts_ms=np.concatenate((spans.ts_ms, v1.ts_ms))[order],
        key=key,
        latency_ms=np.concatenate((spans.latency_ms, v1.latency_ms))[order],
        error=np.concatenate((spans.error, v1.error))[order],
        copies=spans.copies + v1.copies,
        record=record[order][event],
        span=rank[order][event],
        ignored=spans.ignored,
    )


def _event_of(key: npt.NDArray[np.int64], slots: frozenset[int]) -> npt.NDArray[np.int64]:
    """Per row, the index of its event among the rows that are not copies (a copy follows its event)."""
    if not slots:
        return np.arange(key.size, dtype=np.int64)
    return np.cumsum(~copy_mask(key, slots)) - 1


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
