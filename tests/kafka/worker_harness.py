"""Helpers for the end-to-end worker tests, imported as ``h``: the worker as a subprocess, waiting for what it
writes, the flows several tests share (a worker killed mid-run and the group recovering, ``crash_and_recover``;
replay's story of a scenario, ``replay_story``, to compare a worker with), and (re-exported) the Kafka client
helpers of ``kafka_io`` and the plan, scenario and replay side of ``worker_scenario``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kafka_io import (
    PARTITIONS,
    Consumed,
    Mode,
    Names,
    create_topic,
    create_topics,
    produce,
    produce_keyed,
    produce_pairs,
    produce_to,
    read_topic,
    record_key,
    topic_names,
)
from worker_scenario import (
    BREACH_PLAN,
    GLOBAL_PLAN,
    INVALID,
    MINUTE_S,
    T0_S,
    TEST_PLAN,
    Traffic,
    by_key,
    dedupe,
    expected,
    expected_breaches,
    home_partitions,
    replay_late,
    replay_rejects,
    scenario,
    traffic,
    without_late_counts,
    write_plan,
)

from gatekeeper.core import decision as decisions

__all__ = [
    "BREACH_PLAN",
    "GLOBAL_PLAN",
    "INVALID",
    "MINUTE_S",
    "PARTITIONS",
    "T0_S",
    "TEST_PLAN",
    "Consumed",
    "Crash",
    "CrashRun",
    "GateEngine",
    "Mode",
    "Names",
    "Story",
    "Traffic",
    "Worker",
    "by_key",
    "count_at_least",
    "crash_and_recover",
    "create_topic",
    "create_topics",
    "dedupe",
    "distinct_ids_at_least",
    "expected",
    "expected_breaches",
    "home_partitions",
    "produce",
    "produce_keyed",
    "produce_pairs",
    "produce_to",
    "read_topic",
    "record_key",
    "replay_late",
    "replay_rejects",
    "replay_story",
    "run_once",
    "running",
    "scenario",
    "topic_names",
    "traffic",
    "wait_for",
    "wait_split",
    "without_late_counts",
    "write_plan",
]


class Worker:
    """``gatekeeper worker`` in a subprocess, logging (JSON lines) to a file."""

    def __init__(self, bootstrap: str, plan: Path, names: Names, workdir: Path, label: str = "w1", *extra: str) -> None:
        self.log_path = workdir / f"{label}.log"
        self.cmd = [
            sys.executable, "-m", "gatekeeper.shell.cli", "worker",
            "--bootstrap", bootstrap, "--plan", str(plan), *names.flags(),
            "--log-format", "json", "--log-level", "info", *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}  # GATEKEEPER_* variables for the worker (the test's own are not passed on)

    def start(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")} | self.env
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """Our structured log lines with ``event == name``."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line[line.find("{") :])
                if isinstance(record, dict) and record.get("event") == name:
                    out.append(record)
        return out

    def wait_assigned(self, timeout: float = 60.0) -> list[int]:
        """Partitions of the latest non-empty assignment, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            assigned = [e["partitions"] for e in self.events("partitions assigned") if e["partitions"]]
            if assigned:
                return list(assigned[-1])
            time.sleep(0.2)
        raise AssertionError(f"worker got no partitions within {timeout} s; log:\n{self.log()[-4000:]}")

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"worker ignored signal {sig} for {timeout} s; log:\n{self.log()[-4000:]}") from None


@contextlib.contextmanager
def running(*workers: Worker) -> Iterator[tuple[Worker, ...]]:
    """Start the workers; SIGKILL any still running on the way out (a failed test must not leak them)."""
    try:
        yield tuple(w.start() for w in workers)
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(10)


def decide(
    bootstrap: str, plan: Path, names: Names, workdir: Path, lines: list[bytes], mode: Mode, n: int
) -> list[bytes]:
    """Create the topics, produce ``lines`` (``mode``), run one worker until the decisions topic holds ``n``
    decisions, stop it (exit 0): the decisions' values."""
    create_topics(bootstrap, names)
    produce(bootstrap, names.telemetry, lines, mode)
    with running(Worker(bootstrap, plan, names, workdir)) as workers:
        got = wait_for(bootstrap, names.decisions, count_at_least(n), workers)
        assert 0 == workers[0].stop()
    return [r.value for r in got]


def assert_decides_like_replay(
    bootstrap: str, plan: Path, names: Names, workdir: Path, records: list[bytes], expected: list[bytes]
) -> None:
    """Produce ``records`` keyed, run one worker until it wrote as many decisions as replay's ``expected``: they
    are replay's by decision id and content; every record is applied once, with no conflicting nor late partial."""
    create_topics(bootstrap, names)
    produce(bootstrap, names.telemetry, records, "keyed")
    with running(Worker(bootstrap, plan, names, workdir)) as workers:
        got = wait_for(bootstrap, names.decisions, count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()
    values = [r.value for r in got]
    ids = [json.loads(v)["decision_id"] for v in values]
    assert sorted(json.loads(v)["decision_id"] for v in expected) == sorted(ids)
    assert sorted(expected) == sorted(values)
    (totals,) = workers[0].events("worker totals")
    assert (len(records), 0, 0) == (totals["applied"], totals["conflicts"], totals["late_partials"])


Crash = Literal["alone", "pair", "stages"]
GateEngine = Literal["aiokafka", "faust"]  # what runs stage 2 in a `--role gate` process (--gate-engine)


@dataclass(frozen=True)
class CrashRun:
    """What ``crash_and_recover`` read back (its decisions already checked against replay's)."""

    before: list[bytes]  # the decisions topic when the worker was killed
    values: list[bytes]  # the decisions topic at the end, re-deliveries included
    unique: list[bytes]  # the first decision of every id, in order
    last: Worker  # the worker that took over: the restarted one, or (``"pair"``) the survivor

    def totals(self) -> dict[str, Any]:
        """The ``worker totals`` the worker that took over logged as it stopped."""
        (totals,) = self.last.events("worker totals")
        return totals


def crash_and_recover(
    bootstrap: str,
    plan: Path,
    names: Names,
    workdir: Path,
    lines: list[bytes],
    expected: list[bytes],
    *,
    cut: int,
    crash: Crash = "alone",
    engine: GateEngine = "aiokafka",
    mode: Mode = "spread",
    flags: tuple[str, ...] = (),
    started: Callable[[list[Consumed]], bool] | None = None,
    around_kill: Callable[[Worker], AbstractContextManager[object]] | None = None,
    timeout: float = 90.0,
) -> CrashRun:
    """Create the topics and start the group ``crash`` names (``flags`` on every worker); once it has its
    partitions, produce ``lines[:cut]`` (``mode``) and wait until the decisions topic is ``started`` (default: one
    decision); SIGKILL one worker (inside ``around_kill(victim)``), produce the rest while it is down, let the
    group recover, wait until the decisions topic holds as many ids as ``expected`` and stop every live worker
    (exit 0). Deduplicated by id, the decisions are ``expected`` (replay's) and no id has two contents.

    ``crash``: ``"alone"``, one worker running both stages, killed and restarted; ``"pair"``, two such workers
    splitting the partitions, the second killed and the first taking its partitions over (no restart);
    ``"stages"``, a ``--role aggregate`` worker beside a ``--role gate`` one whose stage 2 runs on ``engine``
    (``--gate-engine``), the gate process killed and restarted while the aggregate one runs on."""
    if engine != "aiokafka" and crash != "stages":
        raise ValueError(f"--gate-engine {engine} runs stage 2 only (crash 'stages'), not with crash {crash!r}")
    create_topics(bootstrap, names)
    gate = ("--role", "gate", *(("--gate-engine", engine) if engine != "aiokafka" else ()))

    def worker(label: str, *role: str) -> Worker:
        return Worker(bootstrap, plan, names, workdir, label, *role, *flags)

    group, again = {
        "alone": ([worker("before")], [worker("after")]),
        "pair": ([worker("w1"), worker("w2")], []),
        "stages": ([worker("aggregate", "--role", "aggregate"), worker("gate", *gate)], [worker("again", *gate)]),
    }[crash]
    with running(*group) as workers:
        if crash == "pair":
            wait_split(workers, timeout)
        else:
            for w in workers:
                w.wait_assigned(timeout)
        produce(bootstrap, names.telemetry, lines[:cut], mode)
        before = wait_for(bootstrap, names.decisions, started or count_at_least(1), workers, timeout, settle=0.0)
        victim, live = workers[-1], workers[:-1]
        with around_kill(victim) if around_kill is not None else contextlib.nullcontext():
            assert -signal.SIGKILL == victim.stop(signal.SIGKILL)
        produce(bootstrap, names.telemetry, lines[cut:], mode)
        with running(*again) as restarted:
            done = distinct_ids_at_least(len(expected))
            got = [r.value for r in wait_for(bootstrap, names.decisions, done, (*live, *restarted), timeout)]
            assert [0] * (len(restarted) + len(live)) == [w.stop() for w in (*restarted, *live)]

    unique, conflicts = dedupe(got)
    assert {} == conflicts
    assert sorted(expected) == sorted(unique)
    return CrashRun([r.value for r in before], got, unique, (*restarted, *live)[0])


@dataclass(frozen=True)
class Story:
    """Replay's decisions of a scenario, and what they tell: the count of each (region, decision), the names of
    the criteria that failed."""

    plan: Path
    records: list[bytes]
    expected: list[bytes]
    kinds: Counter[tuple[str, str]]
    failed: set[str]


def replay_story(workdir: Path, plan: dict[str, Any], records: list[bytes]) -> Story:
    """``plan`` written to ``workdir`` and replay's story of ``records`` under it (to check before a worker is
    compared with it, ``assert_decides_like_replay``)."""
    path = write_plan(workdir, plan)
    want = expected(path, records)
    decoded = [decisions.decode(v) for v in want]
    kinds: Counter[tuple[str, str]] = Counter((d.region, d.decision) for d in decoded)
    failed = {c.name for d in decoded for c in d.criteria if c.verdict == "fail"}
    return Story(path, records, want, kinds, failed)


def run_once(
    cmd: list[str], timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a worker command expected to exit on its own (a start-up failure); ``env``: its GATEKEEPER_*
    variables (the test's own are not passed on)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")} | (env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean, check=False)


def wait_for(
    bootstrap: str,
    topic: str,
    done: Any,
    worker: tuple[Worker, ...],
    timeout: float = 90.0,
    settle: float = 3.0,
) -> list[Consumed]:
    """Poll ``topic`` until ``done(records)``; wait ``settle`` s more and read again (to catch extras)."""
    deadline = time.monotonic() + timeout
    records = read_topic(bootstrap, topic)
    while not done(records):
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"{w.log_path.name}:\n{_milestones(w.log())}\n...\n{w.log()[-3000:]}\nwaiting: {_waiting(w)}"
                for w in worker
            )
            raise AssertionError(f"{topic}: gave up after {timeout} s with {len(records)} records; logs:\n{logs}")
        for w in worker:
            w.check_alive()
        time.sleep(0.5)
        records = read_topic(bootstrap, topic)
    time.sleep(settle)
    return read_topic(bootstrap, topic)


_MILESTONES = re.compile(
    r"partitions assigned|worker failed|restore stalled|generation id|Restoring state|Done reading|Recovery complete"
    r"|Worker ready|rebalanc|Revoking|Heartbeat failed"
)


def _milestones(log: str, last: int = 30) -> str:
    """The lines of a worker's log that tell its assignments and Faust's restores (what a hang needs explained,
    and what the tail of a log repeating one warning lacks)."""
    return "\n".join([line[:300] for line in log.splitlines() if _MILESTONES.search(line)][-last:])


def _waiting(worker: Worker) -> str:
    """What the worker's last progress line said its quiet gates wait for (``core/holdup.py``), in full."""
    said = [e.get("waiting") for e in worker.events("worker progress")]
    return json.dumps(said[-1], indent=1) if said else "no progress line yet"


def count_at_least(n: int) -> Any:
    return lambda records: len(records) >= n


def distinct_ids_at_least(n: int) -> Any:
    return lambda records: len({decisions.decode(r.value).decision_id for r in records}) >= n


def wait_split(workers: tuple[Worker, ...], timeout: float = 90.0) -> list[list[int]]:
    """Each worker's partitions, once their latest assignments are non-empty, disjoint and cover them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = []
        for w in workers:
            w.check_alive()
            events = w.events("partitions assigned")
            latest.append(list(events[-1]["partitions"]) if events else [])
        owned = [p for parts in latest for p in parts]
        if all(latest) and sorted(owned) == list(range(PARTITIONS)):
            return latest
        time.sleep(0.3)
    logs = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"the workers did not split the partitions within {timeout} s; logs:\n{logs}")
