"""Snapshots of both stages' state (core/source_changelog.py, core/inbox_snapshot.py): restoring a snapshot
mid-stream and going on gives exactly what going on without it gives."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import msgspec
import pytest

from gatekeeper.core import changelog_record, inbox_dictionary, source_changelog
from gatekeeper.core import partials as contract
from gatekeeper.core.aggregate import Aggregator
from gatekeeper.core.decision import Decision
from gatekeeper.core.inbox_snapshot import dump_inbox, load_inbox, read_back
from gatekeeper.core.merge import Merger
from gatekeeper.core.partials import Message, Partial, Watermark
from gatekeeper.core.source_changelog import (
    ReadWriter,
    SourceWriter,
    dump_source,
    load_source,
    load_source_chain,
    restore_source,
)

from .helpers import chunks, encoded, make_plan, rich_events, rich_plan, take

KEYS = ["us-east/canary", "eu-west/canary"]


def run(restore_every: int) -> tuple[list[Message], list[Decision]]:
    """Both stages over the rich run in batches of 300, each state replaced by its snapshot's restore every
    ``restore_every`` batches (0: never)."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    merger = Merger(plan, ["t:0"])
    source, inboxes = agg.start("t:0"), merger.start_all()
    messages: list[Message] = []
    decisions: list[Decision] = []
    for i, part in enumerate(chunks(rich_events(), 300)):
        source, partials, mark = agg.fold(source, part)
        messages += [*partials, mark]
        decisions += merger.apply(inboxes, [*partials, mark])
        if restore_every and i % restore_every == 0:
            source, offset = load_source(dump_source(source, i))
            inboxes = {key: load_inbox(dump_inbox(inbox))[0] for key, inbox in inboxes.items()}
            assert i == offset
    return messages, decisions


def test_restored_state_goes_on_exactly() -> None:
    """Restoring both stages from their snapshots after every batch (or every third) changes neither the
    partials nor the decisions."""
    expected = run(0)
    for every in (1, 3):
        messages, decisions = run(every)
        assert (expected[0], encoded(expected[1])) == (messages, encoded(decisions))


@pytest.mark.parametrize("raw", [b"", b"\x93\x01\x02\x03", dump_source(Aggregator(KEYS, 1, 1).start("s"), 0)])
def test_bytes_that_are_no_inbox_are_a_clear_error(raw: bytes) -> None:
    """Garbage, a wrong shape or a source state given as an inbox raise ValueError naming what was expected."""
    with pytest.raises(ValueError, match="not a stage-2 gate inbox"):
        load_inbox(raw)


def test_an_inbox_deflated_without_the_dictionary_still_restores() -> None:
    """Inboxes are deflated with the preset dictionary (core/inbox_dictionary.py), which makes them shorter than
    deflated alone; an inbox deflated without it (as workers before it wrote them) restores to the same state; one
    naming a dictionary this version does not know is a clear ValueError; the dictionary's bytes never change
    (records name it by its adler32)."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    merger = Merger(plan, ["t:0"])
    source, inboxes = agg.start("t:0"), merger.start_all()
    with_dict = without = 0
    for part in list(chunks(rich_events(), 300))[:4]:
        source, partials, mark = agg.fold(source, part)
        merger.apply(inboxes, [*partials, mark])
        for inbox in inboxes.values():
            raw = dump_inbox(inbox)
            legacy = zlib.compress(changelog_record.inflate(raw, "inbox"), 6)
            assert raw != legacy
            assert raw == dump_inbox(load_inbox(legacy)[0])
            with_dict, without = with_dict + len(raw), without + len(legacy)
    assert with_dict < 0.9 * without, (with_dict, without)  # 83 % here; ~30 % on the bench's thin input
    unknown = bytearray(dump_inbox(next(iter(inboxes.values()))))
    unknown[2:6] = b"\x00\x00\x00\x01"
    with pytest.raises(ValueError, match="not a stage-2 gate inbox: deflated with an unknown dictionary 00000001"):
        load_inbox(bytes(unknown))
    assert 0x2924190B == inbox_dictionary.INBOX_V1_ID == zlib.adler32(inbox_dictionary.INBOX_V1)


def test_a_source_written_as_changes_restores_exactly_and_writes_less() -> None:
    """Stage 1's state written by a SourceWriter after every batch of 6 events (~10 s of event time, a sixth of
    a pane, as checkpoints are; a whole snapshot, then only what changed,
    a whole one again once the changes add up to one): restored from the latest whole one and the changes after
    it, it equals the state at every step; changes left from an older chain are not applied; and the records
    written are well under (60 %) writing the whole state every time."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    source = agg.start("t:0")
    writer = SourceWriter()
    table: dict[str, bytes] = {}
    written = whole = 0
    for i, part in enumerate(chunks(rich_events(), 6)):
        source, _partials, _mark = agg.fold(source, part)
        seq, raw = writer.write(source, i)
        table["full" if seq == 0 else f"change/{seq}"] = raw
        written += len(raw)
        whole += len(dump_source(source, i))
        restored, offset, epoch = load_source_chain(table["full"], lambda n: table.get(f"change/{n}"))
        assert (dump_source(source, i), i, writer.epoch) == (dump_source(restored, offset), offset, epoch)
    assert written < whole * 0.6  # 0.51 with zlib level 6 (level 1 deflated the whole ones less: 0.45)
    assert 1 < writer.epoch  # whole snapshots were written again, leaving older changes behind in the table


