"""gatekeeper serve's HTTP surface on a board of golden decisions (no broker): the gate API, Argo Rollouts'
analysis of it through the example template's own conditions, Flagger's webhooks with its payloads, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from argo_analysis import measurement_phase
from prometheus_client.parser import text_string_to_metric_families
from serve_support import REPO, board_with, state_for, with_client

from gatekeeper.core.board import Board

TEMPLATE = REPO / "examples" / "argo-rollouts" / "analysis-template.yaml"
CANARY = REPO / "examples" / "flagger" / "canary.yaml"


def template_conditions() -> tuple[str, str]:
    """successCondition and failureCondition of the example AnalysisTemplate, as shipped."""
    metric = yaml.safe_load(Path(TEMPLATE).read_text())["spec"]["metrics"][0]
    return metric["successCondition"], metric["failureCondition"]


async def fetch(client: TestClient[Any, Any], path: str, **kw: Any) -> tuple[int, str, bytes]:
    response = await client.get(path, **kw)
    return response.status, response.headers.get("Content-Type", ""), await response.read()


def get(board: Board, path: str, token: str | None = None, **kw: Any) -> tuple[int, str, bytes]:
    return with_client(state_for(board, token), lambda c: fetch(c, path, **kw))


@pytest.mark.parametrize(
    ("golden_name", "upto", "gate", "expected"),
    [
        ("healthy-canary", 1, "us-east/canary", "Inconclusive"),  # pending: awaiting approval
        ("healthy-canary", 2, "us-east/canary", "Successful"),  # pass (after the GO)
        ("error-breach", 1, "us-east/ramp-10", "Failed"),  # fail
        ("error-breach", 2, "us-east/ramp-10", "Failed"),  # hold
        ("error-breach", 3, "us-east/ramp-10", "Inconclusive"),  # released, soaking again: pending
        ("stall", 1, "us-east/ramp-25", "Inconclusive"),  # pending (stalled)
        ("stall", 1, "eu-west/canary", "Inconclusive"),  # waiting: no decision yet
    ],
)
def test_argo_analysis_of_served_json(golden_name: str, upto: int, gate: str, expected: str) -> None:
    """The example template's exact conditions on the served JSON: pass -> Successful, fail and hold ->
    Failed, pending -> Inconclusive (the rollout pauses)."""
    status, _, body = get(board_with(golden_name, upto={golden_name: upto}), f"/v1/gates/{gate}")
    assert expected == measurement_phase(status, body, *template_conditions())


def test_gate_document() -> None:
    """A held gate: state, hold_until, verdict, may_advance, the latest decision and its freshness."""
    status, content_type, body = get(board_with("error-breach", upto={"error-breach": 2}), "/v1/gates/us-east/ramp-10")
    doc = yaml.safe_load(body)
    assert (200, "application/json") == (status, content_type.split(";")[0])
    actual = {k: doc[k] for k in ("state", "decision", "may_advance", "hold_until", "hold_seconds_left", "holds")}
    expected = {
        "state": "held",
        "decision": "hold",
        "may_advance": False,
        "hold_until": "2025-11-04T01:00:00Z",
        "hold_seconds_left": 14 * 86400.0 + 24 * 60,  # from the fail at 00:36 to 2 weeks after 01:00
        "holds": 1,
    }
    assert expected == actual
    assert "hold" == doc["latest"]["decision"]
    assert doc["latest"]["reasons"][0].startswith("hold 2w after a failed ramp-10 tier")
    assert "2025-10-21T00:36:00Z" == doc["freshness"]["event_time"]  # the hold's event time
    assert doc["freshness"]["caught_up"] is True


def test_all_gates() -> None:
    """/v1/gates lists the plan's 27 gates in plan order with counts per state."""
    status, _, body = get(board_with("healthy-canary"), "/v1/gates")
    doc = yaml.safe_load(body)
    assert 200 == status
    assert (27, "us-east/canary") == (len(doc["gates"]), f"{doc['gates'][0]['region']}/{doc['gates'][0]['tier']}")
    assert {"waiting": 26, "soaking": 0, "pending": 0, "passed": 1, "held": 0} == doc["counts"]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/gates/mars/canary", 404, "unknown_gate"),
        ("/v1/nothing", 404, "not_found"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_errors_are_json(path: str, status: int, error: str) -> None:
    """Unknown gates and paths answer JSON errors (Argo counts a non-JSON body as a success)."""
    actual_status, content_type, body = get(board_with(), path)
    actual = (actual_status, content_type.split(";")[0], yaml.safe_load(body)["error"])
    assert (status, "application/json", error) == actual


def test_wrong_method_is_a_json_405() -> None:
    """POST on a GET resource and GET on a webhook answer 405 in JSON."""

    async def both(client: TestClient[Any, Any]) -> list[tuple[int, str]]:
        answers = [await client.post("/v1/gates"), await client.get("/v1/flagger/rollback")]
        return [(r.status, (await r.json())["error"]) for r in answers]

    assert [(405, "method_not_allowed")] * 2 == with_client(state_for(board_with()), both)


def test_bearer_token() -> None:
    """With a token: 401 JSON without it or with a wrong one, 200 with it; probes stay open."""
    board = board_with()
    assert 401 == get(board, "/v1/gates", token="s3cret")[0]
    wrong = get(board, "/v1/gates", token="s3cret", headers={"Authorization": "Bearer nope"})
    assert (401, "unauthorized") == (wrong[0], yaml.safe_load(wrong[2])["error"])
    assert 200 == get(board, "/v1/gates", token="s3cret", headers={"Authorization": "Bearer s3cret"})[0]
    assert 401 == get(board, "/metrics", token="s3cret")[0]
    assert 200 == get(board, "/healthz", token="s3cret")[0]


def flagger_payload(hook: str, region: str, tier: str) -> dict[str, Any]:
    """What Flagger POSTs to a webhook (pkg/controller/webhook.go): name, namespace, phase, checksum, metadata."""
    phase = {"confirm-promotion": "Promoting", "rollback": "Progressing"}.get(hook, "Progressing")
    return {
        "name": "learner-analyzer",
        "namespace": "learning",
        "phase": phase,
        "checksum": "6d4d4b7c9d",
        "metadata": {"region": region, "tier": tier},
    }


def post_hook(board: Board, hook: str, payload: Any) -> tuple[int, dict[str, Any]]:
    async def body(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
        response = await client.post(f"/v1/flagger/{hook}", json=payload)
        return response.status, await response.json()

    return with_client(state_for(board), body)


def flagger_ok(status: int) -> bool:
    """Flagger's rule: 200-202 is success, anything else a failure."""
    return 200 <= status <= 202


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        # (passed us-east/canary, held us-east/ramp-10, soaking us-east/ramp-10 after release, waiting eu-west/canary)
        ("confirm-promotion", (True, False, False, False)),
        ("confirm-rollout", (True, False, True, True)),
        ("pre-rollout", (True, False, True, True)),
        ("rollback", (False, True, False, False)),
    ],
)
def test_flagger_hooks(hook: str, expected: tuple[bool, ...]) -> None:
    """Each hook's success (200-202) per gate state, for Flagger's exact payload shape."""
    held = board_with("healthy-canary", "error-breach", upto={"error-breach": 2})
    released = board_with("error-breach", upto={"error-breach": 3})
    cases = [(held, "us-east", "canary"), (held, "us-east", "ramp-10"), (released, "us-east", "ramp-10")]
    cases.append((held, "eu-west", "canary"))
    actual = tuple(flagger_ok(post_hook(b, hook, flagger_payload(hook, r, t))[0]) for b, r, t in cases)
    assert expected == actual


