"""``gatekeeper serve`` and ``gatekeeper worker --metrics-port`` options: bad input is one clear line, exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from serve_support import board_with, rollout_plan, state_for, with_client

from gatekeeper.core.controllers import Freshness
from gatekeeper.errors import UserError
from gatekeeper.shell.cli import main
from gatekeeper.shell.serve.cli import configure, serve_options
from gatekeeper.shell.serve.options import ServeOptions
from gatekeeper.shell.serve.page import page_data_for
from gatekeeper.shell.worker.cli import configure as worker_configure
from gatekeeper.shell.worker.cli import worker_options


def options(*argv: str, environ: dict[str, str] | None = None) -> ServeOptions:
    parser = argparse.ArgumentParser()
    configure(parser)
    return serve_options(parser.parse_args(list(argv)), environ or {})


def test_defaults_and_environment(tmp_path: Path) -> None:
    """Defaults: 127.0.0.1:8080, no token, the page on; the token from a file or GATEKEEPER_API_TOKEN."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert ServeOptions() == options()
    chosen = options("--host", "0.0.0.0", "--token-file", str(token), environ={"GATEKEEPER_SERVE_PORT": "9000"})
    assert ("0.0.0.0", 9000, "s3cret") == (chosen.host, chosen.port, chosen.token)
    assert "t0k" == options(environ={"GATEKEEPER_API_TOKEN": "t0k"}).token
    assert options("--no-page").page is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port '70000': use a port number 0-65535"),
        (["--token-file", "/nonexistent/token"], "--token-file /nonexistent/token: cannot read it"),
        (["--tls-certfile", "/x.pem"], "--tls-certfile and --tls-keyfile go together"),
        (["--tls-certfile", "/x.pem", "--tls-keyfile", "/y.pem"], "--tls-certfile /x.pem: no such file"),
    ],
)
def test_bad_options(argv: list[str], message: str) -> None:
    """Each bad option names itself and what to do."""
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        options(*argv)


def test_empty_token_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI: an empty token file is one error line and exit status 2, never a traceback."""
    empty = tmp_path / "token"
    empty.write_text("")
    code = main(["serve", "--bootstrap", "127.0.0.1:1", "--token-file", str(empty)])
    assert (2, f"gatekeeper: error: --token-file {empty}: the file is empty\n") == (code, capsys.readouterr().err)


def test_worker_metrics_port_option() -> None:
    """--metrics-port (or GATEKEEPER_METRICS_PORT) turns the endpoint on; a bad one is refused."""
    parser = argparse.ArgumentParser()
    worker_configure(parser)
    assert worker_options(parser.parse_args([]), {}).metrics_port is None
    assert 9108 == worker_options(parser.parse_args([]), {"GATEKEEPER_METRICS_PORT": "9108"}).metrics_port
    assert 0 == worker_options(parser.parse_args(["--metrics-port", "0"]), {}).metrics_port
    with pytest.raises(UserError, match="--metrics-port 'http': use a port number"):
        worker_options(parser.parse_args([]), {"GATEKEEPER_METRICS_PORT": "http"})


def test_status_json_and_page_assets() -> None:
    """/status.json carries the board, the holds, checkpoints and the calendar; / and the vendored uPlot are served."""
    board = board_with("error-breach", upto={"error-breach": 2})
    state = state_for(board)
    assert state.page_data is not None
    data = state.page_data(board, Freshness(caught_up=True, served_at_ms=0))
    assert [("us-east", "ramp-10", "2025-11-04T01:00:00Z")] == [
        (h["region"], h["tier"], h["hold_until"]) for h in data["holds"]
    ]
    assert {"name": "GO/NO-GO Nov 15", "after": "4w"} in data["checkpoints"]["canary"]
    assert {"error_pass_below": 0.0015, "error_fail_above": 0.002} == {
        k: v for k, v in data["thresholds"]["ramp-10"].items() if k.startswith("error")
    }
    assert ["fail", "hold"] == sorted(d["decision"] for d in data["decisions"])
    assert "2026-03-31" == data["calendar"]["planned_end"]  # the expansion's end

    async def fetch_all(client: object) -> list[tuple[int, str]]:
        out = []
        for path in ("/", "/static/app.js", "/static/vendor/uplot/uPlot.iife.min.js", "/status.json"):
            response = await client.get(path)  # type: ignore[attr-defined]
            out.append((response.status, response.headers["Content-Type"].split(";")[0].split("/")[-1]))
        return out

    expected = [(200, "html"), (200, "javascript"), (200, "javascript"), (200, "json")]
    assert expected == with_client(state, fetch_all)


def test_status_json_outcomes_show_the_pending_awaiting_approval() -> None:
    """The healthy canary's GO/NO-GO outcomes: at the soak end its one pending (awaiting the GO of the checkpoint
    'GO/NO-GO Nov 15', standing for the soak-end checkpoint too), then the GO."""
    board = board_with("healthy-canary")
    data = page_data_for(rollout_plan(), "plan.yaml")(board, Freshness(caught_up=True, served_at_ms=0))
    expected = [
        ("us-east", "canary", "GO/NO-GO Nov 15 (awaiting approval)", "2025-11-09T00:00:00Z", "pending"),
        ("us-east", "canary", "GO", "2025-11-15T01:00:00Z", "pass"),
    ]
    assert expected == [(o["region"], o["tier"], o["name"], o["at"], o["decision"]) for o in data["outcomes"]]
