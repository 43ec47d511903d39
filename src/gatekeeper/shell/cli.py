"""The ``gatekeeper`` command line. Every user-facing error is one clear message and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gatekeeper.core.decision import Decision
from gatekeeper.core.timefmt import parse_instant
from gatekeeper.errors import UserError
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan, open_in, open_out
from gatekeeper.shell.kafka_settings import add_kafka_arguments
from gatekeeper.shell.otlp_options import INPUT_FORMATS, add_otlp_arguments
from gatekeeper.shell.side_files import add_side_arguments, side_files_of


def _instant(text: str) -> int:
    """An RFC 3339 option value as epoch ms; a bad one is argparse's usage error (before any file is opened)."""
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_plan_check(args: argparse.Namespace) -> int:
    from gatekeeper.shell.plan_summary import summarize  # imports the gates: not at every command's start-up

    plan = load_plan(args.path)
    print(summarize(plan))
    print("plan OK")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from gatekeeper.shell.otlp_options import otlp_mapping
    from gatekeeper.shell.progress import byte_progress
    from gatekeeper.shell.replay import detect_format, replay

    plan = load_plan(args.plan)
    mapping = otlp_mapping(args)
    size = None if args.input == "-" else Path(args.input).stat().st_size if Path(args.input).exists() else None
    side = side_files_of(args)
    with (
        open_in(args.input) as source,
        open_out(args.output) as sink,
        open_out(args.rejects) as rejects,
        open_out(args.breaches) as breaches,
        byte_progress(size, enabled=not args.quiet) as advance,
    ):
        assert sink is not None
        now_ms = args.now if args.now is not None else round(time.time() * 1000)
        input_format = args.format or detect_format(source)
        kept: list[Decision] = []
        summary = replay(
            plan, source, sink, flush=args.flush, rejects=rejects, breaches=breaches, on_progress=advance,
            now_ms=now_ms, jobs=args.jobs, input_format=input_format, mapping=mapping,
            on_decisions=kept.extend if args.report else None, side=side,
        )  # fmt: skip
    if args.report:
        from gatekeeper.shell.report.cli import write_report

        write_report(kept, plan, args.report, f"gatekeeper replay of {args.input}")
    if not args.quiet:
        print(summary.render(), file=sys.stderr)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gatekeeper.shell.simulate import run_simulate

    return run_simulate(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from gatekeeper.shell.demo import run_demo

    return run_demo(load_plan(args.plan), seed=args.seed, speed=args.speed, color=not args.no_color)


def _delegate(parser: argparse.ArgumentParser, module: str) -> None:
    """A subcommand owned by ``module``: its ``configure(parser)`` adds flags (the module must import
    lightly; aiokafka is imported inside ``run``) and ``run(args) -> int`` runs it."""
    owner = importlib.import_module(module)
    owner.configure(parser)
    parser.set_defaults(func=owner.run)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, the subcommand being run, the other delegated subcommands'
    modules are not imported (their asyncio, rich, ...: ~45 ms at every start-up, before replay's stage-1 process
    forks)."""

    def delegate(sub_parser: argparse.ArgumentParser, name: str, module: str) -> None:
        if command is None or command == name:
            _delegate(sub_parser, module)

    parser = argparse.ArgumentParser(prog="gatekeeper", description="Event-time SLO gate for staged rollouts.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="work with rollout plans")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True, metavar="ACTION")
    check = plan_sub.add_parser("check", help="validate a plan file and print a summary")
    check.add_argument("path")
    check.set_defaults(func=_cmd_plan_check)

    rep = sub.add_parser("replay", help="run the gate over recorded telemetry (JSONL) and write decisions")
    rep.add_argument("--plan", default=default_plan(), help="plan file (default: %(default)s)")
    rep.add_argument("--input", required=True, help="telemetry file, or - for stdin")
    rep.add_argument(
        "--format", choices=INPUT_FORMATS,
        help="json: contract-v1 lines; otlp-json: OTLP/JSON trace batches, one a line; otlp-proto: protobuf trace "
        "batches, each after its 4-byte big-endian length (default: detected from the first bytes)",
    )  # fmt: skip
    rep.add_argument("--output", default="-", help="decisions JSONL file, or - for stdout (default)")
    rep.add_argument("--rejects", help="write rejected records (line, reason, raw) to this JSONL file")
    rep.add_argument("--breaches", metavar="FILE", help="write burn-rate breach alert events (JSONL, breach v2) here")
    rep.add_argument("--report", metavar="HTML", help="also write the rollout report (see gatekeeper report)")
    rep.add_argument(
        "--flush",
        action="store_true",
        help="at end of input, close open windows as if the lateness had passed",
    )
    rep.add_argument("--quiet", action="store_true", help="no summary or progress on stderr")
    rep.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1),
        help="1: one process; 2 or more: stage 1 (reading, decoding, folding) in a child process, the gates here "
        "(default: %(default)s); decisions are identical for any",
    )  # fmt: skip
    now_help = "the clock for the future-timestamp check, RFC 3339 (default: this machine's clock)"
    rep.add_argument("--now", type=_instant, help=now_help)
    add_otlp_arguments(rep)
    add_side_arguments(rep)
    rep.set_defaults(func=_cmd_replay)

    sim = sub.add_parser("simulate", help="write simulated learner-analyzer telemetry for a scenario")
    sim.add_argument("--scenario", required=True, help="scenario file (see config/scenarios/)")
    sim.add_argument("--output", help="telemetry JSONL file, or - for stdout (default: stdout without --bootstrap)")
    sim.add_argument("--keyed", action="store_true", help="with --bootstrap: key records by region/tier")
    sim.add_argument("--side-dir", help="also write the scenario's incidents, approvals and business metrics here")
    add_kafka_arguments(sim)
    sim.set_defaults(func=_cmd_simulate)

    work = sub.add_parser("worker", help="run the gate on Kafka: a consumer-group member around replay's core")
    delegate(work, "worker", "gatekeeper.shell.worker.cli")

    tail = sub.add_parser("tail", help="print decisions from the decisions topic as they arrive")
    delegate(tail, "tail", "gatekeeper.shell.tail")

    report = sub.add_parser("report", help="a rollout's decisions as one self-contained HTML page with charts")
    delegate(report, "report", "gatekeeper.shell.report.cli")

    serve = sub.add_parser("serve", help="HTTP gate API, Flagger webhooks, Prometheus metrics and status page")
    delegate(serve, "serve", "gatekeeper.shell.serve.cli")

    demo = sub.add_parser("demo", help="simulate a whole rollout on the embedded engine and show the decisions")
    demo.add_argument("--plan", default=default_plan(), help="plan file (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--speed", type=float, default=0.0, help="pause (s) per simulated day; 0 runs flat out")
    demo.add_argument("--no-color", action="store_true")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        code: int = args.func(args)
    except UserError as exc:
        print(f"gatekeeper: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gatekeeper: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
