"""One (region, tier) gate: closed panes and windows in, decisions out. Pure; time is event time in ms.

Life of a gate: ``waiting`` (no data yet) -> ``soaking`` from the window its first event falls in ->
``passed`` (GO) once the soak has elapsed and every criterion passes; a confident breach at any look gives
``fail`` + ``hold`` -> ``held`` until ``hold_until`` -> ``release`` -> ``soaking`` again from scratch.
A gate keeps watching after it passed: a later breach still fails and holds it.

Soak time is observed time: a window that carried no data and closed inside a stall (see ``_stall_after``)
does not count toward the soak or its checkpoints, so a tier whose telemetry stopped for days cannot pass on
the days before and after ("error rate < 0.1 % for full 3 weeks", the seed's canary criterion).

This module is the state machine; the spec and state are plain data in core/gate_spec.py, the sequential
tests' bookkeeping is core/gate_sequential.py, and building a decision record core/gate_decisions.py.
"""

from __future__ import annotations

import fractions
import math

import numpy as np
import numpy.typing as npt

from gatekeeper.core import dry_run, sketch, stats
from gatekeeper.core.criteria import Evidence, Look, UptimeEvidence
from gatekeeper.core.decision import CriterionResult, Decision
from gatekeeper.core.gate_decisions import NOTHING, decision
from gatekeeper.core.gate_sequential import WindowTests, restarts_of
from gatekeeper.core.gate_spec import GateSpec, GateState, Status
from gatekeeper.core.side_judging import awaiting_approval, pass_results
from gatekeeper.core.side_ledger import SideView
from gatekeeper.core.timefmt import format_duration, format_ms

__all__ = ["Gate", "GateSpec", "GateState", "Status"]  # the spec and state live in core/gate_spec.py


