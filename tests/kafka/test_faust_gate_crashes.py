"""The Faust gate engine (``--role gate --gate-engine faust``) across a SIGKILL with side inputs and with a global
gate, beside a ``--role aggregate`` worker that runs on (``worker_harness.crash_and_recover``, crash
``"stages"``): deduplicated by ``decision_id`` the decisions are replay's, and no id has two contents."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_side_inputs_kafka as side
import worker_harness as h

from gatekeeper.core import decision as decisions
from gatekeeper.planfile import load_plan
from gatekeeper.shell.replay import replay
from gatekeeper.shell.side_files import SideFile

pytestmark = pytest.mark.kafka

# idleness waits longer than a restart takes (test_faust_gate.py's QUICK): a telemetry partition read to its end
# while the gate process is down must not turn idle at the aggregate worker
QUICK = ("--session-timeout", "8", "--idle-after", "20", "--clock-interval", "0.2")


def _idle_reports(bootstrap: str, app_id: str, sources: list[str]) -> set[str]:
    """The side partitions among ``sources`` reported idle on partition 0 of ``<app-id>-side`` (every report goes
    to every partition)."""
    found = set()
    for r in h.read_topic(bootstrap, f"{app_id}-side"):
        if r.partition == 0 and r.key is not None and r.key.decode() in sources and json.loads(r.value)["idle"]:
            found.add(r.key.decode())
    return found


def _incident(key: str, opened: int, resolved: int) -> list[dict[str, Any]]:
    """An incident of us-east/canary opened and resolved at those minutes: its two records."""
    opening = {"id": key, "severity": "critical", "kind": "outage", "region": "us-east", "tier": "canary",
               "opened_at": side.at(opened), "title": "checkout 503s again"}  # fmt: skip
    return [opening, opening | {"resolved_at": side.at(resolved)}]


def _replay(plan: Path, telemetry: list[bytes], incidents: list[dict[str, Any]]) -> list[bytes]:
    """Replay's decisions with these incidents and ``side.APPROVALS`` as its side files."""
    files = [
        SideFile("incident", "incidents", io.BytesIO(b"\n".join(side.lines(incidents)))),
        SideFile("approval", "approvals", io.BytesIO(b"\n".join(side.lines(side.APPROVALS)))),
    ]
    sink = io.BytesIO()
    replay(load_plan(plan), io.BytesIO(b"\n".join(telemetry) + b"\n"), sink, side=files)
    return [line for line in sink.getvalue().split(b"\n") if line]


def test_faust_gate_sigkilled_with_side_inputs_holds_for_them_again(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The side-inputs plan, a third of the telemetry (to 01:00) and an incident (INC-1, 00:25-00:28) produced
    first. The Faust gate process is SIGKILLed after its first decision once it has reported every incidents
    partition idle (read to its end): the gates' inboxes in the table hold that idleness. The approvals (01:15,
    02:05) and the rest of the telemetry are produced while it is down; a second incident (INC-3, opened 00:59,
    so after every pane the killed process closed) 8 s after the new process got its partitions, well within
    ``--idle-after`` (20 s). Like the default engine's worker gaining a side partition, the new process must take
    the side partitions for active until it has read them to their end and said so: the us-east canary gate holds
    at 00:58 for INC-3 rather than closing the backlog's panes on a restored idleness, so deduplicated by id the
    decisions are replay's with every side file (INC-3 fails us-east/canary at 01:10, released at 01:40)."""
    plan, names = side.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    again = _incident("INC-3", 59, 64)
    expected = _replay(plan, lines, [*side.INCIDENTS, *again])
    incidents = [f"{names.incidents}:{p}" for p in range(h.PARTITIONS)]
    h.create_topics(kafka_bootstrap, names)
    h.produce_pairs(kafka_bootstrap, names.incidents, [(b"INC-1", v) for v in side.lines(side.INCIDENTS)])
    failed: list[BaseException] = []

    def after_restart() -> None:
        """INC-3, 8 s after the new gate process (``again``) logged its partitions."""
        try:
            log, deadline = tmp_path / "again.log", time.monotonic() + 200
            while not (log.exists() and "partitions assigned" in log.read_text(errors="replace")):
                assert time.monotonic() < deadline, "the new gate process got no partitions"
                time.sleep(0.2)
            time.sleep(8)
            h.produce_pairs(kafka_bootstrap, names.incidents, [(b"INC-3", v) for v in side.lines(again)])
        except BaseException as exc:  # reported by the test
            failed.append(exc)

    @contextlib.contextmanager
    def idle_then_approvals(victim: h.Worker) -> Iterator[None]:
        deadline = time.monotonic() + 90
        while _idle_reports(kafka_bootstrap, names.app_id, incidents) != set(incidents):
            assert time.monotonic() < deadline, "the incidents partitions were not reported idle within 90 s"
            victim.check_alive()
            time.sleep(0.5)
        yield  # the kill
        h.produce_pairs(kafka_bootstrap, names.approvals, [(None, v) for v in side.lines(side.APPROVALS)])
        producer.start()

    producer = threading.Thread(target=after_restart, daemon=True)
    began = time.monotonic()
    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected,
        cut=len(lines) // 3, crash="stages", engine="faust", flags=QUICK, around_kill=idle_then_approvals,
        timeout=240,
    )  # fmt: skip
    producer.join(10)
    assert [] == failed
    assert [("fail", "breach", side.at(70)), ("hold", "hold", side.at(70)), ("release", "release", side.at(100))] == [
        s for s in side.shape(run.unique, "us-east", "canary") if s[2] in (side.at(70), side.at(100))
    ]
    assert 0 == run.totals()["conflicts"]
    print(f"\nfaust gate, SIGKILL with side inputs: {len(run.values)} decision records for {len(expected)} ids, "
          f"{time.monotonic() - began:.1f} s")  # fmt: skip


def test_faust_gate_sigkilled_with_a_global_gate(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The global canary plan: the Faust gate process is SIGKILLed after the first ``global/canary`` decision, the
    rest is produced while it is down, a new one restores the fold (``x:global/canary``) and the regional gates
    from the table: deduplicated by id, the decisions are replay's, the 3 global ones (hold, release, pass) among
    them once each, in replay's order."""
    plan, names = h.write_plan(tmp_path, h.GLOBAL_PLAN), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)

    def first_global(records: list[h.Consumed]) -> bool:
        return any(decisions.decode(r.value).region == "global" for r in records)

    began = time.monotonic()
    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected,
        cut=len(lines) // 3, crash="stages", engine="faust", flags=QUICK, started=first_global, timeout=240,
    )  # fmt: skip
    want = [(d.decision, d.at) for d in map(decisions.decode, expected) if d.region == "global"]
    got = [(d.decision, d.at) for d in map(decisions.decode, run.unique) if d.region == "global"]
    assert 3 == len(want)
    assert want == got
    assert 0 == run.totals()["conflicts"]
    print(f"\nfaust gate, SIGKILL with a global gate: {len(run.values)} decision records for {len(expected)} ids, "
          f"{time.monotonic() - began:.1f} s")  # fmt: skip
