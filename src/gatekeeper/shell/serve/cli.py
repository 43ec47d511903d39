"""``gatekeeper serve``: flags and entry point. Imports neither aiohttp nor aiokafka at load time."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gatekeeper.errors import UserError
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.shell.kafka_settings import add_kafka_arguments, kafka_settings
from gatekeeper.shell.serve.options import ServeOptions
from gatekeeper.shell.worker.options import APP_ID_PATTERN, WorkerOptions  # the workers' app-id rule

TOKEN_ENV = "GATEKEEPER_API_TOKEN"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", default=default_plan(), help="plan file (default: %(default)s; GATEKEEPER_PLAN)")
    add_kafka_arguments(parser)
    states = parser.add_argument_group("gate states (soak progress before a gate's first decision)")
    states.add_argument(
        "--app-id",
        help="the workers' app id: read <app-id>-gate-state-changelog (GATEKEEPER_APP_ID; gatekeeper)",
    )
    states.add_argument(
        "--no-gate-states", action="store_true", help="read the decisions topic only (soaking gates show waiting)"
    )
    http = parser.add_argument_group("HTTP")
    http.add_argument("--host", help="address to listen on (GATEKEEPER_SERVE_HOST; 127.0.0.1, 0.0.0.0 for all)")
    http.add_argument("--port", type=int, help="port to listen on (GATEKEEPER_SERVE_PORT; 8080)")
    http.add_argument(
        "--token-file",
        help=f"file holding a bearer token required on /v1 and /metrics (or {TOKEN_ENV}; default: no token)",
    )
    http.add_argument("--tls-certfile", help="serve HTTPS with this certificate chain (PEM)")
    http.add_argument("--tls-keyfile", help="the certificate's private key (PEM)")
    http.add_argument("--no-page", action="store_true", help="no status page at /")
    http.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    http.add_argument("--log-format", choices=("console", "json"), default="console")


def serve_options(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServeOptions:
    """Options from flags, then environment; UserError naming the flag when one is invalid."""
    env = dict(os.environ if environ is None else environ)
    host = args.host or env.get("GATEKEEPER_SERVE_HOST") or ServeOptions().host
    port_text = str(args.port) if args.port is not None else env.get("GATEKEEPER_SERVE_PORT") or "8080"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UserError(f"--port {port_text!r}: use a port number 0-65535 (0 picks a free one)")
    token = env.get(TOKEN_ENV) or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--token-file {args.token_file}: cannot read it: {exc.strerror or exc}") from None
        if not token:
            raise UserError(f"--token-file {args.token_file}: the file is empty")
    if bool(args.tls_certfile) != bool(args.tls_keyfile):
        raise UserError("--tls-certfile and --tls-keyfile go together: give both to serve HTTPS")
    for flag, path in (("--tls-certfile", args.tls_certfile), ("--tls-keyfile", args.tls_keyfile)):
        if path and not Path(path).is_file():
            raise UserError(f"{flag} {path}: no such file")
    app_id = args.app_id or env.get("GATEKEEPER_APP_ID") or WorkerOptions().app_id
    if not APP_ID_PATTERN.match(app_id):
        raise UserError(f"--app-id {app_id!r}: use 1-200 of A-Z a-z 0-9 . _ - (the workers' app id)")
    return ServeOptions(
        host=host,
        port=int(port_text),
        token=token,
        tls_certfile=args.tls_certfile,
        tls_keyfile=args.tls_keyfile,
        page=not args.no_page,
        log_level=args.log_level,
        log_format=args.log_format,
        app_id=None if args.no_gate_states else app_id,
    )


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    settings = kafka_settings(args)
    options = serve_options(args)
    from gatekeeper.shell.serve.app import run_serve

    return run_serve(plan, args.plan, settings, options)
