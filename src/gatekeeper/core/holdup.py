"""Why a gate decides nothing: the sources that keep its merge watermark where it is.

Stage 2 closes a gate's panes on its merge watermark (``merge.merge_watermark``): the slowest telemetry source
that is not idle, capped by every side-input partition (``SourceMark.holds``) that is not idle. A gate whose
panes stop closing is waiting for one of those: a telemetry partition that has not reported yet or lags the
others, or an incidents / approvals / business-metrics partition not read to its end (or not said idle since).
``holding`` names them, ``Stalls`` picks the gates whose panes closed nothing between two progress reports, so
the worker's progress log says which gate waits for which partition (the first question when a gate goes quiet).

Pure: the inboxes in, names out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gatekeeper.core.merge import GateInbox, SourceMark, merge_watermark
from gatekeeper.core.timefmt import format_ms


def holding(sources: Mapping[str, SourceMark]) -> list[tuple[str, int | None]]:
    """The sources (with their watermarks; None: none heard yet) that keep the merge watermark of ``sources``
    from moving: the telemetry sources not idle at its value (or not reported), and the holding side partitions
    not idle whose watermark is below the telemetry's (or not reported). Empty when every source is idle and
    no side partition holds: nothing is awaited (the input has ended)."""
    active = {s: m.watermark for s, m in sources.items() if not m.idle and not m.holds}
    floor = merge_watermark([m for m in sources.values() if not m.holds])  # the telemetry's clock
    slowest: list[tuple[str, int | None]]
    if any(w is None for w in active.values()):
        slowest = [(s, w) for s, w in active.items() if w is None]
    else:  # none when every telemetry source is idle: the newest of them is the clock, none is awaited
        slowest = [(s, w) for s, w in active.items() if w == floor]
    held = [
        (s, m.watermark)
        for s, m in sources.items()
        if m.holds and not m.idle and (m.watermark is None or (floor is not None and m.watermark < floor))
    ]
    return sorted([*slowest, *held], key=lambda sw: sw[0])


def describe(inbox: GateInbox) -> dict[str, object]:
    """What a log line says of a gate that waits: panes closed until when, and for which sources, the partitions
    of a topic at the same watermark in one entry (``incidents:0-3,5 at nothing yet``: a side topic has as many
    partitions as the telemetry, and a gate waits for all of them at start)."""
    until = inbox.closed_until
    grouped: dict[tuple[str, int | None], list[int]] = {}
    alone: list[tuple[str, int | None]] = []
    for source, watermark in holding(inbox.sources):
        topic, _, partition = source.rpartition(":")
        if topic and partition.isdigit():
            grouped.setdefault((topic, watermark), []).append(int(partition))
        else:  # replay's "input", an edge publisher's id
            alone.append((source, watermark))
    entries = [(f"{topic}:{_ranges(parts)}", w) for (topic, w), parts in grouped.items()] + alone
    return {
        "closed_until": None if until is None else format_ms(until),
        "waiting_for": [f"{s} at {'nothing yet' if w is None else format_ms(w)}" for s, w in sorted(entries)],
    }


def _ranges(numbers: list[int]) -> str:
    """``0-3,5,7-8`` for [0, 1, 2, 3, 5, 7, 8]."""
    out: list[str] = []
    ordered = sorted(numbers)
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(out)


@dataclass(slots=True)
class Stalls:
    """The gates whose panes closed nothing since the previous ``check`` (each report's)."""

    _last: dict[str, int | None] = field(default_factory=dict)

    def check(self, inboxes: Mapping[str, GateInbox]) -> dict[str, dict[str, object]]:
        """Of ``inboxes`` (the gates this process holds), those seen at the previous check with the same
        ``closed_until`` and waiting for some source: ``describe`` of each, by gate."""
        now = {key: inbox.closed_until for key, inbox in inboxes.items()}
        unchanged = {
            key: describe(inboxes[key]) for key in sorted(now) if key in self._last and self._last[key] == now[key]
        }
        self._last = now
        return {key: said for key, said in unchanged.items() if said["waiting_for"]}
