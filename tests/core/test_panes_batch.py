"""The internal panes batch message (core/panes_batch.py): many partials of one source in one record, compact,
decoded into exactly the partials encoded; bad bytes give a PartialError naming what is wrong and where."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from gatekeeper.core import inbox_snapshot, panes_batch
from gatekeeper.core import partials as contract
from gatekeeper.core.partials import Partial, PartialBatch, PartialError, Watermark

MINUTE = 60_000
SOURCE = "telemetry:3"


def thin(gates: int = 27, panes: int = 2) -> list[Partial]:
    """A source's partials of ``gates`` gates over ``panes`` panes, ~3 requests each (thin unkeyed input)."""
    out = []
    for pane in range(panes):
        for g in range(gates):
            n = 1 + (g + pane) % 4
            bins = tuple(1040 + 3 * i + g % 5 for i in range(n))
            out.append(Partial(gate=f"region-{g % 3}/tier-{g}", pane=(29_000_000 + pane) * MINUTE, source=SOURCE,
                               requests=n, errors=g % 2, late=pane, seq=g % 2, bins=bins, counts=(1,) * n))  # fmt: skip
    return out


def test_round_trip_gives_the_same_partials_in_the_same_order() -> None:
    """Partials of many gates and two panes, with seqs, late counts, no latency bins (only late records), and the
    baseline and cross-region slices of a gate beside its own: decoding the batch gives them back, equal field
    by field (so stage 2's digest of each is the JSON message's)."""
    partials = [
        *thin(),
        Partial(gate="eu/web", pane=MINUTE, source=SOURCE, requests=0, errors=0, late=4),
        Partial(gate="eu/web", pane=0, source=SOURCE, requests=2, errors=1, bins=(0, 1153), counts=(1, 1)),
        Partial(gate="eu/web", pane=0, source=SOURCE, requests=1, errors=0, bins=(7,), counts=(1,), slice="baseline"),
        Partial(
            gate="eu/web", pane=0, source=SOURCE, requests=1, errors=0, bins=(7,), counts=(1,), slice="cross_region"
        ),
    ]
    (raw,) = panes_batch.encode(partials)
    decoded = panes_batch.decode(raw)
    assert partials == decoded
    assert [contract.encode(p) for p in partials] == [contract.encode(p) for p in decoded]


def test_a_batch_is_much_smaller_than_its_json_messages() -> None:
    """27 thin partials (one source, one pane): the batch is under a quarter of their JSON messages' bytes."""
    partials = thin(panes=1)
    (raw,) = panes_batch.encode(partials)
    json_bytes = sum(len(contract.encode(p)) + len(p.gate) for p in partials)
    assert len(raw) * 4 < json_bytes, (len(raw), json_bytes)


