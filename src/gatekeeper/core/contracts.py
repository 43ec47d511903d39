"""JSON Schemas of the stream contracts, generated from the structs that parse and write them.

``streams/*.schema.json`` are these, committed; a test keeps them equal (regenerate with
``python scripts/write_contracts.py``, which does the writing: this module stays pure).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from gatekeeper.core.approvals import Approval
from gatekeeper.core.breach import Breach
from gatekeeper.core.decision import Decision
from gatekeeper.core.incidents import Incident
from gatekeeper.core.lift import BusinessMetric
from gatekeeper.core.panes_batch import BatchBody
from gatekeeper.core.partials import Partial, Watermark
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
    "breach.v2.schema.json": (
        Breach,
        "gatekeeper breach event v2",
        "A burn-rate breach alert event of one (region, tier) gate and one objective (slo: error_rate or latency, "
        "the share of requests slower than the latency ceiling), topic breaches, key region/tier. One breach_id "
        "is opened once (change opened), updated when its severity changes (escalated to page, deescalated to "
        "ticket; revision counts the events) and resolved once (state resolved, resolved_at). windows: the "
        "multi-window rules that fired at this event with their long and short burn rates (empty when "
        "resolving). budget_consumed: bad requests over the objective's budget of everything the gate watched. "
        "decision_id: the gate's related fail decision, when there is one. event_id identifies each event, so "
        "consumers deduplicate by it. v1 of this topic was the fail decision itself (decision.v1.schema.json): "
        "its consumers read fails from the decisions topic (decision == fail) instead.",
    ),
    "partial.v1.schema.json": (
        Partial,
        "gatekeeper partial v1",
        "One gate's pane as one source saw it (topic <app-id>-panes, key region/tier): what a service that "
        "pre-aggregates at the edge publishes; the worker's stage 1 sends the same partials batched per source and "
        "partition (panes-batch.v1.schema.json, internal), and stage 2 reads both. "
        "Identified by (gate, pane, source); re-emitting it must give the same content (stage 2 ignores an "
        "identical copy and counts a different one as a conflict, never merging it). bins/counts: the non-empty "
        "latency buckets of core/sketch.py's mapping, ascending, counts summing to requests. late: records of "
        "this gate the source counted late (pane already past its watermark) while this pane was its first open "
        "one. A source emits a pane once its watermark passes the pane's end, before that watermark.",
    ),
    "watermark.v1.schema.json": (
        Watermark,
        "gatekeeper source watermark v1",
        "How far one source has come: its newest event time minus the plan's lateness (ms), null before its "
        "first record; every partial of a pane ending at or before it was sent before this message. Stage 2 "
        "closes a pane once every source not idle has passed it. idle: the source was read to its end and "
        "silent for idle_after; a later, higher watermark from it makes it active again.",
    ),
    "panes-batch.v1.schema.json": (
        BatchBody,
        "gatekeeper panes batch v1 (internal)",
        "Stage 1's partials of one source whose gates share a partition of <app-id>-panes, as ONE record (key: the "
        "source): the bytes 'GKB', a version byte (1), a flags byte (bit 0: the rest is zlib-deflated), then a "
        "msgpack array, which this schema describes in JSON's data model. Each row is one partial of contract "
        "partial.v1 (same identity, same content, same digest), so a re-emitted partial is a duplicate whichever "
        "message carried it. Internal: written only by gatekeeper's stage 1 and read by its stage 2, which reads "
        "the one-partial JSON message (partial.v1) beside it; edge publishers keep publishing that one. A new "
        "layout takes a new version byte.",
    ),
    "incident.v1.schema.json": (
        Incident,
        "gatekeeper incident v1",
        "One incident, as opened or as updated (topic incidents, key: the incident id, so its records stay in "
        "order). region / tier: where it applies, 'all' for every one. Open from opened_at until resolved_at "
        "(null: still open). A record of a known id replaces it when its version (the latest of opened_at, "
        "resolved_at, updated_at) is at least as new. Instants: RFC 3339 text or epoch seconds. Unknown fields are "
        "ignored.",
    ),
    "approval.v1.schema.json": (
        Approval,
        "gatekeeper approval v1",
        "A person's GO or NO-GO for a checkpoint of the plan that requires approval (topic approvals), in a "
        "region or 'all'. Idempotent: the same record twice is one approval. The latest decision made during the "
        "gate's current soak counts (a NO-GO wins a tie); by, at and note appear in the decision's reasons.",
    ),
    "business-metric.v1.schema.json": (
        BusinessMetric,
        "gatekeeper business metric v1",
        "One learner's value of a business metric for one period (topic business-metrics, key: the learner id). "
        "ts: when the period's value was known (e.g. the period's end). cohort treatment (with its tier) or "
        "control (no tier: it is the control of every tier of its region). Judged by the plan's lift criteria.",
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
