"""Burn-rate breach alerts over a whole simulated rollout of the seed plan (sim/rollout.py: three regions, every
tier, a controller moving traffic on each pass)."""

from __future__ import annotations

import pytest

from gatekeeper.core.breach import Breach
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.sim.rollout import Rollout, Story

pytestmark = pytest.mark.slow


def test_a_healthy_rollout_raises_no_breach() -> None:
    """Every tier healthy (0.04 % errors, P99 ~35 ms) at 20 sampled requests a minute per region, from the first
    canary to the last rollout tier in all three regions: not one breach event, page or ticket. Thin traffic makes
    chance bursts of errors (2 in 100 requests after a tier starts) that only the rules' evidence check keeps
    from paging."""
    rollout = Rollout(load_plan(default_plan()), Story(problems={}), seed=7)
    breaches: list[Breach] = []
    for _tick in rollout.hours():
        breaches += rollout.engine.take_breaches()
    assert (["done"] * 3, []) == ([p.state for p in rollout.regions], breaches)
