"""Multi-window, multi-burn-rate breach alerts (the SRE workbook's, as Sloth and Pyrra generate for Prometheus),
computed in event time from a gate's closed panes. Pure: state in, state and breach events out.

Per (region, tier) and objective (SLO) of the tier: the error budget is the share of requests the objective allows
to be bad (error rate: the ceiling; latency: 1 - q of the requests may be slower than the P_q ceiling). The burn
rate over a window is the bad share in it divided by the budget. A rule fires when both its long and its short
window burn at least its rate, its long window holds at least ``min_requests`` requests, and the bad requests in it
would be unlikely (at most ``false_alarm``, one-sided binomial) if the true burn were just the rule's rate: thin
traffic's few chance errors never page.

A breach **opens** once when any rule fires (severity ``page`` if a page rule fires, else ``ticket``), **escalates**
to ``page`` as soon as a page rule fires, and drops to ``ticket`` or **resolves** only once the rules of its
severity have been silent for ``resolve_after`` (hysteresis: a flapping rate keeps one breach open instead of
opening a storm of them). Windows up to 6 hours are summed pane by pane; longer ones (the 3-day ticket window) in
whole hours: the hour so far plus the whole hours before it, so they cover between their length minus one hour and
their length. That keeps a gate's state small (6 h of panes and 3 days of hours) at no cost to the alert's meaning.

Stepped pane by pane in plain Python on running sums over a ring of the last panes: a gate closes one or a few
panes at a time (the worker: one per watermark), where numpy's per-call cost (~0.5 ms) was 100 times the work. A
stretch without data where no breach is open and every pane-exact window (each rule's short window is one) is
empty cannot fire, so it is skipped in one step: a stopped tier is not stepped through the 3 days of its ticket
window. Long runs of panes while no breach is open (replay closes days at a time) go through numpy instead
(``_quiet_run``): every window's sums for every pane at once, up to the first pane at which some rule fires (the
few panes passing the cheap screen below tested exactly, in numpy: ``_firing``); that pane and the ones after it
are stepped as before. A run with no bad request in its panes nor in the ring before them (so in no short window)
cannot pass the screen: only its request sums are moved, without the windows. The stepping
cost ~20 us a pane and objective, most of a long replay's time (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core.breach import Breach, Change, FiredWindow
from gatekeeper.core.lazy_module import lazy
from gatekeeper.core.plan import Alerting, Tier
from gatekeeper.core.timefmt import format_duration, format_ms

special = lazy("scipy.special")  # loaded at its first use, not at start-up (core/lazy_module.py)

HOUR_MS = 3_600_000
FINE_SPAN_MS = 6 * HOUR_MS  # windows up to this long are summed pane by pane
_RANK = {"ticket": 1, "page": 2}
_SEVERITY_OF = {1: "ticket", 2: "page"}
Counts = Sequence[int] | npt.NDArray[np.int64]
_SLACK = 1 + 1e-9  # the screen before the exact burn rate must never rule out a window on float rounding
BULK_PANES = 32  # runs of at least this many panes without an open breach go through numpy (``_quiet_run``)
_BULK_CHUNK = 4096  # panes per numpy pass (bounds its memory)


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


def advance(
    spec: BurnSpec,
    state: BurnState,
    starts: Counts,
    requests: Counts,
    bad: Counts,
    until: int | None = None,
) -> list[Breach]:
    """Closed panes (start ms, requests, bad requests), ascending and after every pane seen before, in; the
    breach events they cause out. Panes without data need not be sent: time between them counts as empty, and
    with ``until`` (ms) the empty time up to it is stepped through too (a breach resolves while traffic is off).
    Numpy arrays or lists."""
    columns = (np.asarray(starts, np.int64) // spec.pane, np.asarray(requests, np.int64), np.asarray(bad, np.int64))
    span = _span(spec, state, columns[0], until)
    if span is None:
        return []
    p, stop = span
    watched_from = state.start or 0
    ring_req, ring_bad = state.ring_requests, state.ring_bad
    fine, fine_lengths, wholes, slots = spec.fine_panes, spec.fine_lengths, spec.hour_wholes, spec.slots
    budget, min_requests, n = spec.slo.budget, spec.alerts.min_requests, columns[0].size
    nf = len(fine_lengths)
    lengths = [*fine_lengths, *(0 for _ in wholes)]
    # requests and bad requests over each window ending with the current pane: the pane-exact ones carried
    # across panes (and calls), the hourly ones summed afresh
    win_req, win_bad = [*state.sum_requests, *(0 for _ in wholes)], [*state.sum_bad, *(0 for _ in wholes)]
    fine_slots = list(enumerate(fine_lengths))
    events: list[Breach] = []
    # bulk_from: after a pane that passed the screen, step a while
    p, k, bulk_from = _run_ahead(spec, state, p, stop, columns, win_req, win_bad)
    # pane index, requests, bad: Python ints to step on (not made when the numpy run went to the end)
    index, req_in, bad_in = (c.tolist() for c in columns) if p < stop else ([], [], [])
    while p < stop:
        if state.open is None and p >= bulk_from and stop - p >= BULK_PANES:
            p, k = _quiet_run(spec, state, p, stop, columns, k, win_req, win_bad)
            bulk_from = p + BULK_PANES
            if p >= stop:
                break
        req = bad_now = 0
        while k < n and index[k] == p:  # several inputs for one pane add up
            req += req_in[k]
            bad_now += bad_in[k]
            k += 1
        if fine:
            for i, length in fine_slots:  # the pane leaving each window, then the new one
                j = (p - length) % fine
                win_req[i] += req - ring_req[j]
                win_bad[i] += bad_now - ring_bad[j]
            slot = p % fine
            ring_req[slot], ring_bad[slot] = req, bad_now
        if wholes:
            _hour_windows(spec, state, p, req, bad_now, win_req, win_bad, lengths)
        state.total_requests += req
        state.total_bad += bad_now
        watched = p - watched_from + 1
        level, fired = 0, []
        for rule, (rank, rate, screen, long, short) in enumerate(slots):
            # bad / (requests x budget) bounds the burn rate from above: most panes are ruled out without it
            if (win_bad[short] and win_bad[short] * _SLACK >= screen * win_req[short]
                    and win_bad[long] * _SLACK >= screen * win_req[long] and win_req[long] >= min_requests
                    and _fires(spec, rate, (long, short), win_req, win_bad, lengths, watched)):  # fmt: skip
                fired.append(rule)
                level = max(level, rank)
        if level or state.open is not None:
            burns = [_burn(win_req[i], win_bad[i], lengths[i], watched, budget) for i in range(len(lengths))]
            _step(spec, state, level, p, burns, fired, events)
        p += 1
        # Nothing can fire before the next pane with data once every window is empty, or once the pane-exact
        # windows are (every rule's short window is one of them: a rule needs bad requests in it).
        if state.open is None and not any(win_req[:nf]) and (spec.shorts_fine or not any(win_req)):
            p = max(p, min(index[k] if k < n else stop, stop))
    state.sum_requests, state.sum_bad = win_req[:nf], win_bad[:nf]
    state.end = max(stop, state.end or 0)
    return events


def _run_ahead(spec: BurnSpec, state: BurnState, p: int, stop: int, inputs: tuple[npt.NDArray[np.int64], ...],
               win_req: list[int], win_bad: list[int]) -> tuple[int, int, int]:  # fmt: skip
    """Replay's usual call (no breach open, a long run of panes): one numpy run first, often to ``stop``, before
    ``advance`` turns its inputs into lists to step on. The pane and input reached, and where the next run may
    start."""
    if state.open is None and stop - p >= BULK_PANES:
        p, k = _quiet_run(spec, state, p, stop, inputs, 0, win_req, win_bad)
        return p, k, p + BULK_PANES
    return p, 0, p


def _quiet_run(spec: BurnSpec, state: BurnState, p: int, stop: int, inputs: tuple[npt.NDArray[np.int64], ...],
               k: int, win_req: list[int], win_bad: list[int]) -> tuple[int, int]:  # fmt: skip
    """Apply panes p, p + 1, ... (no breach open) in numpy up to the first one at which a rule passes the screen
    of ``advance`` (or ``stop``): none before it can fire, so each only moves the sums. Returns that pane and the
    position of the first input at or after it; the state and the pane-exact sums are as stepping leaves them."""
    index, req_in, bad_in = inputs
    nf = len(spec.fine_lengths)
    while p < stop:
        end = min(stop, p + _BULK_CHUNK)
        k_end = k + int(np.searchsorted(index[k:], end))
        size = end - p
        at = index[k:k_end] - p
        dense = np.zeros((2, size), np.int64)  # [requests, bad] per pane of [p, end)
        if at.size < 2 or bool((at[1:] != at[:-1]).all()):  # one input per pane, the usual case
            dense[0, at], dense[1, at] = req_in[k:k_end], bad_in[k:k_end]
        else:  # several inputs for one pane add up
            dense[0], dense[1] = (np.bincount(at, col[k:k_end], size) for col in (req_in, bad_in))
        if spec.shorts_fine and not dense[1].any() and not any(state.ring_bad):
            # No bad request in any short window (each is pane-exact, within the ring and this chunk): nothing
            # passes the screen, so only the sums move, and only the requests' (bad ones stay 0).
            ends = _request_sums(spec, state, p, dense[0])
            _apply_quiet(spec, state, p, size, dense, ends, [0] * nf, win_req, win_bad)
            p, k = end, k_end
            continue
        windows = _windows(spec, state, p, dense)
        # every rule's screen at once: rows [rule, pane], each element the same float operations as per rule
        (r_short, b_short), (r_long, b_long) = (windows[rows].transpose(1, 0, 2) for rows in (spec.shorts, spec.longs))
        screen = spec.screens
        screened = ((b_short > 0) & (b_short * _SLACK >= screen * r_short) & (b_long * _SLACK >= screen * r_long)
                    & (r_long >= spec.alerts.min_requests)).any(axis=0)  # fmt: skip
        hit = np.flatnonzero(screened)
        if hit.size:  # the screen's few candidates, tested exactly: the first that fires is stepped
            hit = hit[_firing(spec, state, p, hit, windows)]
        done = int(hit[0]) if hit.size else size  # panes [p, p + done) are applied here
        if done:
            ends_req, ends_bad = windows[:nf, :, done - 1].T.tolist()
            _apply_quiet(spec, state, p, done, dense, ends_req, ends_bad, win_req, win_bad)
            p += done
            k += int(np.searchsorted(index[k:], p))
        if hit.size:
            break
    return p, k


def _firing(spec: BurnSpec, state: BurnState, p: int, at: npt.NDArray[np.intp],
            windows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:  # fmt: skip
    """Which of panes p + ``at`` (no breach open) some rule fires at: the screen of ``advance`` and ``_fires`` for
    all of them at once, with the same float operations in the same order (so the same outcome, bit for bit)."""
    per_hour, budget = HOUR_MS // spec.pane, spec.slo.budget
    panes = p + at
    watched = panes - (state.start or 0) + 1
    lengths = [np.full(at.size, n, np.int64) for n in spec.fine_lengths]
    lengths += [panes % per_hour + 1 + whole * per_hour for whole in spec.hour_wholes]
    seen = [np.minimum(length, watched) / length for length in lengths]  # share of each window watched
    fires = np.zeros(at.size, np.bool_)
    for _rank, rate, screen, long, short in spec.slots:
        (r_short, b_short), (r_long, b_long) = windows[short][:, at], windows[long][:, at]
        ok = ((b_short > 0) & (r_short > 0) & (b_short * _SLACK >= screen * r_short)
              & (b_long * _SLACK >= screen * r_long) & (r_long >= spec.alerts.min_requests))  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):  # the panes divided by zero are already ruled out
            ok &= b_short * seen[short] / (r_short * budget) >= rate  # ``_burn`` of the short window
            ok &= b_long * seen[long] / (r_long * budget) >= rate
        rows = np.flatnonzero(ok)
        if rows.size:
            chance = special.bdtrc(b_long[rows] - 1, r_long[rows], np.minimum(1.0, rate * budget / seen[long][rows]))
            ok[rows] = chance <= spec.alerts.false_alarm
        fires |= ok
    return fires


def _windows(spec: BurnSpec, state: BurnState, p: int, dense: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """[window, requests or bad, pane]: [requests, bad] of every window (in ``lengths`` order) ending at each pane
    of ``dense`` (panes p, p + 1, ..., [requests, bad] each), the state holding the panes before p. Few numpy calls,
    none indexing per pane: a call's fixed cost, not its arithmetic, is what a replay block of a gate pays here."""
    fine, per_hour, size = spec.fine_panes, HOUR_MS // spec.pane, dense.shape[1]
    # every window's [requests, bad] ending at each pane: pane-exact ones from the ring's last panes on (the ring
    # read from its oldest pane, p - fine, at slot p % fine)
    run = np.zeros((2, fine + size + 1), np.int64)
    if fine:
        at = p % fine
        req, bad = state.ring_requests, state.ring_bad
        history = np.array(req[at:] + req[:at] + bad[at:] + bad[:at], np.int64).reshape(2, fine)
        np.cumsum(np.concatenate((history, dense), axis=1), axis=1, out=run[:, 1:])
    else:
        np.cumsum(dense, axis=1, out=run[:, 1:])
    end = fine + 1  # run[:, end + i]: the sums through pane p + i
    nf = len(spec.fine_lengths)
    windows = np.empty((nf + len(spec.hour_wholes), 2, size), np.int64)
    for i, length in enumerate(spec.fine_lengths):
        np.subtract(run[:, end : end + size], run[:, end - length : end - length + size], out=windows[i])
    if spec.hour_wholes:  # the hour so far plus whole hours before it, over the run's panes laid out in hours
        widest, hour, off = max(spec.hour_wholes), p // per_hour, p % per_hour
        hours = (off + size - 1) // per_hour + 1
        grid = np.zeros((2, hours * per_hour), np.int64)
        grid[:, off : off + size] = dense
        grid[:, 0] += state.hours.get(hour, (0, 0))  # the hour of p before p
        so_far = np.cumsum(grid.reshape(2, hours, per_hour), axis=2)  # [row, hour, pane in it]
        totals = np.zeros((2, widest + hours + 1), np.int64)  # whole hours from ``hour - widest`` on, summed
        earlier = [state.hours.get(h, (0, 0)) for h in range(hour - widest, hour)]
        totals[:, 1 : widest + 1] = np.array(earlier, np.int64).reshape(-1, 2).T
        totals[:, widest + 1 :] = so_far[:, :, -1]
        np.cumsum(totals, axis=1, out=totals)
        for i, whole in enumerate(spec.hour_wholes, nf):
            before = totals[:, widest : widest + hours] - totals[:, widest - whole : widest - whole + hours]
            windows[i] = (so_far + before[:, :, None]).reshape(2, -1)[:, off : off + size]
    return windows


