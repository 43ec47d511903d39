"""Replay: parallel decoding changes nothing but speed."""

from __future__ import annotations

import io
from pathlib import Path

from gatekeeper.planfile import load_plan
from gatekeeper.shell.replay import replay
from gatekeeper.sim.scenario import load_scenario
from gatekeeper.sim.writer import simulate

REPO = Path(__file__).resolve().parents[2]


def test_jobs_give_byte_identical_decisions_and_summaries() -> None:
    """The error-breach scenario (fail, hold, release, pass), with blank lines and invalid records mixed in and
    read in small blocks, gives the same decision bytes, rejects and counts with 1 and with 2 decoding jobs."""
    scenario = load_scenario(REPO / "config" / "scenarios" / "error-breach.yaml")
    lines = [line for chunk in simulate(scenario) for line in chunk]
    lines[1000:1000] = [b"", b"{not json", b"   ", b'{"ts": 1, "region": "us-east"}']
    telemetry = b"\n".join(lines) + b"\n"
    plan = load_plan(REPO / "config" / "rollout-plan.yaml")
    results = []
    for jobs in (1, 2):
        out, rejects = io.BytesIO(), io.BytesIO()
        summary = replay(plan, _Small(telemetry), out, rejects=rejects, jobs=jobs)
        results.append((out.getvalue(), rejects.getvalue(), summary.render()))
    assert results[0] == results[1]
    assert b'"decision":"release"' in results[0][0]
    expected = [1002, 1004]  # lines 1001 and 1003 are blank (skipped), 1002 and 1004 invalid
    assert expected == [int(r.split(b'"line":')[1].split(b",")[0]) for r in results[0][1].splitlines()]


class _Small(io.BytesIO):
    """A source that returns at most 256 KiB a read, so the input spans many blocks."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(min(size if size and size > 0 else 1 << 18, 1 << 18))
