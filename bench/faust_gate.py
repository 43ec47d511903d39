"""Stage 2 engines side by side on the real broker: ``--role gate`` (aiokafka) against ``--role gate --gate-engine
faust``, each beside its own ``--role aggregate`` worker over the same unkeyed backlog.

    python -m bench.faust_gate [--bootstrap HOST:PORT] [--minutes 180] [--rounds 1]

Per engine (fresh app id and topics each): the scenario of the broker tests (tests/kafka/worker_scenario.py, 5 gates,
``--minutes`` of event time, unkeyed on random partitions) is produced before the workers start. Printed:

- decisions equal to replay's (by id and content; late counts compared in total, as in the tests);
- seconds from the workers' start to the last decision (start-up included), the gate process's CPU seconds by
  then, and the 1-minute load average (the machine is shared: compare the engines within one round);
- decision delay: each decision record's broker timestamp minus its ``gk-closed-wall-ms`` header (the wall time the
  gate process read the panes message that closed it), P50 / P99 / max;
- gate-state changelog bytes (keys + values, tombstones counted by key): ``<app-id>-gate-state-changelog`` for
  aiokafka, the Faust table's ``<app-id>-faust-gate-gate-state-changelog``; and the panes topic's bytes;
- restart: the gate process SIGKILLed after its first decision, the rest produced, a new one started: seconds from
  its start to its first "partitions assigned" and to the last decision; decisions equal replay's after dedupe.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "kafka"), str(ROOT / "tests")]
import worker_harness as h  # noqa: E402  # the broker tests' helpers: one way to run and read the worker

from gatekeeper.core import decision as decisions  # noqa: E402

HOOK = "gk-closed-wall-ms"
FAST = ("--idle-after", "2", "--clock-interval", "0.2")
QUICK = ("--session-timeout", "8", "--idle-after", "20", "--clock-interval", "0.2")


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from local_kafka import LocalKafka

    local = LocalKafka()
    try:
        yield str(local.start())
    finally:
        local.stop()


def _cpu_s(worker: h.Worker) -> float:
    """CPU seconds (user + system) the gate process has used so far (Linux ``/proc``): on shared cores a
    fairer measure than wall time."""
    assert worker.proc is not None
    fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _bytes(bootstrap: str, topic: str) -> int:
    return sum(len(r.key or b"") + len(r.value or b"") for r in h.read_topic(bootstrap, topic))


def _delays_ms(records: list[h.Consumed], bootstrap: str, topic: str) -> list[float]:
    """Broker timestamp of each decision minus its hook header (read with timestamps)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[float]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in range(h.PARTITIONS)]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            out: list[float] = []
            left = sum(ends.values())
            while left > 0:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in batch:
                        left -= 1
                        hook = dict(r.headers).get(HOOK)
                        if hook is not None:
                            out.append(r.timestamp - int(hook))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run()) if records else []


def backlog(bootstrap: str, engine: str, minutes: int, workdir: Path) -> dict[str, object]:
    plan, names = h.write_plan(workdir), h.Names()
    lines = h.scenario(minutes=minutes, late_share=0.002, invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(bootstrap, names)
    h.produce(bootstrap, names.telemetry, lines, "spread")
    gate_flags = ("--role", "gate", "--gate-engine", engine)
    began = time.monotonic()
    aggregate = h.Worker(bootstrap, plan, names, workdir, f"agg-{engine}", "--role", "aggregate", *FAST)
    gate = h.Worker(bootstrap, plan, names, workdir, f"gate-{engine}", *gate_flags, *FAST)
    with h.running(aggregate, gate) as workers:
        got = h.wait_for(bootstrap, names.decisions, h.count_at_least(len(expected)), workers, timeout=600, settle=0)
        seconds = time.monotonic() - began
        cpu = _cpu_s(gate)
        time.sleep(3)
        for w in workers:
            w.stop()
    values = [r.value for r in got]
    equal = sorted(h.without_late_counts(expected)) == sorted(h.without_late_counts(values))
    delays = _delays_ms(got, bootstrap, names.decisions)
    changelog = f"{names.app_id}-faust-gate-gate-state-changelog" if engine == "faust" else (
        f"{names.app_id}-gate-state-changelog")  # fmt: skip
    return {
        "records": len(lines),
        "decisions": len(values),
        "equal_to_replay": equal,
        "seconds_to_last_decision": round(seconds, 1),
        "gate_cpu_s": cpu,
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "delay_ms_p50_p99_max": [round(float(np.percentile(delays, q)), 1) for q in (50, 99, 100)] if delays else [],
        "gate_changelog_bytes": _bytes(bootstrap, changelog),
        "panes_bytes": _bytes(bootstrap, f"{names.app_id}-panes"),
    }


def restart(bootstrap: str, engine: str, minutes: int, workdir: Path) -> dict[str, object]:
    plan, names = h.write_plan(workdir), h.Names()
    lines = h.scenario(minutes=minutes, invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(bootstrap, names)
    cut = len(lines) // 3
    gate_flags = ("--role", "gate", "--gate-engine", engine)
    aggregate = h.Worker(bootstrap, plan, names, workdir, f"ragg-{engine}", "--role", "aggregate", *QUICK)
    gate = h.Worker(bootstrap, plan, names, workdir, f"rgate-{engine}", *gate_flags, *QUICK)
    again = h.Worker(bootstrap, plan, names, workdir, f"ragain-{engine}", *gate_flags, *QUICK)
    with h.running(aggregate, gate) as workers:
        workers[0].wait_assigned()
        workers[1].wait_assigned(timeout=120)
        h.produce(bootstrap, names.telemetry, lines[:cut], "spread")
        h.wait_for(bootstrap, names.decisions, h.count_at_least(1), workers, settle=0.0, timeout=300)
        workers[1].stop(signal.SIGKILL)
        h.produce(bootstrap, names.telemetry, lines[cut:], "spread")
        began = time.monotonic()
        with h.running(again) as (restarted,):
            restarted.wait_assigned(timeout=120)
            assigned = time.monotonic() - began
            done = h.distinct_ids_at_least(len(expected))
            got = h.wait_for(bootstrap, names.decisions, done, (workers[0], restarted), timeout=600, settle=0)
            last = time.monotonic() - began
            time.sleep(3)
            restarted.stop()
            workers[0].stop()
    first, conflicts = h.dedupe([r.value for r in got])
    late = again.events("worker totals")
    return {
        "equal_to_replay": sorted(expected) == sorted(first) and not conflicts,
        "assigned_after_s": round(assigned, 1),
        "last_decision_after_s": round(last, 1),
        "decision_records": len(got),
        "distinct": len({decisions.decode(r.value).decision_id for r in got}),
        "late_partials": late[0].get("late_partials") if late else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap")
    parser.add_argument("--minutes", type=int, default=180)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--engines", default="aiokafka,faust")
    parser.add_argument("--skip-restart", action="store_true")
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap:
        for r in range(args.rounds):
            for engine in args.engines.split(","):
                with tempfile.TemporaryDirectory() as tmp:
                    print(f"round {r + 1} {engine:8s} backlog {backlog(bootstrap, engine, args.minutes, Path(tmp))}",
                          flush=True)  # fmt: skip
                if not args.skip_restart:
                    with tempfile.TemporaryDirectory() as tmp:
                        result = restart(bootstrap, engine, args.minutes, Path(tmp))
                    print(f"round {r + 1} {engine:8s} restart {result}", flush=True)


if __name__ == "__main__":
    main()
