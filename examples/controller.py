"""A rollout controller that walks the seed's tiers by listening to gatekeeper's decisions.

For one region it takes the plan's tiers in order (canary, ramp-10 ... rollout-100): it "sets" the tier's
traffic (here: prints it; a real controller would call its mesh or load balancer), waits for gatekeeper's
``pass`` on that tier, then moves on. A fail holds it on the tier until gatekeeper releases the hold and the
fresh soak passes. Run it beside a worker:

    python examples/controller.py --bootstrap 127.0.0.1:9092 --region us-east
    python examples/controller.py --bootstrap 127.0.0.1:9092 --region us-east --timeout 30   # give up after 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gatekeeper.client import DecisionClient
from gatekeeper.errors import UserError
from gatekeeper.planfile import load_plan

PLAN = Path(__file__).resolve().parents[1] / "config" / "rollout-plan.yaml"


async def walk(client: DecisionClient, plan_path: str, region: str, timeout: float | None) -> int:
    plan = load_plan(plan_path)
    tiers = [tier for r, _phase, tier in plan.gates() if r == region]
    if not tiers:
        print(f"controller: region {region!r} is not in the plan (regions: {', '.join(plan.regions)})")
        return 2
    for tier in tiers:
        print(f"controller: {region}: set traffic to {tier.traffic_percent:g}% (tier {tier.name}); waiting for GO")
        try:
            passed = await client.wait_for_pass(region, tier.name, timeout, through_holds=True)
        except TimeoutError:
            print(f"controller: {region}/{tier.name}: no pass within {timeout:g} s; staying on this tier")
            return 1
        print(f"controller: {region}/{tier.name}: GO at {passed.at} ({passed.reasons[0]})")
    print(f"controller: {region}: every tier passed; rollout complete")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers host:port")
    parser.add_argument("--topic", default="decisions", help="decisions topic (default: decisions)")
    parser.add_argument("--plan", default=str(PLAN), help="plan file (default: %(default)s)")
    parser.add_argument("--region", required=True)
    parser.add_argument("--timeout", type=float, help="seconds to wait for each tier's pass (default: forever)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(walk(DecisionClient(args.bootstrap, topic=args.topic), args.plan, args.region, args.timeout))
    except UserError as exc:
        print(f"controller: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
