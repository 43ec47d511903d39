"""Reliability of ``gatekeeper worker`` on a real broker: hostile input, broker outages, disorder within the
lateness, secrets and bad configuration (see ``docs/reliability.md`` for the guarantees these prove).

Every test runs the worker as a subprocess with its own app id and topics (``worker_harness``) and compares
what it wrote to Kafka with ``gatekeeper replay`` over the same (valid) records.
"""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest
import worker_harness as h
import yaml

from gatekeeper.core import decision as decisions
from gatekeeper.core.engine import Engine
from gatekeeper.core.plan import Plan
from gatekeeper.shell.worker import metrics

pytestmark = pytest.mark.kafka

FUZZ_SEED = 20251019
FUZZ_COUNT = 10_000
GATE_KEYS = [b"us-east/canary", b"eu-west/canary", b"us-east/ramp", b"eu-west/ramp", b"us-east/thin"]


def _values(records: list[h.Consumed]) -> list[bytes]:
    return [r.value for r in records]


def _record(rng: random.Random, **override: object) -> dict[str, object]:
    """A valid-looking telemetry object of the test plan (callers break it)."""
    region, tier = rng.choice([("us-east", "canary"), ("eu-west", "canary"), ("us-east", "ramp"), ("eu-west", "ramp")])
    record: dict[str, object] = {
        "ts": h.T0_S + rng.uniform(0, 180 * h.MINUTE_S),
        "region": region,
        "tier": tier,
        "latency_ms": round(rng.uniform(1, 500), 3),
        "status": rng.choice([200, 200, 503]),
    }
    record.update(override)
    return record


def _dumps(record: object) -> bytes:
    return json.dumps(record, allow_nan=True).encode()


def _random_bytes(rng: random.Random) -> bytes:  # may contain newlines, NULs, anything
    return rng.randbytes(rng.randrange(0, 300))


def _invalid_utf8(rng: random.Random) -> bytes:
    raw = _dumps(_record(rng, region="REGION"))
    return raw.replace(b"REGION", b"us-\xff\xfe" + rng.randbytes(2) + b"\xc3")


def _not_an_object(rng: random.Random) -> bytes:
    return rng.choice([b"null", b"true", b"42", b'"text"', b"[1, 2, 3]", b"[]", b"-0.5e3", _dumps([_record(rng)])])


_WRONG_TYPES: list[dict[str, object]] = [
    {"ts": "yesterday"},
    {"ts": [1]},
    {"latency_ms": "12ms"},
    {"latency_ms": None},
    {"region": 7},
    {"tier": {"name": "canary"}},
    {"status": "200"},
    {"error": "yes"},
    {"status": 777},
    {"status": -1},
    {"region": ""},
]


def _wrong_type(rng: random.Random) -> bytes:
    return _dumps(_record(rng, **rng.choice(_WRONG_TYPES)))


def _missing_field(rng: random.Random) -> bytes:
    record = _record(rng)
    del record[rng.choice(["ts", "region", "tier", "latency_ms", "status"])]  # no status: no outcome at all
    return _dumps(record)


def _nan_or_infinity(rng: random.Random) -> bytes:  # NaN / Infinity / -Infinity tokens: not JSON
    return _dumps(_record(rng, **{rng.choice(["latency_ms", "ts"]): rng.choice([math.nan, math.inf, -math.inf])}))


def _bad_latency(rng: random.Random) -> bytes:  # negative, overflowing to inf (1e400), or beyond a day
    value = rng.choice(["-" + str(rng.uniform(0.001, 1e6)), "1e400", "1e12"])
    return _dumps(_record(rng, latency_ms=0.5)).replace(b'"latency_ms": 0.5', b'"latency_ms": ' + value.encode())


def _before_2000(rng: random.Random) -> bytes:
    return _dumps(_record(rng, ts=rng.uniform(-1e9, 946_684_799)))


def _year_2090(rng: random.Random) -> bytes:  # beyond the wall clock plus max_future_skew
    return _dumps(_record(rng, ts=3_786_912_000 + rng.uniform(0, 1e7)))


def _unknown_gate(rng: random.Random) -> bytes:  # unknown region or tier, or a tier not gated in that region
    return _dumps(
        _record(rng, **rng.choice([{"region": "mars"}, {"tier": "beta"}, {"region": "eu-west", "tier": "thin"}]))
    )


def _oversized(rng: random.Random) -> bytes:  # > 64 KiB, otherwise valid
    return _dumps(_record(rng, padding="x" * rng.randrange(65_600, 90_000)))


