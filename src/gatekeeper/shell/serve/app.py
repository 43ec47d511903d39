"""``gatekeeper serve``'s process: the decisions reader, the gate-state reader (unless off) and the HTTP server
on one event loop, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from typing import Any

import structlog
from aiohttp import web

from gatekeeper.core.board import Board
from gatekeeper.core.plan import Plan
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.serve.gate_states import GateStateReader
from gatekeeper.shell.serve.http import ServeState, build_app
from gatekeeper.shell.serve.options import ServeOptions
from gatekeeper.shell.serve.promserve import ServeMetrics
from gatekeeper.shell.serve.reader import DecisionReader, TopicReader
from gatekeeper.shell.worker.logs import configure_logging, log_client_errors
from gatekeeper.shell.worker.options import WorkerOptions


def _tls(options: ServeOptions) -> ssl.SSLContext | None:
    if not options.tls_certfile or not options.tls_keyfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.tls_certfile, options.tls_keyfile)
    return context


async def serve(plan: Plan, plan_path: str, settings: KafkaSettings, options: ServeOptions, log: Any) -> int:
    from gatekeeper.shell.serve.page import page_data_for

    board = Board.of(plan)
    metrics = ServeMetrics()
    reader = DecisionReader(settings, board, metrics, log)
    states = None if options.app_id is None else GateStateReader(settings, board, metrics, log, options.app_id)
    metrics.watch(board, lambda: reader.caught_up)
    state = ServeState(
        board=board,
        metrics=metrics,
        is_caught_up=lambda: reader.caught_up,
        is_connected=lambda: reader.connected,
        token=options.token,
        page_data=page_data_for(plan, plan_path) if options.page else None,
    )
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    try:
        tls = _tls(options)
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot load the TLS certificate", certfile=options.tls_certfile, error=str(exc))
        return 2
    site = web.TCPSite(runner, options.host, options.port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen", host=options.host, port=options.port, error=exc.strerror or str(exc))
        await runner.cleanup()
        return 2
    addresses = runner.addresses  # the bound port, when --port 0 asked for a free one
    port = addresses[0][1] if addresses else options.port
    scheme = "https" if tls else "http"
    url = f"{scheme}://{options.host}:{port}/"
    log.info(
        "serving",
        url=url,
        decisions=settings.topics.decisions,
        gate_states=states.topic if states else None,
        gates=len(board.order),
    )
    print(f"gatekeeper serve: listening on {url}", flush=True)
    loop = asyncio.get_running_loop()
    readers: list[TopicReader] = [reader] if states is None else [reader, states]

    def stop() -> None:
        for r in readers:
            r.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(r.run() for r in readers))
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
    return 0


def run_serve(plan: Plan, plan_path: str, settings: KafkaSettings, options: ServeOptions) -> int:
    """Run until SIGTERM / SIGINT (exit 0)."""
    configure_logging(WorkerOptions(log_level=options.log_level, log_format=options.log_format))  # same set-up
    log = structlog.get_logger("gatekeeper.serve")
    log_client_errors(options.log_level)
    return asyncio.run(serve(plan, plan_path, settings, options, log))
