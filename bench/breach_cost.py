"""What the burn-rate breach alerts cost, each figure against a baseline measured in the same run.

1. ``burn_rate.advance`` per call on one pane (the worker closes one pane per watermark) and per pane on day-long
   batches, beside the same panes through the gate alone (``Gate.on_panes``, the decision work they ride with).
2. A whole simulated rollout (sim/rollout.py, healthy, the first ``--hours`` hours: stage 2 closes an hour per
   gate at a time) with alerts, beside the same run with ``BreachWatch.on_close`` replaced by a no-op. CPU time,
   best of ``--repeat``.

python -m bench.breach_cost [--hours 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import numpy as np

from gatekeeper.core import breach_watch
from gatekeeper.core.burn_rate import advance
from gatekeeper.core.burn_spec import BurnSpec, BurnState, Slo
from gatekeeper.core.plan import Alerting
from gatekeeper.planfile import load_plan
from gatekeeper.sim.rollout import Rollout, Story

MINUTE = 60_000
PLAN = "config/rollout-plan.yaml"


def best(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def advance_cost(panes: int, per_call: int, repeat: int) -> float:
    """CPU seconds per pane, feeding ``panes`` healthy panes ``per_call`` at a time."""
    spec = BurnSpec("us-east", "canary", "bench", MINUTE, Slo("error_rate", 0.001, "error rate <= 0.001"), Alerting())
    rng = np.random.default_rng(1)
    bad = rng.binomial(100, 0.0004, panes).astype(np.int64)
    starts = MINUTE * np.arange(panes, dtype=np.int64)
    requests = np.full(panes, 100, dtype=np.int64)

    def run() -> None:
        state = BurnState()
        for i in range(0, panes, per_call):
            advance(spec, state, starts[i : i + per_call], requests[i : i + per_call], bad[i : i + per_call])

    return best(run, repeat) / panes


def rollout_cost(hours: int, repeat: int, alerts: bool) -> float:
    plan = load_plan(PLAN)
    original = breach_watch.BreachWatch.on_close

    def run() -> None:
        rollout = Rollout(plan, Story(problems={}), seed=7)
        for _ in itertools.islice(rollout.hours(), hours):
            pass

    if not alerts:
        breach_watch.BreachWatch.on_close = lambda *_args, **_kw: None  # type: ignore[method-assign]
    try:
        return best(run, repeat)
    finally:
        breach_watch.BreachWatch.on_close = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    one = advance_cost(5_000, 1, args.repeat)
    day = advance_cost(20_160, 1_440, args.repeat)
    print(f"advance, one pane a call:   {one * 1e6:7.1f} us per pane")
    print(f"advance, a day a call:      {day * 1e6:7.1f} us per pane ({one / day:.1f}x cheaper than one a call)")
    with_alerts = rollout_cost(args.hours, args.repeat, alerts=True)
    without = rollout_cost(args.hours, args.repeat, alerts=False)
    print(f"rollout, {args.hours} h, with alerts:    {with_alerts:6.2f} s CPU")
    print(f"rollout, {args.hours} h, without alerts: {without:6.2f} s CPU  -> alerts cost {with_alerts / without:.2f}x")


if __name__ == "__main__":
    main()