class Gate:
    def __init__(self, spec: GateSpec, state: GateState | None = None) -> None:
        self.spec = spec
        self.state = state or GateState()
        ev = spec.evaluation
        self._pane, self._window = ev.pane, ev.window
        self._planned_looks = max(1, spec.tier.soak // ev.window)
        self._checkpoints = {spec.tier.soak: "soak end"} | {c.after: c.name for c in spec.tier.checkpoints}
        self._statistical = sum(1 for j in spec.judges if j.statistical)
        self._tests = WindowTests(spec)
        # read at each of the ~14,000 closes of a 21-day replay: the spec's attribute chains once here
        self._sequential = ev.method == "sequential"
        self._interval = ev.confidence.interval
        self._stall_after_ms = ev.stall_after
        self._soak = spec.tier.soak
        # "more than 57 %" compared in integers: 0.57 * 100 is 56.99999999999999 in floats, which made exactly
        # 57 errors in 100 requests count as down.
        self._down_ratio = fractions.Fraction(ev.uptime.down_error_rate).limit_denominator(1_000_000)
        # the global gate's multi-region uptime (core/global_gate.py): (first pane, down panes) of each call,
        # drained by its caller in the same step; None: not collected
        self.down_sink: list[tuple[int, list[int]]] | None = None

    # -- inputs ------------------------------------------------------------------------------------------
    def add_bins(self, window_start: int, bins: sketch.Bins) -> None:
        """Latencies of not-late events, by the window they fall in (the window is still open)."""
        open_bins = self.state.open_bins
        if window_start in open_bins:
            open_bins[window_start] += bins
        else:
            open_bins[window_start] = bins.copy()

    def on_pane(self, start: int, requests: int, errors: int, out: list[Decision]) -> None:
        """A closed pane that carried data (see ``on_panes``)."""
        one = np.asarray([start], dtype=np.int64)
        self.on_panes(one, np.asarray([requests], dtype=np.int64), np.asarray([errors], dtype=np.int64), out)

    def on_panes(
        self,
        starts: npt.NDArray[np.int64],
        requests: npt.NDArray[np.int64],
        errors: npt.NDArray[np.int64],
        out: list[Decision],
    ) -> None:
        """Closed panes that carried data, in time order (empty panes are never sent). Same result as feeding
        them one by one; vectorised within each window, where the status cannot change."""
        st = self.state
        if starts.size == 0:
            return
        if st.status == "waiting":
            first = int(starts[0])
            st.status = "soaking"
            st.soak_start = st.window_start = first - first % self._window
            st.silent_from = st.down_counted_until = first
        definition = self.spec.evaluation.uptime
        ratio = self._down_ratio
        down = (requests >= definition.min_requests) & (errors * ratio.denominator > ratio.numerator * requests)
        if self.down_sink is not None:
            self.down_sink.append((int(starts[0]), starts[down].tolist()))
        ends = starts + self._pane
        gaps = starts - np.concatenate(([st.silent_from], ends[:-1]))
        long_gaps = set(np.flatnonzero(gaps >= self.spec.evaluation.stall_after).tolist())
        windows = starts - starts % self._window
        firsts = np.concatenate(([0], np.flatnonzero(np.diff(windows)) + 1))
        lasts = np.concatenate((firsts[1:], [starts.size])) - 1
        per_window = zip(
            firsts.tolist(),
            lasts.tolist(),
            np.add.reduceat(requests, firsts).tolist(),
            np.add.reduceat(errors, firsts).tolist(),
            np.add.reduceat(down.astype(np.int64), firsts).tolist(),
            strict=True,
        )
        for lo, hi, window_requests, window_errors, down_panes in per_window:
            self.close_windows_until(int(starts[lo]), out)
            failing = self._tests.pane_fail(st, requests, errors, lo, hi + 1, window_errors)
            last = hi if failing is None else lo + failing[0]
            for i in sorted(g for g in long_gaps if lo <= g <= last) if long_gaps else ():
                if i > lo:
                    st.silent_from = st.down_counted_until = int(ends[i - 1])
                before = st.soak_requests + st.window_requests + int(requests[lo:i].sum())
                self._account_silence(int(starts[i]), out, before)
            if failing is not None:  # panes up to the failing one count, then the gate is held
                before_n, before_k = int(requests[lo : last + 1].sum()), int(errors[lo : last + 1].sum())
                st.down_ms += int(down[lo : last + 1].sum()) * self._pane
                st.window_requests += before_n
                st.window_errors += before_k
                self._fail(failing[1], int(ends[last]), out)
                st.window_requests += window_requests - before_n
                st.window_errors += window_errors - before_k
            else:
                if st.status != "held":
                    st.down_ms += down_panes * self._pane
                st.window_requests += window_requests
                st.window_errors += window_errors
            st.silent_from = st.down_counted_until = int(ends[hi])

    def close_windows_until(self, watermark: int, out: list[Decision]) -> None:
        """Close every window that ends at or before the watermark, judging each."""
        st = self.state
        if st.status == "waiting":
            st.baseline.drop_ended(watermark, self._window)
            st.cross.drop_ended(watermark, self._window)
            return
        window = self._window
        while st.window_start + window <= watermark:
            end = st.window_start + window
            self._account_silence(end, out)
            bins = st.open_bins.pop(st.window_start, None)
            self._close_window(end, bins if bins is not None else sketch.EMPTY, out)
            st.window_start = end
            st.window_requests = st.window_errors = 0
        st.baseline.drop_ended(st.window_start, window)  # at once when empty (most gates have no such evidence)
        st.cross.drop_ended(st.window_start, window)

    def on_stream_clock(self, stream_watermark: int, newest_pane_end: int, out: list[Decision]) -> None:
        """The stream-wide clock (other gates' event time): report a gate whose own telemetry stopped, and
        release a held gate whose traffic was rolled back. Both decisions have the same content whichever
        clock reports them first; the gate's state still advances only on its own event time."""
        st = self.state
        if st.status == "held":
            if stream_watermark >= st.hold_until:
                self._report_release(out)
            return
        if st.status != "soaking":  # a stall matters only while a verdict is pending
            return
        silent_from = max(st.silent_from, newest_pane_end)
        before = st.soak_requests + st.window_requests + sum(c[0] for c in st.open_panes.values())
        threshold = self._stall_after(silent_from, before)
        if st.stall_reported_for != silent_from and stream_watermark >= silent_from + threshold:
            self._report_stall(silent_from, threshold, out)

    # -- the judging -------------------------------------------------------------------------------------
    def _stall_after(self, silent_from: int, requests_before: int) -> int:
        """How long a silence must last to be a stall: ``stall_after``, and for thin traffic at least
        ``stall_mean_gaps`` mean gaps between this soak's requests (a Poisson gap that long has probability
        e^-k). Its inputs do not change while the gate is silent, so both clocks find the same value."""
        base, k = self.spec.evaluation.stall_after, self.spec.evaluation.stall_mean_gaps
        span = silent_from - self.state.soak_start
        if k <= 0 or requests_before <= 0 or span <= 0:
            return base
        return max(base, math.ceil(k * span / requests_before / self._pane) * self._pane)

    def _current_stall_after(self, requests_before: int | None = None) -> int:
        """``_stall_after`` for the gate's current silence (since ``silent_from``); ``requests_before``:
        requests in this soak's panes ending at or before it (default: all the closed panes')."""
        st = self.state
        before = st.soak_requests + st.window_requests if requests_before is None else requests_before
        return self._stall_after(st.silent_from, before)

    def _in_stall(self, at: int) -> bool:
        """Whether the gate's current silence is a stall at ``at``."""
        return at - self.state.silent_from >= self._current_stall_after()

    def _account_silence(self, until: int, out: list[Decision], requests_before: int | None = None) -> None:
        """``requests_before``: requests in this soak's panes ending at or before the silence (default: all
        the closed panes', which is right when called as windows close)."""
        st = self.state
        if st.status in ("waiting", "held") or until - st.silent_from < self._stall_after_ms:
            return
        threshold = self._current_stall_after(requests_before)
        if until - st.silent_from < threshold:
            return
        if st.status == "soaking" and st.stall_reported_for != st.silent_from:
            self._report_stall(st.silent_from, threshold, out)
        if st.status == "soaking" and self.spec.evaluation.uptime.silence_counts_as_down:
            st.down_ms += until - max(st.down_counted_until, st.silent_from)
            st.down_counted_until = until

    def _report_stall(self, silent_from: int, threshold: int, out: list[Decision]) -> None:
        st = self.state
        st.stall_reported_for = silent_from
        at = silent_from + threshold
        silence = format_duration(at - silent_from)
        why = f"no telemetry since {format_ms(silent_from)} ({silence}): not judged on old data"
        out.append(
            decision(self.spec, st, "pending", silent_from, at, at, (), (why,), "stalled", evidence=NOTHING, look=0)
        )

    def _close_window(self, end: int, bins: sketch.Bins, out: list[Decision]) -> None:
        st = self.state
        baseline = st.baseline.close(end - self._window, fold=st.status != "held")
        cross = st.cross.close(end - self._window, fold=st.status != "held")
        if st.status == "held":
            if end >= st.hold_until:
                self._release(out)
            return
        window_requests = st.window_requests
        stalled = window_requests == 0 and self._in_stall(end)
        window = Evidence(window_requests, st.window_errors, bins)
        st.soak_requests += window_requests
        st.soak_errors += st.window_errors
        st.soak_bins += bins
        # soak_evidence(st) and uptime(spec, st, end) inlined: ~14,000 closes a replay
        soak = Evidence(st.soak_requests, st.soak_errors, st.soak_bins)
        up = UptimeEvidence(st.down_ms, end - st.soak_start, self._soak)
        side = SideView(st.side, st.soak_start, end - self._window, end)
        look = Look(window, soak, up, self._interval, side, baseline, cross)
        st.looks += 1
        if self._sequential:
            self._tests.close_tests(st, window, end)
            failing = self._tests.window_fail(st, look)
            if failing:
                self._fail(failing, end, out)
        elif self._fail_look(look, end, out):
            return
        if st.status != "soaking":
            return
        if stalled:
            st.stalled_ms += self._window
            return  # no observed soak time: no pass and no checkpoint on it
        observed = end - st.soak_start - st.stalled_ms
        if observed >= self._soak:
            st.pass_looks += 1
            alpha = stats.pass_look_alpha(self.spec.false_pass, st.pass_looks)
            judged = pass_results(self.spec.judges, self.spec.dry, look, alpha, st.side, st.soak_start)
            results = () if judged is None else judged
            if judged is not None and dry_run.all_pass(results, self.spec.dry):
                st.status = "passed"
                reasons = ("GO: soak complete and every criterion passed", *(r.reason for r in results))
                if st.stalled_ms:
                    reasons += (f"soak extended by {format_duration(st.stalled_ms)} of stalled telemetry",)
                out.append(decision(self.spec, st, "pass", st.soak_start, end, end, results, reasons, "go", alpha))
                return
            waiting = awaiting_approval(results, st.side, st.soak_start)
            if waiting:  # every automatic criterion passes: a person's GO is all that is missing (said once a soak)
                out.append(
                    decision(self.spec, st, "pending", st.soak_start, end, end, results, waiting, "approval", alpha)
                )
                return  # it is this instant's checkpoint pending too: one pending naming all that blocks
        checkpoint = self._checkpoints.get(observed)
        if checkpoint is not None:
            alpha = stats.pass_look_alpha(self.spec.false_pass, max(1, st.pass_looks))
            results = tuple(j.pass_check(look, alpha) for j in self.spec.judges)
            open_ones = [r.reason for r in results if r.verdict != "pass" and r.name not in self.spec.dry]
            done = observed >= self.spec.tier.soak
            head = f"{checkpoint}: not enough evidence to pass" if done else f"{checkpoint}: soak not complete"
            out.append(
                decision(
                    self.spec,
                    st,
                    "pending",
                    st.soak_start,
                    end,
                    end,
                    results,
                    (head, *open_ones),
                    f"checkpoint:{checkpoint}",
                    alpha,
                )
            )

    def _fail_look(self, look: Look, end: int, out: list[Decision]) -> bool:
        st = self.state
        if not any(j.may_fail(look) for j in self.spec.judges if j.name not in self.spec.dry):
            return False
        alpha = stats.look_alpha(self.spec.false_fail, st.looks, self._planned_looks) / max(1, 2 * self._statistical)
        results = tuple(r for j in self.spec.judges for r in j.fail_checks(look, alpha))
        failed = dry_run.failing(results, self.spec.dry)
        if not failed:
            return False
        scope_start = end - self._window if failed[0].scope == "window" else st.soak_start
        hold = self.spec.phase.hold_on_fail
        st.status, st.hold_until = "held", end + hold
        reasons = tuple(r.reason for r in failed)
        evidence = look.window if failed[0].scope == "window" else look.soak
        out.append(decision(self.spec, st, "fail", scope_start, end, end, results, reasons, "breach", alpha, evidence))
        tier, phase = self.spec.tier.name, self.spec.phase.name
        why = (
            f"hold {format_duration(hold)} after a failed {tier} tier (phase {phase}), until {format_ms(st.hold_until)}"
        )
        out.append(
            decision(self.spec, st, "hold", scope_start, end, end, results, (why, *reasons), "hold", alpha, evidence)
        )
        return True

    def _fail(self, judged: list[tuple[CriterionResult, Evidence]], at: int, out: list[Decision]) -> None:
        """A sequential fail at ``at`` (a pane's or window's end); the hold runs from the end of its window, so
        the retried soak starts on the window grid. The metrics describe the first failed criterion's scope."""
        st = self.state
        results = tuple(r for r, _ in judged)
        first, evidence = next((r, ev) for r, ev in judged if dry_run.failing((r,), self.spec.dry))
        test = next(t for j, t in zip(self.spec.judges, self.spec.tests, strict=True) if j.name == first.name)
        alpha = test.alpha if test is not None else self.spec.false_fail
        scope_start = restarts_of(st, first.name).run_start if first.scope == "window" else st.soak_start
        window_end = at + (-at) % self._window
        hold = self.spec.phase.hold_on_fail
        st.status, st.hold_until = "held", window_end + hold
        reasons = tuple(r.reason for r in dry_run.failing(results, self.spec.dry))
        out.append(decision(self.spec, st, "fail", scope_start, at, at, results, reasons, "breach", alpha, evidence))
        tier, phase = self.spec.tier.name, self.spec.phase.name
        why = (
            f"hold {format_duration(hold)} after a failed {tier} tier (phase {phase}), until {format_ms(st.hold_until)}"
        )
        out.append(
            decision(self.spec, st, "hold", scope_start, at, at, results, (why, *reasons), "hold", alpha, evidence)
        )

    def _release(self, out: list[Decision]) -> None:
        st = self.state
        at = st.hold_until
        self._report_release(out)
        st.status, st.soak_start = "soaking", at
        st.soak_requests = st.soak_errors = st.looks = st.pass_looks = st.down_ms = st.stalled_ms = 0
        st.soak_bins = sketch.empty()
        st.restarts = {}
        st.baseline.restart()
        st.cross.restart()
        st.down_counted_until = max(st.down_counted_until, at)
        st.silent_from = max(st.silent_from, at)

    def _report_release(self, out: list[Decision]) -> None:
        st = self.state
        if st.release_reported_for == st.hold_until:
            return
        st.release_reported_for = at = st.hold_until
        why = f"hold ended at {format_ms(at)}; the soak restarts with fresh evidence"
        hold = self.spec.phase.hold_on_fail
        out.append(
            decision(self.spec, st, "release", at - hold, at, at, (), (why,), "release", evidence=NOTHING, look=0)
        )
