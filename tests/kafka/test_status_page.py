"""The status page in a real headless Chromium during an end-to-end run: ``gatekeeper simulate`` (the
status-page scenario) -> ``gatekeeper worker`` -> decisions -> ``gatekeeper serve``. The page, drawn by its
own scripts from /status.json, shows us-east/ramp-10 held with its hold_until, the passed canaries, the
calendar's projection and the last decisions; assets come from the server itself (no CDN)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import worker_harness as h
from golden_decisions import golden
from serve_harness import Serve, serving

from browser import chromium, dump_dom, screenshot
from gatekeeper.core.decision import decode

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "config" / "rollout-plan.yaml"
SCENARIO = REPO / "config" / "scenarios" / "status-page.yaml"


def cell(dom: str, gate: str) -> str:
    """The grid cell of ``gate`` (its opening tag and text)."""
    match = re.search(rf'<div class="cell [^"]*" data-gate="{re.escape(gate)}" data-state="(\w+)"[^>]*>(.*?)</td>', dom)
    assert match is not None, f"no cell for {gate}"
    return f"{match.group(1)}: {re.sub('<[^>]+>', ' ', match.group(2)).split()}"


def test_status_page_shows_the_hold(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The page shows the scenario's hold (grid cell, active holds with time left), the GO of the canaries,
    the calendar and the reasons of the last decisions; every script and stylesheet is served locally."""
    chromium()
    names = h.Names()
    h.create_topics(kafka_bootstrap, names)
    simulate = [sys.executable, "-m", "gatekeeper.shell.cli", "simulate", "--scenario", str(SCENARIO)]
    simulate += ["--bootstrap", kafka_bootstrap, "--keyed", *names.flags()[2:]]
    run = subprocess.run(simulate, capture_output=True, text=True, timeout=300, check=False)
    assert 0 == run.returncode, run.stderr[-3000:]

    with (
        h.running(h.Worker(kafka_bootstrap, PLAN, names, tmp_path)) as workers,
        serving(Serve(kafka_bootstrap, PLAN, names.decisions, tmp_path)) as (server,),
    ):
        h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(4), workers, timeout=240, settle=0.5)
        expected = {"waiting": 24, "soaking": 0, "pending": 0, "passed": 2, "held": 1}  # of 27 gates
        server.wait(lambda status, b: b["counts"] == expected)
        # The page's scripts fetch /status.json and draw; Chromium runs them with a virtual-time budget.
        dom = dump_dom(server.url + "/")
        (tmp_path / "dom.html").write_text(dom)
        shot = Path(os.environ.get("GATEKEEPER_SCREENSHOT") or tmp_path / "status-page.png")
        screenshot(server.url + "/", shot)
        assert 0 == workers[0].stop()

    assert 'data-loaded="true"' in dom
    assert "held: ['held', 'until', '2025-11-25T01:00:00Z', '·', '12d', '1h', 'left']" == cell(dom, "us-east/ramp-10")
    assert cell(dom, "us-east/canary").startswith("passed: ['passed', 'pass', 'at', '2025-11-09T00:00:00Z'")
    holds = re.findall(r'<li class="hold" data-gate="([^"]+)">(.*?)</li>', dom)
    assert ["us-east/ramp-10"] == [gate for gate, _ in holds]
    assert "until 2025-11-25T01:00:00Z (12d 1h left" in holds[0][1]
    # held until Nov 25 01:00 plus a fresh 1-week soak: GO Dec 2 at best, 9 days after the planned Nov 22
    assert 'id="projected-end">2026-04-09<' in dom  # the expansion's planned end (Mar 31) + 9 days
    assert "contingency buffer used: 22% of 6 weeks (32% of 4 weeks)" in dom
    fail = next(d for d in map(decode, golden("status-page")) if d.decision == "fail")
    assert fail.reasons[0].split(" since ")[0] in dom  # the fail's reason ("error rate x% (n errors in m requests)")
    assert 2 == dom.count('class="uplot')  # both charts drawn by the vendored uPlot
    sources = re.findall(r'(?:src|href)="([^"]+)"', dom)
    assert [] == [s for s in sources if s.startswith(("http:", "https:", "//"))]
    assert shot.stat().st_size > 50_000
