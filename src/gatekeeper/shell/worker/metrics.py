"""The worker's counters as a Prometheus text exposition file (``--metrics-file``), for a node exporter's
textfile collector or any scraper that reads files.

The file is rewritten atomically (a temporary file in the same directory, then ``os.replace``), so a reader
sees either the previous or the new content, never half of one. Counters count since the process started.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

_COUNTERS = (
    ("records", "gatekeeper_records_total", "Telemetry records consumed."),
    ("applied", "gatekeeper_applied_total", "Valid telemetry records aggregated (stage 1)."),
    ("skipped", "gatekeeper_skipped_total", "Telemetry records read again after a restart, already aggregated."),
    ("partials", "gatekeeper_partials_total", "Partials emitted by stage 1."),
    ("duplicates", "gatekeeper_duplicates_total", "Partials delivered again, already merged (stage 2)."),
    ("conflicts", "gatekeeper_conflicts_total", "Partials re-emitted with other content: never merged (a bug)."),
    ("late_partials", "gatekeeper_late_partials_total", "Partials for panes already closed (after idleness)."),
    ("late", "gatekeeper_late_events_total", "Events that arrived after their pane closed (counted, not used)."),
    ("ignored_spans", "gatekeeper_ignored_spans_total", "OTLP spans not used: not SERVER, no gate, bad times."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(totals: Mapping[str, int], rejected: Mapping[str, int], decided: Mapping[str, int]) -> str:
    """The counters in Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for name, metric, help_text in _COUNTERS:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter", f"{metric} {int(totals.get(name, 0))}"]
    for metric, label, values, help_text in (
        ("gatekeeper_rejected_total", "reason", rejected, "Invalid records sent to the DLQ, by reason code."),
        ("gatekeeper_decisions_total", "decision", decided, "Decisions emitted, by decision."),
    ):
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f'{metric}{{{label}="{_label(k)}"}} {int(v)}' for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


def write_atomically(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temporary file in the same directory, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of an exposition text (tests and tools; comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
