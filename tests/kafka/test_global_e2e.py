"""The global gate (``core/global_gate.py``) through the real broker: ``gatekeeper worker`` writes the same
``global/<tier>`` decisions as ``gatekeeper replay`` on the same input (same ids, same contents, same order per
key), with one worker, with two sharing the partitions, and across a SIGKILL and restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import worker_harness as h

from gatekeeper.core import decision as decisions

pytestmark = pytest.mark.kafka


def _values(records: list[h.Consumed]) -> list[bytes]:
    return [r.value for r in records]


def _global(values: list[bytes]) -> list[tuple[str, str]]:
    return [(d.decision, d.at) for d in map(decisions.decode, values) if d.region == "global"]


GLOBAL_STORY = [("hold", "2025-10-19T00:26:00Z"), ("release", "2025-10-19T01:00:00Z"), ("pass", "2025-10-19T02:00:00Z")]


def test_worker_writes_replays_global_decisions(kafka_bootstrap: str, tmp_path: Path) -> None:
    """One worker, records keyed by region: the decisions topic holds replay's decisions, the global ones among
    them (hold while eu-west is held, release, pass once both regions passed) under key ``global/canary``."""
    plan, names = h.write_plan(tmp_path, h.GLOBAL_PLAN), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)
    assert GLOBAL_STORY == _global(expected)
    got = h.decide(kafka_bootstrap, plan, names, tmp_path, lines, "region", len(expected))
    assert sorted(expected) == sorted(got)
    assert h.by_key(expected) == h.by_key(got)


def test_two_workers_write_replays_global_decisions(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two workers in one group split the partitions; the canary's regional gates live on the home partition of
    ``global/canary``, so its owner folds them: together they write exactly replay's decisions."""
    plan, names = h.write_plan(tmp_path, h.GLOBAL_PLAN), h.Names()
    lines = h.scenario(early_stop=False)
    expected = h.expected(plan, lines)
    h.create_topics(kafka_bootstrap, names)
    first = h.Worker(kafka_bootstrap, plan, names, tmp_path, label="w1")
    second = h.Worker(kafka_bootstrap, plan, names, tmp_path, label="w2")

    with h.running(first, second) as workers:
        h.wait_split(workers)
        h.produce(kafka_bootstrap, names.telemetry, lines, "keyed")
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert [0, 0] == [w.stop() for w in workers]

    assert GLOBAL_STORY == _global(_values(got))
    assert sorted(expected) == sorted(_values(got))
    assert h.by_key(expected) == h.by_key(_values(got))


def test_sigkill_and_restart_neither_loses_nor_changes_a_global_decision(kafka_bootstrap: str, tmp_path: Path) -> None:
    """SIGKILL the worker after its first global decision, produce the rest, start a new one: restored from the
    gate-state changelog (the fold's state under ``global/canary``), it writes every global decision of replay
    once by id (a re-delivery re-emits an identical one, never another), and no global decision is lost."""
    plan, names = h.write_plan(tmp_path, h.GLOBAL_PLAN), h.Names()
    lines = h.scenario()
    expected = h.expected(plan, lines)

    def some_global(values: list[h.Consumed]) -> bool:
        return bool(_global(_values(values)))

    run = h.crash_and_recover(
        kafka_bootstrap, plan, names, tmp_path, lines, expected,
        cut=int(len(lines) * 0.6), mode="region", flags=("--session-timeout", "8"), started=some_global,
    )  # fmt: skip
    assert GLOBAL_STORY[:1] == _global(run.before)[:1]
    assert GLOBAL_STORY == _global(run.unique)
    assert h.by_key(expected) == h.by_key(run.unique)
