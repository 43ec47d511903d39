"""``gatekeeper.shell.child_stage``: a producer run in a forked child, its items received here in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from gatekeeper.shell.child_stage import AHEAD, in_child


def test_the_child_runs_ahead_of_a_busy_consumer(tmp_path: Path) -> None:
    """While this process takes nothing (stage 2 busy merging), the child still produces ``AHEAD`` items of
    ~100 KB each (more than the pipe's buffer holds): a thread here receives them, so the two processes work at
    the same time instead of taking turns. Then every item arrives, in order."""
    marker = tmp_path / "produced"

    def produce() -> Iterator[tuple[int, bytes]]:
        for i in range(AHEAD + 3):
            yield i, bytes(100_000)
            if i == AHEAD - 1:
                marker.write_text(str(i))

    with in_child(produce) as items:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert str(AHEAD - 1) == marker.read_text()
        got = [i for i, payload in items if len(payload) == 100_000]
    assert list(range(AHEAD + 3)) == got


def test_behind_until_the_child_sends_its_next_item(tmp_path: Path) -> None:
    """``behind()`` is true while the child has sent nothing (it waits for a file this test writes later), then
    false once its item is here; the item is what it sent."""
    go = tmp_path / "go"

    def produce() -> Iterator[str]:
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield "first"

    with in_child(produce) as items:
        before = items.behind()
        go.write_text("go")
        deadline = time.monotonic() + 30
        while items.behind() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (True, False, ["first"]) == (before, items.behind(), list(items))


def test_leaving_early_stops_a_child_that_is_still_producing() -> None:
    """A consumer that stops after one item (an error in stage 2) leaves no child behind and does not hang,
    however much the child still had to send."""

    def produce() -> Iterator[int]:
        yield from range(10_000_000)

    with in_child(produce) as items:
        assert 0 == next(iter(items))
