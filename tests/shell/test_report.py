"""``gatekeeper report`` and ``replay --report``: what the page says (periods, summary, holds and their causes,
computed from decisions) and the page itself, rendered by headless Chromium (Debian's ``chromium``, installed by
``scripts/install_browser.sh`` from ``scripts/test.sh``): plotly draws every gate's chart without a network, the
summary tables hold the rollout's facts, every decision's reasons are in the charts' hover texts and each chart
offers a PNG download.

Without Chromium the rendering tests are skipped, or failed under ``CI=true`` (``tests/browser.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from browser import dump_dom, screenshot
from gatekeeper.core import decision as decisions
from gatekeeper.planfile import load_plan
from gatekeeper.shell.cli import main
from gatekeeper.shell.report.timeline import Period, summarize, timelines
from otlp_batches import telemetry_lines
from plans_for_tests import small_plan, small_tier

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "error-breach.decisions.jsonl"
DAY_MS = 86_400_000
T0_S = 1_760_832_000


def golden() -> list[decisions.Decision]:
    return [decisions.decode(line) for line in GOLDEN.read_bytes().splitlines()]


HELD_MS = 14 * DAY_MS + 24 * 60_000  # error-breach's hold: from its fail at 00:36 to 2 weeks after 01:00


def test_periods_and_summary_of_a_breached_tier() -> None:
    """error-breach: a soak ends in a fail, a 2-week hold (caused by the fail's reason; from the end of the hour
    the fail fell in, so 2 weeks and 24 minutes after the fail at 00:36) ends at the release, a second soak ends
    in a pass: the region reached that tier and lost the hold's time."""
    plan = load_plan(str(REPO / "config" / "rollout-plan.yaml"))
    order = list(dict.fromkeys(tier.name for _region, _phase, tier in plan.gates()))

    (gate,) = timelines(golden(), order)
    summary = summarize([gate], order)

    fail = golden()[0]
    assert ["soak", "hold", "soak"] == [p.kind for p in gate.periods]
    assert ("failed", fail.reasons[0], "passed") == tuple(p.cause for p in gate.periods)
    assert (
        Period("hold", gate.periods[1].start_ms, gate.periods[1].start_ms + HELD_MS, fail.reasons[0]) == gate.periods[1]
    )
    assert ({"us-east": "ramp-10"}, {"us-east": HELD_MS}) == (summary.regions, summary.lost_ms)


def test_an_unreleased_hold_runs_to_its_hold_until() -> None:
    """Without the release the hold is shown until ``hold_until`` and marked as not seen ending."""
    fail, hold = golden()[:2]

    (gate,) = timelines([fail, hold])

    assert [("hold", HELD_MS, False)] == [(p.kind, p.end_ms - p.start_ms, p.closed) for p in gate.periods[1:]]


# -- rendering in Chromium (tests/browser.py: the system's headless chromium) ------------------------------------
def replay_with_report(tmp_path: Path) -> tuple[Path, Path, list[dict[str, object]]]:
    """A two-region canary rollout replayed with ``--report``: (the page, the decisions file, the decisions)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps(small_plan("report-test", "1", [small_tier("canary", 5)])))
    telemetry = tmp_path / "telemetry.jsonl"
    telemetry.write_bytes(b"\n".join(telemetry_lines(T0_S)) + b"\n")
    page, out = tmp_path / "report.html", tmp_path / "decisions.jsonl"
    args = ["replay", "--plan", str(plan), "--input", str(telemetry), "--output", str(out), "--report", str(page)]
    assert 0 == main([*args, "--quiet", "--now", "2025-10-22T00:00:00Z"])
    return page, out, [json.loads(line) for line in out.read_text().splitlines()]


def test_the_page_renders_every_gate_and_the_summary_without_a_network(tmp_path: Path) -> None:
    """Chromium draws one plotly chart per gate (its SVG exists only once plotly.js ran, from the page itself:
    the page loads no script from anywhere); the summary says which tier each region reached and how long it
    was held, the holds table names the cause; every decision's reason is in the charts' hover texts; each
    chart has plotly's PNG download button."""
    page, _, decided = replay_with_report(tmp_path)
    assert {"fail", "hold", "release", "pass"} <= {d["decision"] for d in decided}
    source = page.read_text()

    dom = dump_dom(page.as_uri(), budget_ms=10_000)

    assert [] == re.findall(r"<script[^>]+src=", source)
    charts = re.findall(r'<div id="gate-([\w-]+)" class="plotly-graph-div', dom)
    assert ["eu-west-canary", "us-east-canary"] == charts
    assert 2 <= dom.count('class="main-svg"') // 2  # plotly draws two SVG layers per chart
    assert 2 == dom.count('data-title="Download plot as a PNG"')
    assert 'data-title="Share chart..."' not in dom  # no button that sends the data anywhere
    summary = re.search(r"<table id=\"summary\">.*?</table>", dom, re.S)
    assert summary is not None
    cells = re.findall(r"<td>([^<]*)</td>", summary.group(0))
    # held 34 minutes: from the fail at 00:26 to the end of its window at 00:30, then the 30-minute hold
    assert ["eu-west", "canary", "1", "1", "34m", "us-east", "canary", "1", "0", "0"] == cells
    fail = next(d for d in decided if d["decision"] == "fail")
    holds = re.search(r"<table id=\"holds\">.*?</table>", dom, re.S)
    assert holds is not None
    assert str(fail["reasons"][0]) in holds.group(0)  # type: ignore[index]
    for d in decided:
        assert json.dumps(str(d["reasons"][0]))[1:-1] in source  # type: ignore[index]


def test_report_from_a_decisions_file_skips_bad_lines_and_takes_a_screenshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gatekeeper report --decisions``: a line that is not a decision is said (file and line) and skipped, a
    repeated decision counts once, the rest make the same page as ``replay --report``; Chromium screenshots it."""
    _page, out, decided = replay_with_report(tmp_path)
    lines = out.read_text().splitlines()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([lines[0], "{not json", *lines, lines[-1]]) + "\n")
    again = tmp_path / "again.html"

    code = main(["report", "--decisions", str(damaged), "--output", str(again)])

    err = capsys.readouterr().err
    assert 0 == code
    assert f"skipped 1 record(s):\n{damaged} line 2: not a decision" in err
    assert f"{len(decided)} decisions of 2 gates" in err
    shot = tmp_path / "report.png"
    screenshot(again.as_uri(), shot, size="1200,1600", budget_ms=10_000)
    assert b"\x89PNG" == shot.read_bytes()[:4]
    assert shot.stat().st_size > 20_000  # a page of charts, not a blank one


def test_a_decisions_file_wins_over_a_bootstrap_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With GATEKEEPER_BOOTSTRAP set (as for the worker), ``--decisions FILE`` still reads the file; giving
    neither a file nor a bootstrap is a one-line error."""
    monkeypatch.setenv("GATEKEEPER_BOOTSTRAP", "127.0.0.1:1")

    code = main(["report", "--decisions", str(GOLDEN), "--output", str(tmp_path / "r.html")])
    monkeypatch.delenv("GATEKEEPER_BOOTSTRAP")
    neither = main(["report", "--output", str(tmp_path / "s.html")])

    assert (0, 2) == (code, neither)
    assert "give the decisions as --decisions FILE" in capsys.readouterr().err


def test_no_decisions_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file without a single decision: exit 2 and one line saying so; no page is written."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")

    code = main(["report", "--decisions", str(empty), "--output", str(tmp_path / "r.html")])

    assert (2, False) == (code, (tmp_path / "r.html").exists())
    assert "no decisions to report" in capsys.readouterr().err
