"""``gatekeeper serve``'s settings once flags and environment are resolved (apart from the flag parsing in
``cli.py``, so the process does not import the CLI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    page: bool = True
    log_level: str = "info"
    log_format: str = "console"
    app_id: str | None = "gatekeeper"  # the workers' app id: read <app-id>-gate-state-changelog (None: do not)