def test_flagger_example_hooks_answer() -> None:
    """Every webhook of the example Canary names a served hook and metadata with region and tier."""
    spec = yaml.safe_load(CANARY.read_text())["spec"]
    board = board_with("healthy-canary")
    for hook in spec["analysis"]["webhooks"]:
        path = hook["url"].split(":8080", 1)[1]
        status, doc = post_hook(board, path.rsplit("/", 1)[1], {"name": "x", "metadata": hook["metadata"]})
        assert (path.rsplit("/", 1)[1], "canary") == (doc["hook"], doc["tier"]), status


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "x"}, "metadata is missing"),
        ({"name": "x", "metadata": {"region": "us-east"}}, "metadata.tier missing"),
        ([1, 2], "the body must be a JSON object"),
    ],
)
def test_flagger_bad_body(payload: Any, message: str) -> None:
    """A webhook body without region and tier gets a 400 JSON error that says what to set."""
    status, doc = post_hook(board_with(), "confirm-rollout", payload)
    assert (400, "bad_webhook_body") == (status, doc["error"])
    assert message in doc["message"]


def test_flagger_unknown_gate_and_hook() -> None:
    """Unknown gate or hook: 404 JSON (Flagger treats it as a failure)."""
    assert 404 == post_hook(board_with(), "confirm-rollout", flagger_payload("x", "mars", "canary"))[0]
    assert 404 == post_hook(board_with(), "deploy-now", flagger_payload("x", "us-east", "canary"))[0]


def scrape(board: Board) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, content_type, body = get(board, "/metrics")
    assert (200, "text/plain") == (status, content_type.split(";")[0])
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_per_gate() -> None:
    """Per-gate gauges by scraping: state, may_advance, error-rate and P99 upper bounds, hold time left."""
    samples = scrape(board_with("error-breach", upto={"error-breach": 2}))
    gate = (("region", "us-east"), ("tier", "ramp-10"))
    held, passed = (gate[0], ("state", "held"), gate[1]), (gate[0], ("state", "passed"), gate[1])
    assert (1.0, 0.0) == (samples[("gatekeeper_gate_state", held)], samples[("gatekeeper_gate_state", passed)])
    assert 0.0 == samples[("gatekeeper_gate_may_advance", gate)]
    assert 14 * 86400.0 + 24 * 60 == samples[("gatekeeper_gate_hold_remaining_seconds", gate)]
    # the fail's bound at its test's alpha: 1 %/27 of the rollout's false_fail (27 gates), 9/13 of it (a ramp tier's
    # weights: error rate 9, latency 1, revenue lift 1, the two no_regression criteria 1 each)
    assert 0.032461193444624246 == samples[("gatekeeper_gate_error_rate_upper_ratio", gate)]
    # The fail fell inside a window (error rate read after every pane): no P99 bound yet, so no P99 sample.
    assert ("gatekeeper_gate_p99_upper_seconds", gate) not in samples
    assert 1.0 == samples[("gatekeeper_serve_caught_up", ())]


def test_readyz_follows_catch_up() -> None:
    """/readyz is 503 until the decisions topic is read to its end, then 200; /healthz is always 200."""
    board = board_with()
    not_ready = with_client(state_for(board, caught_up=False), lambda c: fetch(c, "/readyz"))
    ready = with_client(state_for(board, caught_up=True), lambda c: fetch(c, "/readyz"))
    assert (503, 200) == (not_ready[0], ready[0])
    assert 200 == get(board, "/healthz")[0]
