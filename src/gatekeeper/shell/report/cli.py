"""``gatekeeper report``: flags and entry point; ``write_report`` is also what ``replay --report`` calls."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gatekeeper.core.decision import Decision
from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.shell.kafka_settings import add_kafka_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("decisions (one of)")
    source.add_argument("--decisions", metavar="FILE", help="decisions JSON lines (replay's output), or - for stdin")
    parser.add_argument("--output", required=True, help="the HTML file to write")
    parser.add_argument("--plan", help="the plan: orders tiers as it does and shows soak progress (optional)")
    parser.add_argument("--title", default="gatekeeper rollout report")
    add_kafka_arguments(parser)  # --bootstrap ...: read the decisions topic instead of a file


def write_report(decisions: list[Decision], plan: Plan | None, output: str, title: str) -> int:
    """Render ``decisions`` to ``output``; returns how many gates it shows."""
    from gatekeeper.shell.report.page import render
    from gatekeeper.shell.report.timeline import summarize, timelines

    order = soaks = None
    if plan is not None:
        order = list(dict.fromkeys(tier.name for _region, _phase, tier in plan.gates()))
        soaks = {(region, tier.name): tier.soak for region, _phase, tier in plan.gates()}
    gates = timelines(decisions, order, soaks)
    page = render(gates, summarize(gates, order), title)
    try:
        Path(output).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the report {output}: {exc.strerror}") from None
    return len(gates)


def run(args: argparse.Namespace) -> int:
    from gatekeeper.planfile import load_plan
    from gatekeeper.shell.files import open_in
    from gatekeeper.shell.report.sources import from_lines, from_topic

    if args.decisions is not None and args.bootstrap is not None:
        raise UserError("give the decisions as --decisions FILE or read them from Kafka with --bootstrap, not both")
    if args.decisions is None and args.bootstrap is None and not os.environ.get("GATEKEEPER_BOOTSTRAP"):
        raise UserError("give the decisions as --decisions FILE or read them from Kafka with --bootstrap HOST:PORT")
    plan = load_plan(args.plan) if args.plan else None
    if args.decisions is not None:  # a file wins over GATEKEEPER_BOOTSTRAP from the environment
        with open_in(args.decisions) as source:
            collected = from_lines(source, args.decisions)
    else:
        from gatekeeper.shell.kafka_settings import kafka_settings

        collected = from_topic(kafka_settings(args))
    if collected.problems:
        print(
            f"gatekeeper report: skipped {len(collected.problems)} record(s):\n{collected.say_problems()}",
            file=sys.stderr,
        )
    if not collected.decisions:
        raise UserError("no decisions to report")
    gates = write_report(collected.decisions, plan, args.output, args.title)
    print(f"gatekeeper report: {len(collected.decisions)} decisions of {gates} gates -> {args.output}", file=sys.stderr)
    return 0
