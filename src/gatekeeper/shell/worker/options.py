"""The worker's settings once flags and environment are resolved: a plain value the worker's parts share (kept
apart from the flag parsing in ``cli.py`` so that the process, the loop and logging do not import the CLI)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from gatekeeper.core.otlp_mapping import OtlpMapping

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("console", "json")
TELEMETRY_FORMATS = ("json", "otlp")  # otlp: trace batches (protobuf or OTLP/JSON) and contract-v1 records
ROLES = ("both", "aggregate", "gate")
GATE_ENGINES = ("aiokafka", "faust")  # faust: stage 2 as a faust-streaming agent (shell/faust_gate/), --role gate
APP_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,200}$")  # an app id names Kafka topics and the consumer group


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    app_id: str = "gatekeeper"
    role: str = "both"  # aggregate: stage 1 only (telemetry -> panes); gate: stage 2 only (panes -> decisions)
    gate_engine: str = "aiokafka"  # what runs stage 2 with --role gate (GATE_ENGINES)
    batch: int = 10_000  # most records per poll (one engine call)
    jobs: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))  # 2: decode in a child process
    clock_interval: float = 1.0  # seconds between checks for idle telemetry and side-input partitions
    checkpoint_interval: float = 2.0  # seconds between state writes + offset commits
    report_interval: float = 30.0  # seconds between "worker progress" log lines (and --metrics-file writes)
    idle_after: float = 10.0  # a partition read to its end with nothing new for this long is idle (wall time)
    session_timeout: float = 45.0  # seconds before the group drops a silent (killed) member: Kafka's default
    log_level: str = "info"
    log_format: str = "console"
    metrics_file: str | None = None  # Prometheus text file, rewritten at every progress report and at exit
    telemetry_format: str = "json"
    otlp: OtlpMapping = field(default_factory=OtlpMapping)  # where spans' region and tier come from
    metrics_port: int | None = None  # /metrics, /healthz, /readyz over HTTP (shell/worker/exporter.py)
    metrics_host: str = "0.0.0.0"  # a scrape target must be reachable from the Prometheus server
