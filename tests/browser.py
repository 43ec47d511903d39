"""The system's headless Chromium (Debian's ``chromium``), driven from the command line: the DOM after the page's
scripts ran (``--dump-dom``) and screenshots; for the status page (tests/kafka) and the rollout report
(tests/shell). Missing browser: the test is skipped, or failed under CI=true (scripts/test.sh installs it on a
fresh machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip


def chromium() -> str:
    """Path of the browser; skips (fails under CI=true) when none is installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "no chromium on PATH (apt-get install -y chromium; scripts/test.sh does it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (failing, not skipping, because CI=true)", pytrace=False)
        pytest.skip(reason)
    return found


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="gk-chromium-") as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(url: str, budget_ms: int = 8000, timeout: float = 90.0) -> str:
    """The page's DOM once its scripts had ``budget_ms`` of virtual time (fetches included)."""
    run = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout)
    assert 0 == run.returncode, run.stderr[-2000:]
    return run.stdout


def screenshot(url: str, path: Path, size: str = "1400,2000", budget_ms: int = 8000, timeout: float = 90.0) -> None:
    run = _run([f"--window-size={size}", f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url], timeout)
    assert path.exists(), run.stderr[-2000:]
