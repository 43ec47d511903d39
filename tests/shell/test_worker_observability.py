"""The worker's observability helpers without Kafka: the ``--metrics-file`` option and its Prometheus text,
and the filter that keeps aiokafka's per-millisecond connection errors from flooding the log."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gatekeeper.shell.worker.cli import configure, worker_options
from gatekeeper.shell.worker.logs import RepeatFilter
from gatekeeper.shell.worker.metrics import parse, render, write_atomically


def _options(*argv: str, environ: dict[str, str] | None = None) -> str | None:
    parser = argparse.ArgumentParser()
    configure(parser)
    return worker_options(parser.parse_args(list(argv)), environ or {}).metrics_file


def test_metrics_file_option_from_flag_or_environment() -> None:
    """``--metrics-file`` (or ``GATEKEEPER_METRICS_FILE``; the flag wins) names the file; off by default."""
    assert (None, "/a/m.prom", "/b/m.prom") == (
        _options(),
        _options(environ={"GATEKEEPER_METRICS_FILE": "/a/m.prom"}),
        _options("--metrics-file", "/b/m.prom", environ={"GATEKEEPER_METRICS_FILE": "/a/m.prom"}),
    )


def test_metrics_text_is_prometheus_exposition(tmp_path: Path) -> None:
    """Every counter has HELP and TYPE lines; rejects and decisions are labelled (values escaped); the file is
    replaced whole, with no temporary file left behind."""
    text = render({"records": 12, "late": 3}, {"missing_field:ts": 2, 'we"ird\\': 1}, {"pass": 4})
    assert "# TYPE gatekeeper_rejected_total counter" in text.splitlines()
    expected = {
        "gatekeeper_records_total": 12.0,
        "gatekeeper_applied_total": 0.0,
        "gatekeeper_skipped_total": 0.0,
        "gatekeeper_partials_total": 0.0,
        "gatekeeper_duplicates_total": 0.0,
        "gatekeeper_conflicts_total": 0.0,
        "gatekeeper_late_partials_total": 0.0,
        "gatekeeper_late_events_total": 3.0,
        "gatekeeper_ignored_spans_total": 0.0,
        'gatekeeper_rejected_total{reason="missing_field:ts"}': 2.0,
        'gatekeeper_rejected_total{reason="we\\"ird\\\\"}': 1.0,
        'gatekeeper_decisions_total{decision="pass"}': 4.0,
    }
    assert expected == parse(text)
    path = tmp_path / "dir" / "worker.prom"
    write_atomically(path, "old\n")
    write_atomically(path, text)
    assert (text, ["worker.prom"]) == (path.read_text(), [p.name for p in path.parent.iterdir()])


def test_repeat_filter_keeps_one_line_per_interval() -> None:
    """The same message (logger, level, format string) passes once per interval whatever its arguments; the
    next one that passes says how many were held back; other messages are not affected."""
    now = [0.0]
    repeat = RepeatFilter(10.0, clock=lambda: now[0])

    def rec(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, None)

    passed = []
    for i in range(1000):
        now[0] = i * 0.03  # one every 30 ms for 30 s
        record = rec("Unable connect to node with id %s: %s", 1, f"attempt {i}")
        if repeat.filter(record):
            passed.append(record.getMessage())
    assert repeat.filter(rec("another message"))
    assert 3 == len(passed)
    assert "Unable connect to node with id 1: attempt 0" == passed[0]
    assert passed[1].endswith("[333 more like it in the last 10 s not logged]")
