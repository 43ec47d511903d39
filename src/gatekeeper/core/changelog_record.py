"""The changelogs' records (both stages' state, core/source_changelog.py and core/inbox_snapshot.py) as bytes:
msgpack, deflated (optionally with a frozen preset dictionary, named in the record by its adler32), and read back
with a check of the record's format. Records written before deflating (msgpack as it is) are still read."""

from __future__ import annotations

import zlib
from typing import TypeVar

import msgspec

from gatekeeper.core import inbox_dictionary

FORMAT = 1  # the first format of both stages' records
_T = TypeVar("_T")
ENCODER = msgspec.msgpack.Encoder()


def deflate(raw: bytes, zdict: bytes | None = None) -> bytes:
    # level 6: ~10 % fewer changelog bytes than level 1 on thin unkeyed input, where the changelogs became most
    # of the internal bytes once partials were batched (docs/benchmarks.md); records are a few KB, written per
    # checkpoint, so the extra CPU is small
    if zdict is None:
        return zlib.compress(raw, 6)
    out = zlib.compressobj(6, zdict=zdict)
    return out.compress(raw) + out.flush()


def inflate(raw: bytes, what: str) -> bytes:
    """A deflated record's msgpack; records written before deflating (a msgpack array: never zlib's first byte
    0x78) as they are."""
    if raw[:1] != b"\x78":
        return raw
    try:
        if len(raw) > 6 and raw[1] & 0x20:  # FDICT: deflated with the preset dictionary whose adler32 follows
            zdict = inbox_dictionary.DICTIONARIES.get(int.from_bytes(raw[2:6], "big"))
            if zdict is None:
                raise ValueError(f"not a {what}: deflated with an unknown dictionary {raw[2:6].hex()}")
            out = zlib.decompressobj(zdict=zdict)
            return out.decompress(raw) + out.flush()
        return zlib.decompress(raw)
    except zlib.error as exc:
        raise ValueError(f"not a {what}: {exc}") from None


def decode(decoder: msgspec.msgpack.Decoder[_T], raw: bytes, what: str, formats: tuple[int, ...] = (FORMAT,)) -> _T:
    try:
        snap = decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a {what}: {exc}") from None
    if getattr(snap, "format", None) not in formats:
        readable = " and ".join(map(str, formats))
        raise ValueError(f"{what} format {getattr(snap, 'format', None)}; this version reads format {readable}")
    return snap
