"""Telemetry contract v1 (one JSON object per request) and its decoder into columnar batches.

Valid records become numpy columns; every invalid record becomes a ``Rejection`` with a reason code (for
counting), a message naming the field and the problem, and the original bytes (for a dead-letter topic).
A rejection never changes what happens to the valid records around it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Literal, cast

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core.timefmt import format_ms

MAX_RECORD_BYTES = 65_536
SUB_BLOCK_BYTES = 256 << 10
MAX_LATENCY_MS = 86_400_000.0  # one day; larger values are not request latencies
EPOCH_MIN_S = 946_684_800.0  # 2000-01-01
EPOCH_MAX_S = 4_102_444_800.0  # 2100-01-01

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Status = Annotated[int, msgspec.Meta(ge=100, le=599)]


class Telemetry(msgspec.Struct, frozen=True, gc=False):
    """One request as the learner analyzer reports it (contract v1; see streams/telemetry.v1.schema.json)."""

    ts: Annotated[float, msgspec.Meta(ge=EPOCH_MIN_S, le=EPOCH_MAX_S)] | Annotated[datetime, msgspec.Meta(tz=True)]
    region: Label
    tier: Label
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
    status: Status | None = None
    error: bool | None = None
    request_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    learner_id: Annotated[str, msgspec.Meta(max_length=256)] | int | None = None
    version: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    client_region: Label | None = None  # where the client is; != region: a cross-region request (core/cross_region.py)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that broke the contract: where it was, why, and its original bytes."""

    position: int  # line number in a file (1-based) or offset in a topic partition
    code: str  # short, countable: malformed_json, not_an_object, missing_field:ts, invalid_field:latency_ms, ...
    message: str  # what was wrong, for a human
    raw: bytes


@dataclass(slots=True)
class EventBatch:
    """Valid events as columns, in arrival order. ``key`` indexes the plan's (region, tier) gates."""

    ts_ms: npt.NDArray[np.int64]
    key: npt.NDArray[np.int64]
    latency_ms: npt.NDArray[np.float64]
    error: npt.NDArray[np.bool_]
    rejections: list[Rejection] = field(default_factory=list)
    copies: int = 0  # rows that copy the one before them to a cross-region slot (core/cross_region.py)

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    @staticmethod
    def concat(parts: list[EventBatch]) -> EventBatch:
        return EventBatch(
            ts_ms=np.concatenate([p.ts_ms for p in parts]),
            key=np.concatenate([p.key for p in parts]),
            latency_ms=np.concatenate([p.latency_ms for p in parts]),
            error=np.concatenate([p.error for p in parts]),
            rejections=[r for p in parts for r in p.rejections],
            copies=sum(p.copies for p in parts),
        )

    @staticmethod
    def empty() -> EventBatch:
        return EventBatch(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.bool_))


