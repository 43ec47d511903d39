"""The golden decision files (tests/golden) as the bytes a worker would publish, for tests that feed a
decisions topic directly (the client, serve)."""

from __future__ import annotations

from pathlib import Path

from gatekeeper.core.decision import decode

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden(name: str) -> list[bytes]:
    """The decisions of golden scenario ``name``, one JSON document each, in the file's order."""
    return [line for line in (GOLDEN / f"{name}.decisions.jsonl").read_bytes().splitlines() if line]


def keyed(values: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    """Each decision paired with its record key (``region/tier``), as the worker produces it."""
    return [(decode(v).key.encode(), v) for v in values]
