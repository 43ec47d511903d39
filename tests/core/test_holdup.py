"""Which sources a gate waits for, and which gates closed nothing between two reports (core/holdup.py)."""

from __future__ import annotations

from gatekeeper.core.holdup import Stalls, describe, holding
from gatekeeper.core.merge import GateInbox, SourceMark

MINUTE = 60_000
T0 = 1_760_832_000_000  # 2025-10-19T00:00:00Z


def test_the_slowest_active_telemetry_sources_hold() -> None:
    """Telemetry partitions at 10, 12 and 10 minutes, one idle at 3: the two at 10 hold the gate, the idle one
    and the one ahead do not."""
    sources = {
        "t:0": SourceMark(10 * MINUTE),
        "t:1": SourceMark(12 * MINUTE),
        "t:2": SourceMark(10 * MINUTE),
        "t:3": SourceMark(3 * MINUTE, idle=True),
    }
    assert [("t:0", 10 * MINUTE), ("t:2", 10 * MINUTE)] == holding(sources)


def test_a_telemetry_source_not_reported_yet_holds_alone() -> None:
    """A telemetry partition that has said nothing keeps every pane open: it is the one named, not the partition
    at 10 minutes, nor a side partition whose watermark is known."""
    sources = {"t:0": SourceMark(10 * MINUTE), "t:1": SourceMark(None), "inc:0": SourceMark(2 * MINUTE, holds=True)}
    assert [("t:1", None)] == holding(sources)


def test_a_side_partition_holds_when_behind_the_telemetry_or_silent() -> None:
    """Telemetry at 10 minutes: a side partition not idle at 7 holds, one at 20 does not, one idle at 2 does not,
    one not heard from yet (None) does."""
    sources = {
        "t:0": SourceMark(10 * MINUTE),
        "inc:0": SourceMark(7 * MINUTE, holds=True),
        "inc:1": SourceMark(20 * MINUTE, holds=True),
        "inc:2": SourceMark(2 * MINUTE, idle=True, holds=True),
        "app:0": SourceMark(None, holds=True),
    }
    assert [("app:0", None), ("inc:0", 7 * MINUTE), ("t:0", 10 * MINUTE)] == holding(sources)


def test_nothing_holds_an_ended_input() -> None:
    """Every telemetry partition idle (the input ended, the clock is their newest, 12) and the side partitions
    idle or ahead: nothing is awaited. A side partition behind the clock and not idle is."""
    ended = {"t:0": SourceMark(10 * MINUTE, idle=True), "t:1": SourceMark(12 * MINUTE, idle=True)}
    assert [] == holding({**ended, "inc:0": SourceMark(30 * MINUTE, holds=True)})
    assert [("inc:0", 11 * MINUTE)] == holding({**ended, "inc:0": SourceMark(11 * MINUTE, holds=True)})


def test_describe_names_the_closed_time_and_the_sources_in_rfc_3339() -> None:
    """The log's words for a waiting gate: panes closed until when, each source awaited with its watermark (the
    side partition not heard from, and the one telemetry partition, the slowest by definition)."""
    inbox = GateInbox(sources={"t:0": SourceMark(T0 + 10 * MINUTE), "inc:3": SourceMark(None, holds=True)})
    inbox.closed_until = T0 + 9 * MINUTE
    expected = {
        "closed_until": "2025-10-19T00:09:00Z",
        "waiting_for": ["inc:3 at nothing yet", "t:0 at 2025-10-19T00:10:00Z"],
    }
    assert expected == describe(inbox)


def test_describe_groups_a_topics_partitions_at_one_watermark() -> None:
    """A gate waiting at start for the incidents partitions 0-3, 5 and 7 (nothing heard yet) and 4 (at 00:23), and
    for two telemetry partitions at one watermark: one entry per topic and watermark, partitions as ranges; a
    source that is not a topic's partition (replay's ``input``) keeps its name."""
    sources = {f"inc:{p}": SourceMark(None, holds=True) for p in (0, 1, 2, 3, 5, 7)}
    sources |= {
        "inc:4": SourceMark(T0 + 23 * MINUTE, holds=True),
        "inc:6": SourceMark(T0 + 30 * MINUTE, idle=True, holds=True),
        "t:1": SourceMark(T0 + 25 * MINUTE),
        "t:2": SourceMark(T0 + 25 * MINUTE),
        "input": SourceMark(T0 + 25 * MINUTE),
    }
    expected = [
        "inc:0-3,5,7 at nothing yet",
        "inc:4 at 2025-10-19T00:23:00Z",
        "input at 2025-10-19T00:25:00Z",
        "t:1-2 at 2025-10-19T00:25:00Z",
    ]
    assert expected == describe(GateInbox(sources=sources))["waiting_for"]


def test_stalls_names_the_gates_that_closed_nothing_since_the_previous_check() -> None:
    """First check: nothing is known to be stalled. Second: the gate whose ``closed_until`` did not move and that
    waits for a source is named; one that moved is not; one unchanged but waiting for nothing (its input ended)
    is not. A gate first seen at a check is not named before the next."""
    stuck = GateInbox(sources={"t:0": SourceMark(T0 + 10 * MINUTE), "inc:3": SourceMark(None, holds=True)})
    moving = GateInbox(sources={"t:0": SourceMark(T0 + 10 * MINUTE)})
    ended = GateInbox(sources={"t:0": SourceMark(T0 + 10 * MINUTE, idle=True)})
    for inbox in (stuck, moving, ended):
        inbox.closed_until = T0 + 5 * MINUTE
    stalls = Stalls()
    assert {} == stalls.check({"us/canary": stuck, "eu/canary": moving, "us/ramp": ended})
    moving.closed_until = T0 + 10 * MINUTE
    late = GateInbox(sources={"t:0": SourceMark(None)})
    assert ["us/canary"] == list(stalls.check({"us/canary": stuck, "eu/canary": moving, "us/ramp": ended,
                                               "eu/ramp": late}))  # fmt: skip
    assert ["eu/ramp", "us/canary"] == list(stalls.check({"us/canary": stuck, "eu/ramp": late}))
