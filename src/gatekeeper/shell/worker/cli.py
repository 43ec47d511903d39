"""``gatekeeper worker``: flags and entry point of the Kafka worker (the engine behind a consumer group).

Every flag also reads a ``GATEKEEPER_*`` variable (the flag wins). This module does not import
aiokafka at import time: the CLI builds every subcommand's parser at start.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from pathlib import Path

from gatekeeper.errors import UserError
from gatekeeper.planfile import load_plan
from gatekeeper.shell.files import default_plan
from gatekeeper.shell.kafka_settings import add_kafka_arguments, kafka_settings
from gatekeeper.shell.otlp_options import add_otlp_arguments, otlp_mapping
from gatekeeper.shell.worker.options import (
    APP_ID_PATTERN,
    GATE_ENGINES,
    LOG_FORMATS,
    LOG_LEVELS,
    ROLES,
    TELEMETRY_FORMATS,
    WorkerOptions,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", default=default_plan(), help="plan file (default: %(default)s; GATEKEEPER_PLAN)")
    add_kafka_arguments(parser)
    add_otlp_arguments(parser)
    group = parser.add_argument_group("worker")
    group.add_argument("--app-id", help="consumer group id and topic prefix (GATEKEEPER_APP_ID; gatekeeper)")
    group.add_argument(
        "--role",
        choices=ROLES,
        help="both: aggregate telemetry and run the gates in this process; aggregate: stage 1 only (telemetry -> "
        "<app-id>-panes); gate: stage 2 only (<app-id>-panes -> decisions) (GATEKEEPER_ROLE; both)",
    )
    group.add_argument(
        "--gate-engine",
        choices=GATE_ENGINES,
        help="what runs stage 2 with --role gate: aiokafka (the worker's own loop) or faust (a faust-streaming agent "
        "over a changelog-backed table, consumer group <app-id>-faust-gate) (GATEKEEPER_GATE_ENGINE; aiokafka)",
    )
    group.add_argument("--batch", type=int, help="most records per poll, one engine call (GATEKEEPER_BATCH; 10000)")
    group.add_argument(
        "--jobs",
        type=int,
        help="processes: 1 decodes telemetry in the worker's process, 2 in a child process while the worker "
        "applies the previous poll (GATEKEEPER_JOBS; 2 with 2+ cores, else 1)",
    )
    group.add_argument(
        "--clock-interval",
        type=float,
        help="seconds between checks for idle telemetry and side-input partitions (GATEKEEPER_CLOCK_INTERVAL; 1)",
    )
    group.add_argument(
        "--checkpoint-interval",
        type=float,
        help="seconds between writes of the changed state to the changelogs, each followed by an offset commit "
        "(GATEKEEPER_CHECKPOINT_INTERVAL; 2)",
    )
    group.add_argument(
        "--report-interval",
        type=float,
        help="seconds between progress reports: counts, and the gates that closed no pane since the previous one "
        "with the partitions they wait for (GATEKEEPER_REPORT_INTERVAL; 30)",
    )
    group.add_argument(
        "--idle-after",
        type=float,
        help="seconds of wall time after which a telemetry partition read to its end with nothing new stops "
        "holding the gates' panes back (GATEKEEPER_IDLE_AFTER; 10)",
    )
    group.add_argument(
        "--session-timeout",
        type=float,
        help="seconds until the consumer group drops a worker that stopped heartbeating; a restarted worker "
        "waits this long for a killed one's partitions (GATEKEEPER_SESSION_TIMEOUT; 45)",
    )
    group.add_argument(
        "--metrics-file",
        help="write counters (records, rejects by reason, decisions, late events) in Prometheus text format to "
        "this file at every progress report and at exit (GATEKEEPER_METRICS_FILE; off)",
    )
    group.add_argument(
        "--telemetry-format",
        choices=TELEMETRY_FORMATS,
        help="json: contract-v1 records; otlp: OpenTelemetry trace batches as the Collector's kafkaexporter "
        "writes them (otlp_proto or otlp_json; contract-v1 records are read too) (GATEKEEPER_TELEMETRY_FORMAT; json)",
    )
    group.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics, /healthz and /readyz on this port (GATEKEEPER_METRICS_PORT; off; 0: any)",
    )
    group.add_argument("--metrics-host", help="address for --metrics-port (GATEKEEPER_METRICS_HOST; 0.0.0.0)")
    group.add_argument("--log-level", choices=LOG_LEVELS, help="(GATEKEEPER_LOG_LEVEL; info)")
    group.add_argument("--log-format", choices=LOG_FORMATS, help="(GATEKEEPER_LOG_FORMAT; console)")


def _pick(args: argparse.Namespace, name: str, environ: dict[str, str]) -> str | None:
    flag = getattr(args, name, None)
    if flag is not None:
        return str(flag)
    return environ.get(f"GATEKEEPER_{name.upper()}") or None


def worker_options(args: argparse.Namespace, environ: dict[str, str] | None = None) -> WorkerOptions:
    """Options from flags, then GATEKEEPER_* variables, then defaults; UserError when one is invalid."""
    env = dict(os.environ if environ is None else environ)
    base = WorkerOptions()
    app_id = _pick(args, "app_id", env) or base.app_id
    if not APP_ID_PATTERN.match(app_id):
        raise UserError(f"app id {app_id!r}: use 1-200 of A-Z a-z 0-9 . _ - (it names topics and the consumer group)")
    values: dict[str, float] = {}
    limits = (
        ("batch", int, 1),
        ("jobs", int, 1),
        ("clock_interval", float, 0.05),
        ("idle_after", float, 0.1),
        ("checkpoint_interval", float, 0.05),
        ("report_interval", float, 0.1),
    )
    for name, kind, low in (*limits, ("session_timeout", float, 6.0)):
        text = _pick(args, name, env)
        if text is None:
            values[name] = getattr(base, name)
            continue
        try:
            value = kind(text)
        except ValueError:
            raise UserError(f"--{name.replace('_', '-')} {text!r} is not a number") from None
        if not math.isfinite(value) or value < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}, not {text}")
        values[name] = value
    role = (_pick(args, "role", env) or base.role).lower()
    if role not in ROLES:
        raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
    engine = (_pick(args, "gate_engine", env) or base.gate_engine).lower()
    if engine not in GATE_ENGINES:
        raise UserError(f"gate engine {engine!r}: use one of {', '.join(GATE_ENGINES)}")
    if engine == "faust" and role != "gate":
        raise UserError(f"--gate-engine faust runs stage 2 only: use it with --role gate (not {role})")
    level = (_pick(args, "log_level", env) or base.log_level).lower()
    fmt = (_pick(args, "log_format", env) or base.log_format).lower()
    if level not in LOG_LEVELS:
        raise UserError(f"log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise UserError(f"log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    telemetry_format = (_pick(args, "telemetry_format", env) or base.telemetry_format).lower()
    if telemetry_format not in TELEMETRY_FORMATS:
        raise UserError(f"telemetry format {telemetry_format!r}: use one of {', '.join(TELEMETRY_FORMATS)}")
    port_text = _pick(args, "metrics_port", env)
    if port_text is not None and (not port_text.isdigit() or int(port_text) > 65535):
        raise UserError(f"--metrics-port {port_text!r}: use a port number 0-65535 (0 picks a free one)")
    return WorkerOptions(
        app_id=app_id,
        role=role,
        gate_engine=engine,
        batch=int(values["batch"]),
        jobs=min(2, int(values["jobs"])),
        clock_interval=float(values["clock_interval"]),
        idle_after=float(values["idle_after"]),
        checkpoint_interval=float(values["checkpoint_interval"]),
        report_interval=float(values["report_interval"]),
        session_timeout=float(values["session_timeout"]),
        log_level=level,
        log_format=fmt,
        metrics_file=str(Path(metrics_file)) if (metrics_file := _pick(args, "metrics_file", env)) else None,
        telemetry_format=telemetry_format,
        otlp=otlp_mapping(args, env),
        metrics_port=None if port_text is None else int(port_text),
        metrics_host=_pick(args, "metrics_host", env) or base.metrics_host,
    )


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    settings = kafka_settings(args)
    options = worker_options(args)
    from gatekeeper.shell.worker.app import run_worker
    from gatekeeper.shell.worker.logs import configure_logging
    from gatekeeper.shell.worker.topics import ensure_worker_topics

    log = configure_logging(options)
    counts = asyncio.run(ensure_worker_topics(settings, options.app_id))
    log.info(
        "topics ready",
        bootstrap=settings.bootstrap,
        partitions=settings.topics.partitions,
        topics=sorted(counts),
    )
    if options.gate_engine == "faust":
        from gatekeeper.shell.faust_gate.app import run_faust_gate

        return run_faust_gate(plan, settings, options, log)
    return run_worker(plan, settings, options, log)
