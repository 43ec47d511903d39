"""``streams/asyncapi.yaml``: valid for the reference AsyncAPI parser (``@asyncapi/parser`` 3.x, run with node
from this folder; ``npm ci`` installs it from the committed lock when ``node_modules`` is missing), every example
valid against its message's schemas and consistent with what gatekeeper produces, and every topic's Kafka
binding equal to the settings the worker creates the topic with.

Without node/npm the parser test is skipped, or failed under ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from jsonschema import Draft202012Validator
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gatekeeper.core import breach, panes_batch, side_inputs
from gatekeeper.core import decision as decisions
from gatekeeper.core.side_inputs import Kind, Routed, SideRouter
from gatekeeper.core.telemetry import TelemetryDecoder
from gatekeeper.planfile import load_plan
from gatekeeper.shell.cloudevents import breach_headers, headers_of
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker.state_entry import decode_entry
from gatekeeper.shell.worker.topics import worker_topics

HERE = Path(__file__).resolve().parent
STREAMS = HERE.parents[1] / "streams"
DOCUMENT = STREAMS / "asyncapi.yaml"
APP_ID = "{appId}"


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm are needed to run the AsyncAPI parser"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (failing, not skipping, because CI=true)", pytrace=False)
        pytest.skip(reason)
    if not (HERE / "node_modules" / "@asyncapi" / "parser").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)
    return node, npm


def _parse(path: Path) -> subprocess.CompletedProcess[str]:
    node, _ = _node_tools()
    return subprocess.run(
        [node, "validate.mjs", str(path)], cwd=HERE, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_reference_parser_accepts_the_document() -> None:
    """The parser finds no error and sees every topic, operation and message the document means to state."""
    result = _parse(DOCUMENT)
    assert 0 == result.returncode, result.stdout + result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    expected_channels = [
        "telemetry", "decisions", "breaches", "telemetry.dlq", "{appId}-panes", "{appId}-gate-state-changelog",
        "{appId}-aggregate-changelog", "incidents", "approvals", "business-metrics", "{appId}-side",
    ]  # fmt: skip
    assert expected_channels == summary["channels"]
    expected_messages = [
        "telemetryV1", "otlpTracesProto", "otlpTracesJson", "decision", "breach", "deadLetter", "partial",
        "watermark", "partialsBatch", "gateState", "sourceState", "incident", "approval", "businessMetric",
        "sideRecord",
    ]  # fmt: skip
    assert expected_messages == summary["messages"]
    assert 18 == len(summary["operations"])  # 18th: serve reads the gate states


def test_the_reference_parser_rejects_a_broken_document(tmp_path: Path) -> None:
    """The check can fail: an operation with an action AsyncAPI 3 does not have (2.x's ``publish``) is an error."""
    broken = DOCUMENT.read_text().replace("action: send", "action: publish", 1)
    path = tmp_path / "asyncapi.yaml"
    path.write_text(broken)
    for schema in STREAMS.glob("*.schema.json"):
        shutil.copy(schema, tmp_path / schema.name)

    result = _parse(path)

    assert 1 == result.returncode
    assert '"severity":0' in result.stdout


def _validator(pointer: str) -> Draft202012Validator:
    """A validator of the schema at ``pointer`` in the document; ``$ref`` to the schema files in streams/ resolve."""
    base = DOCUMENT.as_uri()
    resources = [(base, Resource.from_contents(_document(), default_specification=DRAFT202012))]
    for path in STREAMS.glob("*.schema.json"):
        resources.append((path.as_uri(), Resource.from_contents(json.loads(path.read_text()))))
    registry: Registry[Any] = Registry().with_resources(resources)
    return Draft202012Validator({"$ref": f"{base}#{pointer}"}, registry=registry)


def _payload_pointer(message: dict[str, Any], name: str) -> str:
    """Where the message's payload schema is: inside a multi-format schema object, its ``schema``."""
    ref = message["payload"]["$ref"].removeprefix("#")
    target = _document()
    for part in ref.strip("/").split("/"):
        target = target[part]
    return f"{ref}/schema" if "schemaFormat" in target else ref


def _examples() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    messages = _document()["components"]["messages"]
    return [(name, message, example) for name, message in messages.items() for example in message["examples"]]


@pytest.mark.parametrize(("name", "message", "example"), _examples(), ids=[e[0] for e in _examples()])
def test_every_example_validates_against_its_schemas(
    name: str, message: dict[str, Any], example: dict[str, Any]
) -> None:
    """Payload and headers of each example are valid for the message's payload and header schemas."""
    payload_errors = [e.message for e in _validator(_payload_pointer(message, name)).iter_errors(example["payload"])]
    header_errors: list[str] = []
    if "headers" in message:
        pointer = message["headers"]["$ref"].removeprefix("#")
        header_errors = [e.message for e in _validator(pointer).iter_errors(example["headers"])]

    assert ([], []) == (payload_errors, header_errors)


def test_the_schemas_reject_a_wrong_example() -> None:
    """The example check can fail: a decision without ``decision_id`` and headers with another spec version."""
    (_, message, example) = next(e for e in _examples() if e[0] == "decision")
    payload = {k: v for k, v in example["payload"].items() if k != "decision_id"}
    headers = example["headers"] | {"ce_specversion": "0.3"}

    payload_errors = list(_validator(_payload_pointer(message, "decision")).iter_errors(payload))
    header_errors = list(_validator(message["headers"]["$ref"].removeprefix("#")).iter_errors(headers))

    assert (1, 1) == (len(payload_errors), len(header_errors))


def _example(name: str) -> dict[str, Any]:
    return next(example for message, _, example in _examples() if message == name)


def test_decision_and_breach_examples_carry_the_headers_the_worker_writes() -> None:
    """The examples' CloudEvents headers are exactly ``headers_of`` / ``breach_headers`` of their payload (plus the
    worker's wall-time header), so the document shows what the worker produces."""
    decision = decisions.decode(json.dumps(_example("decision")["payload"]).encode())
    alert = breach.decode(json.dumps(_example("breach")["payload"]).encode())
    for name, headers in (("decision", headers_of(decision)), ("breach", breach_headers(alert))):
        expected = {k: v.decode() for k, v in headers}
        actual = {k: v for k, v in _example(name)["headers"].items() if k != "gk-closed-wall-ms"}
        assert expected == actual


def test_binary_examples_decode_as_what_they_claim() -> None:
    """The protobuf example is an ExportTraceServiceRequest with one SERVER span; the dead letter's bytes are a
    record replay rejects for the stated reason; the gate state is an entry the worker can read."""
    batch = ExportTraceServiceRequest.FromString(base64.b64decode(_example("otlpTracesProto")["payload"]))
    spans = [s for rs in batch.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [2] == [s.kind for s in spans]
    proto_as_json = _example("otlpTracesJson")["payload"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (str(spans[0].start_time_unix_nano), str(spans[0].end_time_unix_nano)) == (
        proto_as_json["startTimeUnixNano"],
        proto_as_json["endTimeUnixNano"],
    )

    dead = _example("deadLetter")
    rejected = TelemetryDecoder([("eu-west", "ramp")]).decode([base64.b64decode(dead["payload"])]).rejections
    assert [dead["headers"]["gk.reason"]] == [r.code for r in rejected]

    assert ("3f9a1c2b7d4e", b"") == decode_entry(base64.b64decode(_example("gateState")["payload"]))


def _binding_topics() -> dict[str, dict[str, Any]]:
    channels = _document()["channels"]
    return {channel["address"]: channel["bindings"]["kafka"] for channel in channels.values()}


def test_the_batch_example_is_what_stage_1_sends() -> None:
    """The panes batch example decodes to the two partials its summary names, and is exactly the bytes stage 1
    encodes for them."""
    raw = base64.b64decode(_example("partialsBatch")["payload"])
    got = panes_batch.decode(raw)
    assert [("us-east/canary", 3, 0), ("eu-west/canary", 2, 1)] == [(p.gate, p.requests, p.errors) for p in got]
    assert {(1760833200000, "telemetry:3")} == {(p.pane, p.source) for p in got}
    assert [raw] == panes_batch.encode(got)


def test_topic_bindings_equal_the_settings_the_worker_creates_topics_with() -> None:
    """Each channel's Kafka binding states the partitions, replicas and configs (cleanup policy, retention,
    segment size) the worker creates that topic with under the default settings; no topic is missing."""
    settings = KafkaSettings(bootstrap="127.0.0.1:9092")
    created = worker_topics(settings, APP_ID)
    expected = {
        name: {
            "partitions": settings.topics.partitions,
            "replicas": settings.topics.replication,
            "configs": {"cleanup.policy": "delete", **configs},
        }
        for name, configs in created.items()
    }
    actual = {
        address: {
            "partitions": binding["partitions"],
            "replicas": binding["replicas"],
            "configs": {
                key: ",".join(value) if isinstance(value, list) else str(value)
                for key, value in binding["topicConfiguration"].items()
            },
        }
        for address, binding in _binding_topics().items()
    }
    assert expected == actual
    named = {address: binding.get("topic", address) for address, binding in _binding_topics().items()}
    assert {a: a for a in named if "{" not in a} == {a: t for a, t in named.items() if "{" not in a}


def test_payload_examples_decode_with_gatekeepers_own_decoders() -> None:
    """The contract-v1 telemetry example is a valid record for a plan gating its region and tier; the side
    inputs' examples are valid records for the repo's plan (each concerns at least one gate); the side record
    example wraps a valid incident."""
    example = _example("telemetryV1")["payload"]
    decoded = TelemetryDecoder([("us-east", "canary")]).decode([msgspec.json.encode(example)])
    assert (1, []) == (len(decoded), decoded.rejections)
    router = SideRouter(load_plan(STREAMS.parent / "config" / "rollout-plan.yaml"))
    examples: list[tuple[Kind, str]] = [
        ("incident", "incident"),
        ("approval", "approval"),
        ("business", "businessMetric"),
    ]
    routed = {kind: router.route(kind, msgspec.json.encode(_example(name)["payload"])) for kind, name in examples}
    assert dict.fromkeys(routed, True) == {k: isinstance(r, Routed) and bool(r.gates) for k, r in routed.items()}
    wrapped = side_inputs.decode_record(base64.b64decode(_example("sideRecord")["payload"]))
    assert ("incidents:3", 17, "incident") == (wrapped.source, wrapped.position, wrapped.kind)
    assert isinstance(router.route("incident", wrapped.value), Routed)
