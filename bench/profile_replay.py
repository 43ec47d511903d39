"""Where `gatekeeper replay` spends its CPU time: cProfile with a CPU-time clock (``time.process_time``, so the
shares hold on a loaded machine, where wall-clock profiles mostly measure waiting), start-up imports included.

    python -m bench.profile_replay --input FILE [--jobs 1] [--top 25]

Prints each part's CPU seconds and share of the whole: the gate (``Gate.on_panes`` / ``close_windows_until``),
the burn-rate alerts (``BreachWatch.on_close``), decoding into columns, imports, and the rest; then the top
functions by cumulative time. Profiled time is inflated for code of many small calls, so compare shares and
runs of this same script, not these seconds with unprofiled ones. With ``--jobs 2`` the parts are this process's
(stage 2); ``--timers`` adds the CPU of the stage-1 child (reading, decoding, folding).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time
from pathlib import Path
from typing import Any

# (label, file suffix, function name) of the parts' entry points; their cumulative times do not overlap
PARTS = (
    ("gate", "core/gate.py", "on_panes"),
    ("gate (watermark only)", "core/gate.py", "close_windows_until"),
    ("burn-rate alerts", "core/breach_watch.py", "on_close"),
    ("decoding into columns", "shell/replay.py", "_decode_block"),
)


def profile(input_path: Path, jobs: int, plan: str) -> tuple[pstats.Stats, float]:
    profiler = cProfile.Profile(time.process_time)
    started = time.process_time()
    profiler.enable()
    from gatekeeper.shell.cli import main  # inside the profile: start-up imports count

    main(
        ["replay", "--quiet", "--jobs", str(jobs), "--plan", plan, "--input", str(input_path), "--output", "/dev/null"]
    )
    profiler.disable()
    return pstats.Stats(profiler), time.process_time() - started


def timed(input_path: Path, jobs: int, plan: str) -> tuple[dict[str, float], float]:
    """CPU seconds in each part without cProfile (its per-call overhead inflates code of many small calls):
    the parts' entry points wrapped in ``process_time`` accumulators (a few thousand calls; re-entry not counted
    twice)."""
    started = time.process_time()
    from gatekeeper.core import breach_watch, gate
    from gatekeeper.shell import replay
    from gatekeeper.shell.cli import main

    imported = time.process_time() - started
    spent: dict[str, float] = {"gate": 0.0, "burn-rate alerts": 0.0, "decoding into columns": 0.0}
    depth = [0]

    def wrap(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return inner(*args, **kwargs)
            depth[0] += 1
            t0 = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - t0
                depth[0] -= 1

        setattr(owner, name, timed_call)

    wrap(gate.Gate, "on_panes", "gate")
    wrap(gate.Gate, "close_windows_until", "gate")
    wrap(breach_watch.BreachWatch, "on_close", "burn-rate alerts")
    wrap(replay, "_decode_block", "decoding into columns")
    main(
        ["replay", "--quiet", "--jobs", str(jobs), "--plan", plan, "--input", str(input_path), "--output", "/dev/null"]
    )
    spent["start-up imports"] = imported
    return spent, time.process_time() - started


def child_cpu() -> float:
    """CPU seconds of the processes this one started and waited for (replay's stage-1 process with --jobs 2)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def cumulative(stats: pstats.Stats, suffix: str, name: str, caller_name: str | None = None) -> float:
    raw = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for (path, _line, func), (_cc, _nc, _tt, ct, callers) in raw.items():
        if func == name and path.endswith(suffix):
            if caller_name is None:
                total += ct
            else:  # only the time spent under callers named ``caller_name``
                total += sum(c[3] for key, c in callers.items() if key[2] == caller_name)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--plan", default="config/rollout-plan.yaml")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--timers", action="store_true", help="no cProfile: CPU time of each part, unprofiled")
    args = parser.parse_args()
    if args.timers:
        spent, cpu = timed(args.input, args.jobs, args.plan)
        print(f"CPU time, unprofiled: {cpu:.2f} s (load average {' '.join(f'{x:.1f}' for x in _loadavg())})")
        for label, seconds in spent.items():
            print(f"  {label:<24} {seconds:7.2f} s  {seconds / cpu:6.1%}")
        rest = cpu - sum(spent.values())
        print(f"  {'the rest':<24} {rest:7.2f} s  {rest / cpu:6.1%}")
        if args.jobs > 1:  # stage 1 (reading, decoding, folding) ran in a child: its parts are not above
            print(f"  stage-1 process (child) {child_cpu():7.2f} s  (not in the total above)")
        return
    stats, cpu = profile(args.input, args.jobs, args.plan)
    imports = cumulative(stats, "<frozen importlib._bootstrap>", "_find_and_load")
    gate = cumulative(stats, "core/gate.py", "on_panes")
    # windows closed by the watermark alone (not under on_panes): called from merge, not from the gate itself
    gate += cumulative(stats, "core/gate.py", "close_windows_until", "_close_columns")
    alerts = cumulative(stats, "core/breach_watch.py", "on_close")
    decoding = cumulative(stats, "shell/replay.py", "_decode_block")
    print(f"CPU time profiled: {cpu:.2f} s (load average {' '.join(f'{x:.1f}' for x in _loadavg())})")
    for label, seconds in (("gate", gate), ("burn-rate alerts", alerts), ("decoding into columns", decoding),
                           ("start-up imports", imports)):  # fmt: skip
        print(f"  {label:<24} {seconds:7.2f} s  {seconds / cpu:6.1%}")
    rest = cpu - gate - alerts - decoding - imports
    print(f"  {'the rest':<24} {rest:7.2f} s  {rest / cpu:6.1%}")
    stats.sort_stats("cumulative").print_stats(args.top)


def _loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as f:
        a, b, c = f.read().split()[:3]
    return float(a), float(b), float(c)


if __name__ == "__main__":
    main()
