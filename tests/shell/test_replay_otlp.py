"""``gatekeeper replay`` over OpenTelemetry trace batches (built with the official ``opentelemetry-proto``
classes): the same requests as OTLP/JSON lines or length-prefixed protobuf decide exactly what they decide as
contract-v1 lines; the format is detected; malformed batches are rejected whole with a reason; spans that are
not used are counted by reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.shell.cli import main
from gatekeeper.shell.replay import ReplaySummary, detect_format, replay
from otlp_batches import Encoding, attribute, batches, request_of, telemetry_lines
from plans_for_tests import small_plan, small_tier

T0_S = 1_760_832_000  # 2025-10-19T00:00:00Z
NOW = 1_761_000_000_000
PLAN = Plan.model_validate(small_plan("otlp-replay", "1", [small_tier("canary", 5)]))


def framed(messages: list[bytes]) -> bytes:
    """Protobuf messages each after its 4-byte big-endian length (the Collector file exporter's ``proto``)."""
    return b"".join(len(m).to_bytes(4, "big") + m for m in messages)


def as_file(messages: list[bytes], encoding: Encoding) -> bytes:
    return framed(messages) if encoding == "proto" else b"\n".join(messages) + b"\n"


def run(data: bytes, **options: object) -> tuple[list[bytes], ReplaySummary, list[dict[str, object]]]:
    """Replay ``data``; (decision lines, summary, rejects)."""
    sink, rejects = io.BytesIO(), io.BytesIO()
    summary = replay(PLAN, io.BytesIO(data), sink, rejects=rejects, now_ms=NOW, **options)  # type: ignore[arg-type]
    return sink.getvalue().splitlines(), summary, [json.loads(r) for r in rejects.getvalue().splitlines()]


@pytest.mark.parametrize(("encoding", "jobs"), [("proto", 1), ("proto", 2), ("json", 1), ("json", 2)])
def test_trace_batches_decide_what_the_same_requests_decide_as_json(encoding: Encoding, jobs: int) -> None:
    """Batches of 100 server spans (plus 3 client spans each, ignored) give byte-identical decisions, including
    a fail, a hold and a release, to the contract-v1 lines they were built from."""
    lines = telemetry_lines(T0_S)
    expected, _, _ = run(b"\n".join(lines))
    kinds = {json.loads(d)["decision"] for d in expected}
    assert {"fail", "hold", "release", "pass"} <= kinds
    messages = batches(lines, 100, encoding, client_spans=3)

    actual, summary, rejects = run(as_file(messages, encoding), input_format=f"otlp-{encoding}", jobs=jobs)

    assert expected == actual
    assert (len(lines), {"not_server": 3 * len(messages)}, []) == (summary.events, dict(summary.ignored), rejects)


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_the_cli_detects_the_format(encoding: Encoding, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``gatekeeper replay`` without ``--format`` reads either encoding and says how many spans it ignored."""
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(json.dumps(small_plan("otlp-replay", "1", [small_tier("canary", 5)])))
    lines = telemetry_lines(T0_S, minutes=30)
    source = tmp_path / f"spans.{encoding}"
    source.write_bytes(as_file(batches(lines, 50, encoding, client_spans=1), encoding))

    code = main(["replay", "--plan", str(plan_path), "--input", str(source), "--now", "2025-10-21T00:00:00Z"])

    err = capsys.readouterr().err
    unit = "batches" if encoding == "proto" else "lines"
    assert (0, f"{-(-len(lines) // 50)} {unit}: {len(lines)} events") == (code, err.split(",")[0])
    assert f"  ignored not_server: {-(-len(lines) // 50)}" in err.splitlines()


def test_detect_format_tells_the_three_apart() -> None:
    """A JSON object with ``resourceSpans`` first is OTLP/JSON, another object contract v1, bytes protobuf."""
    proto = framed(batches(telemetry_lines(T0_S, minutes=2), 10, "proto"))
    otlp_json = b'  {"resourceSpans": []}\n'
    v1 = b'{"ts": 1760832000, "region": "us-east"}\n'

    actual = [detect_format(io.BufferedReader(io.BytesIO(data))) for data in (proto, otlp_json, v1)]

    assert ["otlp-proto", "otlp-json", "json"] == actual


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_a_malformed_batch_is_rejected_whole_and_the_others_are_used(encoding: Encoding) -> None:
    """A batch that is not an ExportTraceServiceRequest is one rejection (``otlp:malformed``, its position and
    bytes); the batches around it give the decisions they give without it."""
    lines = telemetry_lines(T0_S, minutes=60)
    messages = batches(lines, 100, encoding)
    bad = b"\x0a\xff\xff\xff\x0f garbage" if encoding == "proto" else b'{"resourceSpans": [{"scopeSpans": 7}]}'
    clean, _, _ = run(as_file(messages, encoding), input_format=f"otlp-{encoding}")

    actual, summary, rejects = run(
        as_file([*messages[:3], bad, *messages[3:]], encoding), input_format=f"otlp-{encoding}"
    )

    assert clean == actual
    assert [(4, "otlp:malformed")] == [(r["line"], r["code"]) for r in rejects]
    assert bad == str(rejects[0]["raw"]).encode("latin-1")
    assert {"otlp:malformed": 1} == dict(summary.rejected)


def test_unlabelled_and_ungated_spans_are_counted_and_mapped_regions_are_used() -> None:
    """Spans without a tier, or of a region the plan lacks, are counted by reason; ``us-east-1`` mapped to
    ``us-east`` is used."""
    lines = telemetry_lines(T0_S, minutes=10)[:40]
    request = request_of(lines)
    for rs in request.resource_spans:
        region = next(kv for kv in rs.resource.attributes if kv.key == "cloud.region")
        region.value.string_value = {"us-east": "us-east-1", "eu-west": "ap-south"}[region.value.string_value]
    unlabelled = request.resource_spans.add()
    unlabelled.resource.attributes.append(attribute("cloud.region", "us-east-1"))
    unlabelled.scope_spans.add().spans.append(request.resource_spans[0].scope_spans[0].spans[0])
    from gatekeeper.core.otlp_mapping import OtlpMapping

    mapping = OtlpMapping(regions={"us-east-1": "us-east"})
    _, summary, _ = run(framed([request.SerializeToString()]), input_format="otlp-proto", mapping=mapping)

    east = sum(1 for line in lines if b'"us-east"' in line)
    assert (east, {"unknown_region": len(lines) - east, "no_tier": 1}) == (summary.events, dict(summary.ignored))


def test_a_truncated_protobuf_file_is_a_clear_error() -> None:
    """A file that ends inside a batch stops with a message naming the batch, after using the whole ones."""
    data = framed(batches(telemetry_lines(T0_S, minutes=5), 50, "proto"))

    with pytest.raises(UserError, match=r"ends inside protobuf batch \d+ \(\d+ bytes left\): is it truncated"):
        run(data[:-10], input_format="otlp-proto")
