"""Stage 1's partials held back from stage 2 and joined (core/partial_buffer.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gatekeeper.core.partial_buffer import PartialBuffer, join
from gatekeeper.core.partials import PartialBatch, Watermark

KEYS = ("us-east/canary", "eu-west/canary")


def batch(rows: list[tuple[int, int, int, int, list[int]]], source: str = "input") -> PartialBatch:
    """Rows of (gate index, pane, requests, errors, latency bins with count 1 each)."""

    def col(i: int) -> np.ndarray:
        return np.asarray([r[i] for r in rows], np.int64)

    sizes = [len(r[4]) for r in rows]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    bins = np.asarray([b for r in rows for b in r[4]], np.int64)
    return PartialBatch(source, KEYS, col(0), col(1), np.ones(len(rows), np.int64), col(2), col(3),
                        np.zeros(len(rows), np.int64), offsets, bins, np.ones(bins.size, np.int64))  # fmt: skip


def test_joined_batches_give_the_rows_of_each_in_order() -> None:
    """The joined batch's partials are the first batch's, then the second's (an empty one in between adds
    nothing), each with its own latency bins."""
    first = batch([(0, 0, 5, 1, [3, 4]), (1, 0, 2, 0, [])])
    empty = batch([])
    second = batch([(0, 60_000, 7, 0, [5]), (1, 60_000, 1, 1, [1, 2, 9])])
    expected = first.rows() + second.rows()
    assert expected == join([first, empty, second]).rows()


def test_the_buffer_gives_everything_added_with_the_newest_watermark_once() -> None:
    """``take`` returns the joined partials and the last watermark added, then None until more is added."""
    buffer = PartialBuffer()
    first, second = batch([(0, 0, 5, 1, [3])]), batch([(1, 60_000, 2, 0, [4])])
    buffer.add(first, Watermark(source="input", watermark=60_000))
    buffer.add(second, Watermark(source="input", watermark=120_000))
    taken = buffer.take()
    assert taken is not None
    joined, watermark = taken
    assert (first.rows() + second.rows(), Watermark(source="input", watermark=120_000)) == (joined.rows(), watermark)
    assert buffer.take() is None


def test_batches_of_different_sources_are_not_joined() -> None:
    """Joining two sources' partials is a mistake stage 2 would not notice: it is refused."""
    with pytest.raises(ValueError, match="different sources"):
        join([batch([(0, 0, 1, 0, [])], "a"), batch([(0, 0, 1, 0, [])], "b")])
