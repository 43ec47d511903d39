"""The worker's own CPU time per poll, without Kafka, against a decode-only pass in the same run.

    python -m bench.worker_cpu --events 300000 --days 0.05 [--profile unkeyed]

Drives the worker's ``Processor`` (``shell/worker/processor.py``) as ``bench/internal_bytes.py`` does: the
telemetry file (bench/telemetry_file.py, the seed plan's gates) spread over 8 partitions keyed (``region/tier``,
murmur2) or unkeyed (random partition per record), polls of up to 10,000 records round-robin over the
partitions, the ``<app-id>-panes`` messages fed back as the broker would, a checkpoint every
``--checkpoint-polls`` polls (the bench's worker checkpoints every 0.5 s: every one or two polls). Each poll's
values are decoded first (as the worker's decoding child does) and that decoding is timed apart from the rest.

CPU seconds (``time.process_time``; the machine is shared, so wall time means little), per part:
decode-only (a bare pass of the worker's decoder over the same polls), then the worker's main-process work:
stage 1 + stage 2 of the telemetry polls (``flush_polled`` with the decoded batch), stage 2 of the panes
messages fed back, and checkpoints (encoding the changed states). The ratio that matters for issue 9's
throughput target: the worker's main-process CPU against the decode-only pass.
``--profile MODE``: the same run of MODE under cProfile, its top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.internal_bytes import PARTITIONS, PLAN, POLL, Worker, spread
from bench.telemetry_file import lines_of
from gatekeeper.planfile import load_plan
from gatekeeper.shell.worker.records import Record

Runs = list[tuple[str, int, list[Record]]]


def polls_of(lines: list[bytes], mode: str) -> list[Runs]:
    """The polls the worker would make: up to ``POLL`` records, an equal share from each partition in turn."""
    parts = spread(lines, mode)
    cursor = dict.fromkeys(parts, 0)
    share = POLL // PARTITIONS
    polls: list[Runs] = []
    while any(cursor[p] < len(parts[p]) for p in parts):
        runs: Runs = []
        for p, recs in parts.items():
            run = recs[cursor[p] : cursor[p] + share]
            cursor[p] += len(run)
            runs += [("telemetry", p, run)] if run else []
        polls.append(runs)
    return polls


def decode_only(polls: list[Runs]) -> float:
    """CPU seconds of the worker's decoder over every poll's values, nothing else."""
    decoder = Worker(False).processor.partitions.decoder
    began = time.process_time()
    for runs in polls:
        decoder.decode([r.value or b"" for _t, _p, run in runs for r in run], first_position=0)
    return time.process_time() - began


def worker_pass(polls: list[Runs], checkpoint_polls: int) -> dict[str, float]:
    """CPU seconds of the worker's per-poll work, by part; and the decisions made."""
    worker = Worker(False)
    processor = worker.processor
    spent = dict.fromkeys(("decode", "telemetry polls", "panes polls", "checkpoints"), 0.0)
    for n, runs in enumerate(polls, 1):
        t0 = time.process_time()
        decoded = processor.partitions.decoder.decode(
            [r.value or b"" for _t, _p, run in runs for r in run], first_position=0
        )
        t1 = time.process_time()
        flush = processor.flush_polled(runs, decoded=decoded)
        t2 = time.process_time()
        back = worker._panes(flush)
        while back:  # the panes messages, read back as the next polls would
            back = worker._panes(processor.flush_polled(back))
        t3 = time.process_time()
        if n % checkpoint_polls == 0 or n == len(polls):
            worker.checkpoint()
        t4 = time.process_time()
        for part, took in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[part] += took
    spent["decisions"] = worker.decisions
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--days", type=float, default=0.05)
    parser.add_argument("--checkpoint-polls", type=int, default=2, help="polls between checkpoints (bench: ~1-2)")
    parser.add_argument("--modes", default="keyed,unkeyed")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", choices=("keyed", "unkeyed"), help="also profile one mode (cProfile)")
    args = parser.parse_args()
    gates = [(region, tier.name) for region, _phase, tier in load_plan(PLAN).gates()]
    lines = lines_of(args.events, args.days, gates)
    print(f"{len(lines):,} events over {args.days:g} days, {len(gates)} gates, polls of {POLL}")
    for _round in range(args.rounds):
        for mode in args.modes.split(","):
            polls = polls_of(lines, mode)
            base = decode_only(polls)
            spent = worker_pass(polls, args.checkpoint_polls)
            main_cpu = spent["telemetry polls"] + spent["panes polls"] + spent["checkpoints"]
            print(
                f"{mode:8s} decode-only {base:6.2f} s | worker: decode {spent['decode']:6.2f}  telemetry polls "
                f"{spent['telemetry polls']:6.2f}  panes polls {spent['panes polls']:6.2f}  checkpoints "
                f"{spent['checkpoints']:6.2f}  (main process without decoding {main_cpu:6.2f} s = "
                f"{main_cpu / base:.2f}x decode-only; {spent['decisions']:.0f} decisions)",
                flush=True,
            )
    if args.profile:
        polls = polls_of(lines, args.profile)
        profiler = cProfile.Profile()
        profiler.runcall(worker_pass, polls, args.checkpoint_polls)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
