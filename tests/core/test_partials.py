"""The partial contract (core/partials.py): what an edge publisher may send, and the clear errors for what
it may not."""

from __future__ import annotations

import numpy as np
import pytest

from gatekeeper.core.partials import Partial, PartialBatch, PartialError, Watermark, decode, encode

PARTIAL = Partial(gate="us-east/canary", pane=1_760_832_000_000, source="edge-1", requests=3, errors=1,
                  late=2, bins=(10, 400), counts=(1, 2))  # fmt: skip


def test_messages_round_trip() -> None:
    """A partial and a watermark decode to what was encoded; the JSON names its kind."""
    mark = Watermark(source="telemetry:3", watermark=1_760_832_060_000, idle=True)
    assert (PARTIAL, mark) == (decode(encode(PARTIAL)), decode(encode(mark)))
    assert b'"kind":"partial"' in encode(PARTIAL)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"kind":"partial","gate":"us-east","pane":0,"source":"s","requests":1,"errors":0}', "`$.gate`"),
        (b'{"kind":"partial","gate":"a/b","pane":0,"source":"s","requests":-1,"errors":0}', "`$.requests`"),
        (
            b'{"kind":"partial","gate":"a/b","pane":0,"source":"s","requests":1,"errors":0,"bins":[3],"counts":[2]}',
            "sum to 2, requests is 1",
        ),
        (
            b'{"kind":"partial","gate":"a/b","pane":0,"source":"s","requests":2,"errors":0,"bins":[3,3],'
            b'"counts":[1,1]}',
            "ascending and distinct",
        ),
        (
            b'{"kind":"partial","gate":"a/b","pane":0,"source":"s","requests":1,"errors":2,"bins":[3],"counts":[1]}',
            "2 errors in 1 requests",
        ),
        (b'{"kind":"partial","v":2,"gate":"a/b","pane":0,"source":"s","requests":0,"errors":0}', "`$.v`"),
        (b'{"kind":"gossip","source":"s"}', "Invalid value 'gossip'"),
        (b"not json", "malformed"),
    ],
)
def test_invalid_messages_are_rejected_with_the_reason(raw: bytes, reason: str) -> None:
    """Each broken message raises PartialError naming the field or the rule it breaks."""
    with pytest.raises(PartialError) as caught:
        decode(raw)
    assert reason in str(caught.value)


def test_chosen_rows_of_a_batch_are_those_rows_of_all_its_rows() -> None:
    """``PartialBatch.rows(which)`` gathers only the chosen rows' bins: the same ``Partial``s, in the order chosen,
    as picking them from ``rows()`` (rows without bins, a baseline slice, none chosen)."""
    sizes = [2, 0, 3, 1]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    bins = np.asarray([3, 7, 1, 2, 9, 4], np.int64)
    rows = len(sizes)
    ints = np.arange(rows, dtype=np.int64)
    batch = PartialBatch("input", ("us-east/canary", "eu-west/canary"), ints % 2, 60_000 * ints, ints + 1,
                         10 + ints, ints, ints * 0, offsets, bins, bins + 10, slices=("", "baseline"))  # fmt: skip
    every = batch.rows()
    which = np.asarray([3, 1, 2], np.int64)
    assert ([every[3], every[1], every[2]], []) == (batch.rows(which), batch.rows(which[:0]))