def test_too_many_partials_are_split_into_several_messages() -> None:
    """More partials than a message holds give several messages, together the partials in order."""
    partials = thin(gates=500, panes=5)
    raws = panes_batch.encode(partials)
    assert len(partials) > panes_batch.MAX_ROWS
    assert len(raws) == -(-len(partials) // panes_batch.MAX_ROWS)
    assert partials == [p for raw in raws for p in panes_batch.decode(raw)]


def test_partials_of_two_sources_are_refused() -> None:
    """A batch holds one source's partials: encoding two sources' raises, naming both."""
    two = [*thin(gates=1, panes=1), Partial(gate="eu/web", pane=0, source="edge", requests=0, errors=0)]
    with pytest.raises(ValueError, match="one source's partials: 'edge' among 'telemetry:3'"):
        panes_batch.encode(two)


def test_read_takes_either_kind_of_panes_message() -> None:
    """``read`` gives a batch's partials, or the one partial or watermark of a JSON message."""
    partials = thin(gates=2, panes=1)
    mark = Watermark(source=SOURCE, watermark=5)
    (raw,) = panes_batch.encode(partials)
    assert partials == panes_batch.read(raw)
    assert [partials[0]] == panes_batch.read(contract.encode(partials[0]))
    assert [mark] == panes_batch.read(contract.encode(mark))


def test_find_names_the_gates_own_partial_inside_either_kind() -> None:
    """A snapshot's reference (gate, pane, source) finds its partial inside a batch, or in a one-partial message;
    a baseline partial of the same gate and pane is not it; a message without it gives None."""
    own = Partial(gate="eu/web", pane=0, source=SOURCE, requests=1, errors=0, bins=(7,), counts=(1,))
    baseline = msgspec.structs.replace(own, slice="baseline")
    (raw,) = panes_batch.encode([baseline, *thin(gates=3, panes=1), own])
    assert own == panes_batch.find(raw, own.ident)
    assert None is panes_batch.find(raw, ("eu/web", MINUTE, SOURCE))
    assert own == panes_batch.find(contract.encode(own), own.ident)
    assert None is panes_batch.find(contract.encode(baseline), own.ident)
    assert None is panes_batch.find(contract.encode(Watermark(source=SOURCE, watermark=1)), own.ident)


def test_read_back_finds_a_partial_in_a_batch_or_names_what_is_wrong() -> None:
    """Restoring a gate: ``inbox_snapshot.read_back`` takes its partial out of the batch record at the offset the
    snapshot gives; a batch without it, or bytes that are no panes message, give a ValueError naming the gate,
    pane, source, offset and partition."""
    partials = thin(gates=3, panes=1)
    (raw,) = panes_batch.encode(partials)
    where = ("app-panes", 2, 17)
    assert partials[1] == inbox_snapshot.read_back(partials[1].ident, raw, where)
    gate, pane, _source = partials[1].ident
    with pytest.raises(ValueError, match=rf"gate {gate}: its partial \(pane {pane}, source edge\) at offset 17 of "
                       r"app-panes partition 2 is another message"):  # fmt: skip
        inbox_snapshot.read_back((gate, pane, "edge"), raw, where)
    with pytest.raises(ValueError, match=r"at offset 17 of app-panes partition 2: panes batch message version 9"):
        inbox_snapshot.read_back(partials[1].ident, panes_batch.MAGIC + b"\x09\x00", where)


def body(**change: Any) -> bytes:
    """A valid batch's msgpack body (two partials of two gates, one pane) with some fields replaced."""
    fields: dict[str, Any] = {
        "source": SOURCE, "gates": ["eu/web", "us/api"], "slices": [0, 0], "gate": [0, 1], "pane": [MINUTE, 0],
        "seq": [0, 0], "requests": [2, 1], "errors": [0, 1], "late": [0, 0], "buckets": [2, 1],
        "bins": [10, 5, 20], "counts": [1, 1, 1],
    }  # fmt: skip
    fields.update(change)
    return msgspec.msgpack.encode(list(fields.values()))


def plain(raw: bytes) -> bytes:
    return panes_batch.MAGIC + b"\x01\x00" + raw


def test_the_test_body_is_valid() -> None:
    """The base of the bad inputs below decodes to its two partials (so each case below fails for its change)."""
    assert [(p.gate, p.pane, p.bins) for p in panes_batch.decode(plain(body()))] == [
        ("eu/web", MINUTE, (10, 15)),
        ("us/api", MINUTE, (20,)),
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"kind":"partial"}', r"not a panes batch message: it does not start with b'GKB'"),
        (panes_batch.MAGIC + b"\x01", "truncated before its version and flags"),
        (panes_batch.MAGIC + b"\x02\x00" + body(), "panes batch message version 2; this version reads version 1"),
        (panes_batch.MAGIC + b"\x01\x04" + body(), "unknown flags 0x04"),
        (panes_batch.MAGIC + b"\x01\x01" + b"not deflate", "its deflated body is corrupt"),
        (panes_batch.MAGIC + b"\x01\x01" + zlib.compress(body())[:-6], "its deflated body is truncated"),
        (plain(b"\xc1"), "panes batch message: "),
        (plain(body()[:-3]), "panes batch message: "),
        (plain(body(source="")), r"panes batch message: .*\$\[0\]"),
        (plain(body(gates=["eu-web", "us/api"])), r"panes batch message: .*\$\[1\]\[0\]"),
        (plain(body(requests=[2, -1])), r"panes batch message: .*\$\[6\]\[1\]"),
        (plain(body(slices=[0, 3])), r"panes batch message: .*\$\[2\]\[1\]"),
        (plain(body(seq=[0])), "2 rows but 1 values of seq"),
        (plain(body(slices=[0])), "2 gates but 1 slices"),
        (plain(body(counts=[1, 1])), "its rows have 3 latency buckets, it holds 3 buckets and 2 counts"),
        (plain(body(gate=[0, 2])), "row 1: gate index 2, the table has 2"),
        (plain(body(gate=[0, 0])), "row 1: a second partial of gate eu/web, pane 60000"),
        (plain(body(bins=[10, 0, 20])), r"row 0 \(gate eu/web, pane 60000\): latency buckets not ascending"),
        (plain(body(bins=[10, 5, 1200])), r"row 1 \(gate us/api, pane 60000\): a latency bucket outside 0..1153"),
        (plain(body(bins=[-1, 5, 20])), r"row 0 \(gate eu/web, pane 60000\): a latency bucket outside"),
        (plain(body(requests=[3, 1])), r"row 0: partial \('eu/web', 60000, 'telemetry:3'\): bin counts sum to 2"),
        (plain(body(errors=[0, 2])), r"row 1: partial \('us/api', 60000, 'telemetry:3'\): 2 errors in 1 requests"),
    ],
)
def test_bad_bytes_give_an_error_naming_what_and_where(raw: bytes, reason: str) -> None:
    """Each malformed batch raises a PartialError (what stage 2 dead-letters) whose message says what is wrong,
    naming the row and gate when it is one partial; never another exception."""
    with pytest.raises(PartialError, match=reason):
        panes_batch.decode(raw)
    if panes_batch.is_batch(raw):  # what stage 2 calls on every panes record
        with pytest.raises(PartialError, match=reason):
            panes_batch.read(raw)


