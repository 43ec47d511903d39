"""The burn-rate alerts' model for one gate and objective (core/burn_rate.py steps it): the objectives a tier's
criteria imply (``Slo``), the plan's alert rules compiled into the windows summed for them (``BurnSpec``: pane-exact
windows up to 6 hours, longer ones in whole hours) and the alert state snapshotted with the gate (``BurnState``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core.plan import Alerting, Tier

HOUR_MS = 3_600_000
FINE_SPAN_MS = 6 * HOUR_MS  # windows up to this long are summed pane by pane
_RANK = {"ticket": 1, "page": 2}
SLACK = 1 + 1e-9  # the rules' cheap screen (before the exact burn rate) must never rule out a window on rounding


@dataclass(frozen=True, slots=True)
class Slo:
    """One objective of a tier, as a share of requests allowed to be bad."""

    name: str  # "error_rate" or "latency" (a tier with several latency criteria: each criterion's name)
    budget: float  # allowed bad share per request
    text: str  # "error rate <= 0.2%", "p99_latency_ms <= 100 ms"
    slower_than_ms: float | None = None  # latency: a request is bad when certainly slower than this; else errors


def slos_of(tier: Tier) -> tuple[Slo, ...]:
    """The tier's objectives with an error budget: its error-rate ceiling, and the share of requests its latency
    criterion allows above the ceiling (the P99 ceiling: 1 % may be slower)."""
    out: list[Slo] = []
    latencies = sum(1 for c in tier.criteria if c.kind == "latency")
    for c in tier.criteria:
        if tier.dry_run or c.dry_run:
            continue  # a criterion on trial pages nobody
        if c.kind == "error_rate":
            out.append(Slo("error_rate", c.fail_above, f"error rate <= {c.fail_above:.4g}"))
        elif c.kind == "latency":
            name = "latency" if latencies == 1 else c.name
            text = f"{c.name} <= {c.fail_above_ms:g} ms"
            out.append(Slo(name, 1 - c.quantile, text, c.fail_above_ms))
    return tuple(out)


class OpenBreach(msgspec.Struct):
    opened_at: int
    severity: int  # 1 ticket, 2 page
    revision: int
    quiet_since: int  # end of the last pane at which a rule of the current severity fired


class BurnState(msgspec.Struct):
    """One gate's burn-rate state for one objective: plain data, snapshotted with the gate (msgpack)."""

    start: int | None = None  # the first pane ever seen (pane index): windows are not full before it
    end: int | None = None  # one past the last pane processed (pane index)
    ring_requests: list[int] = []  # the last ``fine_panes`` panes, pane i at i % fine_panes
    ring_bad: list[int] = []
    sum_requests: list[int] = []  # over each pane-exact window (``BurnSpec.fine_lengths``), ending at ``end``
    sum_bad: list[int] = []
    hours: dict[int, list[int]] = {}  # hour index -> [requests, bad]; only with windows longer than 6 h
    hour: int | None = None  # the hour ``before`` was summed for
    before: list[list[int]] = []  # [requests, bad] in the whole hours before it, per ``BurnSpec.hour_wholes``
    total_requests: int = 0
    total_bad: int = 0
    open: OpenBreach | None = None


@dataclass(frozen=True, slots=True)
class BurnSpec:
    """Everything the alert math needs for one gate and objective."""

    region: str
    tier: str
    plan_version: str
    pane: int
    slo: Slo
    alerts: Alerting
    fine_lengths: tuple[int, ...] = field(init=False)  # distinct windows up to FINE_SPAN_MS, in panes
    hour_wholes: tuple[int, ...] = field(init=False)  # distinct longer windows: whole hours before the hour so far
    slots: tuple[tuple[int, float, float, int, int], ...] = field(init=False)  # rank, rate, rate x budget, windows
    shorts_fine: bool = field(init=False)  # every rule's short window is summed pane by pane
    # the rules' short and long windows and screens (rate x budget) as arrays: a numpy run screens all at once
    shorts: npt.NDArray[np.intp] = field(init=False, compare=False, repr=False)
    longs: npt.NDArray[np.intp] = field(init=False, compare=False, repr=False)
    screens: npt.NDArray[np.float64] = field(init=False, compare=False, repr=False)  # [rule, 1]

    def __post_init__(self) -> None:
        spans = sorted({span for r in self.alerts.rules for span in (r.long, r.short)})
        fine = tuple(span // self.pane for span in spans if span <= FINE_SPAN_MS)
        wholes = tuple(sorted({-(-span // HOUR_MS) - 1 for span in spans if span > FINE_SPAN_MS}))
        at = {span: (fine.index(span // self.pane) if span <= FINE_SPAN_MS else len(fine)
                     + wholes.index(-(-span // HOUR_MS) - 1)) for span in spans}  # fmt: skip
        slots = tuple(
            (_RANK[r.severity], r.burn_rate, r.burn_rate * self.slo.budget, at[r.long], at[r.short])
            for r in self.alerts.rules
        )
        object.__setattr__(self, "fine_lengths", fine)
        object.__setattr__(self, "hour_wholes", wholes)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "shorts_fine", all(r.short <= FINE_SPAN_MS for r in self.alerts.rules))
        object.__setattr__(self, "shorts", np.array([slot[4] for slot in slots], np.intp))
        object.__setattr__(self, "longs", np.array([slot[3] for slot in slots], np.intp))
        object.__setattr__(self, "screens", np.array([[slot[2]] for slot in slots], np.float64))

    @property
    def fine_panes(self) -> int:
        """Panes kept exactly: the longest window summed pane by pane."""
        return max(self.fine_lengths, default=0)

    @property
    def hour_span(self) -> int:
        """Whole hours summed by the windows longer than FINE_SPAN_MS (0 when there are none)."""
        return max(self.hour_wholes) + 1 if self.hour_wholes else 0
