"""How OTLP attributes become telemetry labels: which attributes name a span's region, tier, version and client
region (``OtlpMapping``, with the value translations), reading them from protobuf or OTLP/JSON attribute lists
(absent, a string, or present but not a string: counted, never taken as absent), and why a resource's or a span's
labels leave it unused (``no_region``, ``invalid_version``, ``unknown_gate``...). Decoding spans into event columns
is core/otlp.py. Pure."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_LABEL = 64  # a label's longest (core/telemetry.py ``Label``)


class JsonValue(Protocol):
    """An OTLP/JSON ``AnyValue`` as decoded (core/otlp.py): only its string is read here."""

    @property
    def stringValue(self) -> str | None: ...  # noqa: N802 - OTLP/JSON field name


class JsonKeyValue(Protocol):
    """An OTLP/JSON attribute as decoded (core/otlp.py)."""

    @property
    def key(self) -> str: ...

    @property
    def value(self) -> JsonValue | None: ...


@dataclass(frozen=True, slots=True)
class OtlpMapping:
    """Where a span's region and tier come from, and how attribute values translate to the plan's names."""

    region_attribute: str = "cloud.region"
    tier_attribute: str = "rollout.tier"
    regions: Mapping[str, str] = field(default_factory=dict)  # attribute value -> plan region (others as they are)
    tiers: Mapping[str, str] = field(default_factory=dict)  # attribute value -> plan tier (others as they are)
    version_attribute: str = "service.version"  # the resource's version: baseline evidence when it is the baseline
    versions: Mapping[str, str] = field(default_factory=dict)  # attribute value -> telemetry version (others as are)
    client_region_attribute: str | None = None  # opt-in: no stable OpenTelemetry convention names the client's region

    def keys(self) -> tuple[str, str, str, str]:
        """The attributes read, in role order: region, tier, version, client region ("": not read)."""
        return (self.region_attribute, self.tier_attribute, self.version_attribute, self.client_region_attribute or "")


ABSENT = object()  # no client-region attribute on the span or its resource
INVALID = object()  # an attribute whose value is not a string


def text(value: object) -> str | None:
    """A resource attribute's string (None: absent or ``INVALID``, as for region and tier)."""
    return value if isinstance(value, str) else None


def json_attributes(attributes: Iterable[JsonKeyValue], keys: Sequence[str]) -> list[object]:
    """The attributes named ``keys`` of an OTLP/JSON resource: a string, ``INVALID`` (present, not a string) or
    None (absent)."""
    out: list[object] = [None] * len(keys)
    for kv in attributes:
        if kv.key in keys:
            text = kv.value.stringValue if kv.value is not None else None
            _put(out, keys, kv.key, INVALID if text is None else text)
    return out


def proto_attributes(attributes: Iterable[Any], keys: Sequence[str]) -> list[object]:
    """The attributes named ``keys`` of a protobuf resource, as ``json_attributes``."""
    out: list[object] = [None] * len(keys)
    for kv in attributes:
        if kv.key in keys:
            _put(out, keys, kv.key, kv.value.string_value if kv.value.HasField("string_value") else INVALID)
    return out


def _put(out: list[object], keys: Sequence[str], key: str, value: object) -> None:
    """``value`` for every role ``key`` names (one attribute may be both the tier and the version, e.g. tiers
    mapped from ``service.version``)."""
    for i, k in enumerate(keys):
        if k == key:
            out[i] = value


def proto_span_label(attributes: Iterable[Any], key: str, resource: object) -> object:
    """A protobuf span's ``key`` attribute: its string, ``INVALID`` when not a string, else the resource's."""
    for kv in attributes:
        if kv.key == key:
            return kv.value.string_value if kv.value.HasField("string_value") else INVALID
    return ABSENT if resource is None else resource


def json_span_label(attributes: Iterable[JsonKeyValue], key: str, resource: object) -> object:
    """An OTLP/JSON span's ``key`` attribute, as ``proto_span_label``."""
    for kv in attributes:
        if kv.key == key:
            return kv.value.stringValue if kv.value is not None and kv.value.stringValue is not None else INVALID
    return ABSENT if resource is None else resource


def resource_labels(values: list[object], baselines: bool) -> tuple[str | None, str | None, str | None, str | None]:
    """Region, tier, version of a resource (``values`` in ``OtlpMapping.keys`` order) and why its server spans are
    not used (None: they are): they are with a region and a tier, or (baseline fleets often have no tier attribute)
    a version when the plan compares with ``baselines``; when it does, not with a version that is not a string
    (baseline or not?)."""
    region, tier, version = text(values[0]), text(values[1]), text(values[2])
    if not region:
        return region, tier, version, "no_region"
    if values[2] is INVALID and baselines:
        return region, tier, None, "invalid_version"
    return region, tier, version, None if tier or (version and baselines) else "no_tier"


def is_client_region(value: object) -> bool:
    """Whether a client-region attribute's value (not ``ABSENT``) is a label contract v1 would take."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_LABEL


def unused_reason(
    region: str, tier: str, key: int, good_duration: bool, regions: Container[str], tiers: Container[str]
) -> str:
    """Why a labelled server span is not used: its (region, tier) is no gate of the plan (``key`` < 0; the plan's
    ``regions`` and ``tiers`` tell which part is unknown), or its duration or time is impossible."""
    if key < 0 and not tier:
        return "no_tier" if region in regions else "unknown_region"
    if key < 0:
        if region not in regions:
            return "unknown_region"
        return "unknown_tier" if tier not in tiers else "unknown_gate"
    return "invalid_time" if good_duration else "invalid_duration"
