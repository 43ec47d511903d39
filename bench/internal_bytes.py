"""Bytes the worker writes to its internal topics per telemetry byte it reads, and stage 1's memory.

    python -m bench.internal_bytes --events 2000000 --days 2

Runs the worker's own per-poll processing (``shell/worker/processor.py``, the code the worker runs between
fetch and produce) over a telemetry file (bench/telemetry_file.py: the seed plan's 24 gates), spread over 8
partitions unkeyed (random partition per record) and keyed (``region/tier``, murmur2), in polls of up to 10,000
records taken round-robin from the partitions, and feeds the ``<app-id>-panes`` messages back as the broker
would. Counted: the values and keys of every message to ``<app-id>-panes`` and of every changelog record (both
changelogs, written at checkpoints: every ``--checkpoint-polls`` polls here, every 2 s in the worker), against
the telemetry values read. The broker's own record overhead is left out on both sides. Also: the largest number
of open (gate, pane) partials stage 1 held at once (its memory is bounded by them: a few per gate per
partition, however long the input).

``--table-writes per-message``: what stage 2 would write if each panes message were an event of a Faust agent
whose table holds the gate states: Faust sends a changelog record at every table assignment, from inside the
event being processed (``faust/tables/table.py`` ``on_key_set``; a write outside an event raises,
``faust/tables/base.py``), so writes cannot be gathered per checkpoint: every message writes the gates it
changed. Stage 1's writes stay per checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka.partitioner import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.telemetry_file import write_file
from gatekeeper.planfile import load_plan
from gatekeeper.shell.faust_gate.state import FaustGateState
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics

PLAN = Path(__file__).resolve().parent.parent / "config" / "rollout-plan.yaml"
PARTITIONS = 8
POLL = 10_000
TOPICS = Topics("telemetry", "app-panes", "decisions", "breaches", "dlq", PARTITIONS)


def spread(lines: list[bytes], mode: str) -> dict[int, list[Record]]:
    """The lines on 8 telemetry partitions: keyed ``region/tier`` (murmur2) or on random partitions."""
    if mode == "keyed":
        keys = [line.split(b'"region":"', 1)[1].split(b'"', 1)[0] + b"/" +
                line.split(b'"tier":"', 1)[1].split(b'"', 1)[0] for line in lines]  # fmt: skip
        owner = [(murmur2(k) & 0x7FFFFFFF) % PARTITIONS for k in keys]
    else:
        owner = np.random.default_rng(7).integers(0, PARTITIONS, len(lines)).tolist()
    parts: dict[int, list[Record]] = {p: [] for p in range(PARTITIONS)}
    for line, p in zip(lines, owner, strict=True):
        parts[p].append(Record("telemetry", p, len(parts[p]), None, line))
    return parts


class Worker:
    """The processor with the broker played by hand: panes messages fed back, changelog writes counted."""

    def __init__(self, per_message: bool, faust: bool = False) -> None:
        nothing: dict[bytes, bytes] = {}  # no restore here: only what is written is counted
        self.processor = Processor(load_plan(PLAN), TOPICS, nothing.get, nothing.get)
        self.per_message = per_message
        # faust-table: stage 2 is the Faust gate agent's (shell/faust_gate/state.py) over a dict as its table
        self.faust = FaustGateState(load_plan(PLAN), TOPICS, {}, print) if faust else None
        self.offsets: dict[int, int] = {}  # panes partition -> records in it (the offsets stage 2 refers to)
        self.bytes = dict.fromkeys(("telemetry", "partials", "watermarks", "gate_changelog", "source_changelog"), 0)
        self.sources_due: dict[bytes, bytes] = {}  # stage-1 states changed since the last checkpoint
        self.decisions = 0

    def poll(self, runs: list[tuple[str, int, list[Record]]]) -> None:
        """One poll of telemetry, then the panes messages it caused until there are none."""
        self.bytes["telemetry"] += sum(len(r.value or b"") for _t, _p, run in runs for r in run)
        pending = [self.processor.flush_polled(runs)]
        if self.faust is not None:
            for _topic, q, records in self._panes(pending.pop()):
                for r in records:
                    self.decisions += sum(m.topic == "decisions" for m in self.faust.on_message(q, r.offset, r.key,
                                                                                                 r.value))  # fmt: skip
            self.bytes["gate_changelog"] = self.faust.totals.write_bytes
        while pending:
            back = self._panes(pending.pop())
            if not self.per_message:
                pending += [self.processor.flush_polled(back)] if back else []
                continue
            for _topic, q, records in back:
                for record in records:
                    pending.append(self.processor.flush_polled([("app-panes", q, [record])]))
                    self._write(gates_only=True)

    def checkpoint(self) -> None:
        self._write(gates_only=False)

    def _panes(self, flush: Flush) -> list[tuple[str, int, list[Record]]]:
        self.decisions += len(flush.decisions)
        by_partition: dict[int, list[bytes]] = {}
        for m in flush.messages:
            if m.topic == "app-panes":
                kind = "watermarks" if (m.value or b"").startswith(b'{"kind":"watermark"') else "partials"
                self.bytes[kind] += len(m.value or b"") + len(m.key or b"")
                by_partition.setdefault(m.partition, []).append(m.value or b"")
        back = []
        for q, values in sorted(by_partition.items()):
            first = self.offsets.get(q, 0)
            back.append(("app-panes", q, [Record("app-panes", q, first + i, None, v) for i, v in enumerate(values)]))
            self.offsets[q] = first + len(values)
        return back

    def _write(self, *, gates_only: bool) -> None:
        saved = self.processor.checkpoint()
        if self.faust is None:
            self.bytes["gate_changelog"] += sum(len(k) + len(v) for k, v in saved.gates.items())
        self.sources_due.update(dict(saved.sources.values()))
        if not gates_only:
            self.bytes["source_changelog"] += sum(len(k) + len(v) for k, v in self.sources_due.items())
            self.sources_due = {}


def run(
    lines: list[bytes], mode: str, checkpoint_polls: int, writes: str = "checkpoint", poll: int = POLL
) -> dict[str, Any]:
    parts = spread(lines, mode)
    worker = Worker(writes == "per-message", writes == "faust-table")
    cursor = dict.fromkeys(parts, 0)
    per_partition = max(1, poll // PARTITIONS)
    most_open = polls = 0
    began = time.perf_counter()
    while any(cursor[p] < len(parts[p]) for p in parts):
        runs = []
        for p, recs in parts.items():
            run_ = recs[cursor[p] : cursor[p] + per_partition]
            cursor[p] += len(run_)
            runs += [("telemetry", p, run_)] if run_ else []
        worker.poll(runs)
        polls += 1
        if polls % checkpoint_polls == 0 or not any(cursor[p] < len(parts[p]) for p in parts):
            worker.checkpoint()
        most_open = max(most_open, worker.processor.open_panes())
    seconds = time.perf_counter() - began
    b = worker.bytes
    internal = b["partials"] + b["watermarks"] + b["gate_changelog"] + b["source_changelog"]
    return {
        "records": len(lines),
        "seconds": seconds,
        "records_per_s": len(lines) / seconds,
        "telemetry_bytes": b["telemetry"],
        "internal_bytes": internal,
        "ratio": internal / b["telemetry"],
        "partials_bytes": b["partials"],
        "watermark_bytes": b["watermarks"],
        "changelog_bytes": b["gate_changelog"] + b["source_changelog"],
        "gate_changelog_bytes": b["gate_changelog"],
        "most_open_panes": most_open,
        "decisions": worker.decisions,
        "faust_bytes_by_kind": dict(worker.faust.totals.bytes_by_kind) if worker.faust else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--checkpoint-polls", type=int, default=5, help="polls between checkpoints (the worker: 2 s)")
    parser.add_argument("--modes", default="unkeyed,keyed", help="how telemetry is spread: unkeyed, keyed")
    parser.add_argument(
        "--poll",
        type=int,
        default=POLL,
        help="records per poll over all partitions (a backlog: 10,000; a live worker checkpointing every 2 s reads "
        "twice its input rate per checkpoint)",
    )
    parser.add_argument(
        "--table-writes",
        choices=("checkpoint", "per-message", "faust-table"),
        default="checkpoint",
        help="checkpoint: the worker's changed states once per checkpoint; per-message: the same states written per "
        "panes message (a naive Faust table); faust-table: the Faust gate agent's table (--gate-engine faust)",
    )
    args = parser.parse_args()
    plan = load_plan(PLAN)
    gates = [(region, tier.name) for region, _phase, tier in plan.gates()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "telemetry.jsonl"
        write_file(path, args.events, int(args.days * 86_400), gates)
        lines = path.read_bytes().splitlines()
    print(
        f"{len(lines):,} events over {args.days:g} days, {len(gates)} gates, {PARTITIONS} partitions, polls of "
        f"{args.poll}, a checkpoint every {args.checkpoint_polls}"
    )
    for mode in args.modes.split(","):
        r = run(lines, mode, args.checkpoint_polls, args.table_writes, args.poll)
        print(
            f"{mode:8s} internal/telemetry bytes {r['ratio'] * 100:.2f} % "
            f"(partials {r['partials_bytes'] / 1e6:.1f} MB, watermarks {r['watermark_bytes'] / 1e6:.1f} MB, "
            f"changelogs {r['changelog_bytes'] / 1e6:.1f} MB, of which gate states "
            f"{r['gate_changelog_bytes'] / 1e6:.1f} MB, of {r['telemetry_bytes'] / 1e6:.0f} MB read); "
            f"stage 1 held at most {r['most_open_panes']} open partials; {r['decisions']} decisions; "
            f"{r['records_per_s'] / 1e3:.0f}k records/s through both stages in one process (no Kafka)"
        )
        if r["faust_bytes_by_kind"]:
            print(f"         faust table bytes by kind (g: inboxes, p: partials, m: marks): {r['faust_bytes_by_kind']}")


if __name__ == "__main__":
    main()