def _hour_firsts(p: int, size: int, per_hour: int) -> npt.NDArray[np.int64]:
    """Offsets in panes p, p + 1, ..., p + size - 1 of each hour's first one there (0 for the hour of p)."""
    return np.concatenate(([0], np.arange(-p % per_hour or per_hour, size, per_hour))).astype(np.int64)


def _request_sums(spec: BurnSpec, state: BurnState, p: int, requests: npt.NDArray[np.int64]) -> list[int]:
    """The requests in each pane-exact window ending with the last of ``requests`` (panes p, p + 1, ...), the
    ring holding the panes before p."""
    fine, size = spec.fine_panes, requests.size
    if size >= fine:
        tail = requests[size - fine :]
    else:
        at, ring = p % fine, state.ring_requests
        tail = np.array((ring[at:] + ring[:at])[size:] + requests.tolist(), np.int64)
    back = np.cumsum(tail[::-1]).tolist()  # back[n - 1]: the last n panes
    return [back[n - 1] for n in spec.fine_lengths]


def _apply_quiet(spec: BurnSpec, state: BurnState, p: int, done: int, dense: npt.NDArray[np.int64],
                 ends_req: list[int], ends_bad: list[int], win_req: list[int],
                 win_bad: list[int]) -> None:  # fmt: skip
    """Panes [p, p + done) into the state, as stepping through them would leave it; ``ends_req``, ``ends_bad``:
    the pane-exact windows' sums ending with the last of them."""
    fine, per_hour = spec.fine_panes, HOUR_MS // spec.pane
    nf = len(ends_req)
    win_req[:nf], win_bad[:nf] = ends_req, ends_bad
    last = p + done
    if fine:  # in place (``advance`` holds the two lists): the last ``fine`` panes, at most two runs of slots
        first = max(p, last - fine)
        slot, count = first % fine, last - first
        head = min(count, fine - slot)
        for ring, row in ((state.ring_requests, 0), (state.ring_bad, 1)):
            values = dense[row, first - p : done].tolist()
            ring[slot : slot + head] = values[:head]
            ring[: count - head] = values[head:]
    totals = dense[:, :done].sum(axis=1).tolist()
    state.total_requests += totals[0]
    state.total_bad += totals[1]
    if spec.hour_wholes:
        firsts = _hour_firsts(p, done, per_hour)
        first = p // per_hour
        cells = np.add.reduceat(dense[:, :done], firsts, axis=1).T.tolist()  # [requests, bad] per hour
        cell = state.hours.get(first)  # only the hour of p can hold panes already (those before p)
        if cell is None:
            state.hours[first] = cells[0]
        else:
            cell[0] += cells[0][0]
            cell[1] += cells[0][1]
        state.hours.update(zip(range(first + 1, first + len(cells)), cells[1:], strict=True))  # in hour order
        oldest = (last - 1) // per_hour - spec.hour_span
        for old in [h for h in state.hours if h < oldest]:
            del state.hours[old]
        state.hour = None  # the next pane stepped sums the whole hours before it afresh


