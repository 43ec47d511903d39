"""Replay's side inputs: incident, approval and business-metric JSONL files, read whole before the telemetry
(they are small) and applied to the pipeline's gates. Each record counts as of its own time, so reading them
first gives the decisions a worker gives when each record arrives before the gate's event time passes it.
A bad line is rejected with its file, line and reason (and written to ``--rejects``), never applied."""

from __future__ import annotations

import argparse
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from gatekeeper.core.telemetry import Rejection
from gatekeeper.errors import UserError

# replay imports this module at start-up, before it forks its stage-1 process; the side inputs' modules (records,
# ledgers, lift, incidents, approvals) and stage 2 (the pipeline) load only where they are used, after the fork
if TYPE_CHECKING:
    from gatekeeper.core.pipeline import Pipeline
    from gatekeeper.core.side_inputs import Kind

OPTIONS: dict[Kind, str] = {"incident": "incidents", "approval": "approvals", "business": "business"}


@dataclass(frozen=True, slots=True)
class SideFile:
    kind: Kind
    name: str  # for messages and as the records' source
    stream: BinaryIO


def load_side_files(engine: Pipeline, files: list[SideFile]) -> tuple[Counter[str], Counter[str], list[Rejection]]:
    """Apply every valid record of ``files`` to ``engine``; (records applied per kind, rejections per
    ``kind:code``, the rejections with positions as ``name:line`` in their message)."""
    from gatekeeper.core.side_records import Refused

    applied: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    rejections: list[Rejection] = []
    for f in files:
        for number, line in enumerate(f.stream.read().split(b"\n"), start=1):
            if not line.strip():
                continue
            routed = engine.side_router.route(f.kind, line)
            if isinstance(routed, Refused):
                rejected[f"{OPTIONS[f.kind]}:{routed.code}"] += 1
                rejections.append(Rejection(number, f"{OPTIONS[f.kind]}:{routed.code}", f"{f.name}: {routed.message}",
                                            line))  # fmt: skip
                continue
            engine.apply_side(routed, f"{f.kind}:{f.name}", number)
            applied[f.kind] += 1
    return applied, rejected, rejections


def add_side_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--incidents", metavar="FILE", help="incident records (JSONL, streams/incident.v1)")
    parser.add_argument("--approvals", metavar="FILE", help="GO/NO-GO approval records (JSONL, streams/approval.v1)")
    parser.add_argument(
        "--business",
        metavar="FILE",
        help="business metrics for lift criteria (JSONL, streams/business-metric.v1)",
    )


def side_files_of(args: argparse.Namespace) -> list[SideFile]:
    """The side files named on the command line, read whole (a missing or unreadable one is a ``UserError``)."""
    out: list[SideFile] = []
    for kind, option in OPTIONS.items():
        path = getattr(args, option, None)
        if path is None:
            continue
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"--{option} {path}: cannot read it: {exc.strerror or exc}") from None
        out.append(SideFile(kind, Path(path).name, io.BytesIO(data)))
    return out
