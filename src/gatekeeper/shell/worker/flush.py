"""What the worker's stages hand back to the runtime: a flush's messages and counts, and a checkpoint's states."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gatekeeper.core import breach
from gatekeeper.core.decision import Decision
from gatekeeper.shell.worker.outgoing import Outgoing


@dataclass(slots=True)
class Flush:
    """What one flush produced: the caller sends ``messages`` and awaits them; the states it changed are
    written at the next ``Processor.checkpoint``."""

    messages: list[Outgoing] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    breaches: list[breach.Breach] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    applied: int = 0  # valid telemetry records folded by stage 1
    skipped: int = 0  # telemetry records below their partition's next offset (folded before)
    partials: int = 0  # partials emitted by stage 1
    late: int = 0  # records stage 1 counted late (their pane had passed their partition's watermark)
    duplicates: int = 0  # partials merged before, ignored
    conflicts: int = 0  # partials re-emitted with other content: never merged (a bug upstream)
    late_partials: int = 0  # partials for panes already closed (an idle partition woke up)


@dataclass(slots=True)
class Checkpoint:
    """The states changed since the last checkpoint, encoded: gate inboxes by key (their partition is the key's
    home), stage-1 states by telemetry partition."""

    gates: dict[bytes, bytes] = field(default_factory=dict)
    sources: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # partition -> (key, value)
