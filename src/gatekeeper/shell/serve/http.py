"""The HTTP surface of ``gatekeeper serve`` (aiohttp): gate API, Flagger webhooks, metrics, probes, status page.

Every answer under ``/v1`` is JSON, errors included (404 unknown gate, 401 without the bearer token, 400 bad
webhook body, 405 wrong method): Argo Rollouts up to v1.10.0-rc1 takes a non-JSON body as a *successful*
measurement. The token (optional) guards ``/v1`` and ``/metrics``; the probes stay open for the kubelet.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from gatekeeper.core.board import Board
from gatekeeper.core.controllers import (
    FLAGGER_HOOKS,
    Freshness,
    board_document,
    error_document,
    flagger_answer,
    flagger_gate,
    gate_document,
)
from gatekeeper.shell.serve.promserve import ServeMetrics

STATIC = Path(__file__).resolve().parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServeState:
    """What the handlers read: the board, whether it is caught up, the metrics, the page's extra data."""

    board: Board
    metrics: ServeMetrics
    is_caught_up: Callable[[], bool]
    is_connected: Callable[[], bool]
    token: str | None = None
    page_data: Callable[[Board, Freshness], dict[str, Any]] | None = None  # None: no status page


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":"), allow_nan=False), status=status, content_type="application/json"
    )


def _error(status: int, error: str, message: str) -> web.Response:
    return _json(error_document(status, error, message), status)


STATE_KEY = web.AppKey("state", ServeState)


def _state(request: web.Request) -> ServeState:
    return request.app[STATE_KEY]


def _fresh(state: ServeState) -> Freshness:
    return Freshness(caught_up=state.is_caught_up(), served_at_ms=round(time.time() * 1000))


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for everything aiohttp would answer in HTML; the bearer token where it applies."""
    state = _state(request)
    guarded = request.path.startswith("/v1") or request.path == "/metrics"
    if guarded and state.token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), state.token.encode()):
            response = _error(401, "unauthorized", "send the header 'Authorization: Bearer <token>'")
            response.headers["WWW-Authenticate"] = 'Bearer realm="gatekeeper"'
            return response
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        hint = " (see /v1/gates)" if exc.status == 404 else ""
        return _error(exc.status, code, f"{request.method} {request.path}: {exc.reason}{hint}")


async def _gates(request: web.Request) -> web.Response:
    state = _state(request)
    return _json(board_document(state.board, _fresh(state)))


async def _gate(request: web.Request) -> web.Response:
    state = _state(request)
    region, tier = request.match_info["region"], request.match_info["tier"]
    view = state.board.get(region, tier)
    if view is None:
        known = ", ".join(state.board.order)
        return _error(404, "unknown_gate", f"no gate {region}/{tier} in plan {state.board.plan_name} (gates: {known})")
    return _json(gate_document(view, state.board, _fresh(state)))


async def _flagger(request: web.Request) -> web.Response:
    state = _state(request)
    hook = request.match_info["hook"]
    if hook not in FLAGGER_HOOKS:
        return _error(404, "unknown_hook", f"no Flagger hook {hook!r} (hooks: {', '.join(FLAGGER_HOOKS)})")
    try:
        payload = json.loads(await request.read() or b"null")
        region, tier = flagger_gate(payload)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        return _error(400, "bad_webhook_body", f"POST /v1/flagger/{hook}: {exc}")
    view = state.board.get(region, tier)
    if view is None:
        return _error(404, "unknown_gate", f"no gate {region}/{tier} in plan {state.board.plan_name}")
    status, body = flagger_answer(hook, view)
    body["canary"] = {k: payload.get(k) for k in ("name", "namespace", "phase")}
    return _json(body, status)


async def _metrics(request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(_state(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready once connected and the decisions topic is read to the end offsets it had at start."""
    state = _state(request)
    ready = state.is_connected() and state.is_caught_up()
    body = {"status": "ready" if ready else "not_ready", "connected": state.is_connected()}
    body["caught_up"] = state.is_caught_up()
    return _json(body, 200 if ready else 503)


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _page_data(request: web.Request) -> web.Response:
    state = _state(request)
    assert state.page_data is not None
    return _json(state.page_data(state.board, _fresh(state)))


def build_app(state: ServeState) -> web.Application:
    app = web.Application(middlewares=[_errors_and_auth])
    app[STATE_KEY] = state
    app.router.add_get("/v1/gates", _gates)
    app.router.add_get("/v1/gates/{region}/{tier}", _gate)
    app.router.add_post("/v1/flagger/{hook}", _flagger)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    if state.page_data is not None:
        app.router.add_get("/", _page)
        app.router.add_get("/status.json", _page_data)
        app.router.add_static("/static/", STATIC)
    return app
