"""One gate on its own: closed panes and windows in, decisions out."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core import sketch, snapshot
from gatekeeper.core.decision import Decision, encode
from gatekeeper.core.gate import Gate
from gatekeeper.core.timefmt import format_ms, parse_instant

from .helpers import MINUTE, T0, encoded, make_gate, plan_dict, tier_of

WINDOW = 10 * MINUTE


def fast_bins(requests: int, latency_ms: float = 50.0) -> sketch.Bins:
    bins = sketch.empty()
    sketch.add(bins, np.full(requests, latency_ms))
    return bins


def feed(gate: Gate, panes: list[tuple[int, int, int]]) -> list[Decision]:
    """Panes (start, requests, errors) one at a time, each with its latencies, then close their windows."""
    out: list[Decision] = []
    for start, requests, errors in panes:
        gate.add_bins(start - start % WINDOW, fast_bins(requests))
        gate.on_pane(start, requests, errors, out)
    return out


def ms(text: str) -> int:
    return parse_instant(text)


def steady(start: int, end: int, requests: int = 20, errors: int = 0) -> list[tuple[int, int, int]]:
    return [(t, requests, errors) for t in range(start, end, MINUTE)]


def test_waiting_gate_ignores_time() -> None:
    """Before its first pane a gate is waiting: closing windows or a stream far ahead does nothing."""
    gate, out = make_gate(), list[Decision]()
    gate.close_windows_until(T0 + 10 * WINDOW, out)
    gate.on_stream_clock(T0 + 10 * WINDOW, T0, out)
    assert ([], "waiting") == (out, gate.state.status)


def test_first_pane_starts_the_soak_at_its_window() -> None:
    """The soak starts at the start of the window holding the first pane with data."""
    gate = make_gate()
    feed(gate, [(T0 + 13 * MINUTE, 5, 0)])
    assert (gate.state.status, gate.state.soak_start, gate.state.window_start) == (
        "soaking",
        T0 + WINDOW,
        T0 + WINDOW,
    )


def test_healthy_gate_passes_at_soak_end() -> None:
    """Steady clean panes: no decision until the window that completes the 1 h soak, then one pass."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + 60 * MINUTE))
    assert [] == out
    gate.close_windows_until(T0 + 60 * MINUTE, out)
    assert [("pass", format_ms(T0 + 60 * MINUTE))] == [(d.decision, d.at) for d in out]
    assert ("passed", 6) == (gate.state.status, gate.state.looks)


def test_silent_windows_do_not_count_toward_the_soak() -> None:
    """Data for 20 min, silence for 30 (a stall), data again: the three windows without data closed inside the
    stall do not count, so the 1 h soak completes at 90 min, not 60, and the pass says by how much it was
    extended. A stall inside a window that carried data does not shorten the soak."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + 20 * MINUTE) + steady(T0 + 50 * MINUTE, T0 + 100 * MINUTE))
    assert [("pending", "stalled", T0 + 26 * MINUTE), ("pass", "go", T0 + 90 * MINUTE)] == [
        (d.decision, d.reason_code, ms(d.at)) for d in out
    ]
    assert "soak extended by 30m of stalled telemetry" == out[1].reasons[-1]
    assert (format_ms(T0), 30 * MINUTE) == (out[1].window_start, gate.state.stalled_ms)


def test_silent_windows_move_the_checkpoints() -> None:
    """A checkpoint ``after`` 30 min of soak falls at 30 min of observed time: after a 20-minute silence
    (two windows without data) it is reported at 50 min."""
    raw = plan_dict()
    tier_of(raw)["checkpoints"] = [{"name": "midway", "after": "30m"}]
    gate = make_gate(raw)
    out = feed(gate, steady(T0, T0 + 10 * MINUTE) + steady(T0 + 30 * MINUTE, T0 + 55 * MINUTE))
    checkpoints = [(d.reason_code, ms(d.at)) for d in out if d.reason_code.startswith("checkpoint")]
    assert [("checkpoint:midway", T0 + 50 * MINUTE)] == checkpoints


def test_breach_holds_then_releases() -> None:
    """A window at 50 % errors fails and holds until at + 30m; windows during the hold are not judged; the
    window ending at hold_until releases the gate and the soak restarts there."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + WINDOW, errors=10))
    gate.close_windows_until(T0 + WINDOW, out)
    assert [("fail", "breach"), ("hold", "hold")] == [(d.decision, d.reason_code) for d in out]
    assert format_ms(T0 + WINDOW + 30 * MINUTE) == out[1].hold_until
    out.clear()
    out = feed(gate, steady(T0 + WINDOW, T0 + 4 * WINDOW, errors=10))  # still failing, but held
    gate.close_windows_until(T0 + 4 * WINDOW, out)
    assert [("release", format_ms(T0 + 4 * WINDOW))] == [(d.decision, d.at) for d in out]
    assert (
        gate.state.status,
        gate.state.soak_start,
        gate.state.soak_requests,
        gate.state.looks,
    ) == ("soaking", T0 + 4 * WINDOW, 0, 0)


