"""JSON Schemas of the stream contracts, generated from the structs that parse and write them.

``streams/*.schema.json`` are these, committed; a test keeps them equal (regenerate with
``python scripts/write_contracts.py``, which does the writing: this module stays pure).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from gatekeeper.core.decision import Decision
from gatekeeper.core.telemetry import Telemetry

_DOCS = {
    "telemetry.v1.schema.json": (
        Telemetry,
        "gatekeeper telemetry v1",
        "One request of the service being rolled out. An error is `error: true`, or status >= 500 when `error` "
        "is absent; at least one of them is required; unknown fields are ignored. Kafka key: region/tier "
        "(recommended) or none.",
    ),
    "decision.v1.schema.json": (
        Decision,
        "gatekeeper decision v1",
        "One decision of one (region, tier) gate. Kafka key: region/tier. decision_id is deterministic: the "
        "same plan and telemetry give the same ids, so consumers deduplicate by it.",
    ),
}


def schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, (struct, title, description) in _DOCS.items():
        body = msgspec.json.schema(struct)
        out[name] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
                     "description": description, **body}  # fmt: skip
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
