"""``gatekeeper plan check`` names the all-regions gates (core/global_gate.py) a plan has."""

from __future__ import annotations

from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.shell.plan_summary import summarize


def test_plan_check_lists_the_expansions_global_gate() -> None:
    """The repo plan's expansion tier names its three regions: the summary says what its global gate waits for
    and counts it after the 27 regional gates."""
    lines = summarize(load_plan(default_plan())).splitlines()
    assert [
        "    all-regions gate global/expansion: passes once us-east, us-west, eu-west all passed, holds while any "
        "is held; uptime counts a minute down when a region serving traffic is down"
    ] == [line for line in lines if "all-regions gate" in line]
    assert "27 gates (region x tier), 1 global" == lines[-1]
