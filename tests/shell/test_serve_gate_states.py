"""gatekeeper serve's gate-state reading (no broker): entries of the worker's gate-state changelog, encoded
as the worker encodes them, fold into the board, and the API and metrics show a soaking gate's progress."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from serve_support import board_with, state_for, with_client

from gatekeeper.core import global_gate
from gatekeeper.core.gate import GateState
from gatekeeper.core.inbox_snapshot import dump_inbox
from gatekeeper.core.merge import GateInbox
from gatekeeper.core.timefmt import parse_instant
from gatekeeper.errors import UserError
from gatekeeper.shell.serve.cli import configure, serve_options
from gatekeeper.shell.serve.gate_states import observe_entry
from gatekeeper.shell.worker.state_entry import encode_entry

DAY = 86_400_000
OCT_19 = parse_instant("2025-10-19T00:00:00Z")


def soaking_entry(version: str, days: int, requests: int, stalled_days: int = 0) -> bytes:
    """A changelog value as the worker writes it: a gate soaking since Oct 19, windows closed ``days`` later."""
    gate = GateState(
        status="soaking",
        soak_start=OCT_19,
        window_start=OCT_19 + days * DAY,
        soak_requests=requests - 10,
        window_requests=10,  # the current window's closed panes count too
        stalled_ms=stalled_days * DAY,
    )
    return encode_entry(version, dump_inbox(GateInbox(gate=gate)))


def test_entry_makes_a_gate_soaking() -> None:
    """A soaking gate state with no decision: observed, the gate is soaking; elapsed leaves stalls out."""
    board = board_with()
    entry = soaking_entry(board.plan_version, days=8, requests=5_000, stalled_days=1)
    assert "observed" == observe_entry(board, b"us-east/canary", entry)
    view = board.gates["us-east/canary"]
    assert view.soak is not None
    assert ("soaking", 5_000, 7 * DAY) == (view.state, view.soak.requests, view.soak.elapsed_ms)
    assert "soaking since 2025-10-19T00:00:00Z: 5000 requests, 33% of the 3w soak elapsed" == view.why


def test_other_plan_and_bad_bytes() -> None:
    """An entry written for another plan version is left out; bytes that are no entry raise ValueError
    naming what they are not (the reader logs and skips them)."""
    board = board_with()
    assert "other-plan" == observe_entry(board, b"us-east/canary", soaking_entry("other", 1, 1))
    with pytest.raises(ValueError, match="not a state entry"):
        observe_entry(board, b"us-east/canary", b"\x01garbage")
    assert "waiting" == board.gates["us-east/canary"].state


def test_entry_older_than_the_decisions_is_stale() -> None:
    """A soaking state from before the gate's hold (error-breach golden) is stale: the gate stays held."""
    board = board_with("error-breach", upto={"error-breach": 2})
    assert "stale" == observe_entry(board, b"us-east/ramp-10", soaking_entry(board.plan_version, 1, 100))
    assert "held" == board.gates["us-east/ramp-10"].state


def test_api_and_metrics_show_the_soak() -> None:
    """/v1/gates/{region}/{tier} says soaking with a soak object; /metrics has the share elapsed."""
    board = board_with()
    observe_entry(board, b"us-east/canary", soaking_entry(board.plan_version, days=7, requests=700))

    async def body(client: TestClient[Any, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
        gate = await (await client.get("/v1/gates/us-east/canary")).json()
        every = await (await client.get("/v1/gates")).json()
        return gate, every, await (await client.get("/metrics")).text()

    gate, every, metrics = with_client(state_for(board), body)
    expected = {
        "since": "2025-10-19T00:00:00Z",
        "requests": 700,
        "elapsed_seconds": 7 * 86_400.0,
        "length_seconds": 21 * 86_400.0,
        "fraction": pytest.approx(1 / 3),
        "observed_at": "2025-10-26T00:00:00Z",
    }
    assert ("soaking", "pending", False, expected) == (
        gate["state"],
        gate["decision"],
        gate["may_advance"],
        gate["soak"],
    )
    assert (1, 1) == (every["counts"]["soaking"], every["gate_states_observed"])
    assert json.dumps(None) == json.dumps(next(g for g in every["gates"] if g["tier"] == "ramp-10")["soak"])
    samples = {
        (s.labels.get("region"), s.labels.get("tier")): s.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "gatekeeper_gate_soak_elapsed_ratio"
        for s in family.samples
    }
    assert {("us-east", "canary"): pytest.approx(1 / 3)} == samples


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Any:
    parser = argparse.ArgumentParser()
    configure(parser)
    return serve_options(parser.parse_args(argv), environ or {})


def test_app_id_option() -> None:
    """Gate states are read from the worker's default app id unless told otherwise; --no-gate-states turns
    it off; a bad app id is a clear error."""
    assert "gatekeeper" == parse([]).app_id
    assert "blue" == parse([], {"GATEKEEPER_APP_ID": "blue"}).app_id
    assert "green" == parse(["--app-id", "green"], {"GATEKEEPER_APP_ID": "blue"}).app_id
    assert None is parse(["--no-gate-states"]).app_id
    with pytest.raises(UserError, match="--app-id 'a b'"):
        parse(["--app-id", "a b"])


@pytest.mark.slow
def test_status_page_shows_soak_progress() -> None:
    """In a real headless Chromium the page's grid shows the soaking gate's progress (share of the soak,
    requests, since when) drawn by app.js from /status.json."""
    from browser import chromium, dump_dom

    chromium()
    board = board_with()
    observe_entry(board, b"us-east/canary", soaking_entry(board.plan_version, days=7, requests=700))

    async def body(client: TestClient[Any, Any]) -> str:
        return await asyncio.to_thread(dump_dom, str(client.make_url("/")))

    dom = with_client(state_for(board), body)
    match = re.search(r'data-gate="us-east/canary" data-state="(\w+)"[^>]*>(.*?)</td>', dom)
    assert match is not None, dom[-2000:]
    text = " ".join(re.sub("<[^>]+>", " ", match.group(2)).split())
    assert ("soaking", "soaking 33% of soak · 700 req · since 2025-10-19T00:00:00Z") == (match.group(1), text)


def test_a_global_gates_fold_is_skipped_not_invalid() -> None:
    """The changelog also holds the all-regions gates' folds (key ``global/<tier>``, core/global_gate.py): they
    are skipped as stale (the global decisions tell the board all there is), never logged as invalid, and the
    board gains no gate from them."""
    board = board_with()
    before = set(board.gates)
    entry = encode_entry(board.plan_version, global_gate.dump(global_gate.TierFold()))
    assert "stale" == observe_entry(board, b"global/expansion", entry)
    assert before == set(board.gates)