def test_down_pane_accounting() -> None:
    """A pane is down with >= 5 requests of which more than half failed: (10, 6) is down; (10, 5) exactly
    half, (4, 4) too few requests and (0, 0) are not."""
    gate = make_gate()
    feed(gate, [(T0, 10, 6), (T0 + MINUTE, 10, 5), (T0 + 2 * MINUTE, 4, 4), (T0 + 3 * MINUTE, 10, 6)])
    assert gate.state.down_ms == 2 * MINUTE


def test_down_threshold_is_exact_for_percentages() -> None:
    """``down_error_rate: 57%`` means more than 57 of 100: exactly 57 errors in 100 requests is not down, 58 is
    (regression: 0.57 * 100 is 56.99999999999999 in floats, so 57 counted as down)."""
    raw = plan_dict()
    raw["evaluation"]["uptime"]["down_error_rate"] = "57%"
    raw["evaluation"]["method"] = "fixed"  # judged at the window's close: the gate still soaks when counted
    gate = make_gate(raw)
    feed(gate, [(T0, 100, 57), (T0 + MINUTE, 100, 58), (T0 + 2 * MINUTE, 1000, 570)])
    assert 1 * MINUTE == gate.state.down_ms


def test_stall_reported_once_per_silence() -> None:
    """The stream clock reports a gate silent for stall_after (6m) of stream time once, at silent_from + 6m;
    asking again for the same silence reports nothing; a new silence after new data is reported again."""
    gate, out = make_gate(), list[Decision]()
    feed(gate, [(T0, 5, 0)])
    gate.on_stream_clock(T0 + MINUTE + 5 * MINUTE, T0 + MINUTE, out)
    assert [] == out  # 5 minutes of silence: not yet
    gate.on_stream_clock(T0 + MINUTE + 6 * MINUTE, T0 + MINUTE, out)
    gate.on_stream_clock(T0 + 30 * MINUTE, T0 + MINUTE, out)
    assert [("pending", "stalled", format_ms(T0 + 7 * MINUTE), format_ms(T0 + MINUTE))] == [
        (d.decision, d.reason_code, d.at, d.window_start) for d in out
    ]
    feed(gate, [(T0 + 31 * MINUTE, 5, 0)])
    gate.on_stream_clock(T0 + 40 * MINUTE, T0 + 32 * MINUTE, out)
    assert [format_ms(T0 + 7 * MINUTE), format_ms(T0 + 38 * MINUTE)] == [d.at for d in out]


