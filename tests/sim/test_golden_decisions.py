"""Golden decision files: each scenario of config/scenarios, simulated (telemetry and side inputs) and replayed
against the repo's plan, gives exactly the decisions in tests/golden/<scenario>.decisions.jsonl (byte for byte).

After an intended change of behaviour, regenerate with GATEKEEPER_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import pytest

from gatekeeper.core import decision
from gatekeeper.planfile import load_plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.side_files import SideFile
from gatekeeper.sim.scenario import load_scenario
from gatekeeper.sim.side_inputs import side_lines
from gatekeeper.sim.writer import simulate

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
SCENARIOS = sorted((REPO / "config" / "scenarios").glob("*.yaml"))


def replay_scenario(path: Path) -> bytes:
    scenario = load_scenario(path)
    telemetry = b"".join(line + b"\n" for chunk in simulate(scenario) for line in chunk)
    side = [SideFile(kind, kind, io.BytesIO(b"\n".join(lines))) for kind, lines in side_lines(scenario).items()]
    out = io.BytesIO()
    replay(load_plan(REPO / scenario.plan), io.BytesIO(telemetry), out, side=side)
    return out.getvalue()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_gives_its_golden_decisions(scenario: Path) -> None:
    """Replaying a scenario's telemetry gives exactly its golden decisions (same ids, same content)."""
    actual = replay_scenario(scenario)
    golden = GOLDEN / f"{scenario.stem}.decisions.jsonl"
    if os.environ.get("GATEKEEPER_UPDATE_GOLDEN") == "1":
        golden.write_bytes(actual)
    assert golden.read_bytes() == actual


def test_golden_files_cover_every_decision_kind() -> None:
    """Between them, the golden files hold at least one pass, fail, hold, release and pending."""
    kinds: Counter[str] = Counter()
    for path in GOLDEN.glob("*.decisions.jsonl"):
        kinds.update(decision.decode(line).decision for line in path.read_bytes().splitlines())
    assert {"pass", "fail", "hold", "release", "pending"} == {k for k, n in kinds.items() if n > 0}
