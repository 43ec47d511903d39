"""The worker's state table values (both changelogs, and the Faust engine's tables): a plan version and a
snapshot, msgpack-encoded; an entry that cannot be read is a ``StateError``, never silently dropped."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

Lookup = Callable[[bytes], bytes | None]  # a restored state table: the entry under a key, if any
Warn = Callable[[str], None] | None  # where a state that cannot be used is reported


class StateError(RuntimeError):
    """A state table entry that cannot be read: continuing would silently lose or redo state."""


class _Entry(msgspec.Struct):
    """A state table value: plan version, snapshot, and a field kept for the format of earlier versions."""

    v: str
    s: bytes
    o: dict[str, int] = {}


_ENTRY_ENCODER = msgspec.msgpack.Encoder()
_ENTRY_DECODER = msgspec.msgpack.Decoder(_Entry)


def encode_entry(plan_version: str, state: bytes) -> bytes:
    return _ENTRY_ENCODER.encode(_Entry(plan_version, state))


def decode_entry(raw: bytes) -> tuple[str, bytes]:
    """(plan version, snapshot bytes); StateError when ``raw`` is not an entry."""
    try:
        entry = _ENTRY_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"not a state entry: {exc}") from None
    return entry.v, entry.s