_ONE = msgspec.json.Decoder(Telemetry)
_MANY = msgspec.json.Decoder(list[tuple[Telemetry]])  # each record wrapped in its own one-element array
_SYNTAX = msgspec.json.Decoder(msgspec.Raw)  # checks JSON syntax only, converting nothing
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_FIELDS = msgspec.structs.fields(Telemetry)
_FIELD_DECODERS = {f.encode_name: msgspec.json.Decoder(f.type) for f in _FIELDS}
_REQUIRED = [f.encode_name for f in _FIELDS if f.required]
_JSON_TYPES = {list: "array", str: "str", int: "int", float: "float", bool: "bool", type(None): "null"}
_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def _reason_of(exc: Exception, raw: bytes) -> tuple[str, str]:
    """Reason code and message of a record the typed decoder refused. The code comes from our own checks of the
    bytes, never from the library's exception type or wording (msgspec 0.23 changed both for invalid UTF-8);
    the library's text is kept only in the human message. Runs on rejections only, so its cost is no concern."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        # Invalid bytes inside the strings of otherwise well-formed JSON: an encoding problem, not a syntax one.
        if _syntax_error(raw.decode("utf-8", errors="replace").encode()) is None:
            return "invalid_utf8", f"record is not valid UTF-8 (byte {bad.start} of a string): {bad.reason}"
        return "malformed_json", f"JSON is malformed and not UTF-8 (byte {bad.start})"
    if (syntax := _syntax_error(raw)) is not None:
        return "malformed_json", syntax
    if not raw.lstrip().startswith(b"{"):
        try:
            kind = _JSON_TYPES.get(type(msgspec.json.decode(raw)), "value")
        except msgspec.DecodeError:  # a number too large for a float
            kind = "number"
        return "not_an_object", f"Expected `object`, got `{kind}`"
    return _member_reason(_MEMBERS.decode(raw)) or ("invalid_record", str(exc))


def _member_reason(members: dict[str, msgspec.Raw]) -> tuple[str, str] | None:
    """The first invalid field in document order (as the typed decoder reports it), else the first missing one."""
    for name, value in members.items():
        check = _FIELD_DECODERS.get(name)
        if check is None:
            continue
        try:
            check.decode(value)
        except msgspec.DecodeError as invalid:
            return f"invalid_field:{name}", f"{invalid} - at `$.{name}`"
    missing = [name for name in _REQUIRED if name not in members]
    return (f"missing_field:{missing[0]}", f"Object missing required field `{missing[0]}`") if missing else None


def _syntax_error(raw: bytes) -> str | None:
    try:
        _SYNTAX.decode(raw)
    except msgspec.DecodeError as exc:
        return str(exc)
    return None


def _decode_joined(
    joined: bytes, count: int, many: msgspec.json.Decoder[list[tuple[Telemetry]]] = _MANY
) -> list[Telemetry] | None:
    """``count`` records joined by ``b"],["``, decoded in one call as ``[[r1],[r2],...]``: each record in its own
    one-element array, so a line holding two objects, or half of one, cannot pass as records. None when any
    record is invalid (the caller then decodes them one by one, with reasons)."""
    try:
        out = [one for (one,) in many.decode(b"[[" + joined + b"]]")]
    except _ERRORS:
        return None
    return out if len(out) == count else None


def _label_ok(name: str) -> bool:
    return 1 <= len(name) <= 64  # ``Label``'s bounds


def _plan_labels_decoder(
    regions: tuple[str, ...], tiers: tuple[str, ...]
) -> msgspec.json.Decoder[list[tuple[Telemetry]]]:
    """A decoder like ``_MANY`` whose records' region and tier must be among the plan's (valid) labels: msgspec
    then returns the plan's own string objects instead of a new string per field and record, which is cheaper to
    decode and to look up (``_gate_key``: the dicts compare their keys by identity, their hashes known). It refuses
    what ``_MANY`` refuses and more, never accepts anything ``_MANY`` would not, and gives the same values, so
    using it when it succeeds changes nothing."""
    labels: dict[str, object] = {"region": Literal.__getitem__(regions), "tier": Literal.__getitem__(tiers)}
    fields = [(f.name, labels[f.name]) for f in _FIELDS if f.name in labels]
    fast = msgspec.defstruct("Telemetry", fields, bases=(Telemetry,), frozen=True, gc=False)
    return msgspec.json.Decoder(list[tuple[fast]])  # type: ignore[valid-type]  # a class built at run time


def _shortcuts(regions: list[str], tiers: list[str]) -> list[tuple[msgspec.json.Decoder[list[tuple[Telemetry]]], bool]]:
    """The decoders tried before ``_MANY``, narrowest first, each with whether it is ``_plain_decoder``'s; none
    when the plan has no valid label of either kind."""
    known_regions = tuple(r for r in regions if _label_ok(r))
    known_tiers = tuple(t for t in tiers if _label_ok(t))
    if not known_regions or not known_tiers:
        return []
    return [
        (_plain_decoder(known_regions, known_tiers), True),
        (_plan_labels_decoder(known_regions, known_tiers), False),
    ]


# the members a record may have when decoded by ``_plain_decoder``: a status, and nothing read record by record
# beyond the columns (no ``error``, ``version`` or ``client_region``)
_PLAIN = ("ts", "region", "tier", "latency_ms", "status", "request_id", "learner_id")


def _plain_decoder(regions: tuple[str, ...], tiers: tuple[str, ...]) -> msgspec.json.Decoder[list[tuple[Telemetry]]]:
    """A decoder like the plan's-labels one for the usual record: ``status`` required, and no member outside
    ``_PLAIN`` (unknown ones included). All that it accepts ``_MANY`` accepts with the same values and
    ``error``, ``version`` and ``client_region`` None, so ``_to_columns`` need not read those record by record;
    a record it refuses sends its sub-block to the other decoders."""
    types: dict[str, object] = {f.name: f.type for f in _FIELDS}
    types.update(region=Literal.__getitem__(regions), tier=Literal.__getitem__(tiers), status=Status)
    fields = [(name, types[name]) if name in ("ts", "region", "tier", "latency_ms", "status")
              else (name, types[name], None) for name in _PLAIN]  # fmt: skip
    plain = msgspec.defstruct("Telemetry", fields, frozen=True, gc=False, forbid_unknown_fields=True)
    return msgspec.json.Decoder(list[tuple[plain]])  # type: ignore[valid-type]  # a class built at run time


def line_ends(block: bytes) -> npt.NDArray[np.intp]:
    """Positions of the newlines in ``block`` (one vectorised pass; ``bytes.count`` and ``in`` are byte loops)."""
    return np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)


class TelemetryDecoder:
    """Decodes JSON records against contract v1 and the plan's (region, tier) key space."""

    def __init__(
        self,
        gates: list[tuple[str, str]],
        not_after_ms: int | None = None,
        baselines: Mapping[tuple[str, str], int] | None = None,
        cross: Mapping[int, int] | None = None,
    ) -> None:
        """``not_after_ms``: records timestamped later are rejected (the shell passes its clock plus the plan's
        ``max_future_skew``), so one far-future record cannot push its gate's watermark ahead of real time.
        ``baselines``: (region, version) -> key of a baseline slot (core/slot_routing.py): a record of that region
        and version gets that key, whatever its tier. ``cross``: gate key -> key of its cross-region slot
        (core/cross_region.py): a record of that gate whose ``client_region`` is another region is counted for
        the gate and, as a copy right after it, for that slot."""
        self._baselines = dict(baselines or {})
        self._cross = dict(cross or {})
        self.not_after_ms = round(EPOCH_MAX_S * 1000) if not_after_ms is None else not_after_ms
        self._regions = sorted({r for r, _ in gates})
        self._tiers = sorted({t for _, t in gates})
        self._region_code = {r: i for i, r in enumerate(self._regions)}
        self._tier_code = {t: i for i, t in enumerate(self._tiers)}
        self._gate_of = np.full((len(self._regions), len(self._tiers)), -1, dtype=np.int64)
        for i, (region, tier) in enumerate(gates):
            self._gate_of[self._region_code[region], self._tier_code[tier]] = i
        # region -> tier -> gate index for every pair of the plan's labels, -1 where not gated: two dict lookups
        # per record in one comprehension (no tuple to build and hash)
        self._gate_key = {
            region: {tier: int(self._gate_of[r, t]) for tier, t in self._tier_code.items()}
            for region, r in self._region_code.items()
        }
        # tried first while they work; each dropped at the first input it refuses that a later one accepts
        # (records of regions or tiers outside the plan, or with members beyond ``_PLAIN``), so such inputs pay
        # for one refused attempt, not one per block
        self._shortcuts = _shortcuts(self._regions, self._tiers)

    def _decode_all(self, joined: bytes, count: int) -> tuple[list[Telemetry] | None, bool]:
        """``_decode_joined`` with the first shortcut that fits the input, else ``_MANY``; and whether the records
        came from ``_plain_decoder`` (no ``error``, ``version`` or ``client_region``; every one with a status)."""
        for i, (decoder, plain) in enumerate(self._shortcuts):
            out = _decode_joined(joined, count, decoder)
            if out is not None:
                del self._shortcuts[:i]
                return out, plain
        out = _decode_joined(joined, count)
        if out is not None:
            self._shortcuts.clear()
        return out, False

    def decode(
        self, records: list[bytes], first_position: int = 1, positions: Sequence[int] | None = None
    ) -> EventBatch:
        """Decode records (JSON objects, no trailing newline needed). Positions (line numbers or offsets) count
        from ``first_position`` unless given one per record in ``positions``."""
        if positions is None:
            positions = range(first_position, first_position + len(records))
        size = sum(map(len, records))
        if size > 2 * SUB_BLOCK_BYTES and len(records) > 1:  # in sub-blocks, for the CPU cache (as decode_block)
            step = max(1, len(records) * SUB_BLOCK_BYTES // size)
            cuts = range(0, len(records), step)
            parts = [self.decode(records[i : i + step], positions=positions[i : i + step]) for i in cuts]
            return EventBatch.concat(parts)
        rejections: list[Rejection] = []
        oversized = bool(records) and max(map(len, records)) > MAX_RECORD_BYTES
        batch, plain = (None, False) if oversized else self._decode_all(b"],[".join(records), len(records))
        if batch is not None:
            return self._to_columns(batch, records.__getitem__, positions, rejections, plain)
        decoded = [self._decode_one(pos, raw, rejections) for pos, raw in zip(positions, records, strict=True)]
        return self._to_columns(decoded, records.__getitem__, positions, rejections)

    def decode_lines(self, block: bytes, first_position: int = 1) -> tuple[int, int, EventBatch]:
        """(lines, blank lines, batch) of newline-separated records (no trailing newline): blank lines (empty or
        only whitespace) are skipped, the others numbered as lines from ``first_position``. A block without
        empty lines is decoded by ``decode_block``, whose whitespace-only lines are rejected as malformed."""
        ends = line_ends(block)
        count = ends.size + 1
        empty_line = block[:1] == b"\n" or block[-1:] == b"\n" or bool((ends[1:] - ends[:-1] == 1).any())
        if not empty_line and block.strip():
            return count, 0, self.decode_block(block, first_position, ends)
        lines = block.split(b"\n")  # skip blank lines, keeping line numbers exact
        numbers = [first_position + i for i, ln in enumerate(lines) if ln.strip()]
        batch = self.decode([lines[n - first_position] for n in numbers], positions=numbers)
        return count, count - len(numbers), batch

    def decode_block(
        self, block: bytes, first_position: int = 1, ends: npt.NDArray[np.intp] | None = None
    ) -> EventBatch:
        """Decode newline-separated records (no trailing newline) at C speed when they are all valid JSON
        objects of the contract; otherwise line by line with precise rejections, as ``decode``. Works in
        sub-blocks of ~256 KiB so that the decoded objects are still in the CPU cache when read into columns.
        ``ends``: ``line_ends(block)``, when the caller has them already."""
        if ends is None:
            ends = line_ends(block)
        # each sub-block ends at the first newline SUB_BLOCK_BYTES or more after its start, and its lines'
        # lengths come from the newlines' positions: the block's bytes are scanned once, not per sub-block
        bounds = np.concatenate(([-1], ends, [len(block)]))
        lengths = np.diff(bounds) - 1
        parts: list[EventBatch] = []
        line, position = 0, first_position
        while True:
            start = int(bounds[line]) + 1
            last = int(np.searchsorted(ends, start + SUB_BLOCK_BYTES))  # the newline ending the sub-block
            piece = block[start : int(bounds[last + 1])]
            oversized = int(lengths[line : last + 1].max()) > MAX_RECORD_BYTES
            parts.append(self._decode_piece(piece, position, last + 1 - line, oversized))
            position += last + 1 - line
            line = last + 1
            if last >= ends.size:
                break
        return parts[0] if len(parts) == 1 else EventBatch.concat(parts)

    def _decode_piece(self, block: bytes, first_position: int, count: int, oversized: bool) -> EventBatch:
        """The batch of a sub-block of ``count`` lines; ``oversized``: one of them is over ``MAX_RECORD_BYTES``."""
        if oversized:
            return self.decode(block.split(b"\n"), first_position)
        out, plain = self._decode_all(block.replace(b"\n", b"],["), count)
        if out is None:
            return self.decode(block.split(b"\n"), first_position)
        lines: list[bytes] = []

        def raw_of(i: int) -> bytes:  # only for the rare rejections after decoding
            if not lines:
                lines.extend(block.split(b"\n"))
            return lines[i]

        positions = range(first_position, first_position + count)
        return self._to_columns(out, raw_of, positions, [], plain)

    @staticmethod
    def _decode_one(pos: int, raw: bytes, rejections: list[Rejection]) -> Telemetry | None:
        if len(raw) > MAX_RECORD_BYTES:
            rejections.append(
                Rejection(pos, "oversized", f"record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}", raw)
            )
            return None
        try:
            return _ONE.decode(raw)
        except _ERRORS as exc:
            code, message = _reason_of(exc, raw)
            rejections.append(Rejection(pos, code, message, raw))
            return None

    def _to_columns(
        self,
        decoded: Sequence[Telemetry | None],
        raw_of: Callable[[int], bytes],
        positions: Sequence[int],
        rejections: list[Rejection],
        plain: bool = False,
    ) -> EventBatch:
        """Columns of the decoded records; the common case (all epoch ts, status only) stays in C loops.
        ``plain``: they are ``_plain_decoder``'s (none missing, each with a status and without ``error``,
        ``version`` and ``client_region``), so those are not read record by record."""
        records: Sequence[Telemetry] = (
            cast("Sequence[Telemetry]", decoded)
            if plain or None not in decoded
            else [r for r in decoded if r is not None]
        )
        where = [i for i, r in enumerate(decoded) if r is not None] if len(records) < len(decoded) else None
        try:
            keys = np.asarray([self._gate_key[r.region][r.tier] for r in records], dtype=np.int64)
        except KeyError:  # a region or tier outside the plan among them
            keys = self._keys_of([r.region for r in records], [r.tier for r in records])
        versions = [r.version for r in records] if self._baselines and not plain else []
        if versions.count(None) < len(versions):  # some records carry a version: baseline ones get their slot
            for i, r in enumerate(records):
                slot = self._baselines.get((r.region, r.version)) if r.version is not None else None
                if slot is not None:
                    keys[i] = slot
        ts_list = [r.ts for r in records]
        try:
            ts_s = np.asarray(ts_list, dtype=np.float64)
        except TypeError:  # some RFC 3339 strings (decoded as datetimes) among the numbers
            ts_s = np.fromiter((t.timestamp() if isinstance(t, datetime) else t for t in ts_list), np.float64)
        status = [r.status for r in records]
        flags = [] if plain else [r.error for r in records]
        if plain or (flags.count(None) == len(flags) and None not in status):
            error = np.asarray(status, dtype=np.int64) >= 500
            outcome = np.ones(len(records), dtype=np.bool_)
        else:
            outcome = np.fromiter(
                (f is not None or s is not None for f, s in zip(flags, status, strict=True)), np.bool_
            )
            error = np.fromiter(
                (f if f is not None else (s is not None and s >= 500) for f, s in zip(flags, status, strict=True)),
                np.bool_,
            )
        in_range = (ts_s >= EPOCH_MIN_S) & (ts_s <= min(EPOCH_MAX_S, self.not_after_ms / 1000))
        ok = (keys >= 0) & outcome & in_range
        rows: npt.NDArray[np.bool_] | slice = ok
        if ok.all():
            rows = slice(None)  # every record valid (the usual case): the columns as they are, not copies
        else:
            for i in np.flatnonzero(~ok).tolist():
                j = i if where is None else where[i]
                rejections.append(self._reject(records[i], raw_of(j), positions[j], int(keys[i]), bool(outcome[i])))
        rejections.sort(key=lambda r: r.position)
        batch = EventBatch(
            ts_ms=np.rint(ts_s[rows] * 1000).astype(np.int64),
            key=keys[rows],
            latency_ms=np.asarray([r.latency_ms for r in records], dtype=np.float64)[rows],
            error=error[rows],
            rejections=rejections,
        )
        if self._cross and not plain:
            clients = [r.client_region for r in records]
            if clients.count(None) < len(clients):
                away = np.fromiter((c is not None and c != r.region for c, r in zip(clients, records, strict=True)),
                                   np.bool_, len(records))  # fmt: skip
                batch = with_copies(batch, away[rows], self._cross)
        return batch

    def _keys_of(self, regions: list[str], tiers: list[str]) -> npt.NDArray[np.int64]:
        """Gate index per record from its labels (-1 when the plan does not gate that region/tier)."""
        r = np.asarray([self._region_code.get(x, -1) for x in regions], dtype=np.int64)
        t = np.asarray([self._tier_code.get(x, -1) for x in tiers], dtype=np.int64)
        known = (r >= 0) & (t >= 0)
        return np.where(known, self._gate_of[np.maximum(r, 0), np.maximum(t, 0)], -1)

    def _reject(self, rec: Telemetry, raw: bytes, pos: int, key: int, has_outcome: bool) -> Rejection:
        if key < 0:
            return self._unknown_gate(pos, rec, raw)
        if not has_outcome:
            return Rejection(pos, "missing_field:status", "record has neither `status` nor `error`", raw)
        shown = rec.ts.isoformat() if isinstance(rec.ts, datetime) else str(rec.ts)
        seconds = rec.ts.timestamp() if isinstance(rec.ts, datetime) else rec.ts
        if EPOCH_MIN_S <= seconds <= EPOCH_MAX_S:
            limit = format_ms(self.not_after_ms)
            return Rejection(pos, "invalid_field:ts", f"`ts`: timestamp {shown} is in the future (after {limit})", raw)
        return Rejection(pos, "invalid_field:ts", f"`ts`: timestamp {shown} is outside 2000-01-01..2100-01-01", raw)

    def _unknown_gate(self, pos: int, rec: Telemetry, raw: bytes) -> Rejection:
        if rec.region not in self._regions:
            return Rejection(
                pos,
                "unknown_region",
                f"region {rec.region!r} is not in the plan ({', '.join(self._regions)})",
                raw,
            )
        if rec.tier not in self._tiers:
            return Rejection(
                pos, "unknown_tier", f"tier {rec.tier!r} is not in the plan ({', '.join(self._tiers)})", raw
            )
        return Rejection(pos, "unknown_gate", f"tier {rec.tier!r} is not gated in region {rec.region!r}", raw)


def with_copies(batch: EventBatch, away: npt.NDArray[np.bool_], slots: Mapping[int, int]) -> EventBatch:
    """``batch`` with, right after each row whose client is ``away`` and whose gate has a cross-region slot in
    ``slots`` (gate key -> slot key), a copy keyed to that slot."""
    slot_of = np.full(max(slots) + 1, -1, np.int64)
    slot_of[list(slots)] = list(slots.values())
    gate = batch.key
    copy = away & (gate < slot_of.size)
    copy[copy] = slot_of[gate[copy]] >= 0
    if not copy.any():
        return batch
    reps = 1 + copy.astype(np.int64)
    rows = np.repeat(np.arange(gate.size), reps)
    second = np.zeros(rows.size, np.bool_)
    second[np.cumsum(reps)[copy] - 1] = True  # the copy follows its record
    keys = gate[rows]
    keys[second] = slot_of[keys[second]]
    return replace(
        batch, ts_ms=batch.ts_ms[rows], key=keys, latency_ms=batch.latency_ms[rows], error=batch.error[rows],
        copies=batch.copies + int(copy.sum()),
    )  # fmt: skip
