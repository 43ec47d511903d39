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
(core/burn_rate_bulk.py), up to the first pane at which some rule fires; that pane and the ones after it are
stepped. The model (objectives, compiled rules, state) is in core/burn_spec.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gatekeeper.core import burn_rate_bulk
from gatekeeper.core.breach import Breach, Change, FiredWindow
from gatekeeper.core.burn_spec import HOUR_MS, SLACK, BurnSpec, BurnState, OpenBreach
from gatekeeper.core.lazy_module import lazy
from gatekeeper.core.timefmt import format_duration, format_ms

special = lazy("scipy.special")  # loaded at its first use, not at start-up (core/lazy_module.py)

_SEVERITY_OF = {1: "ticket", 2: "page"}
Counts = Sequence[int] | npt.NDArray[np.int64]
BULK_PANES = 32  # runs of at least this many panes without an open breach go through numpy (core/burn_rate_bulk.py)


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
    fine, fine_lengths, wholes = spec.fine_panes, spec.fine_lengths, spec.hour_wholes
    budget, n = spec.slo.budget, columns[0].size
    nf = len(fine_lengths)
    lengths = [*fine_lengths, *(0 for _ in wholes)]
    # requests and bad requests over each window ending with the current pane: the pane-exact ones carried
    # across panes (and calls), the hourly ones summed afresh
    win_req, win_bad = [*state.sum_requests, *(0 for _ in wholes)], [*state.sum_bad, *(0 for _ in wholes)]
    fine_slots = list(enumerate(fine_lengths))
    events: list[Breach] = []
    k, bulk_from = 0, p  # the next input; after a pane that passed the screen, step a while
    # pane index, requests, bad: Python ints to step on, made at the first pane stepped (replay's usual call, a
    # long run without an open breach, often goes through numpy to the end)
    index: list[int] | None = None
    req_in: list[int] = []
    bad_in: list[int] = []
    while p < stop:
        if state.open is None and p >= bulk_from and stop - p >= BULK_PANES:
            p, k = burn_rate_bulk.quiet_run(spec, state, p, stop, columns, k, win_req, win_bad)
            bulk_from = p + BULK_PANES
            if p >= stop:
                break
        if index is None:
            index, req_in, bad_in = (c.tolist() for c in columns)
        req = bad_now = 0
        while k < n and index[k] == p:  # several inputs for one pane add up
            req += req_in[k]
            bad_now += bad_in[k]
            k += 1
        if fine:
            _slide(fine_slots, state, p, req, bad_now, win_req, win_bad)
        if wholes:
            _hour_windows(spec, state, p, req, bad_now, win_req, win_bad, lengths)
        state.total_requests += req
        state.total_bad += bad_now
        watched = p - watched_from + 1
        level, fired = _firing(spec, win_req, win_bad, lengths, watched)
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


def _slide(fine_slots: list[tuple[int, int]], state: BurnState, p: int, req: int, bad: int, win_req: list[int],
           win_bad: list[int]) -> None:  # fmt: skip
    """Pane ``p`` into the ring and the pane-exact windows: the pane leaving each window, then the new one."""
    ring_req, ring_bad = state.ring_requests, state.ring_bad
    fine = len(ring_req)
    for i, length in fine_slots:
        j = (p - length) % fine
        win_req[i] += req - ring_req[j]
        win_bad[i] += bad - ring_bad[j]
    slot = p % fine
    ring_req[slot], ring_bad[slot] = req, bad


def _firing(spec: BurnSpec, win_req: list[int], win_bad: list[int], lengths: list[int],
            watched: int) -> tuple[int, list[int]]:  # fmt: skip
    """The rules firing at a pane (their windows' sums ending with it): the highest rank (0: none) and which."""
    level, fired, min_requests = 0, [], spec.alerts.min_requests
    for rule, (rank, rate, screen, long, short) in enumerate(spec.slots):
        # bad / (requests x budget) bounds the burn rate from above: most panes are ruled out without it
        if (win_bad[short] and win_bad[short] * SLACK >= screen * win_req[short]
                and win_bad[long] * SLACK >= screen * win_req[long] and win_req[long] >= min_requests
                and _fires(spec, rate, (long, short), win_req, win_bad, lengths, watched)):  # fmt: skip
            fired.append(rule)
            level = max(level, rank)
    return level, fired


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