def _truncated(rng: random.Random) -> bytes:
    raw = _dumps(_record(rng))
    return raw[: rng.randrange(1, len(raw) - 1)]


def _empty(rng: random.Random) -> bytes:
    return b""


def _two_objects(rng: random.Random) -> bytes:
    return _dumps(_record(rng)) + b" " + _dumps(_record(rng))


MALFORMED_KINDS: list[Callable[[random.Random], bytes]] = [
    _random_bytes,
    _random_bytes,
    _invalid_utf8,
    _not_an_object,
    _wrong_type,
    _missing_field,
    _missing_field,
    _nan_or_infinity,
    _bad_latency,
    _before_2000,
    _year_2090,
    _unknown_gate,
    _oversized,
    _truncated,
    _empty,
    _two_objects,
]


def fuzz_corpus(plan: Plan, count: int, seed: int) -> tuple[list[bytes], list[str]]:
    """``count`` malformed messages (deterministic for ``seed``) and the reason code the decoder gives each
    (with the wall clock now, as the worker's decoder); asserts that none is accidentally valid."""
    rng = random.Random(seed)
    decoder = Engine(plan).decoder()
    decoder.not_after_ms = round(time.time() * 1000) + plan.evaluation.max_future_skew
    corpus = [rng.choice(MALFORMED_KINDS)(rng) for _ in range(count)]
    codes = []
    for raw in corpus:
        batch = decoder.decode([raw], first_position=0)
        assert 0 == len(batch), raw[:200]
        (rejection,) = batch.rejections
        codes.append(rejection.code)
    return corpus, codes


def interleave(valid: list[bytes], malformed: list[bytes], seed: int) -> list[tuple[bytes | None, bytes]]:
    """Valid records (keyed ``region/tier``, order kept) with the malformed ones inserted at random places,
    each keyed like a random gate (so it shares a partition with valid records) or not keyed at all."""
    rng = random.Random(seed)
    slots = sorted(rng.randrange(len(valid) + 1) for _ in malformed)
    out: list[tuple[bytes | None, bytes]] = []
    it = iter(malformed)
    previous = 0
    for slot in slots:
        out += [(h.record_key(line, "keyed"), line) for line in valid[previous:slot]]
        previous = slot
        out.append((rng.choice([*GATE_KEYS, None]), next(it)))
    out += [(h.record_key(line, "keyed"), line) for line in valid[previous:]]
    return out


def test_fuzzed_input(kafka_bootstrap: str, tmp_path: Path) -> None:
    """10,000 seeded malformed messages (random bytes, invalid UTF-8, non-objects, wrong types, missing
    fields, NaN/Infinity, bad latencies, timestamps before 2000 and in 2090, unknown gates, > 64 KiB values,
    truncated, empty, two objects) interleaved with a valid scenario: the worker keeps running and exits 0
    on SIGTERM; the DLQ holds each malformed message exactly once with its original bytes and the decoder's
    reason in ``gk.reason``; the decisions are replay's for the valid records alone; and the reject counters
    (``worker totals`` log line and ``--metrics-file``) add up to the malformed messages, by reason."""
    plan_path, names = h.write_plan(tmp_path), h.Names()
    plan = Plan.model_validate(h.TEST_PLAN)
    valid = h.scenario(early_stop=False, invalid=False)
    expected = h.expected(plan_path, valid)
    malformed, codes = fuzz_corpus(plan, FUZZ_COUNT, FUZZ_SEED)
    assert len(set(codes)) >= 10  # the corpus covers many reasons
    pairs = interleave(valid, malformed, FUZZ_SEED)
    metrics_path = tmp_path / "metrics" / "worker.prom"
    h.create_topics(kafka_bootstrap, names)
    h.produce_pairs(kafka_bootstrap, names.telemetry, pairs)

    worker = h.Worker(kafka_bootstrap, plan_path, names, tmp_path, "fuzz", "--metrics-file", str(metrics_path))
    with h.running(worker) as workers:
        dead = h.wait_for(kafka_bootstrap, names.dlq, h.count_at_least(FUZZ_COUNT), workers, timeout=300, settle=0)
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers, timeout=300)
        workers[0].check_alive()
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(_values(got))
    assert h.by_key(expected) == h.by_key(_values(got))
    assert Counter(zip(malformed, codes, strict=True)) == Counter(
        (r.value, dict(r.headers)["gk.reason"].decode()) for r in dead
    )
    by_reason = dict(Counter(codes))
    (totals,) = workers[0].events("worker totals")
    assert by_reason == totals["rejected"]
    assert FUZZ_COUNT == sum(totals["rejected"].values())
    exposed = metrics.parse(metrics_path.read_text())
    assert by_reason == {
        name.split('"')[1]: int(v) for name, v in exposed.items() if name.startswith("gatekeeper_rejected_total{")
    }
    assert len(pairs) == exposed["gatekeeper_records_total"]
    assert dict(Counter(decisions.decode(v).decision for v in expected)) == {
        name.split('"')[1]: int(v) for name, v in exposed.items() if name.startswith("gatekeeper_decisions_total{")
    }
    assert 0 == exposed["gatekeeper_late_events_total"]


