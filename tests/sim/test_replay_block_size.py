"""Replay's output does not depend on how much input it reads at a time: decisions and breach events are written
by event time, then the plan's gate order (core/output_order.py), not in the order each block's gates made them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gatekeeper.planfile import load_plan
from gatekeeper.shell.replay import BLOCK_BYTES, replay
from gatekeeper.shell.side_files import SideFile
from gatekeeper.sim.scenario import load_scenario
from gatekeeper.sim.side_inputs import side_lines
from gatekeeper.sim.writer import simulate

REPO = Path(__file__).resolve().parents[2]
# The two scenarios whose files changed order when the blocks grew from 4 to 16 MiB, and one with breaches.
SCENARIOS = ["expansion", "seed-gates", "latency-breach-one-region"]


def _telemetry(scenario: str) -> bytes:
    spec = load_scenario(REPO / "config" / "scenarios" / f"{scenario}.yaml")
    return b"".join(line + b"\n" for chunk in simulate(spec) for line in chunk)


def _replay(scenario: str, telemetry: bytes, block_bytes: int, merge_bytes: int = 0) -> tuple[bytes, bytes]:
    spec = load_scenario(REPO / "config" / "scenarios" / f"{scenario}.yaml")
    side = [SideFile(kind, kind, io.BytesIO(b"\n".join(lines))) for kind, lines in side_lines(spec).items()]
    out, breaches = io.BytesIO(), io.BytesIO()
    plan = load_plan(REPO / spec.plan)
    replay(plan, io.BytesIO(telemetry), out, side=side, breaches=breaches, block_bytes=block_bytes,
           merge_bytes=merge_bytes)  # fmt: skip
    return out.getvalue(), breaches.getvalue()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_replay_output_is_the_same_for_every_block_size(scenario: str) -> None:
    """The input cut into blocks of a seventh, half and the whole of it, and the default size, gives
    byte-identical decision and breach files."""
    telemetry = _telemetry(scenario)
    expected = _replay(scenario, telemetry, len(telemetry) + 1)
    assert expected[0]  # the scenario makes decisions, so their order is checked
    for size in (len(telemetry) // 7, len(telemetry) // 2, BLOCK_BYTES):
        assert expected == _replay(scenario, telemetry, size), f"blocks of {size} bytes"


def test_replay_output_is_the_same_however_often_stage_2_merges() -> None:
    """Stage 2 merging after every small block, after several (partials held back and joined,
    core/partial_buffer.py) or once at the end gives byte-identical decision and breach files."""
    telemetry = _telemetry("latency-breach-one-region")
    block = len(telemetry) // 9
    expected = _replay("latency-breach-one-region", telemetry, block, 0)
    assert expected[0]  # decisions and breach events, both compared
    assert expected[1]
    for merge in (3 * block, len(telemetry) + 1):
        assert expected == _replay("latency-breach-one-region", telemetry, block, merge), f"merge every {merge} bytes"