def test_a_body_inflating_past_the_limit_is_refused() -> None:
    """A deflated body that would inflate past ``MAX_INFLATED`` is refused before it is all inflated."""
    bomb = panes_batch.MAGIC + b"\x01\x01" + zlib.compress(b"\x00" * (panes_batch.MAX_INFLATED + 10), 9)
    with pytest.raises(PartialError, match="inflates past"):
        panes_batch.decode(bomb)


def _column_batch(rng: np.random.Generator, n: int, slices: list[str]) -> PartialBatch:
    """``n`` random rows of one source over four gate indices (keys repeat across slices, as a fan's do)."""
    keys = ["eu/web", "us/web", "eu/web", "us/api"]
    sizes = rng.integers(0, 5, n)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    rows = [np.sort(rng.choice(200, int(k), replace=False)) for k in sizes]
    bins = np.concatenate(rows or [np.zeros(0, np.int64)]).astype(np.int64)

    def column(high: int) -> npt.NDArray[np.int64]:
        return rng.integers(0, high, n).astype(np.int64)

    pane = (np.sort(rng.integers(0, 50, n)) * 60_000).astype(np.int64)
    counts = rng.integers(1, 9, int(offsets[-1])).astype(np.int64)
    return PartialBatch("telemetry:3", keys, column(4), pane, column(3), column(50), column(5), column(2), offsets,
                        bins, counts, slices)  # fmt: skip


@pytest.mark.parametrize("slices", [[], ["", "", "baseline", "cross_region"]])
def test_groups_encoded_from_columns_are_the_bytes_of_their_partials(slices: list[str]) -> None:
    """``encode_groups`` (stage 1's path) gives, per group in order of first appearance, byte for byte what
    ``encode`` gives for that group's rows as ``Partial``s: with or without slices, keys repeated, empty bins
    included, and split the same way when a group is more than one message holds."""
    rng = np.random.default_rng(7)
    for n in (300, 1, panes_batch.MAX_ROWS + 10):
        batch = _column_batch(rng, n, slices)
        for group in (batch.gate % 3, np.zeros(n, np.int64), rng.integers(0, 8, n)):
            values = list(dict.fromkeys(group.tolist()))
            expected = [(v, panes_batch.encode(batch.rows(np.flatnonzero(group == v)))) for v in values]
            assert expected == panes_batch.encode_groups(batch, group.astype(np.int64))
    assert [2] == [len(m) for _v, m in panes_batch.encode_groups(batch, np.zeros(len(batch), np.int64))]
    assert [] == panes_batch.encode_groups(_column_batch(rng, 0, slices), np.zeros(0, np.int64))
