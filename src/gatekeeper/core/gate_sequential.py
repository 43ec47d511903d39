"""A gate's sequential-test bookkeeping (docs/statistics.md, core/sequential.py): folding a closed window into
each statistical criterion's restarted tests, finding the first pane or window at which one reaches its
threshold, and the verdict with its evidence. Functions of the gate's spec and state (the state machine in
core/gate.py decides what to do with a failing result). Pure."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gatekeeper.core import dry_run, sketch
from gatekeeper.core.criteria import Evidence, Look, SequentialReading, StatisticalJudge
from gatekeeper.core.decision import CriterionResult, Scope
from gatekeeper.core.gate_spec import GateSpec, GateState
from gatekeeper.core.sequential import FailTest, Restarts
from gatekeeper.core.timefmt import format_ms

Judged = list[tuple[CriterionResult, Evidence]]


def restarts_of(st: GateState, name: str) -> Restarts:
    """``name``'s restarted tests, begun at the soak's start if it has none yet."""
    restarts = st.restarts.get(name)
    if restarts is None:
        restarts = st.restarts[name] = Restarts(run_start=st.soak_start)
    return restarts


class WindowTests:
    """A gate's sequential tests over its open window (``pane_fail``) and at the window's close (``close_tests``,
    ``window_fail``), with what the spec fixes computed once per gate (the statistical judges with their tests and
    ``CloseScreen``, the live judges): each ran ~14,000 times a 21-day replay, rebuilding these each time."""

    def __init__(self, spec: GateSpec) -> None:
        self.spec = spec
        tested = [
            (j, t)
            for j, t in zip(spec.judges, spec.tests, strict=True)
            if t is not None and isinstance(j, StatisticalJudge)
        ]
        self._tested = [(j, t, j.name) for j, t in tested]
        self._screened = [(j, t, t.close_screen(), j.name) for j, t in tested if j.name not in spec.dry]
        # per-pane criteria (error rate) that may fail by themselves: dry ones are judged for the report when
        # another criterion fails, never failing by themselves
        self._per_pane = [
            (index, j, t, t.close_screen())
            for index, (j, t) in enumerate(zip(spec.judges, spec.tests, strict=True))
            if t is not None and isinstance(j, StatisticalJudge) and j.per_pane and j.name not in spec.dry
        ]
        self._sequential = spec.evaluation.method == "sequential"
        self._others = [
            j
            for j, t in zip(spec.judges, spec.tests, strict=True)
            if not (t is not None and isinstance(j, StatisticalJudge)) and j.name not in spec.dry
        ]

    def pane_fail(
        self,
        st: GateState,
        requests: npt.NDArray[np.int64],
        errors: npt.NDArray[np.int64],
        lo: int,
        hi: int,
        errors_in: int,
    ) -> tuple[int, Judged] | None:
        """The first of the panes ``lo:hi`` of these (of the open window) after which a per-pane criterion's test
        reaches its threshold (its index from ``lo``), with the results; None if none does. ``errors_in``: the sum
        of ``errors[lo:hi]`` (the caller has it). Sequential method only; not while held."""
        if not self._sequential or not self._per_pane or st.status not in ("soaking", "passed"):
            return None
        # the screens first, on the window's totals: almost every window of a healthy soak stops here, before
        # any per-pane array is built
        k_end = st.window_errors + errors_in
        n0, k1 = st.soak_requests + st.window_requests, st.soak_errors + k_end
        reachable = []
        for index, judge, test, screen in self._per_pane:
            restarts = restarts_of(st, judge.name)
            if not screen.may_cross(n0, k1, restarts, st.window_requests, k_end):
                continue
            if test.may_reach(n0, k1, restarts, st.looks + 1, st.window_requests, k_end):
                reachable.append((index, judge, test, restarts))
        if not reachable:
            return None
        spec = self.spec
        window_n = st.window_requests + np.cumsum(requests[lo:hi])
        window_k = st.window_errors + np.cumsum(errors[lo:hi])
        soak_n, soak_k = st.soak_requests + window_n, st.soak_errors + window_k
        first: tuple[int, int] | None = None  # (pane, judge)
        for index, judge, test, restarts in reachable:
            total, _ = test.log_evidence(soak_n, soak_k, restarts, st.looks + 1, window_n, window_k)
            hit = np.flatnonzero((total >= test.log_threshold) & (soak_n >= judge.min_requests_to_fail))
            if hit.size and (first is None or int(hit[0]) < first[0]):
                first = (int(hit[0]), index)
        if first is None:
            return None
        pane = first[0]
        part = Evidence(int(window_n[pane]), int(window_k[pane]), sketch.empty())
        soak = Evidence(int(soak_n[pane]), int(soak_k[pane]), st.soak_bins)
        results = [
            sequential_result(st, judge, test, soak, part)
            for judge, test in zip(spec.judges, spec.tests, strict=True)
            if test is not None and isinstance(judge, StatisticalJudge) and judge.per_pane
        ]
        return pane, results

    def close_tests(self, st: GateState, window: Evidence, end: int) -> None:
        """Fold the closed window into every statistical criterion's restarted tests."""
        start, looks, restarts = end - self.spec.evaluation.window, st.looks, st.restarts
        for judge, test, name in self._tested:
            test.close_window(restarts.get(name) or restarts_of(st, name), looks, window.requests, judge.hits(window),
                              start, end)  # fmt: skip

    def window_fail(self, st: GateState, look: Look) -> Judged:
        """At a window's close: every criterion's results if one of them fails, else nothing. The statistical
        criteria are asked first (cheap), then the others; which one crosses first does not change the result."""
        soak, window = look.soak, st.looks + 1
        for judge, test, screen, name in self._screened:
            if soak.requests < judge.min_requests_to_fail:
                continue
            restarts, hits = st.restarts.get(name) or restarts_of(st, name), judge.hits(soak)
            if not screen.may_cross(soak.requests, hits, restarts):
                continue  # almost every close of a healthy soak
            if _reaches(test, soak.requests, hits, restarts, window):
                return _window_results(self.spec, st, look)
        for other in self._others:  # a loop, not any() over a generator: this runs at every close
            if other.may_fail(look):
                return _window_results(self.spec, st, look)
        return []  # the common case: no words needed


