"""What the three side inputs (incidents, approvals, business metrics) share: decoding one JSON record into its
contract struct with a countable reason code when it breaks the contract (as ``telemetry`` does), instants as
RFC 3339 text or epoch seconds, and the position a record came from (for idempotent application).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Generic, TypeVar

import msgspec

from gatekeeper.core.telemetry import EPOCH_MAX_S, EPOCH_MIN_S

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=2048)]
Instant = Annotated[float, msgspec.Meta(ge=EPOCH_MIN_S, le=EPOCH_MAX_S)] | Annotated[datetime, msgspec.Meta(tz=True)]
ALL = "all"  # a region or tier field meaning every one

S = TypeVar("S", bound=msgspec.Struct)


def instant_ms(value: float | datetime) -> int:
    """Epoch milliseconds of a contract instant (epoch seconds or an aware datetime)."""
    seconds = value.timestamp() if isinstance(value, datetime) else value
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Refused:
    """A side record that broke its contract: a short code (``malformed_json``, ``missing_field:id``,
    ``invalid_field:severity``, ``unknown_region``...) and a message for a person."""

    code: str
    message: str


class RecordDecoder(Generic[S]):
    """JSON bytes -> a contract struct, or ``Refused`` with the first problem found."""

    def __init__(self, struct: type[S]) -> None:
        self._decoder = msgspec.json.Decoder(struct)
        fields = msgspec.structs.fields(struct)
        self._fields = {f.encode_name: msgspec.json.Decoder(f.type) for f in fields}
        self._required = [f.encode_name for f in fields if f.required]

    def decode(self, raw: bytes) -> S | Refused:
        try:
            return self._decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return self._reason(raw, exc)

    def _reason(self, raw: bytes, exc: Exception) -> Refused:
        try:
            members = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as bad:
            return Refused("malformed_json", str(bad))
        if not isinstance(members, dict):
            return Refused("not_an_object", f"expected a JSON object, got {type(members).__name__}")
        for name, value in members.items():
            check = self._fields.get(name)
            if check is None:
                continue
            try:
                check.decode(msgspec.json.encode(value))
            except msgspec.DecodeError as invalid:
                return Refused(f"invalid_field:{name}", f"{invalid} - at `$.{name}`")
        missing = [n for n in self._required if n not in members]
        if missing:
            return Refused(f"missing_field:{missing[0]}", f"object missing required field `{missing[0]}`")
        return Refused("invalid_record", str(exc))


def check_scope(region: str, tier: str | None, regions: tuple[str, ...], tiers: tuple[str, ...]) -> Refused | None:
    """A region / tier field that names neither ``all`` nor one of the plan's."""
    if region != ALL and region not in regions:
        return Refused("unknown_region", f"region {region!r} is not in the plan ({', '.join(regions)}) nor 'all'")
    if tier is not None and tier != ALL and tier not in tiers:
        return Refused("unknown_tier", f"tier {tier!r} is not in the plan ({', '.join(tiers)}) nor 'all'")
    return None
