"""Stage 2's output order (core/output_order.py): event time, then the plan's gate order, then the order made."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.core.output_order import gate_ranks, in_time_order


@dataclass(frozen=True)
class Item:
    at: str
    key: str
    name: str


def test_gate_ranks_put_the_regional_gates_in_plan_order_then_the_global_ones() -> None:
    """Regional keys keep the order given; each tier's ``global/<tier>`` follows them."""
    expected = {"us-east/canary": 0, "eu-west/canary": 1, "global/canary": 2}
    assert expected == gate_ranks(["us-east/canary", "eu-west/canary"], ["canary"])


def test_items_go_by_event_time_then_gate_rank_then_the_order_made() -> None:
    """Times compare as instants (12:00:00.500 after 12:00:00, which text order gets wrong); at one time the
    plan's gate order decides; one gate's items at one time keep the order they were made in."""
    ranks = gate_ranks(["a/t", "b/t"], ["t"])
    made = [
        Item("2026-03-21T12:00:00.500Z", "a/t", "late-half-second"),
        Item("2026-03-21T12:00:00Z", "global/t", "global"),
        Item("2026-03-21T12:00:00Z", "b/t", "b-first"),
        Item("2026-03-21T12:00:00Z", "a/t", "a"),
        Item("2026-03-21T12:00:00Z", "b/t", "b-second"),
        Item("2026-03-21T11:59:00Z", "global/t", "earliest"),
    ]
    expected = ["earliest", "a", "b-first", "b-second", "global", "late-half-second"]
    assert expected == [i.name for i in in_time_order(made, ranks)]
