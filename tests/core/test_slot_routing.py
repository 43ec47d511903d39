"""Stage 1's routing of slice evidence (core/slot_routing.py): the key space of a plan (gates, then baseline and
cross-region slots) and the fan-out of a slot's panes as partials of each gate comparing with it."""

from __future__ import annotations

from gatekeeper.core import partials, slot_routing
from gatekeeper.core.aggregate import Aggregator
from gatekeeper.core.plan import Plan
from plans_for_tests import no_regression_criteria, small_plan, small_tier

from .baseline_scenario import regression_plan
from .helpers import MINUTE, T0, by_time, concat, traffic

CROSS = {"kind": "latency", "quantile": 0.99, "pass_below_ms": 200, "fail_above_ms": 200, "requests": "cross_region"}


def test_slots_follow_the_gates_and_fan_out_to_every_comparing_gate() -> None:
    """Two tiers comparing with baseline "1.0" share one slot per region, after the gates' keys; a cross-region
    slot per gate judging cross-region latency comes last. A slot's pane is emitted once per gate comparing with
    it, with the slot's slice; a gate's own pane once, without a slice."""
    plan = Plan.model_validate(small_plan("routing", "1.0", [
        small_tier("canary", 5, more_criteria=[*no_regression_criteria(), CROSS]),
        small_tier("ramp", 20, regions=["us-east"], more_criteria=no_regression_criteria()),
    ]))  # fmt: skip
    lay = slot_routing.layout(plan)
    assert [("us-east", "canary"), ("eu-west", "canary"), ("us-east", "ramp")] == lay.gates
    assert ["us-east/canary", "eu-west/canary", "us-east/ramp", "us-east@1.0", "eu-west@1.0",
            "us-east/canary@cross_region", "eu-west/canary@cross_region"] == lay.keys  # fmt: skip
    assert {("us-east", "1.0"): 3, ("eu-west", "1.0"): 4} == lay.baselines
    assert {3: [0, 2], 4: [1], 5: [0], 6: [1]} == lay.targets
    assert {0: 5, 1: 6} == lay.cross
    fan = lay.fan()
    assert fan is not None
    assert [("us-east/canary", "")] == fan.emitted(0)
    assert [("us-east/canary", "baseline"), ("us-east/ramp", "baseline")] == fan.emitted(3)
    assert [("eu-west/canary", "cross_region")] == fan.emitted(6)


def test_a_plan_without_slots_has_no_fan_out() -> None:
    """Without no_regression or cross-region criteria the key space is the gates' keys and stage 1 emits panes
    as they are (no fan-out)."""
    plan = Plan.model_validate(small_plan("plain", "1.0", [small_tier("canary", 5)]))
    lay = slot_routing.layout(plan)
    assert (["us-east/canary", "eu-west/canary"], {}, None) == (lay.keys, lay.baselines, lay.fan())


def test_baseline_partials_carry_the_slice_and_plain_ones_stay_byte_identical() -> None:
    """A baseline pane goes out as a partial of each comparing gate with ``"slice":"baseline"``; a gate's own
    partial has no ``slice`` member at all, so its bytes are those of before the field existed."""
    plan = regression_plan()
    lay = slot_routing.layout(plan)
    aggregator = Aggregator(lay.keys, plan.evaluation.pane, plan.evaluation.lateness, lay.fan())
    slot = lay.baselines[("us-east", "1.0")]
    both = by_time(concat(traffic(0, T0, T0 + 5 * MINUTE, 10), traffic(slot, T0, T0 + 5 * MINUTE, 10)))
    _, rows, _ = aggregator.fold(aggregator.start("s"), both)
    own = [p for p in rows if p.part == ""]
    base = [p for p in rows if p.part == "baseline"]
    assert {"us-east/canary"} == {p.gate for p in own} == {p.gate for p in base}
    assert len(own) == len(base) > 0
    assert b'"slice"' not in partials.encode(own[0])
    assert b'"slice":"baseline"' in partials.encode(base[0])
    assert base[0] == partials.decode(partials.encode(base[0]))
