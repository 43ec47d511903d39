"""Throughput and decision delay through a real Kafka broker, all in one bounded run.

    python bench/kafka_bench.py                        # a local JVM broker via scripts/local_kafka.py
    python bench/kafka_bench.py --events 300000 --days 0.05 --phases afc --keying keyed
    python bench/kafka_bench.py --bootstrap HOST:PORT  # an existing cluster (topics bench-<run>-*, deleted after)
    python bench/kafka_bench.py --worker stub          # (c)/(d) against the reference worker
    python bench/kafka_bench.py --phases accc --keying unkeyed --worker-cmd "A" --worker-cmd "B"
                                                       # two workers (e.g. two trees) in interleaved rounds

What it does, for each ``--keying`` (default both: keyed, then unkeyed, each on its own fresh topics):

0. Writes N telemetry events (default 500k) with bench/telemetry_file.py: the 24 gates of the plan over
   ``--days`` (default 2) of event time, in time order, and produces them keyed ``region/tier`` or unkeyed
   (aiokafka ``send()``, acks=all) to a fresh 8-partition telemetry topic: every gate's records on one
   partition, or on all of them. The backlog is complete before any consumer starts, so every phase reads
   the same records at full speed.
1. (a) raw aiokafka: one consumer, no group, all partitions assigned, ``getmany`` until N records; events/s
   from the first ``getmany`` call to the last batch (only the loop: no decoding).
   (f) the floor of a Python consumer that decodes: confluent-kafka (librdkafka) with ``fetch.queue.backoff.ms``
   lowered to 1, ``consume`` in batches of 10,000, each value decoded by msgspec into the contract-v1 struct.
2. (q) bench/quix_app.py: what a user would write instead, a quixstreams 3.x app computing per region/tier
   and event-time minute the request and error counts and the P99 (unkeyed: regrouped by ``group_by``).
   (b), on request only: bench/naive_faust_app.py (a table write and ``numpy.percentile`` per event): a
   strawman, not a baseline a user would pick.
3. (c) the gatekeeper worker: ``python -m gatekeeper.shell.cli worker ... --app-id bench-<run>-...-worker``
   as a subprocess (``--worker-cmd`` overrides the command line; the default checkpoints every 0.5 s so that
   the bench sees a few commits a second). ``--worker stub`` runs instead a reference,
   bench/kafka_stub_worker.py (started as this file with ``--stub-worker``): ``core.Engine`` behind one plain
   aiokafka consumer (batch in, decisions out, commit).
   (q), (b) and (c) are measured the same way, from outside the process: the consumer group's committed
   offsets on the telemetry topic, polled every 50 ms (the group is found as the one that commits offsets on
   this run's topic, so the worker's group id need not be known). Each *change* of the committed sum is a
   commit the process made after processing that many events; the rate is (events committed between the
   first and the last commit) / (time between them). Start-up, topic creation and rebalance happen before
   the first commit and are excluded; the error is about one poll interval at each end plus however long the
   process sits on processed events before committing them, so each figure is reported with the number of
   commits and the seconds it spans, and with the CPU the process tree used over that span (psutil; near
   100 % of a core: CPU-bound). A phase that does not finish within ``--phase-seconds`` is reported as a
   partial rate.
4. (d) decision delay, with a fresh worker (its own ``--app-id``, so no gate state from (c)) on fresh topics:
   a telemetry stream in which every gate breaches its error-rate ceiling in the first hour, spread round-robin
   over the partitions (unkeyed), is run offline through the two stages (one source per partition) to find
   the *closing* events: the event that moves the last partition's watermark far enough for the gates to
   decide (bench/kafka_delay.py; the worker runs with ``--idle-after 600``, so no partition turns idle while
   the bench pauses). Everything before the first closing event is produced in bulk; once the worker has committed
   it, each closing event is produced on its own, about one per second, and the bench waits until the
   decisions it closes are readable on the decisions topic. Reported:
   * upper bound: wall time from just before producing the closing event to reading each of its decisions
     (includes the producer round trip, the worker's fetch, processing and produce, and the reader's fetch);
   * exact, when the worker provides the hook: each decision record carries the header
     ``gk-closed-wall-ms`` = the wall-clock time (epoch ms, decimal ASCII) at which the worker consumed the
     telemetry record that moved the gate's watermark past the window end (or hold end, or stall deadline)
     the decision is about; delay = time the decision was read - that header.

The run is bounded (``--time-limit``, default 900 s) and always stops its subprocesses and its broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: ``bench`` importable too
from bench.kafka_delay import measure_delay
from bench.kafka_measure import (
    PARTITIONS,
    PLAN,
    REPO,
    BenchError,
    Rate,
    Results,
    as_json,
    confluent_floor,
    known_groups,
    produce_file,
    raw_consume,
    running,
    settings_for,
    watch_commits,
)
from bench.kafka_stub_worker import stub_worker
from gatekeeper.errors import UserError
from gatekeeper.planfile import load_plan
from gatekeeper.shell.kafka_admin import admin_client, ensure_topics, gatekeeper_topics
from gatekeeper.shell.kafka_settings import KafkaSettings

PYTHON = sys.executable
WORKER_CMD = (
    "{python} -m gatekeeper.shell.cli worker --plan {plan} --bootstrap {bootstrap} "
    "--telemetry-topic {telemetry} "
    "--decisions-topic {decisions} --dlq-topic {dlq} --breaches-topic {breaches} --app-id {app_id} "
    "--checkpoint-interval 0.5"  # the bench sees progress only as commits: a few per second (default 2 s)
)
STUB_CMD = (
    "{python} {bench} --stub-worker --plan {plan} --bootstrap {bootstrap} --telemetry-topic {telemetry} "
    "--decisions-topic {decisions} --group {app_id}"
)


def worker_argv(template: str, settings: KafkaSettings, app_id: str, workdir: Path) -> list[str]:
    """The worker command line: ``template`` with {python} {bench} {plan} {bootstrap} {telemetry} {decisions}
    {dlq} {breaches} {app_id} {data_dir} filled in (each phase gets its own app id: no shared state)."""
    names = settings.topics
    fields = {
        "python": PYTHON,
        "bench": str(Path(__file__).resolve()),
        "plan": str(PLAN),
        "bootstrap": settings.bootstrap,
        "telemetry": names.telemetry,
        "decisions": names.decisions,
        "dlq": names.dlq,
        "breaches": names.breaches,
        "app_id": app_id,
        "data_dir": str(workdir / f"{app_id}-data"),
    }
    return [part.format(**fields) for part in template.split()]


# -- the run -------------------------------------------------------------------------------------------------
def load_module(path: Path) -> Any:
    """A module from a file outside the package (scripts/local_kafka.py, bench/telemetry_file.py)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def broker(args: argparse.Namespace) -> Iterator[str]:
    if args.bootstrap:
        yield args.bootstrap
        return
    local = load_module(REPO / "scripts" / "local_kafka.py").LocalKafka()
    began = time.perf_counter()
    try:
        bootstrap = str(local.start())
        print(f"  local broker {bootstrap} up in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        yield bootstrap
    finally:
        local.stop()


async def throughput(bootstrap: str, args: argparse.Namespace, results: Results, workdir: Path, run: str) -> None:
    plan = load_plan(PLAN)
    gates = [(region, tier.name) for region, _phase, tier in plan.gates()]
    data = workdir / "telemetry.jsonl"
    load_module(REPO / "bench" / "telemetry_file.py").write_file(data, args.events, int(args.days * 86_400), gates)
    for keying in args.keying.split(","):
        rates = results.rates.setdefault(keying, {})
        settings = settings_for(bootstrap, run, f"tp-{keying}")
        await ensure_topics(settings, gatekeeper_topics(settings))
        produced = rates["p"] = await produce_file(settings, data, keyed=keying == "keyed")
        note(f"{keying}: produced {args.events:,} events: {produced.text()}")
        rounds = 0  # (c) phases run so far: each runs every --worker-cmd in turn, its own app id each time
        for phase in args.phases:
            if phase not in "afqbc":
                continue
            templates = list(enumerate(args.worker_cmd, 1)) if phase == "c" else [(0, "")]
            for number, template in templates:
                prefix = f"bench-{run}-{keying}" + (f"-r{rounds}-w{number}" if number else "")
                label = phase + (f" #{number}" if len(templates) > 1 else "")
                try:
                    rates[phase] = await measure_phase(phase, keying, settings, args, workdir, prefix, template)
                except (BenchError, UserError) as exc:
                    rates[phase] = f"n/a: {exc}"
                shown = rates[phase]
                ratio = raw_ratio(rates, phase)
                note(f"{keying} ({label}) {shown if isinstance(shown, str) else shown.text()}{ratio}")
            rounds += phase == "c"


def raw_ratio(rates: dict[str, Rate | str], phase: str) -> str:
    """`` = 0.5x (a)`` for a worker phase measured beside the raw consume, else nothing."""
    worker, raw = rates.get(phase), rates.get("a")
    if phase != "c" or not isinstance(worker, Rate) or not isinstance(raw, Rate):
        return ""
    return f"  = {worker.per_s / raw.per_s:.3f}x (a)"


async def measure_phase(
    phase: str,
    keying: str,
    settings: KafkaSettings,
    args: argparse.Namespace,
    workdir: Path,
    prefix: str,
    template: str,
) -> Rate:
    """One phase over the telemetry topic of ``settings`` (its records ``keying``); (c) runs ``template``."""
    if phase == "a":
        return await raw_consume(settings, args.events, args.phase_seconds)
    if phase == "f":
        return await asyncio.to_thread(confluent_floor, settings, args.events, args.phase_seconds)
    ignore = await known_groups(settings)
    if phase == "q":
        env = {
            "GK_QUIX_BROKER": settings.bootstrap,
            "GK_QUIX_TOPIC": settings.topics.telemetry,
            "GK_QUIX_APP_ID": f"{prefix}-quix",
            "GK_QUIX_KEYED": "1" if keying == "keyed" else "0",
            "GK_QUIX_STATE": str(workdir / f"{prefix}-quix-state"),
        }
        with running("quix app", [PYTHON, str(REPO / "bench" / "quix_app.py")], workdir, env) as proc:
            return await watch_commits(settings, proc, args.events, args.phase_seconds, ignore)
    if phase == "b":
        env = {
            "GK_NAIVE_BROKER": settings.bootstrap,
            "GK_NAIVE_TOPIC": settings.topics.telemetry,
            "GK_NAIVE_APP_ID": f"{prefix}-naive",
            "GK_NAIVE_PARTITIONS": str(PARTITIONS),
            "GK_NAIVE_DATADIR": str(workdir / f"{prefix}-naive-data"),
        }
        argv = [PYTHON, str(REPO / "bench" / "naive_faust_app.py"), "worker", "-l", "warn", "--without-web"]
        with running("naive faust", argv, workdir, env) as proc:
            return await watch_commits(settings, proc, args.events, args.phase_seconds, ignore)
    argv = worker_argv(template, settings, f"{prefix}-worker", workdir)
    with running(f"{args.worker} worker", argv, workdir) as proc:
        return await watch_commits(settings, proc, args.events, args.phase_seconds, ignore)


def note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


async def run_all(args: argparse.Namespace, results: Results, workdir: Path) -> None:
    run = uuid.uuid4().hex[:8]
    with broker(args) as bootstrap:
        try:
            if set(args.phases) & set("afqbc"):
                await throughput(bootstrap, args, results, workdir, run)
            if "d" in args.phases:
                settings = settings_for(bootstrap, run, "delay")
                try:
                    worker = worker_argv(args.worker_cmd[0], settings, f"bench-{run}-delay", workdir)
                    if args.worker == "gatekeeper":  # no partition idle while the bench pauses (bench/kafka_delay.py)
                        worker += ["--idle-after", "600"]
                    results.delay = await measure_delay(settings, worker, workdir, args)
                except (BenchError, UserError) as exc:
                    results.delay = f"n/a: {exc}"
                note(f"(d) {results.delay if isinstance(results.delay, str) else results.delay.text()}")
        finally:
            if args.bootstrap and not args.keep_topics:  # a local broker goes away with its topics
                await delete_run_topics(settings_for(bootstrap, run, "cleanup"), f"bench-{run}-")


async def delete_run_topics(settings: KafkaSettings, prefix: str) -> None:
    """Delete this run's topics (ours, the workers' internal ones: all named ``bench-<run>-...``)."""
    with contextlib.suppress(Exception):  # best effort: never hide the results behind a cleanup error
        async with admin_client(settings) as admin:
            names = [name for name in await admin.list_topics() if name.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
                note(f"deleted {len(names)} topics {prefix}*")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--days", type=float, default=2.0, help="event time the events span (default 2)")
    parser.add_argument("--bootstrap", help="use this cluster instead of starting local brokers")
    parser.add_argument("--phases", default="afqcd", help="which of a, f, q, b, c, d to run (default afqcd)")
    parser.add_argument("--keying", default="keyed,unkeyed", help="telemetry keyed region/tier, unkeyed, or both")
    parser.add_argument("--worker", choices=["gatekeeper", "stub"], default="gatekeeper", help="(c)/(d) target")
    parser.add_argument(
        "--worker-cmd",
        action="append",
        help=f"command template for (c)/(d) (default: {WORKER_CMD}); given several times, each (c) runs them all in "
        "turn (interleaved rounds: --phases acc), (d) the first",
    )
    parser.add_argument("--phase-seconds", type=float, default=150.0, help="bound on each of (a)-(c)")
    parser.add_argument("--delay-rate", type=float, default=20.0, help="(d): requests/min per gate")
    parser.add_argument("--delay-timeout", type=float, default=15.0, help="(d): wait per closing event (s)")
    parser.add_argument("--time-limit", type=float, default=900.0, help="bound on the whole run (s)")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    parser.add_argument("--keep-topics", action="store_true", help="with --bootstrap: keep this run's topics")
    stub = parser.add_argument_group("internal: the reference worker (run by the bench itself)")
    stub.add_argument("--stub-worker", action="store_true", help=argparse.SUPPRESS)
    stub.add_argument("--plan", default=str(PLAN), help=argparse.SUPPRESS)
    stub.add_argument("--telemetry-topic", help=argparse.SUPPRESS)
    stub.add_argument("--decisions-topic", help=argparse.SUPPRESS)
    stub.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_cmd is None:
        args.worker_cmd = [STUB_CMD if args.worker == "stub" else WORKER_CMD]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retried NotLeaderForPartition etc. after creation
    if args.stub_worker:
        asyncio.run(stub_worker(args))
        return 0
    results = Results(events=args.events)
    status = 0
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        try:
            asyncio.run(asyncio.wait_for(run_all(args, results, Path(tmp)), args.time_limit))
        except TimeoutError:
            print(f"kafka_bench: stopped at the time limit ({args.time_limit:g} s)", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("kafka_bench: interrupted", file=sys.stderr)
            status = 130
        except UserError as exc:
            print(f"kafka_bench: error: {exc}", file=sys.stderr)
            status = 2
    print(results.render(f"{args.worker} worker"))
    if args.json:
        print(as_json(results))
    return status


if __name__ == "__main__":
    sys.exit(main())
