"""Does a Faust agent with a changelog-backed table process every record across SIGKILLs and rebalances?

    python -m bench.faust_recovery --bootstrap 127.0.0.1:9092 [--per-partition 4000] [--rounds 3]

The question ARCHITECTURE.md's "Why not Faust for stage 2" turns on, measured on the real broker rather than
recalled. A faust-streaming app (this file, ``app`` argument, run as subprocesses) reads a topic of 8 partitions
whose records carry no information but their offsets; for every event it reads ``progress[partition]`` (the
next offset it expects, from a memory-store Table restored from its changelog), logs
``label partition offset expected`` and stores ``max(expected, offset + 1)``. Faust flushes the changelog
before it commits offsets, so after any crash the restored table is at least at the committed offset: an
event whose offset is *above* the expected one means the records in between were never given to the agent
(skipped), one below means records read again (at least once, allowed).

Scenarios per round: (1) a backlog, one worker SIGKILLed mid-way, more records produced while it is down,
a new worker started; (2) two workers sharing the partitions, one SIGKILLed mid-way, the other takes over.
Printed: records produced, events processed, offsets never processed, skip events (offset > expected),
re-processed events, per scenario and round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PARTITIONS = 8


def app_main() -> None:
    """The Faust worker (configured by GK_FR_* variables)."""
    import faust

    app = faust.App(
        os.environ["GK_FR_APP_ID"],
        broker=f"kafka://{os.environ['GK_FR_BROKER']}",
        store="memory://",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        datadir=os.environ["GK_FR_DATADIR"],
        web_enabled=False,
        broker_session_timeout=10,
        broker_heartbeat_interval=3,
        broker_commit_every=1000,
    )
    topic = app.topic(os.environ["GK_FR_TOPIC"], key_type=bytes, value_type=bytes, value_serializer="raw")
    progress = app.Table("progress", default=int, partitions=PARTITIONS)
    log = Path(os.environ["GK_FR_LOG"]).open("a", buffering=1)  # noqa: SIM115 - open for the process's life
    label = os.environ["GK_FR_LABEL"]

    @app.agent(topic)
    async def follow(stream: Any) -> None:
        async for event in stream.events():
            p, offset = event.message.partition, event.message.offset
            expected = progress[str(p)]
            log.write(f"{label} {p} {offset} {expected}\n")
            progress[str(p)] = max(expected, offset + 1)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


async def _produce(bootstrap: str, topic: str, per_partition: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"x", partition=p) for _ in range(per_partition) for p in range(PARTITIONS)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _create(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


class Worker:
    def __init__(self, bootstrap: str, app_id: str, topic: str, workdir: Path, label: str) -> None:
        self.log = workdir / "events.log"
        env = dict(os.environ) | {
            "GK_FR_APP_ID": app_id, "GK_FR_BROKER": bootstrap, "GK_FR_TOPIC": topic, "GK_FR_LOG": str(self.log),
            "GK_FR_LABEL": label, "GK_FR_DATADIR": str(workdir / f"data-{label}"),
        }  # fmt: skip
        self.out = (workdir / f"{label}.out").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.faust_recovery", "app"], env=env, stdout=self.out, stderr=subprocess.STDOUT
        )

    def processed(self) -> int:
        return sum(1 for _ in self.log.open()) if self.log.exists() else 0


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def _analyse(log: Path, produced: int) -> dict[str, int]:
    seen: set[tuple[int, int]] = set()
    events = skips = again = 0
    for line in log.read_text().splitlines():
        _label, p, offset, expected = line.split()
        events += 1
        key = (int(p), int(offset))
        if int(offset) > int(expected):
            skips += 1
        elif key in seen or int(offset) < int(expected):
            again += 1
        seen.add(key)
    return {"produced": produced, "events": events, "never_processed": produced - len(seen), "skips": skips,
            "again": again}  # fmt: skip


def scenario(bootstrap: str, per_partition: int, two_workers: bool, workdir: Path) -> dict[str, int]:
    app_id, topic = f"fr-{uuid.uuid4().hex[:8]}", f"fr-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create(bootstrap, topic))
    total = PARTITIONS * per_partition
    if two_workers:
        first = Worker(bootstrap, app_id, topic, workdir, "a")
        second = Worker(bootstrap, app_id, topic, workdir, "b")
        time.sleep(20)  # both join the group
        asyncio.run(_produce(bootstrap, topic, per_partition))
        _wait(lambda: first.processed() > total // 5, 120, "a fifth of the records")
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait()
        asyncio.run(_produce(bootstrap, topic, per_partition))
        total *= 2
        survivor = first
    else:
        asyncio.run(_produce(bootstrap, topic, per_partition))
        before = Worker(bootstrap, app_id, topic, workdir, "a")
        _wait(lambda: before.processed() > total // 3, 120, "a third of the records")
        before.proc.send_signal(signal.SIGKILL)
        before.proc.wait()
        asyncio.run(_produce(bootstrap, topic, per_partition))
        total *= 2
        survivor = Worker(bootstrap, app_id, topic, workdir, "b")
    try:
        _wait(lambda: len({tuple(line.split()[1:3]) for line in survivor.log.open()}) >= total, 600, "every record")
    except SystemExit as exc:
        print(f"  {exc}")
    time.sleep(3)
    survivor.proc.send_signal(signal.SIGTERM)
    try:
        survivor.proc.wait(30)
    except subprocess.TimeoutExpired:
        survivor.proc.kill()
        survivor.proc.wait()
    return _analyse(survivor.log, total)


def main() -> None:
    if sys.argv[1:2] == ["app"]:
        app_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--per-partition", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep each scenario's logs under this directory")
    args = parser.parse_args()
    for r in range(args.rounds):
        for two in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp) if args.keep is None else args.keep / f"round{r + 1}-{'two' if two else 'one'}"
                workdir.mkdir(parents=True, exist_ok=True)
                result = scenario(args.bootstrap, args.per_partition, two, workdir)
            name = "two workers, one SIGKILLed" if two else "SIGKILL + backlog + restart"
            print(f"round {r + 1} {name:28s} {result}", flush=True)


if __name__ == "__main__":
    main()