def _window_results(spec: GateSpec, st: GateState, look: Look) -> Judged:
    """Every criterion's results at a window's close where one may fail; nothing if none does."""
    results: Judged = []
    empty = Evidence(0, 0, sketch.empty())
    for judge, test in zip(spec.judges, spec.tests, strict=True):
        if test is not None and isinstance(judge, StatisticalJudge):
            results.append(sequential_result(st, judge, test, look.soak, empty, look.window))
        elif judge.may_fail(look):
            results.extend((r, look.soak) for r in judge.fail_checks(look, 0.0))
    return results if dry_run.failing((r for r, _ in results), spec.dry) else []


def _reaches(test: FailTest, requests: int, hits: int, restarts: Restarts, window: int) -> bool:
    """Whether the soak's evidence (the open window ``window`` holding nothing yet) reaches the threshold."""
    if not test.may_reach(requests, hits, restarts, window, 0, 0):
        return False
    total, _ = test.log_evidence(requests, hits, restarts, window, 0, 0)
    return bool(total >= test.log_threshold)


def sequential_result(
    st: GateState,
    judge: StatisticalJudge,
    test: FailTest,
    soak: Evidence,
    part: Evidence,
    closed: Evidence | None = None,
) -> tuple[CriterionResult, Evidence]:
    """The verdict of ``judge``'s test with the soak so far (``soak``, including ``part``, the open window's
    counts since the last close; ``closed``: the window just closed, at a window's close) and the evidence
    for the decision's metrics. The scope is the term carrying most of the evidence: the soak, or the
    restarted run (the metrics then show the run's counts; for latency, whose run has no sketch nor error
    count, the closed window when the run is that window, else the soak).
    The open window's restart weight is counted even before it has data (a future term is worth its weight)."""
    restarts = restarts_of(st, judge.name)
    soak_hits, part_hits = judge.hits(soak), judge.hits(part)
    total, start = test.log_evidence(soak.requests, soak_hits, restarts, st.looks + 1, part.requests, part_hits)
    log_total = float(total)
    scope: Scope
    run_requests = restarts.run_requests + part.requests
    # the soak's own test holds at least half the evidence, or no restarted run has data to show
    metrics = soak
    if float(start) >= log_total - math.log(2) or run_requests == 0:
        scope, ev, hits, since = "soak", soak, soak_hits, f"over the soak since {format_ms(st.soak_start)}"
        failing = log_total >= test.log_threshold and soak.requests >= judge.min_requests_to_fail
        lower = test.lower_bound(soak.requests, soak_hits) if judge.per_pane and failing else None
    else:
        hits = restarts.run_hits + part_hits
        # a sketch exists per window: it describes the run only when the run is the window just closed
        just_closed = closed is not None and restarts.run_start == st.window_start
        bins = closed.bins if closed is not None and just_closed else sketch.empty()
        ev = Evidence(run_requests, hits if judge.per_pane else 0, bins)
        if judge.per_pane:
            metrics = ev
        elif closed is not None and just_closed:
            metrics = closed
        scope, since, lower = "window", f"since {format_ms(restarts.run_start)}", None
    reading = SequentialReading(log_total, test.log_threshold, soak.requests, lower)
    return judge.sequential_result(ev, hits, scope, since, reading, test.alpha), metrics
