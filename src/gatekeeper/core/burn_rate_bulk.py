"""Burn-rate alerts over long runs of panes without an open breach, in numpy (replay closes days of panes at a
time): every window's sums for every pane at once, up to the first pane at which some rule fires (the few panes
passing the cheap screen tested exactly, in numpy: ``firing``). That pane and the ones after it are stepped by
``burn_rate.advance``, which leaves the state exactly as this does: the same sums, the same float operations in
the same order (``tests/core/test_burn_rate.py`` checks the two against each other). A run with no bad request in
its panes nor in the ring before them (so in no short window) cannot pass the screen: only its request sums are
moved, without the windows. Stepping cost ~20 us a pane and objective, most of a long replay's time
(docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gatekeeper.core.burn_spec import HOUR_MS, SLACK, BurnSpec, BurnState
from gatekeeper.core.lazy_module import lazy

special = lazy("scipy.special")  # loaded at its first use, not at start-up (core/lazy_module.py)

_CHUNK = 4096  # panes per numpy pass (bounds its memory)


def quiet_run(spec: BurnSpec, state: BurnState, p: int, stop: int, inputs: tuple[npt.NDArray[np.int64], ...],
               k: int, win_req: list[int], win_bad: list[int]) -> tuple[int, int]:  # fmt: skip
    """Apply panes p, p + 1, ... (no breach open) in numpy up to the first one at which a rule passes the screen
    of ``advance`` (or ``stop``): none before it can fire, so each only moves the sums. Returns that pane and the
    position of the first input at or after it; the state and the pane-exact sums are as stepping leaves them."""
    index, req_in, bad_in = inputs
    nf = len(spec.fine_lengths)
    while p < stop:
        end = min(stop, p + _CHUNK)
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
        windows = windows_of(spec, state, p, dense)
        # every rule's screen at once: rows [rule, pane], each element the same float operations as per rule
        (r_short, b_short), (r_long, b_long) = (windows[rows].transpose(1, 0, 2) for rows in (spec.shorts, spec.longs))
        screen = spec.screens
        screened = ((b_short > 0) & (b_short * SLACK >= screen * r_short) & (b_long * SLACK >= screen * r_long)
                    & (r_long >= spec.alerts.min_requests)).any(axis=0)  # fmt: skip
        hit = np.flatnonzero(screened)
        if hit.size:  # the screen's few candidates, tested exactly: the first that fires is stepped
            hit = hit[firing(spec, state, p, hit, windows)]
        done = int(hit[0]) if hit.size else size  # panes [p, p + done) are applied here
        if done:
            ends_req, ends_bad = windows[:nf, :, done - 1].T.tolist()
            _apply_quiet(spec, state, p, done, dense, ends_req, ends_bad, win_req, win_bad)
            p += done
            k += int(np.searchsorted(index[k:], p))
        if hit.size:
            break
    return p, k


def firing(spec: BurnSpec, state: BurnState, p: int, at: npt.NDArray[np.intp],
            windows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:  # fmt: skip
    """Which of panes p + ``at`` (no breach open) some rule fires at: ``burn_rate._firing`` for all of them at
    once, with the same float operations in the same order (so the same outcome, bit for bit)."""
    per_hour, budget = HOUR_MS // spec.pane, spec.slo.budget
    panes = p + at
    watched = panes - (state.start or 0) + 1
    lengths = [np.full(at.size, n, np.int64) for n in spec.fine_lengths]
    lengths += [panes % per_hour + 1 + whole * per_hour for whole in spec.hour_wholes]
    seen = [np.minimum(length, watched) / length for length in lengths]  # share of each window watched
    fires = np.zeros(at.size, np.bool_)
    for _rank, rate, screen, long, short in spec.slots:
        (r_short, b_short), (r_long, b_long) = windows[short][:, at], windows[long][:, at]
        ok = ((b_short > 0) & (r_short > 0) & (b_short * SLACK >= screen * r_short)
              & (b_long * SLACK >= screen * r_long) & (r_long >= spec.alerts.min_requests))  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):  # the panes divided by zero are already ruled out
            ok &= b_short * seen[short] / (r_short * budget) >= rate  # ``_burn`` of the short window
            ok &= b_long * seen[long] / (r_long * budget) >= rate
        rows = np.flatnonzero(ok)
        if rows.size:
            chance = special.bdtrc(b_long[rows] - 1, r_long[rows], np.minimum(1.0, rate * budget / seen[long][rows]))
            ok[rows] = chance <= spec.alerts.false_alarm
        fires |= ok
    return fires


def windows_of(spec: BurnSpec, state: BurnState, p: int, dense: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
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
