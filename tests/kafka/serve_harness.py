"""``gatekeeper serve`` as a subprocess for the Kafka tests: start it on a free port, wait until ready, GET."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Serve:
    """One ``gatekeeper serve`` process; its URL is read from the line it prints once listening."""

    def __init__(
        self, bootstrap: str, plan: Path, decisions_topic: str, workdir: Path, label: str = "s1", *extra: str
    ) -> None:
        self.log_path = workdir / f"{label}.log"
        self.cmd = [
            sys.executable, "-m", "gatekeeper.shell.cli", "serve",
            "--bootstrap", bootstrap, "--plan", str(plan), "--decisions-topic", decisions_topic,
            "--port", "0", "--log-format", "json", *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline().decode()
                if "listening on " in line:
                    self.url = line.split("listening on ", 1)[1].strip().rstrip("/")
                    return self
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"serve did not start; log:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        """(status, parsed JSON or raw text, content type) of GET ``path``."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body, status, ctype = response.read(), response.status, response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            body, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        parsed: Any = json.loads(body) if ctype.startswith("application/json") else body.decode()
        return status, parsed, ctype

    def wait(self, done: Any, path: str = "/v1/gates", timeout: float = 60.0) -> Any:
        """GET ``path`` until ``done(status, body)``; returns the body."""
        deadline = time.monotonic() + timeout
        status, body = 0, None
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, f"serve exited; log:\n{self.log()[-4000:]}"
            with contextlib.suppress(OSError):
                status, body, _ = self.get(path)
                if done(status, body):
                    return body
            time.sleep(0.3)
        seen = str(body)[:1500]
        raise AssertionError(f"{path}: gave up after {timeout} s at {status} {seen}; log:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def serving(*servers: Serve) -> Iterator[tuple[Serve, ...]]:
    """Start the servers; kill any still running on the way out."""
    try:
        yield tuple(s.start() for s in servers)
    finally:
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(10)


def ready(status: int, body: Any) -> bool:
    return status == 200 and isinstance(body, dict) and body.get("status") == "ready"