def test_held_gate_is_not_reported_stalled() -> None:
    """A held gate's silence is expected: no stall reports during the hold."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + WINDOW, errors=10))
    gate.close_windows_until(T0 + WINDOW, out)
    out.clear()
    gate.on_stream_clock(T0 + 25 * MINUTE, T0 + WINDOW, out)
    assert ([], "held") == (out, gate.state.status)


def test_silence_counts_as_down_only_when_configured() -> None:
    """A 20-minute gap is down time only with silence_counts_as_down; either way it is reported stalled.
    (Uptime floor lowered to 50 % so that the down time does not fail the gate.)"""
    downs = []
    for counts in (False, True):
        raw = plan_dict()
        raw["evaluation"]["uptime"]["silence_counts_as_down"] = counts
        tier_of(raw)["criteria"][2]["at_least"] = "50%"
        gate = make_gate(raw)
        out = feed(gate, steady(T0, T0 + 10 * MINUTE) + steady(T0 + 30 * MINUTE, T0 + 31 * MINUTE))
        downs.append((gate.state.down_ms, [d.reason_code for d in out if d.decision == "pending"]))
    assert downs == [(0, ["stalled"]), (20 * MINUTE, ["stalled"])]


# -- on_panes is the vectorised form of on_pane ----------------------------------------------------------


@st.composite
def pane_runs(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """Panes with data over a few hours: gaps (some long enough to stall), clean and failing stretches."""
    panes, t = [], T0 + draw(st.integers(0, 9)) * MINUTE
    for _ in range(draw(st.integers(1, 150))):
        requests = draw(st.integers(1, 40))
        failing = draw(st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.6]))
        panes.append((t, requests, round(requests * failing)))
        t += draw(st.sampled_from([1, 1, 1, 1, 2, 7, 25, 45])) * MINUTE
    return panes


Columns = npt.NDArray[np.int64]


def arrays(panes: list[tuple[int, int, int]]) -> tuple[Columns, Columns, Columns]:
    table = np.asarray(panes, dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


@settings(max_examples=60, deadline=None)
@given(panes=pane_runs(), cuts=st.lists(st.integers(0, 150), max_size=6), counts=st.booleans())
def test_on_panes_equals_one_by_one(panes: list[tuple[int, int, int]], cuts: list[int], counts: bool) -> None:
    """Feeding closed panes in vectorised runs (split anywhere) gives the same decisions and the same state
    as feeding them one at a time: fails, holds, releases, stalls, down time and passes alike."""
    raw = plan_dict()
    raw["evaluation"]["uptime"]["silence_counts_as_down"] = counts
    one, many = make_gate(raw), make_gate(raw)
    for start, requests, _ in panes:
        for gate in (one, many):
            gate.add_bins(start - start % WINDOW, fast_bins(requests))
    end = panes[-1][0] + 2 * WINDOW
    out_one = feed_one_by_one(one, panes, end)
    out_many: list[Decision] = []
    bounds = sorted({0, len(panes), *(c for c in cuts if c < len(panes))})
    for lo, hi in itertools.pairwise(bounds):
        many.on_panes(*arrays(panes[lo:hi]), out_many)
    many.close_windows_until(end, out_many)
    assert encoded(out_one) == encoded(out_many)
    assert [d.decision_id for d in out_one] == [d.decision_id for d in out_many]
    assert snapshot.dump(one.state) == snapshot.dump(many.state)


def feed_one_by_one(gate: Gate, panes: list[tuple[int, int, int]], end: int) -> list[Decision]:
    out: list[Decision] = []
    for start, requests, errors in panes:
        gate.on_pane(start, requests, errors, out)
    gate.close_windows_until(end, out)
    return out


def test_thin_traffic_stalls_only_after_many_of_its_own_gaps() -> None:
    """With stall_mean_gaps 10, a gate with 10 requests in its first 30 minutes (a mean gap of 3 minutes) is
    stalled only after 30 minutes of silence, not after stall_after (6m); dense traffic keeps stall_after."""
    thin, out = make_gate(plan_dict(stall_mean_gaps=10)), list[Decision]()
    feed(thin, [(T0 + i * 3 * MINUTE, 1, 0) for i in range(10)])  # panes end at 1m, 4m, ..., 28m
    silent_from = T0 + 28 * MINUTE
    thin.on_stream_clock(silent_from + 20 * MINUTE, silent_from, out)
    assert [] == out
    thin.on_stream_clock(silent_from + 40 * MINUTE, silent_from, out)
    expected = [("stalled", format_ms(silent_from + 28 * MINUTE))]  # ceil(10 * 28m / 10 requests) = 28m
    assert expected == [(d.reason_code, d.at) for d in out]
    dense, out = make_gate(plan_dict(stall_mean_gaps=10)), list[Decision]()
    feed(dense, [(T0 + i * MINUTE, 30, 0) for i in range(10)])
    dense.on_stream_clock(T0 + 10 * MINUTE + 6 * MINUTE, T0 + 10 * MINUTE, out)
    assert [("stalled", format_ms(T0 + 16 * MINUTE))] == [(d.reason_code, d.at) for d in out]


def test_thin_traffic_stall_is_the_same_on_both_clocks() -> None:
    """The stall of a thin gate found by the stream clock equals the one found when its traffic resumes."""
    panes = [(T0 + i * 3 * MINUTE, 1, 0) for i in range(10)]
    by_clock, out_clock = make_gate(plan_dict(stall_mean_gaps=10)), list[Decision]()
    feed(by_clock, panes)
    by_clock.on_stream_clock(T0 + 90 * MINUTE, T0 + 28 * MINUTE, out_clock)
    by_data, out_data = make_gate(plan_dict(stall_mean_gaps=10)), list[Decision]()
    out_data += feed(by_data, [*panes, (T0 + 80 * MINUTE, 1, 0)])
    stalls = [d for d in out_data if d.reason_code == "stalled"]
    assert [encode(d) for d in out_clock] == [encode(d) for d in stalls]


# -- the sequential method (core/sequential.py) ------------------------------------------------------------


def test_sequential_fail_comes_after_the_pane_that_proves_it() -> None:
    """20 requests a minute, all failing (fail above 5 %, 50 requests needed to fail): the test is read after
    every pane, so the fail comes at the end of the third minute, the first with >= 50 requests, not when the
    window closes; the hold runs from the window's end (00:10) for 30 min."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + 5 * MINUTE, errors=20))
    assert [("fail", format_ms(T0 + 3 * MINUTE)), ("hold", format_ms(T0 + 3 * MINUTE))] == [
        (d.decision, d.at) for d in out
    ]
    assert (format_ms(T0 + 40 * MINUTE), 60) == (out[1].hold_until, out[0].metrics.requests)


