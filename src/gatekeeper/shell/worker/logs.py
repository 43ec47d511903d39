"""The worker's logging: structlog to stderr, and a filter that keeps aiokafka's retry floods short."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Any

import structlog

from gatekeeper.shell.worker.options import WorkerOptions


def configure_logging(options: WorkerOptions) -> Any:
    """structlog to stderr (console or JSON lines); returns the worker's logger."""
    level = getattr(logging, options.log_level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if options.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("gatekeeper.worker")


class RepeatFilter(logging.Filter):
    """Lets a log message (same logger, level and format string) through at most once per ``interval`` s,
    noting how many were held back. aiokafka logs a failed connection about every millisecond while a broker
    is down (160,000 lines for a 30 s outage); this keeps one line per kind and interval."""

    def __init__(self, interval: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval, self._clock = interval, clock
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: Counter[tuple[str, int, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] += 1
            return False
        self._last[key] = now
        if held := self._held.pop(key, 0):
            record.msg = f"{record.msg} [{held} more like it in the last {self.interval:g} s not logged]"
        return True


def log_client_errors(level: str, interval: float = 10.0) -> RepeatFilter:
    """Send the Kafka client's own log records (aiokafka; warnings and up unless ``level`` is debug) to stderr
    through one ``RepeatFilter``, so a broker outage logs a line per kind and interval, not a flood."""
    repeat = RepeatFilter(interval)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(repeat)
    client = logging.getLogger("aiokafka")
    client.handlers[:] = [handler]
    client.propagate = False
    client.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return repeat
