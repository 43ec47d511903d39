"""``gatekeeper worker --telemetry-format otlp`` on a real broker, with slots: trace batches whose resources carry
``service.version`` (the baseline fleet without any ``rollout.tier``) are ``no_regression``'s baseline evidence,
and spans with the opt-in client-region attribute are cross-region evidence; the worker's decisions equal
replay's on the same requests as contract-v1 lines (``version`` / ``client_region`` fields)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_cross_region_e2e as cross_region
import test_regression_e2e as regression
import worker_harness as h

from otlp_batches import batches

pytestmark = pytest.mark.kafka

# the scenarios of the contract-v1 broker tests (test_regression_e2e.py, test_cross_region_e2e.py)
REGRESSION, REGRESSION_STREAMS = regression.PLAN, regression.STREAMS
CROSS_REGION, CROSS_STREAMS = cross_region.PLAN, cross_region.STREAMS


def decide_on_batches(
    bootstrap: str,
    workdir: Path,
    plan: dict[str, Any],
    lines: list[bytes],
    *flags: str,
    spans_of: list[bytes] | None = None,
) -> tuple[h.Story, list[bytes]]:
    """Replay's story of ``lines`` and the worker's decisions on them (or on ``spans_of``, the same requests
    labelled otherwise) as protobuf trace batches of 100 spans (the ``baseline`` tier's resources without
    ``rollout.tier``), all on partition 5."""
    story = h.replay_story(workdir, plan, lines)
    names = h.Names()
    messages = batches(lines if spans_of is None else spans_of, 100, "proto", tierless="baseline")
    h.create_topics(bootstrap, names)
    h.produce_keyed(bootstrap, names.telemetry, [(5, f"{i:032x}".encode(), m) for i, m in enumerate(messages)])
    worker = h.Worker(bootstrap, story.plan, names, workdir, "w1", "--telemetry-format", "otlp", *flags)
    with h.running(worker) as workers:
        got = h.wait_for(bootstrap, names.decisions, h.count_at_least(len(story.expected)), workers)
        assert 0 == workers[0].stop()
    return story, [r.value for r in got]


def test_baseline_fleet_spans_judge_no_regression_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """us-east's canary regresses against its tierless 1.0 fleet (fail + hold on no_regression_error_rate),
    eu-west passes; the worker on the trace batches gives replay's decisions on the lines, id for id."""
    story, actual = decide_on_batches(kafka_bootstrap, tmp_path, REGRESSION, h.traffic(REGRESSION_STREAMS, seed=21))

    assert 1 <= story.kinds[("us-east", "fail")] == story.kinds[("us-east", "hold")]
    assert ({"no_regression_error_rate"}, 1) == (story.failed, story.kinds[("eu-west", "pass")])
    assert sorted(story.expected) == sorted(actual)
    assert h.by_key(story.expected) == h.by_key(actual)


def test_baseline_builds_named_by_the_version_map_judge_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The baseline fleet reports ``service.version`` 1.0+b7, mapped to the plan's baseline_version 1.0 by
    ``--otlp-version-map``: the worker on those batches gives replay's decisions on the 1.0 lines, id for id."""
    lines = h.traffic(REGRESSION_STREAMS, seed=21)
    builds = [json.dumps({**r, "version": "1.0+b7"} if r.get("version") == "1.0" else r).encode()
              for r in map(json.loads, lines)]  # fmt: skip
    flags = ("--otlp-version-map", "1.0+b7=1.0")
    story, actual = decide_on_batches(kafka_bootstrap, tmp_path, REGRESSION, lines, *flags, spans_of=builds)

    assert 1 <= story.kinds[("us-east", "fail")] == story.kinds[("us-east", "hold")]
    assert sorted(story.expected) == sorted(actual)


def test_client_region_spans_judge_cross_region_latency_like_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """With ``--otlp-client-region-attribute client.region``, us-east's slow eu-west clients fail and hold it on
    p99_latency_ms_cross_region; the worker on the trace batches gives replay's decisions on the lines."""
    lines = h.traffic(CROSS_STREAMS, seed=31)
    flags = ("--otlp-client-region-attribute", "client.region")
    story, actual = decide_on_batches(kafka_bootstrap, tmp_path, CROSS_REGION, lines, *flags)

    assert 1 <= story.kinds[("us-east", "fail")] == story.kinds[("us-east", "hold")]
    assert {"p99_latency_ms_cross_region"} == story.failed
    assert sorted(story.expected) == sorted(actual)
    assert h.by_key(story.expected) == h.by_key(actual)