def test_fixed_method_still_fails_when_the_window_closes() -> None:
    """With ``evaluation.method: fixed`` the same breach fails at the window's close, as before."""
    gate = make_gate(plan_dict(method="fixed"))
    out = feed(gate, steady(T0, T0 + 5 * MINUTE, errors=20))
    gate.close_windows_until(T0 + WINDOW, out)
    assert [("fail", format_ms(T0 + WINDOW)), ("hold", format_ms(T0 + WINDOW))] == [(d.decision, d.at) for d in out]


def test_sequential_fail_needs_min_requests_to_fail() -> None:
    """40 failing requests in one minute, then silence for half an hour: far above the 5 % ceiling, but under the
    50 requests needed to fail, so no fail (only the stall's pending); 10 more failing requests bring the soak to
    50 and fail it at once."""
    gate = make_gate()
    out = feed(gate, [(T0, 40, 40)])
    gate.close_windows_until(T0 + 3 * WINDOW, out)
    assert ["pending"] == [d.decision for d in out]
    out = feed(gate, [(T0 + 31 * MINUTE, 10, 10)])
    assert ["fail", "hold"] == [d.decision for d in out]


def test_mid_soak_breach_is_reported_since_it_began() -> None:
    """40 clean minutes, then 15 % errors: the restarted tests fail it; the fail's scope is the restarted test
    (``window``), its span and counts start at the breach's window (00:40), and the reason says so in words."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + 40 * MINUTE) + steady(T0 + 40 * MINUTE, T0 + 60 * MINUTE, errors=3))
    fail = next(d for d in out if d.decision == "fail")
    (result,) = [c for c in fail.criteria if c.verdict == "fail"]
    assert ("window", format_ms(T0 + 40 * MINUTE)) == (result.scope, fail.window_start)
    assert 3 / 20 == result.observed
    assert [] == [
        w
        for w in ("error rate 15%", f"since {format_ms(T0 + 40 * MINUTE)}", "above the 5% ceiling", "confidence")
        if w not in result.reason
    ]


def test_fail_reason_gives_observed_bound_ceiling_and_confidence() -> None:
    """A soak-scope fail says what was seen (rate, errors, requests), an anytime-valid lower bound below the
    observed rate and above the ceiling, and the confidence."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + 5 * MINUTE, errors=20))
    (result,) = out[0].criteria
    assert result.lower is not None
    assert 0.05 < result.lower < 1.0
    expected = "error rate 100% (60 errors in 60 requests) over the soak since 2025-10-19T00:00:00Z: at least "
    assert expected == result.reason[: len(expected)]
    assert "above the 5% ceiling at 99.75% confidence" in result.reason


