"""The worker's garbage-collector settings (shell/worker/gc_policy.py), applied once start-up is over."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gatekeeper.shell.worker import gc_policy


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_widens_the_young_generation_and_freezes_what_exists() -> None:
    """After ``settle`` the young generation is collected every 100,000 allocations (more than a poll's 10,000
    records and what applying it makes), the older ones at CPython's default cadence, and the objects that existed
    (start-up's) are out of every collection; a cycle made afterwards is still reclaimed."""
    gc.unfreeze()
    gc_policy.settle()
    assert (100_000, 10, 10) == gc.get_threshold()
    assert gc.get_freeze_count() > 0

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
