"""``python -m gatekeeper.sim SCENARIO [-o FILE]``: write a scenario's telemetry as JSON lines."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gatekeeper.sim.scenario import ScenarioError, load_scenario
from gatekeeper.sim.writer import write_scenario


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for an unusable scenario)."""
    parser = argparse.ArgumentParser(prog="python -m gatekeeper.sim", description=__doc__)
    parser.add_argument("scenario", type=Path, help="scenario YAML file (see config/scenarios/)")
    parser.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    if args.output is None:
        summary = write_scenario(scenario, sys.stdout.buffer)
    else:
        with args.output.open("wb") as out:
            summary = write_scenario(scenario, out)
    elapsed = time.perf_counter() - began
    gates = ", ".join(f"{r}/{t} {n}" for (r, t), n in summary.events.items())
    print(
        f"{scenario.name}: {summary.total} records ({gates}; {summary.malformed} malformed, "
        f"{summary.late} late) in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