def test_a_source_written_in_format_1_still_restores() -> None:
    """A stage-1 record of format 1 (absolute latency buckets, not deflated), as workers before format 2 wrote
    it, restores to the same state as the format-2 record of that state."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    source = agg.start("t:0")
    for part in list(chunks(rich_events(), 50))[:3]:
        source, _partials, _mark = agg.fold(source, part)
    panes = [
        [gate, start, p.requests, p.errors, p.late, p.buckets.tolist(), p.counts.tolist(), p.seq, p.dirty]
        for (gate, start), p in sorted(source.panes.items())
    ]
    legacy = msgspec.msgpack.encode([1, source.source, 7, source.newest, source.events, source.late, panes, 1])
    assert any(len(p[5]) > 1 for p in panes)  # buckets whose differences differ from their values
    restored, offset = load_source(legacy)
    assert (dump_source(source, 7), 7) == (dump_source(restored, offset), offset)


def test_a_damaged_deflated_source_is_a_clear_error() -> None:
    """A deflated stage-1 record cut short raises ValueError naming what was expected, not a zlib traceback."""
    raw = dump_source(Aggregator(KEYS, 1, 1).start("s"), 0)
    with pytest.raises(ValueError, match="not a stage-1 source state"):
        load_source(raw[:-4])


def test_a_partial_read_back_is_checked_against_the_reference() -> None:
    """``read_back`` returns the referenced partial from its panes record; a record that is missing, not a
    partial message, a watermark or another partial raises ValueError naming the gate, the partial, the offset and
    the partition, and why."""
    ident = ("us-east/canary", 60_000, "t:3")
    mine = Partial(gate="us-east/canary", pane=60_000, source="t:3", requests=2, errors=1, bins=(5,), counts=(2,))
    other = Partial(gate="us-east/canary", pane=120_000, source="t:3", requests=1, errors=0, bins=(5,), counts=(1,))
    where = ("app-panes", 4, 17)
    assert mine == read_back(ident, contract.encode(mine), where)
    at = r"gate us-east/canary: its partial \(pane 60000, source t:3\) at offset 17 of app-panes partition 4"
    for raw, why in [
        (None, r" could not be read back \(past the topic's retention\?\)"),
        (b"not json", ": "),
        (contract.encode(Watermark(source="t:3", watermark=0)), " is another message"),
        (contract.encode(other), " is another message"),
    ]:
        with pytest.raises(ValueError, match=at + why):
            read_back(ident, raw, where)


def test_a_pane_open_across_writes_is_written_as_what_it_gained() -> None:
    """Thin input, a write after every 2 events (a live worker's checkpoints): the panes that grew are written
    as what they gained (format 4's ``grown``: their new buckets and count increments), the chain restores the
    state exactly at every step, and it writes under 80 % of the bytes of the same chain with every changed pane
    written whole (format 2's way; 69 % here, two gates with ~20 buckets a pane; 36 % for the stage-1 changelog of
    27 gates over 8 partitions at ~580 events/s in bench/internal_bytes.py)."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    events = chunks(take(rich_events(), slice(0, 400)), 2)
    sizes: dict[bool, int] = {}
    for grown in (True, False):
        source, writer = agg.start("t:0"), SourceWriter(chain=10_000, rewrite_after=10_000, grown=grown)
        table: dict[str, bytes] = {}
        added = 0
        for i, part in enumerate(events):
            source, _partials, _mark = agg.fold(source, part)
            seq, raw = writer.write(source, i)
            table["full" if seq == 0 else f"change/{seq}"] = raw
            if seq:
                grew = source_changelog._CHANGES.decode(zlib.decompress(raw)).grown
                added += len(grew.gates) if grew else 0
            restored, offset, _epoch = load_source_chain(table["full"], table_changes(table))
            assert (dump_source(source, i), i) == (dump_source(restored, offset), offset)
        sizes[grown] = sum(len(v) for k, v in table.items() if k != "full")
        assert (added > 0) == grown
    assert sizes[True] < 0.8 * sizes[False], sizes


def test_a_chain_of_format_3_changes_still_restores() -> None:
    """Changes written as format 3 (what panes gained as one array per pane, as workers before format 4 wrote
    them) restore the same state as the format-4 chain they were converted from, at every step; a format-4 change
    whose columns differ in length is a clear ValueError."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    source, writer = agg.start("t:0"), SourceWriter(chain=10_000, rewrite_after=10_000)
    table: dict[str, bytes] = {}
    legacy: dict[str, bytes] = {}
    converted = 0
    for i, part in enumerate(chunks(take(rich_events(), slice(0, 200)), 2)):
        source, _partials, _mark = agg.fold(source, part)
        seq, raw = writer.write(source, i)
        key = "full" if seq == 0 else f"change/{seq}"
        table[key] = legacy[key] = raw
        if seq:
            change = source_changelog._CHANGES.decode(zlib.decompress(raw))
            added = change.grown.panes("change") if change.grown else []
            converted += len(added)
            old = [3, change.base, change.seq, change.next_offset, change.newest, change.events, change.late]
            legacy[key] = zlib.compress(msgspec.msgpack.encode([*old, change.panes, change.gone, added]))
        restored, offset, _epoch = load_source_chain(legacy["full"], table_changes(legacy))
        assert (dump_source(source, i), i) == (dump_source(restored, offset), offset)
    assert converted > 0  # the legacy chain did add to panes
    last = source_changelog._CHANGES.decode(zlib.decompress(table[f"change/{writer.seq}"]))
    assert last.grown is not None
    last.grown.counts.append(1)
    table[f"change/{writer.seq}"] = msgspec.msgpack.encode(last)
    with pytest.raises(
        ValueError, match=r"not a stage-1 source change \d+: its columns of grown panes differ in length"
    ):
        load_source_chain(table["full"], table_changes(table))


def table_changes(table: dict[str, bytes]) -> Callable[[int], bytes | None]:
    return lambda n: table.get(f"change/{n}")


def test_a_source_written_as_reads_restores_exactly_by_folding_again() -> None:
    """Stage 1's state written by a ReadWriter after every batch of 6 events (a whole snapshot every 60 records,
    between them only how far the source was read): restored at every step, the records read since the snapshot
    folded again (in other batches) give exactly the state as it was; and the records written are a small share of
    writing the whole state every time (under 0.15)."""
    plan = make_plan(rich_plan())
    agg = Aggregator(KEYS, plan.evaluation.pane, plan.evaluation.lateness)
    events = rich_events()
    source, writer = agg.start("t:0"), ReadWriter(least=60, most=60)
    table: dict[str, bytes] = {}
    written = whole = 0
    for i in range(0, len(events), 6):
        source, _partials, _mark = agg.fold(source, take(events, slice(i, i + 6)))
        end = min(i + 6, len(events))
        seq, raw = writer.write(source, end)
        table["full" if seq == 0 else f"change/{seq}"] = raw
        written, whole = written + len(raw), whole + len(dump_source(source, end))
        restored, offset, _epoch, read = restore_source(table["full"], table_changes(table))
        assert (end, True) == (read, end - 60 < offset <= end)
        state = restored
        for at in range(offset, read, 7):
            state, _partials, _mark = agg.fold(state, take(events, slice(at, min(at + 7, read))))
        assert dump_source(source, end) == dump_source(state, read)
    assert written < whole * 0.15  # 0.13: a whole one every tenth write, the reads between them a few bytes


def test_a_whole_source_keeps_how_far_it_was_read() -> None:
    """A whole snapshot written while a restore is still folding records again (``whole``: e.g. after a seal)
    keeps how far the source was read before, and so do the reads written after it."""
    agg = Aggregator(KEYS, 60_000, 60_000)
    source = agg.start("t:0")
    writer = ReadWriter()
    seq, full = writer.write(source, 100, read=250, whole=True)
    assert (0, 250) == (seq, restore_source(full, lambda _n: None).read)
    seq, read = writer.write(source, 120, read=250)
    assert (1, 100, 250) == (seq, *restore_source(full, {1: read}.get)[1::2])


@pytest.mark.parametrize("damaged", [b"\x94\x05\x01", b"\x78\x9c\x00", b"\x94\x05\x01\x01\xa1x"])
def test_a_damaged_read_record_is_a_clear_error(damaged: bytes) -> None:
    """A format-5 record cut short, not inflating, or of the wrong shape raises ValueError naming the change
    (its seq), not a decoder's traceback."""
    writer = ReadWriter()
    _seq, full = writer.write(Aggregator(KEYS, 1, 1).start("s"), 0)
    with pytest.raises(ValueError, match="stage-1 source change 1"):
        restore_source(full, {1: damaged}.get)
