"""The committed stream contracts are the ones the code parses and writes."""

from __future__ import annotations

from pathlib import Path

from gatekeeper.core.contracts import render, schemas

STREAMS = Path(__file__).resolve().parents[2] / "streams"


def test_committed_schemas_match_the_code() -> None:
    """streams/*.schema.json equal the schemas generated from Telemetry and Decision (regenerate with
    `python scripts/write_contracts.py` after changing a contract)."""
    for name, schema in schemas().items():
        assert render(schema) == (STREAMS / name).read_text(encoding="utf-8"), name
