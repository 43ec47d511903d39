"""Telling a record's kind from its first bytes: OTLP/JSON, a contract-v1 JSON object, or else protobuf. Apart
from core/otlp.py so that replay's format detection, which runs before its stage-1 process forks, does not load
protobuf and the OTLP decoder (~35 ms of start-up on the path of every replay)."""

from __future__ import annotations


def is_otlp_json(raw: bytes) -> bool:
    """An OTLP/JSON batch (its one top-level member is ``resourceSpans``), as opposed to a contract-v1 object."""
    return b'"resourceSpans"' in raw[:64]


def is_json_object(raw: bytes) -> bool:
    return raw.lstrip()[:1] == b"{"