def test_alpha_is_split_over_the_rollouts_gates_and_by_criterion_weight() -> None:
    """The small plan has 2 gates: with ``scope: rollout`` each gate gets 1 % / 2 to fail and 5 % / 2 to pass;
    an error-rate weight of 3 against the latency's 1 gives them 3/4 and 1/4 of the gate's false_fail. With
    ``scope: gate`` the gate keeps the whole 1 %."""
    raw = plan_dict()
    tier_of(raw)["criteria"][0]["false_fail_weight"] = 3
    spec = make_gate(raw).spec
    alphas = [None if t is None else t.alpha for t in spec.tests]
    assert (0.005, 0.025) == (spec.false_fail, spec.false_pass)
    assert [0.005 * 3 / 4, 0.005 / 4, None] == pytest.approx(alphas)
    raw["evaluation"]["confidence"]["scope"] = "gate"
    assert (0.01, 0.05) == (make_gate(raw).spec.false_fail, make_gate(raw).spec.false_pass)


def test_sequential_gate_resumes_from_a_snapshot_as_if_never_stopped() -> None:
    """Healthy for 40 minutes then a breach: a gate restored from a snapshot taken at 00:45 decides exactly as
    the gate that ran through (the restarted tests are part of the state)."""
    panes = steady(T0, T0 + 40 * MINUTE) + steady(T0 + 40 * MINUTE, T0 + 90 * MINUTE, errors=2)
    through = feed(make_gate(), panes)
    first = make_gate()
    before = feed(first, panes[:45])
    resumed = make_gate()
    resumed.state = snapshot.load(snapshot.dump(first.state))
    after = feed(resumed, panes[45:])
    assert [encode(d) for d in through] == [encode(d) for d in before + after]


def test_mid_soak_breach_metrics_count_the_run_since_it_began() -> None:
    """The metrics of a restarted test's fail count the requests and errors since the breach began (00:40), not
    the whole soak's."""
    gate = make_gate()
    out = feed(gate, steady(T0, T0 + 40 * MINUTE) + steady(T0 + 40 * MINUTE, T0 + 60 * MINUTE, errors=3))
    fail = next(d for d in out if d.decision == "fail")
    minutes = (parse_instant(fail.at) - (T0 + 40 * MINUTE)) // MINUTE
    assert (20 * minutes, 3 * minutes) == (fail.metrics.requests, fail.metrics.errors)
