"""Stage 2 on faust-streaming (issue 9, ``--role gate --gate-engine faust``) through the real broker: beside a
``--role aggregate`` worker, the Faust gate agent gives replay's decisions (by ``decision_id`` and content) for an
unkeyed backlog, and again when it is SIGKILLed mid-run and restarted (its state restored from the Faust table's
changelog). The figures (changelog bytes, decision delay) are printed and measured against the aiokafka engine in
``bench/faust_gate.py``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import worker_harness as h

from gatekeeper.core import decision as decisions
from gatekeeper.shell.faust_gate.app import state_changelog_topic

pytestmark = pytest.mark.kafka

FAST = ("--idle-after", "2", "--clock-interval", "0.2")
# The crash test: a partition read to its end while the gate process starts or is down must not turn idle (its
# open pane sealed, re-emitted once more records come: late, unlike replay), so idleness waits longer.
QUICK = ("--session-timeout", "8", "--idle-after", "20", "--clock-interval", "0.2")
FAUST = ("--role", "gate", "--gate-engine", "faust")


def _values(records: list[h.Consumed]) -> list[bytes]:
    return [r.value for r in records]


def _changelog_bytes(bootstrap: str, topic: str) -> int:
    return sum(len(r.key or b"") + len(r.value or b"") for r in h.read_topic(bootstrap, topic))


def test_faust_gate_role_decides_like_replay_on_an_unkeyed_backlog(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The whole scenario unkeyed on random partitions before the workers start; ``--role aggregate`` (aiokafka)
    and ``--role gate --gate-engine faust`` run it: the decisions equal replay's (late counts compared in total,
    as for the aiokafka gate role), no partial conflicts, no dead letters, and the Faust table's changelog is
    written (its bytes printed)."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(late_share=0.002, invalid=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, lines, "spread")
    aggregate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "aggregate", "--role", "aggregate", *FAST)
    gate = h.Worker(kafka_bootstrap, plan, names, tmp_path, "gate", *FAUST, *FAST)
    with h.running(aggregate, gate) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, timeout=180)
        assert (0, 0) == (workers[0].stop(), workers[1].stop())

    assert sorted(h.without_late_counts(expected)) == sorted(h.without_late_counts(_values(got)))
    assert h.by_key(h.without_late_counts(expected)) == h.by_key(h.without_late_counts(_values(got)))
    (stage2,) = workers[1].events("worker totals")
    assert (0, {}) == (stage2["conflicts"], stage2["rejected"])
    assert stage2["decisions"] == dict(sorted(Counter(decisions.decode(v).decision for v in expected).items()))
    written = _changelog_bytes(kafka_bootstrap, state_changelog_topic(names.app_id))
    print(f"\nfaust gate: {stage2['messages']} panes messages, {stage2['state_writes']} table writes, "
          f"{written} changelog bytes")  # fmt: skip
    assert 0 < written


def test_faust_gate_sigkilled_mid_run_and_restarted(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``--role aggregate`` runs on while the Faust gate process is SIGKILLed after its first decision; the other
    two thirds of the unkeyed records are produced while no gate process runs, then a new one starts: it restores
    the gate states from the table's changelog. Deduplicated by id, the decisions equal replay's, no id has two
    contents, no partial conflicts."""
    plan, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(invalid=False)
    expected = h.expected(plan, lines)
    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected,
        cut=len(lines) // 3, crash="stages", engine="faust", flags=QUICK, timeout=180,
    )  # fmt: skip
    assert 0 == run.totals()["conflicts"]
    print(f"\nfaust gate restart: {len(run.values)} decision records for {len(expected)} distinct ids")
