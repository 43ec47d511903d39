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
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from aiokafka.partitioner import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.telemetry_file import write_file
from gatekeeper.planfile import load_plan
from gatekeeper.shell.worker.processor import Processor, Record, Topics

PLAN = Path(__file__).resolve().parent.parent / "config" / "rollout-plan.yaml"
PARTITIONS = 8
POLL = 10_000


def run(lines: list[bytes], mode: str, checkpoint_polls: int) -> dict[str, float]:
    plan = load_plan(PLAN)
    topics = Topics("telemetry", "app-panes", "decisions", "breaches", "dlq", PARTITIONS)
    gates: dict[bytes, bytes] = {}
    sources: dict[bytes, bytes] = {}
    processor = Processor(plan, topics, gates.get, sources.get)
    if mode == "keyed":
        keys = [line.split(b'"region":"', 1)[1].split(b'"', 1)[0] + b"/" +
                line.split(b'"tier":"', 1)[1].split(b'"', 1)[0] for line in lines]  # fmt: skip
        owner = [(murmur2(k) & 0x7FFFFFFF) % PARTITIONS for k in keys]
    else:
        owner = np.random.default_rng(7).integers(0, PARTITIONS, len(lines)).tolist()
    parts: dict[int, list[Record]] = {p: [] for p in range(PARTITIONS)}
    for line, p in zip(lines, owner, strict=True):
        parts[p].append(Record("telemetry", p, len(parts[p]), None, line))
    cursor = dict.fromkeys(parts, 0)
    per_partition = POLL // PARTITIONS
    panes: dict[int, list[bytes]] = {}
    read = {"telemetry": 0, "internal": 0, "partials": 0, "watermarks": 0, "changelogs": 0}
    most_open = 0
    decisions = 0
    polls = 0
    began = time.perf_counter()
    while any(cursor[p] < len(parts[p]) for p in parts):
        runs = []
        for p, recs in parts.items():
            run_ = recs[cursor[p] : cursor[p] + per_partition]
            cursor[p] += len(run_)
            if run_:
                runs.append(("telemetry", p, run_))
                read["telemetry"] += sum(len(r.value or b"") for r in run_)
        pending = [processor.flush_polled(runs)]
        while pending:
            flush = pending.pop()
            decisions += len(flush.decisions)
            for m in flush.messages:
                if m.topic == "app-panes":
                    size = len(m.value or b"") + len(m.key or b"")
                    read["internal"] += size
                    read["partials" if (m.key or b"").count(b"/") else "watermarks"] += size
                    panes.setdefault(m.partition, []).append(m.value or b"")
            if panes:
                back = [("app-panes", q, [Record("app-panes", q, i, None, v) for i, v in enumerate(vs)])
                        for q, vs in sorted(panes.items())]  # fmt: skip
                panes = {}
                pending.append(processor.flush_polled(back))
        polls += 1
        if polls % checkpoint_polls == 0 or not any(cursor[p] < len(parts[p]) for p in parts):
            saved = processor.checkpoint()
            for key, value in [*saved.gates.items(), *saved.sources.values()]:
                read["internal"] += len(key) + len(value)
                read["changelogs"] += len(key) + len(value)
            gates.update(saved.gates)
            sources.update(dict(saved.sources.values()))
        most_open = max(most_open, processor.open_panes())
    seconds = time.perf_counter() - began
    return {
        "records": len(lines),
        "seconds": seconds,
        "records_per_s": len(lines) / seconds,
        "telemetry_bytes": read["telemetry"],
        "internal_bytes": read["internal"],
        "ratio": read["internal"] / read["telemetry"],
        "partials_bytes": read["partials"],
        "watermark_bytes": read["watermarks"],
        "changelog_bytes": read["changelogs"],
        "most_open_panes": most_open,
        "decisions": decisions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--checkpoint-polls", type=int, default=5, help="polls between checkpoints (the worker: 2 s)")
    args = parser.parse_args()
    plan = load_plan(PLAN)
    gates = [(region, tier.name) for region, _phase, tier in plan.gates()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "telemetry.jsonl"
        write_file(path, args.events, int(args.days * 86_400), gates)
        lines = path.read_bytes().splitlines()
    print(
        f"{len(lines):,} events over {args.days:g} days, {len(gates)} gates, {PARTITIONS} partitions, polls of {POLL}"
    )
    for mode in ("unkeyed", "keyed"):
        r = run(lines, mode, args.checkpoint_polls)
        print(
            f"{mode:8s} internal/telemetry bytes {r['ratio'] * 100:.2f} % "
            f"(partials {r['partials_bytes'] / 1e6:.1f} MB, watermarks {r['watermark_bytes'] / 1e6:.1f} MB, "
            f"changelogs {r['changelog_bytes'] / 1e6:.1f} MB of {r['telemetry_bytes'] / 1e6:.0f} MB read); "
            f"stage 1 held at most {r['most_open_panes']} open partials; {r['decisions']} decisions; "
            f"{r['records_per_s'] / 1e3:.0f}k records/s through both stages in one process (no Kafka)"
        )


if __name__ == "__main__":
    main()
