"""The order stage 2's output is written in: by event time (``at``), then the plan's gate order (regional gates
as the plan lists them, then the all-regions gates), then the order they were made. Stage 2 makes a batch's
decisions gate by gate, so without this the batch boundaries (replay's block size) would decide the order of a
file; with it, every batch ends at a watermark past which no earlier ``at`` is made, so the concatenated batches
are in the same order however the input was cut."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from gatekeeper.core.timefmt import parse_instant


class _Timed(Protocol):
    @property
    def at(self) -> str: ...

    @property
    def key(self) -> str: ...


T = TypeVar("T", bound=_Timed)


def gate_ranks(regional: Iterable[str], tiers: Iterable[str]) -> dict[str, int]:
    """Each gate key's place: the regional keys in plan order, then ``global/<tier>`` for each tier."""
    keys = [*regional, *(f"global/{tier}" for tier in tiers)]
    return {key: i for i, key in enumerate(keys)}


def in_time_order(items: list[T], ranks: Mapping[str, int]) -> list[T]:
    """``items`` by (event time, gate rank); a stable sort, so ties keep the order they were made in."""
    if len(items) < 2:
        return items
    last = len(ranks)  # a key not in the plan (none today) goes after the plan's, never raises
    return sorted(items, key=lambda d: (parse_instant(d.at), ranks.get(d.key, last)))