OUTAGE_S = 30.0


class Restartable(Protocol):  # the ``kafka_broker`` fixture's BrokerControl (tests/conftest.py)
    @property
    def bootstrap(self) -> str: ...

    def stop(self) -> None: ...

    def restart(self) -> None: ...


@pytest.mark.slow
def test_broker_restart(kafka_broker: Restartable, tmp_path: Path) -> None:
    """Telemetry produced in four bursts; right after the second burst (the worker still busy with it) the
    broker is stopped for 30 s and restarted on the same ports and data, then the last two bursts are
    produced. The worker (session timeout 8 s) reconnects by itself and keeps running; after deduplication by
    ``decision_id`` its decisions equal replay's over all records (same ids, contents and order per key), no
    id has two contents, and there is no ``pass`` that replay does not also give. The client's connection
    errors during the outage are logged about once per 10 s, not once per millisecond."""
    bootstrap = kafka_broker.bootstrap
    plan_path, names = h.write_plan(tmp_path), h.Names()
    lines = h.scenario(early_stop=False)
    expected = h.expected(plan_path, lines)
    bursts = [lines[i * len(lines) // 4 : (i + 1) * len(lines) // 4] for i in range(4)]
    h.create_topics(bootstrap, names)

    quick = ("--session-timeout", "8")
    with h.running(h.Worker(bootstrap, plan_path, names, tmp_path, "outage", *quick)) as workers:
        workers[0].wait_assigned()
        h.produce(bootstrap, names.telemetry, bursts[0], "keyed")
        h.wait_for(bootstrap, names.decisions, h.count_at_least(1), workers, settle=0.0)
        h.produce(bootstrap, names.telemetry, bursts[1], "keyed")
        kafka_broker.stop()
        time.sleep(OUTAGE_S)
        workers[0].check_alive()
        kafka_broker.restart()
        for burst in bursts[2:]:
            h.produce(bootstrap, names.telemetry, burst, "keyed")
        got = h.wait_for(bootstrap, names.decisions, h.distinct_ids_at_least(len(expected)), workers, timeout=240)
        assert 0 == workers[0].stop()

    first, conflicts = h.dedupe(_values(got))
    assert {} == conflicts
    assert sorted(expected) == sorted(first)
    assert h.by_key(expected) == h.by_key(first)
    passes = {v for v in first if decisions.decode(v).decision == "pass"}
    assert set() == passes - set(expected)
    log = workers[0].log()
    assert log.count("Unable connect to node") <= 3 * (OUTAGE_S + 30) / 10  # one line per 10 s (RepeatFilter)
    assert len(log.splitlines()) < 1000


def shuffle_within(lines: list[bytes], max_shift_s: float, seed: int) -> list[bytes]:
    """The records in a new arrival order: each arrives at its event time plus a random delay below
    ``max_shift_s``, so no record comes after a record more than ``max_shift_s`` newer than itself."""
    rng = np.random.default_rng(seed)
    ts = np.asarray([json.loads(line)["ts"] for line in lines], dtype=np.float64)
    arrival = ts + rng.uniform(0, max_shift_s, ts.size)
    return [lines[i] for i in np.argsort(arrival, kind="stable").tolist()]


def test_shuffled_within_lateness(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The scenario's records produced in an order shuffled within the allowed lateness (each record follows
    records at most lateness - one pane - 5 s newer than itself) give exactly replay's decisions of the
    unshuffled order, and no event is late (decisions' ``late_events``, the worker's late counter)."""
    plan_path, names = h.write_plan(tmp_path), h.Names()
    plan = Plan.model_validate(h.TEST_PLAN)
    lines = h.scenario(early_stop=False, invalid=False)
    shift_s = (plan.evaluation.lateness - plan.evaluation.pane) / 1000 - 5
    shuffled = shuffle_within(lines, shift_s, seed=7)
    moved = sum(a != b for a, b in zip(lines, shuffled, strict=True))
    assert moved > len(lines) // 2
    assert sorted(lines) == sorted(shuffled)
    expected = h.expected(plan_path, lines)
    metrics_path = tmp_path / "worker.prom"
    h.create_topics(kafka_bootstrap, names)
    h.produce(kafka_bootstrap, names.telemetry, shuffled, "keyed")

    worker = h.Worker(kafka_bootstrap, plan_path, names, tmp_path, "shuffled", "--metrics-file", str(metrics_path))
    with h.running(worker) as workers:
        got = h.wait_for(kafka_bootstrap, names.decisions, h.count_at_least(len(expected)), workers)
        assert 0 == workers[0].stop()

    assert sorted(expected) == sorted(_values(got))
    assert h.by_key(expected) == h.by_key(_values(got))
    assert [0] * len(got) == [decisions.decode(r.value).metrics.late_events for r in got]
    (totals,) = workers[0].events("worker totals")
    assert 0 == totals["late"]
    assert 0 == metrics.parse(metrics_path.read_text())["gatekeeper_late_events_total"]


PASSWORD = "Zq7-vault-Hx93-kite-Pw52"  # distinctive: any 6-character piece of it in the output is a leak


def _fragments(secret: str, size: int = 6) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def test_fragment_check_finds_a_leak() -> None:
    """The leak check of ``test_secrets_never_logged`` flags any 6-character piece of the password (so a
    passing run there means no piece was printed, not that the check was blind)."""
    leaked = f"connecting with password=***{PASSWORD[5:11]}*** failed"
    assert {PASSWORD[5:11]} == {piece for piece in _fragments(PASSWORD) if piece in leaked}


def test_secrets_never_logged(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A worker configured for SASL_SSL / SCRAM-SHA-512 with the password in ``GATEKEEPER_SASL_PASSWORD``,
    pointed at the PLAINTEXT test broker, cannot connect; it exits (or is stopped) within 90 s, and neither its
    stdout nor its stderr contains the password or any 6-character piece of it."""
    plan_path, names = h.write_plan(tmp_path), h.Names()
    sasl = ("--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "u")
    worker = h.Worker(kafka_bootstrap, plan_path, names, tmp_path, "sasl", *sasl, "--log-level", "debug")
    worker.env = {"GATEKEEPER_SASL_PASSWORD": PASSWORD}
    started = time.monotonic()
    with h.running(worker) as workers:
        proc = workers[0].proc
        assert proc is not None
        try:
            code, stopped = proc.wait(90), False
        except subprocess.TimeoutExpired:
            code, stopped = workers[0].stop(signal.SIGTERM, timeout=30), True
    elapsed = time.monotonic() - started
    output = workers[0].log()
    assert elapsed < 125
    if not stopped:  # it gave up by itself: with a one-line reason, not a success
        assert (2, True) == (code, "cannot connect to Kafka" in output), output
    assert set() == {piece for piece in _fragments(PASSWORD) if piece in output}


def _broken_plan(tmp_path: Path, name: str, change: dict[str, object]) -> Path:
    plan = json.loads(json.dumps(h.TEST_PLAN))
    plan["evaluation"].update(change.get("evaluation", {}))
    plan["phases"][0]["tiers"][0]["criteria"][0].update(change.get("criterion", {}))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"evaluation": {"panes_per_hour": 60}}, "evaluation.panes_per_hour: unknown field"),
        ({"criterion": {"fail_above": "150%"}}, "phases[0].tiers[0].criteria[0].fail_above: "),
    ],
    ids=["unknown-field", "threshold-out-of-range"],
)
def test_bad_plan_fails_the_start(kafka_bootstrap: str, tmp_path: Path, change: dict[str, object], field: str) -> None:
    """A plan file with an unknown field, or with a threshold out of range, stops ``gatekeeper worker`` before
    it connects: exit status 2, no traceback, and on stderr a header line naming the file and the number of
    problems followed by exactly one problem line, which names the field by its full path."""
    plan_path, names = _broken_plan(tmp_path, "bad-plan.yaml", change), h.Names()
    done = h.run_once(h.Worker(kafka_bootstrap, plan_path, names, tmp_path).cmd)
    assert 2 == done.returncode
    assert "Traceback" not in done.stderr + done.stdout
    header, problem = done.stderr.strip().splitlines()
    assert f"gatekeeper: error: {plan_path}: 1 problem(s):" == header
    assert problem.startswith(f"  - {field}")
