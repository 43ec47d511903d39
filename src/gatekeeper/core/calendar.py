"""The rollout against its planned calendar (pure): per tier planned vs actual, the slip, the contingency buffer
used and the projected end date.

Actual dates come from decisions, in event time: a tier started when its gates' soak started (a pass's
``window_start``; else its first decision) and ended at its latest region's ``pass``. "Now" is the board's
clock (the newest decision's event time), so a replayed or simulated rollout is measured on its own timeline.

A tier's slip is how late it finishes, at best, against its planned GO day: a passed tier by its actual end,
a held one by its hold's end plus a fresh soak, a soaking one by now (or its start plus the soak). The
rollout's slip is that of its most delayed open tier (else of its latest passed tier); the projected end is the
calendar's last planned day plus the slip, and the slip is what the contingency buffer has to absorb.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from gatekeeper.core.board import Board, GateView
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import parse_instant

DAY_MS = 86_400_000
TierStatus = Literal["done", "held", "in progress", "upcoming"]


@dataclass(frozen=True, slots=True)
class TierProgress:
    tier: str
    planned_start: date
    planned_end: date
    status: TierStatus
    actual_start: date | None
    actual_end: date | None
    slip_days: float | None  # against the planned GO day; None: not started
    holds: int


@dataclass(frozen=True, slots=True)
class Progress:
    tiers: tuple[TierProgress, ...]
    as_of: date | None
    planned_end: date
    projected_end: date
    slip_days: float
    contingency_weeks: tuple[float, float]

    @property
    def buffer_used(self) -> tuple[float, float]:
        """Share of the contingency buffer the slip uses, against its high and its low end (0 when on time)."""
        low, high = self.contingency_weeks
        weeks = max(0.0, self.slip_days) / 7
        return (weeks / high if high else 0.0, weeks / low if low else 0.0)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def _end_ms(day: date) -> int:
    """The end of a planned day (its GO is due by then)."""
    return round(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) + DAY_MS


def _start_ms(views: list[GateView]) -> int | None:
    """The earliest scope start of the tier's decisions: a pass's or checkpoint's scope is the whole soak."""
    starts = [parse_instant(d.window_start) for v in views for d in v.recent]
    return min(starts) if starts else None


def _finish_ms(views: list[GateView], clock_ms: int, soak_ms: int, start_ms: int | None) -> tuple[TierStatus, int]:
    """Status of a started tier and its (actual or earliest possible) finish."""
    if all(v.state == "passed" for v in views):
        return "done", max(parse_instant(v.passed_at) for v in views if v.passed_at is not None)
    held = [parse_instant(v.hold_until) for v in views if v.state == "held" and v.hold_until is not None]
    if held:
        return "held", max(held) + soak_ms
    return "in progress", max(clock_ms, (start_ms or clock_ms) + soak_ms)


def progress(plan: Plan, board: Board) -> Progress | None:
    """The rollout's progress against ``plan.calendar`` (None without a calendar)."""
    calendar = plan.calendar
    if calendar is None:
        return None
    soaks = {t.name: t.soak for p in plan.phases for t in p.tiers}
    clock_ms = parse_instant(board.clock) if board.clock else None
    rows: list[TierProgress] = []
    open_slips: list[int] = []  # tiers started and not done: the most delayed one sets the end
    done_slip = 0
    for name, dates in calendar.tiers.items():
        views = [v for v in board.views() if v.tier == name and v.latest is not None]
        holds = sum(v.holds for v in views)
        if not views or clock_ms is None:
            rows.append(TierProgress(name, dates.start, dates.end, "upcoming", None, None, None, holds))
            continue
        start = _start_ms(views)
        status, finish = _finish_ms(views, clock_ms, soaks[name], start)
        slip = finish - _end_ms(dates.end)
        if status == "done":
            done_slip = slip  # the latest passed tier's: a tier that catches up gives the time back
        else:
            open_slips.append(slip)
        actual_end = _day(finish - 1) if status == "done" else None
        started = _day(start) if start is not None else None
        rows.append(TierProgress(name, dates.start, dates.end, status, started, actual_end, slip / DAY_MS, holds))
    last = max(d.end for d in calendar.tiers.values())
    slip_days = (max(open_slips) if open_slips else done_slip) / DAY_MS
    projected = last + timedelta(days=max(0.0, slip_days))
    return Progress(
        tiers=tuple(rows),
        as_of=_day(clock_ms) if clock_ms is not None else None,
        planned_end=last,
        projected_end=projected,
        slip_days=slip_days,
        contingency_weeks=calendar.contingency_weeks,
    )