def _span(spec: BurnSpec, state: BurnState, index: npt.NDArray[np.int64], until: int | None) -> tuple[int, int] | None:
    """The panes to step through, [first, stop), or None before the gate's first data."""
    first, last = (int(index[0]), int(index[-1])) if index.size else (None, None)
    if first is not None and state.end is not None and first < state.end:
        raise ValueError(f"pane {format_ms(first * spec.pane)} is not after the last pane already seen")
    if state.start is None:
        if first is None:
            return None
        state.start = first
        _reset(spec, state)
    p = state.end if state.end is not None else first
    if p is None:
        return None
    return p, max(p if last is None else last + 1, p if until is None else until // spec.pane)


def _hour_windows(spec: BurnSpec, state: BurnState, p: int, req: int, bad: int, win_req: list[int],
                  win_bad: list[int], lengths: list[int]) -> None:  # fmt: skip
    """Pane ``p`` into its hour; the windows summed in hours (after the pane-exact ones) ending with it."""
    per_hour, nf = HOUR_MS // spec.pane, len(spec.fine_lengths)
    hour = p // per_hour
    if state.hour != hour:
        _sum_hours(spec, state, hour)
    current = state.hours.setdefault(hour, [0, 0])
    current[0] += req
    current[1] += bad
    for i, whole in enumerate(spec.hour_wholes):
        before_req, before_bad = state.before[i]
        win_req[nf + i], win_bad[nf + i] = before_req + current[0], before_bad + current[1]
        lengths[nf + i] = p % per_hour + 1 + whole * per_hour


def _fires(spec: BurnSpec, rate: float, windows: tuple[int, int], win_req: list[int], win_bad: list[int],
           lengths: list[int], watched: int) -> bool:  # fmt: skip
    """Whether a rule fires: both windows burn at least ``rate``, and the long window's bad count is unlikely
    (at most ``false_alarm``) for a true burn of just ``rate``: in thin traffic a few chance errors are a high
    observed rate but no evidence (2 errors in 100 requests are a "20x" burn of a 0.1 % objective)."""
    budget, (long, short) = spec.slo.budget, windows
    if _burn(win_req[short], win_bad[short], lengths[short], watched, budget) < rate:
        return False
    seen = min(lengths[long], watched) / lengths[long]
    n, k = win_req[long], win_bad[long]
    if k * seen / (n * budget) < rate:
        return False
    return float(special.bdtrc(k - 1, n, min(1.0, rate * budget / seen))) <= spec.alerts.false_alarm


def _burn(requests: int, bad: int, length: int, watched: int, budget: float) -> float:
    """The burn rate of a window of ``length`` panes of which ``watched`` were watched. A window not watched in
    full counts its unwatched time as without errors, so the budget of the whole window must be burnt by what
    was seen (else one early error among the first few requests would be a huge "burn rate")."""
    return bad * (min(length, watched) / length) / (requests * budget) if requests > 0 else 0.0


def _reset(spec: BurnSpec, state: BurnState) -> None:
    """Empty windows of the right sizes."""
    state.ring_requests, state.ring_bad = [0] * spec.fine_panes, [0] * spec.fine_panes
    state.sum_requests, state.sum_bad = [0] * len(spec.fine_lengths), [0] * len(spec.fine_lengths)
    state.before = [[0, 0] for _ in spec.hour_wholes]


def _sum_hours(spec: BurnSpec, state: BurnState, hour: int) -> None:
    """Entering ``hour``: forget hours no window reaches any more, sum the whole hours before it per window."""
    oldest = hour - spec.hour_span
    for old in [h for h in state.hours if h < oldest]:
        del state.hours[old]
    for i, whole in enumerate(spec.hour_wholes):
        cells = [state.hours[h] for h in range(hour - whole, hour) if h in state.hours]
        state.before[i] = [sum(c[0] for c in cells), sum(c[1] for c in cells)]
    state.hour = hour


def _step(spec: BurnSpec, state: BurnState, level: int, p: int, burns: list[float], fired: list[int],
          events: list[Breach]) -> None:  # fmt: skip
    """The breach state machine after pane ``p`` with ``level`` (0 none, 1 ticket, 2 page) firing."""
    end_ms, current = (p + 1) * spec.pane, state.open

    def emit(breach: OpenBreach, change: Change) -> None:
        events.append(_event(spec, state, breach, change, end_ms, burns, fired))

    if current is None:
        state.open = OpenBreach(end_ms, level, 0, end_ms)
        emit(state.open, "opened")
    elif level >= current.severity:
        current.quiet_since = end_ms
        if level > current.severity:
            current.severity, current.revision = level, current.revision + 1
            emit(current, "escalated")
    elif end_ms - current.quiet_since >= spec.alerts.resolve_after:
        current.revision += 1
        if level:  # the page rules have been quiet long enough; the ticket rules still fire
            current.severity, current.quiet_since = level, end_ms
            emit(current, "deescalated")
        else:
            emit(current, "resolved")
            state.open = None


def _event(spec: BurnSpec, state: BurnState, breach: OpenBreach, change: Change, end_ms: int, burns: list[float],
           fired: list[int]) -> Breach:  # fmt: skip
    opened = format_ms(breach.opened_at)
    breach_id = _digest(spec.plan_version, spec.region, spec.tier, spec.slo.name, opened)
    windows = tuple(
        FiredWindow(
            rule.severity,
            format_duration(rule.long),
            format_duration(rule.short),
            rule.burn_rate,
            round(burns[long], 4),
            round(burns[short], 4),
        )
        for rule, (_rank, _rate, _screen, long, short) in (
            (spec.alerts.rules[i], spec.slots[i]) for i in (() if change == "resolved" else fired)
        )
    )
    budgeted = state.total_requests * spec.slo.budget
    resolved = change == "resolved"
    return Breach(
        breach_id=breach_id,
        event_id=_digest(breach_id, str(breach.revision), change),
        revision=breach.revision,
        state="resolved" if resolved else "open",
        change=change,
        severity=_SEVERITY_OF[breach.severity],  # type: ignore[arg-type]
        region=spec.region,
        tier=spec.tier,
        slo=spec.slo.name,
        objective=spec.slo.text,
        windows=windows,
        budget_consumed=round(state.total_bad / budgeted, 4) if budgeted else 0.0,
        opened_at=opened,
        at=format_ms(end_ms),
        plan_version=spec.plan_version,
        resolved_at=format_ms(end_ms) if resolved else None,
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
