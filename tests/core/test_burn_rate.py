"""Multi-window, multi-burn-rate breach alerts: when they open, escalate, resolve, and that they do not flap."""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from gatekeeper.core import burn_rate, burn_rate_bulk
from gatekeeper.core.breach import Breach
from gatekeeper.core.burn_rate import advance
from gatekeeper.core.burn_spec import BurnSpec, BurnState, Slo, slos_of
from gatekeeper.core.plan import Alerting, BurnRule

from .helpers import MINUTE, T0, make_plan

HOUR = 60 * MINUTE
BUDGET = 0.001  # a 0.1 % error-rate objective
SPEC = BurnSpec("us-east", "canary", "test+0", MINUTE, Slo("error_rate", BUDGET, "error rate <= 0.1%"), Alerting())


def traffic(
    rates: list[tuple[float, float]], per_minute: int = 1000, seed: int = 1
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Panes from T0: (hours, error rate) segments, binomial errors at ``per_minute`` requests a minute."""
    rng = np.random.default_rng(seed)
    rate = np.concatenate([np.full(round(hours * 60), r) for hours, r in rates])
    starts = T0 + MINUTE * np.arange(rate.size, dtype=np.int64)
    requests = np.full(rate.size, per_minute, dtype=np.int64)
    return starts, requests, rng.binomial(requests, rate).astype(np.int64)


def run(panes: tuple[npt.NDArray[np.int64], ...], chunk: int | None = None, spec: BurnSpec = SPEC) -> list[Breach]:
    state, out = BurnState(), []
    size = chunk or panes[0].size
    for i in range(0, panes[0].size, size):
        starts, requests, bad = (column[i : i + size] for column in panes)
        out += advance(spec, state, starts, requests, bad)
    return out


def minutes_after(event: Breach, start_ms: int) -> float:
    from gatekeeper.core.timefmt import parse_instant

    return (parse_instant(event.at) - start_ms) / MINUTE


def test_a_fast_burn_pages_within_the_short_window() -> None:
    """After two healthy hours, 20 % errors (a 200x burn) page within 5 minutes: the 1 h window reaches 14.4x
    in 4.3 minutes and the 5 m window at once."""
    events = run(traffic([(2, 0.0005), (1, 0.2)]))
    opened = events[0]
    assert ("opened", "page", "open") == (opened.change, opened.severity, opened.state)
    assert 0 < minutes_after(opened, T0 + 2 * HOUR) <= 5
    assert "1h" == opened.windows[0].long
    assert opened.windows[0].long_burn >= 14.4


def test_a_burn_just_over_the_rate_pages_before_the_long_window_is_full() -> None:
    """A 1.6 % error rate (16x) pages once the 1 h window has burnt 14.4x: after about 14.4/16 of an hour."""
    events = run(traffic([(2, 0.0), (2, 0.016)]))
    delay = minutes_after(events[0], T0 + 2 * HOUR)
    assert ("page", True) == (events[0].severity, 45 <= delay <= 62)


def test_a_slow_burn_opens_a_ticket_after_days_never_a_page() -> None:
    """A 0.15 % error rate (1.5x) never pages; it opens a ticket once the 3-day window burns more than 1x, which
    takes about two days (3 d x 1/1.5) from the start."""
    events = run(traffic([(96, 0.0015)], per_minute=500))
    assert [("opened", "ticket")] == [(e.change, e.severity) for e in events]
    assert 40 * 60 <= minutes_after(events[0], T0) <= 56 * 60


def test_a_flapping_rate_opens_one_breach_not_a_storm() -> None:
    """Twelve hours of 20 minutes at a 30x burn then 20 minutes healthy keep one breach open: the page rules fire
    again before resolve_after passes. Once the flapping stops it drops to a ticket (the 6 h ticket window still
    burns) and later resolves: three events of one breach, not a storm."""
    segments = [(1 / 3, 0.03), (1 / 3, 0.0)] * 18 + [(12, 0.0)]
    events = run(traffic(segments))
    assert ["opened", "deescalated", "resolved"] == [e.change for e in events]
    assert 1 == len({e.breach_id for e in events})
    assert ([0, 1, 2], events[2].at) == ([e.revision for e in events], events[2].resolved_at)


def test_healthy_traffic_over_a_whole_soak_opens_nothing() -> None:
    """Three weeks at the seed's healthy 0.079 % against a 0.1 % objective (40 requests a minute, a canary):
    no breach, page or ticket."""
    assert [] == run(traffic([(21 * 24, 0.00079)], per_minute=40, seed=3), chunk=997)


def test_thin_traffic_needs_min_requests() -> None:
    """One error in two requests is a 500x burn, but the long window holds fewer than min_requests: nothing."""
    starts = np.asarray([T0, T0 + MINUTE], dtype=np.int64)
    assert [] == run((starts, np.asarray([1, 1]), np.asarray([1, 0])))


def test_escalation_and_deescalation() -> None:
    """A ticket-level burn (3x for 2 days) opens a ticket; a fast burn then escalates the same breach to a page;
    when the fast burn stops the breach drops back to a ticket after resolve_after, still the same breach."""
    events = run(traffic([(48, 0.003), (1, 0.2), (4, 0.003)], per_minute=500))
    assert ["opened", "escalated", "deescalated"] == [e.change for e in events][:3]
    assert ["ticket", "page", "ticket"] == [e.severity for e in events][:3]
    assert 1 == len({e.breach_id for e in events[:3]})
    assert [0, 1, 2] == [e.revision for e in events[:3]]


@pytest.mark.parametrize("chunk", [1, 7, 60, 1441])
def test_the_same_events_whatever_the_batches(chunk: int) -> None:
    """Feeding the panes one at a time, or in any batch size, gives exactly the events of one batch: the state
    carries the windows (pane-exact and hourly) across calls."""
    panes = traffic([(50, 0.003), (1, 0.2), (6, 0.0), (2, 0.05), (30, 0.0)], per_minute=300, seed=9)
    expected = run(panes)
    assert len(expected) >= 3
    assert expected == run(panes, chunk=chunk)


def test_gaps_count_as_empty_time() -> None:
    """Panes need not be contiguous: a silence between them is empty time. A breach burning before a 4-day
    silence resolves during it, and the burn after it opens a new breach."""
    first = traffic([(1, 0.3)])
    later = tuple(column.copy() for column in traffic([(1, 0.3)], seed=2))
    later[0][:] += 96 * HOUR
    events = run(tuple(np.concatenate(pair) for pair in zip(first, later, strict=True)))
    assert ("resolved", "opened") == (events[-2].change, events[-1].change)
    assert 2 == len({e.breach_id for e in events})


def test_panes_must_move_forward() -> None:
    """A pane before the last one seen is a caller's bug, refused with the pane's time."""
    state = BurnState()
    advance(SPEC, state, *traffic([(1, 0.0)]))
    with pytest.raises(ValueError, match="not after the last pane"):
        advance(SPEC, state, np.asarray([T0], dtype=np.int64), np.asarray([5]), np.asarray([0]))


def test_windows_and_state_size() -> None:
    """With the workbook rules, 6 h of panes are kept exactly and the 3-day window in 72 hours; custom rules
    shorter than 6 h keep no hours at all."""
    assert (360, 72) == (SPEC.fine_panes, SPEC.hour_span)
    short = Alerting(rules=(BurnRule(severity="page", long="1h", short="5m", burn_rate=10),))
    spec = BurnSpec("us-east", "canary", "v", MINUTE, SPEC.slo, short)
    state = BurnState()
    advance(spec, state, *traffic([(30, 0.0)]))
    assert (60, 0, {}) == (spec.fine_panes, spec.hour_span, state.hours)


def test_objectives_of_a_tier() -> None:
    """A tier's objectives: its error-rate ceiling and the share its latency criterion allows above the ceiling."""
    tier = make_plan().phases[0].tiers[0]
    slos = slos_of(tier)
    assert ["error_rate", "latency"] == [s.name for s in slos]
    assert pytest.approx(0.01) == slos[1].budget


def test_chance_errors_in_thin_traffic_are_no_evidence() -> None:
    """Two errors in the first 100 requests after a long quiet watch (20 a minute) are a 20x "burn" of a 0.1 %
    objective, but 2 or more errors happen 42 % of the time at a true 14.4x burn: no page at the default
    false_alarm (1 %); a plan that accepts 49 % false alarms pages on them."""
    starts = T0 + MINUTE * np.arange(24 * 60, 24 * 60 + 5, dtype=np.int64)
    panes = (starts, np.full(5, 20, dtype=np.int64), np.asarray([0, 1, 0, 1, 0], dtype=np.int64))
    quiet = (np.asarray([T0], dtype=np.int64), np.asarray([1], dtype=np.int64), np.asarray([0], dtype=np.int64))
    merged = tuple(np.concatenate(pair) for pair in zip(quiet, panes, strict=True))
    lenient = BurnSpec("us-east", "canary", "test+0", MINUTE, SPEC.slo, Alerting(false_alarm=0.49))
    assert ([], ["opened"]) == (run(merged), [e.change for e in run(merged, spec=lenient)])


def test_skipping_quiet_time_gives_what_stepping_gives() -> None:
    """Stretches without data are skipped once the pane-exact windows are empty; sending every empty pane
    explicitly (nothing to skip) gives exactly the same events: bursts, 2-day silences, a slow burn across them."""
    segments = [(30, 0.003), (1, 0.2), (48, None), (20, 0.004), (2, 0.05), (60, None), (5, 0.0)]
    rng = np.random.default_rng(4)
    starts, requests, bad, at = [], [], [], T0
    for hours, rate in segments:
        for _ in range(round(hours * 60)):
            n = 0 if rate is None else 300
            starts.append(at)
            requests.append(n)
            bad.append(0 if rate is None else int(rng.binomial(n, rate)))
            at += MINUTE
    dense = tuple(np.asarray(c, dtype=np.int64) for c in (starts, requests, bad))
    keep = dense[1] > 0
    sparse = tuple(c[keep] for c in dense)
    expected = run(dense)
    assert len(expected) >= 3
    assert expected == run(sparse)


@pytest.mark.parametrize("chunk", [None, 1, 45, 700])
def test_numpy_runs_give_what_stepping_every_pane_gives(chunk: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long runs without an open breach go through numpy (``BULK_PANES``); stepping every pane in Python instead
    gives exactly the same events and the same state: healthy days, a slow burn (the 3-day ticket window, in
    hours), a fast burn, silences, thin traffic, fed whole or in batches."""
    segments = [(40, 0.0005, 300), (1, 0.2, 300), (30, None, 0), (60, 0.004, 300), (3, 0.0, 5), (2, 0.05, 300),
                (50, None, 0), (20, 0.0008, 1000)]  # fmt: skip
    rng = np.random.default_rng(11)
    starts, requests, bad, at = [], [], [], T0
    for hours, rate, per_minute in segments:
        for _ in range(round(hours * 60)):
            if rate is not None:
                starts.append(at)
                requests.append(per_minute)
                bad.append(int(rng.binomial(per_minute, rate)))
            at += MINUTE
    panes = tuple(np.asarray(c, dtype=np.int64) for c in (starts, requests, bad))

    def states(bulk: int) -> tuple[list[Breach], BurnState]:
        monkeypatch.setattr(burn_rate, "BULK_PANES", bulk)
        state, out = BurnState(), []
        size = chunk or panes[0].size
        for i in range(0, panes[0].size, size):
            starts, requests, bad = (column[i : i + size] for column in panes)
            out += advance(SPEC, state, starts, requests, bad)
        out += advance(SPEC, state, panes[0][:0], panes[1][:0], panes[2][:0], until=at + 80 * HOUR)
        state.hour, state.before = None, []  # recomputed on entering the next hour either way
        # what a later pane's windows can still reach, kept either way (stepping skips silences, keeping hours
        # older than that until its next pane; numpy goes through them, dropping those)
        reach = (state.end or 0) // 60 - SPEC.hour_span
        state.hours = {h: c for h, c in state.hours.items() if c != [0, 0] and h >= reach}
        return out, state

    bulk = burn_rate.BULK_PANES
    expected = states(1 << 40)
    assert {"opened", "escalated", "resolved"} <= {e.change for e in expected[0]}
    assert expected == states(bulk)


def test_numpy_window_sums_equal_the_stepped_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sums numpy computes for every window ending at each pane (the pane-exact ones and the 3-day one in
    hours: the hour so far plus the whole hours before it) equal those stepping one pane at a time carries,
    starting from a state that already holds two days of panes."""
    monkeypatch.setattr(burn_rate, "BULK_PANES", 1 << 40)
    warm = traffic([(50, 0.0007)], per_minute=200, seed=3)
    state = BurnState()
    advance(SPEC, state, *warm)
    later = traffic([(30, 0.002)], per_minute=50, seed=5)
    starts = later[0] + 50 * HOUR + 17 * MINUTE  # off the hour, after a 17-minute gap
    p = state.end or 0
    gap = int(starts[0]) // MINUTE - p
    dense = np.concatenate((np.zeros((2, gap), np.int64), np.stack(later[1:])), axis=1)
    fresh = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=BurnState)
    got = burn_rate_bulk.windows_of(SPEC, fresh, p, dense)[:, :, gap:]
    stepped: list[list[int]] = []
    for i in range(starts.size):
        advance(SPEC, state, starts[i : i + 1], later[1][i : i + 1], later[2][i : i + 1])
        current = state.hours[state.hour or 0]
        hourly = [[before[0] + current[0], before[1] + current[1]] for before in state.before]
        stepped.append([*state.sum_requests, *state.sum_bad, *(c for pair in hourly for c in pair)])
    fine = len(SPEC.fine_lengths)
    numpy_sums = [[*(int(w[0, i]) for w in got[:fine]), *(int(w[1, i]) for w in got[:fine]),
                   *(int(c) for w in got[fine:] for c in w[:, i])] for i in range(starts.size)]  # fmt: skip
    assert stepped == numpy_sums


def test_several_inputs_for_one_pane_add_up_in_numpy_runs_as_when_stepping(monkeypatch: pytest.MonkeyPatch) -> None:
    """A numpy run fills its panes by direct assignment when each pane has one input; inputs split over several
    rows for one pane (and runs starting off the hour and off the ring's slot 0) give the events and state of
    stepping every pane, and of the same panes summed before the call."""
    starts, requests, bad = traffic([(30, 0.0006), (2, 0.05), (20, 0.0009)], per_minute=400, seed=7)
    starts = starts + 23 * MINUTE  # off the hour
    split = np.arange(starts.size) % 3 == 0  # every third pane arrives as two rows
    first_requests = np.where(split, requests // 2, requests)
    first_bad = np.where(split, bad // 2, bad)
    order = np.argsort(np.concatenate((starts, starts[split])), kind="stable")
    doubled = tuple(
        np.concatenate(pair)[order]
        for pair in ((starts, starts[split]), (first_requests, (requests - first_requests)[split]),
                     (first_bad, (bad - first_bad)[split]))
    )  # fmt: skip

    def fed(panes: tuple[npt.NDArray[np.int64], ...], bulk: int) -> tuple[list[Breach], bytes]:
        monkeypatch.setattr(burn_rate, "BULK_PANES", bulk)
        state, out = BurnState(), []
        for i in range(0, panes[0].size, 500):
            part_starts, part_requests, part_bad = (column[i : i + 500] for column in panes)
            out += advance(SPEC, state, part_starts, part_requests, part_bad)
        state.hour, state.before = None, []  # recomputed on entering the next hour either way
        return out, msgspec.msgpack.encode(state)

    bulk = burn_rate.BULK_PANES
    expected = fed((starts, requests, bad), 1 << 40)
    assert {"opened"} <= {e.change for e in expected[0]}
    assert expected == fed(doubled, bulk)
    assert expected == fed((starts, requests, bad), bulk)


@pytest.mark.parametrize(
    ("budget", "false_alarm", "seed"), [(BUDGET, Alerting().false_alarm, 21), (0.01, 0.3, 22), (0.002, 0.05, 23)]
)
def test_numpy_runs_stop_only_where_a_rule_fires_as_stepping_decides(
    budget: float, false_alarm: float, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A numpy run tests the panes that pass the cheap screen (bad / (requests x budget)) with the exact rules in
    numpy (``burn_rate_bulk.firing``) and goes on through those that do not fire: thin traffic burning near the
    rules' rates, where the screen passes at many panes that do not fire, gives the events and state of stepping
    every pane in Python (objectives of several budgets and false-alarm bounds, the binomial test deciding at the
    margin)."""
    spec = BurnSpec("us-east", "canary", "test+0", MINUTE, Slo("latency", budget, "p99 <= 1"),
                    Alerting(false_alarm=false_alarm, min_requests=50))  # fmt: skip
    rng = np.random.default_rng(seed)
    hours = 5 * 24
    per_minute = rng.integers(0, 60, hours * 60)
    rate = budget * np.repeat(rng.choice([0.5, 1.0, 1.2, 5.5, 7.0, 14.0, 17.0], hours), 60)
    starts = T0 + 7 * MINUTE + MINUTE * np.arange(per_minute.size, dtype=np.int64)  # off the hour
    bad = rng.binomial(per_minute, np.minimum(rate, 1.0)).astype(np.int64)
    keep = per_minute > 0
    panes = (starts[keep], per_minute[keep].astype(np.int64), bad[keep])
    rejected = [0]
    firing = burn_rate_bulk.firing

    def counted(*args: object) -> npt.NDArray[np.bool_]:
        fires = firing(*args)  # type: ignore[arg-type]
        rejected[0] += int((~fires).sum())
        return fires

    monkeypatch.setattr(burn_rate_bulk, "firing", counted)

    def fed(bulk: int) -> tuple[list[Breach], bytes]:
        monkeypatch.setattr(burn_rate, "BULK_PANES", bulk)
        state, out = BurnState(), []
        for i in range(0, panes[0].size, 1500):
            part_starts, part_requests, part_bad = (column[i : i + 1500] for column in panes)
            out += advance(spec, state, part_starts, part_requests, part_bad)
        out += advance(spec, state, panes[0][:0], panes[1][:0], panes[2][:0], until=int(starts[-1]) + 4 * 24 * HOUR)
        state.hour, state.before = None, []  # a cache of the whole-hour sums, recomputed on entering the next hour
        reach = (state.end or 0) // 60 - spec.hour_span  # hours no later pane reaches: numpy drops them sooner
        state.hours = {h: c for h, c in state.hours.items() if c != [0, 0] and h >= reach}
        return out, msgspec.msgpack.encode(state)

    bulk = burn_rate.BULK_PANES
    expected = fed(1 << 40)
    assert {"opened", "resolved"} <= {e.change for e in expected[0]}
    assert expected == fed(bulk)
    assert rejected[0] > 0  # the screen passed where no rule fired: the exact test decided


def test_numpy_runs_without_bad_requests_skip_the_windows_as_stepping_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A numpy run through panes with no bad request in them nor in the ring before them (so in no short window)
    skips the windows and the screen: traffic without errors for a day between bursts, fed in batches, gives the
    events and state of stepping every pane, and the skipped batches compute no windows."""
    starts, requests, bad = traffic([(10, 0.002), (1, 0.1), (30, 0.0), (2, 0.06), (20, 0.0)], per_minute=300, seed=9)
    computed = [0]
    windows = burn_rate_bulk.windows_of

    def counted(*args: object) -> npt.NDArray[np.int64]:
        computed[0] += 1
        return windows(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(burn_rate_bulk, "windows_of", counted)

    def fed(bulk: int) -> tuple[list[Breach], bytes]:
        monkeypatch.setattr(burn_rate, "BULK_PANES", bulk)
        state, out = BurnState(), []
        for i in range(0, starts.size, 400):
            out += advance(SPEC, state, starts[i : i + 400], requests[i : i + 400], bad[i : i + 400])
        state.hour, state.before = None, []  # a cache of the whole-hour sums, recomputed on entering the next hour
        return out, msgspec.msgpack.encode(state)

    bulk = burn_rate.BULK_PANES
    expected = fed(1 << 40)
    assert {"opened", "resolved"} <= {e.change for e in expected[0]}
    assert 0 == computed[0]
    assert expected == fed(bulk)
    batches = -(-starts.size // 400)
    assert 0 < computed[0] < batches  # some batches went through the windows, the error-free ones did not
