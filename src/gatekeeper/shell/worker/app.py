"""``gatekeeper worker``'s process: the event loop, signals, the runtime, the exit code."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from gatekeeper.core.otlp import OtlpDecoder
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.worker import gc_policy
from gatekeeper.shell.worker.decoding import Decoding, decoding
from gatekeeper.shell.worker.logs import log_client_errors
from gatekeeper.shell.worker.options import WorkerOptions
from gatekeeper.shell.worker.runtime import Runtime


async def _serve(plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any, decoding: Decoding) -> int:
    runtime = Runtime(plan, settings, options, log, decoding)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop)
    log.info(
        "worker starting",
        app_id=options.app_id,
        plan_version=plan.plan_version,
        gates=len(runtime.processor.keys),
        telemetry=settings.topics.telemetry,
        decisions=settings.topics.decisions,
        batch=options.batch,
        jobs=options.jobs,
        telemetry_format=options.telemetry_format,
    )
    gc_policy.settle()  # start-up is over: fewer collections of the records a poll holds
    try:
        await runtime.run()
    except Exception as exc:  # the clients could not start (broker unreachable, bad credentials)
        log.error("cannot run the worker", bootstrap=settings.bootstrap, error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        runtime.report(final=True)
    return 1 if runtime.failed is not None else 0


def run_worker(plan: Plan, settings: KafkaSettings, options: WorkerOptions, log: Any) -> int:
    """Run until SIGTERM / SIGINT (exit 0) or a failure (exit 1)."""
    log_client_errors(options.log_level)
    pipeline = Pipeline(plan)
    telemetry = pipeline.decoder()
    if options.telemetry_format == "otlp":
        telemetry = OtlpDecoder(pipeline.keys, options.otlp, None, pipeline.layout.baselines, pipeline.layout.cross)
    decoder = decoding(telemetry, options.jobs)  # forks now, before any client or loop exists
    try:
        return asyncio.run(_serve(plan, settings, options, log, decoder))
    finally:
        decoder.close()
