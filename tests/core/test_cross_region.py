"""Cross-region latency (core/cross_region.py): telemetry's optional ``client_region``, a latency criterion scoped
to ``requests: cross_region``, the copies' way through both stages (decoder, ``slice: cross_region`` partials,
stage 2's per-window ledger), the same in replay, whatever the batch cuts and on the per-partial path."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from gatekeeper.core import inbox_snapshot, partials, slot_routing
from gatekeeper.core.aggregate import Aggregator
from gatekeeper.core.decision import Decision
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import LatencyCriterion, Plan
from gatekeeper.core.telemetry import TelemetryDecoder
from plans_for_tests import small_plan, small_tier

from .helpers import MINUTE, T0, per_partial_path, replay_lines, traffic

CROSS = {"kind": "latency", "quantile": 0.99, "pass_below_ms": 200, "fail_above_ms": 200,
         "requests": "cross_region", "min_requests_to_fail": 50, "min_requests": 300}  # fmt: skip


def cross_plan() -> Plan:
    """us-east and eu-west, tier ``canary`` with the ordinary criteria (P99 pass below 400 ms, fail above 800 ms)
    and a cross-region P99 below 200 ms."""
    return Plan.model_validate(small_plan("cross-test", "1.0", [small_tier("canary", 5, more_criteria=[CROSS])]))


def records(events: Any, region: str, client: str | None) -> list[tuple[int, bytes]]:
    out = []
    for ts, latency, error in zip(events.ts_ms.tolist(), events.latency_ms.tolist(), events.error.tolist(),
                                  strict=True):  # fmt: skip
        rec: dict[str, Any] = {"ts": ts / 1000, "region": region, "tier": "canary", "latency_ms": round(latency, 3),
                               "status": 500 if error else 200}  # fmt: skip
        if client is not None:
            rec["client_region"] = client
        out.append((ts, json.dumps(rec).encode()))
    return out


def mixed(minutes: int = 90) -> list[bytes]:
    """us-east's canary: 1,000 req/min from us-east clients (P99 ~160 ms) and 10 req/min from eu-west clients,
    slow (median 300 ms: cross-region P99 ~480 ms); eu-west's canary: 300 req/min without ``client_region``, as
    slow as us-east's cross-region ones for a tenth of them. In time order."""
    end = T0 + minutes * MINUTE
    near = records(traffic(0, T0, end, 1000, seed=1, median_ms=50), "us-east", "us-east")
    far = records(traffic(0, T0, end, 10, seed=2, median_ms=300, sigma=0.2), "us-east", "eu-west")
    west = records(traffic(0, T0, end, 300, seed=3, median_ms=50), "eu-west", None)
    both = sorted(near + far + west, key=lambda pair: pair[0])
    return [line for _, line in both]


def replayed(lines: list[bytes], size: int) -> tuple[list[Decision], Pipeline]:
    return replay_lines(cross_plan(), lines, size)


def verdicts(d: Decision) -> dict[str, str]:
    """Per criterion, its worst verdict in the decision (fail over the others)."""
    out: dict[str, str] = {}
    for c in d.criteria:
        out[c.name] = "fail" if out.get(c.name) == "fail" else c.verdict
    return out


def test_only_records_from_another_region_are_copied_to_the_slot() -> None:
    """A record without ``client_region`` or with its own region is one row; one whose client is in another
    region is its row and, right after it, a copy keyed to its gate's cross-region slot; the copy is counted in
    ``copies``, not as a record."""
    lay = slot_routing.layout(cross_plan())
    decoder = TelemetryDecoder(lay.gates, None, lay.baselines, lay.cross)
    base = '"ts": 1760832000, "tier": "canary", "latency_ms": 5, "status": 200'
    lines = [f'{{{base}, "region": "us-east"}}', f'{{{base}, "region": "us-east", "client_region": "us-east"}}',
             f'{{{base}, "region": "us-east", "client_region": "ap-south"}}',
             f'{{{base}, "region": "eu-west"}}']  # fmt: skip
    batch = decoder.decode([line.encode() for line in lines])
    east = lay.gates.index(("us-east", "canary"))
    west = lay.gates.index(("eu-west", "canary"))
    assert [east, east, east, lay.cross[east], west] == batch.key.tolist()
    assert (1, []) == (batch.copies, batch.rejections)


def test_slow_cross_region_requests_fail_the_scoped_criterion_while_the_ordinary_one_passes() -> None:
    """Replayed, us-east's canary fails on p99_latency_ms_cross_region (its 1 % of eu-west clients at ~300 ms)
    while its ordinary P99 over all its requests, the cross-region ones included, is never failing; eu-west,
    whose records carry no client_region, has no cross-region requests and never fails."""
    decisions, pipeline = replayed(mixed(), 5_000)
    fails = [d for d in decisions if d.decision == "fail"]
    assert ["us-east"] == sorted({d.region for d in fails})
    first = verdicts(fails[0])
    assert ("fail", "inconclusive") == (first["p99_latency_ms_cross_region"], first["p99_latency_ms"])
    scoped = [c for c in fails[0].criteria if c.name == "p99_latency_ms_cross_region"]
    assert all(c.requests <= 10 * 90 for c in scoped)  # the cross-region copies only
    assert "cross-region P99 latency" in scoped[0].reason
    assert all(verdicts(d).get("p99_latency_ms") != "fail" for d in decisions)
    assert 90 * (1000 + 10 + 300) == pipeline.stats.events  # the copies are no new requests


def test_the_ordinary_criteria_count_the_cross_region_requests_too() -> None:
    """The us-east gate's own request count (error rate) includes its cross-region requests: 1,010 a minute."""
    decisions, _ = replayed(mixed(30), 5_000)
    east = [c.requests for d in decisions if d.region == "us-east" for c in d.criteria if c.name == "error_rate"]
    assert east
    assert all(n % 1010 == 0 for n in east)


def test_decisions_do_not_depend_on_batch_cuts_nor_on_the_partial_path() -> None:
    """The same records in batches of 997 or 50,000, and stage 2 fed one ``Partial`` per message (the worker's
    way) rather than columns, give byte-identical decisions (same decision ids)."""
    lines = mixed()
    small, _ = replayed(lines, 997)
    large, _ = replayed(lines, 50_000)
    per_partial = per_partial_path(cross_plan(), lines)
    assert [d.decision_id for d in small] == [d.decision_id for d in large] == [d.decision_id for d in per_partial]
    assert small == large == per_partial
    assert any(d.decision == "fail" for d in small)


def test_cross_region_partials_carry_their_slice_and_survive_snapshots() -> None:
    """A cross-region pane goes out as a partial of its gate with ``"slice":"cross_region"`` and decodes back;
    an inbox's buffered cross-region partials and a gate's cross-region ledger round-trip through the changelog
    snapshots, kept apart from the baseline's."""
    plan = cross_plan()
    lay = slot_routing.layout(plan)
    aggregator = Aggregator(lay.keys, plan.evaluation.pane, plan.evaluation.lateness, lay.fan())
    decoder = TelemetryDecoder(lay.gates, None, lay.baselines, lay.cross)
    _, rows, _ = aggregator.fold(aggregator.start("s"), decoder.decode(mixed(5)))
    cross = [p for p in rows if p.part == "cross_region"]
    assert {"us-east/canary"} == {p.gate for p in cross}
    assert b'"slice":"cross_region"' in partials.encode(cross[0])
    assert cross[0] == partials.decode(partials.encode(cross[0]))
    pipeline = Pipeline(plan)
    pipeline.ingest(pipeline.decoder().decode(mixed(25)))
    inbox = pipeline.inboxes["us-east/canary"]
    assert inbox.gate.cross.looks > 0
    pipeline.merger.on_partial(
        inbox, partials.Partial(**{**msgspec.structs.asdict(cross[0]), "pane": T0 + 60 * MINUTE})
    )
    assert inbox.cross.panes
    restored, _, _ = inbox_snapshot.load_inbox(inbox_snapshot.dump_inbox(inbox))
    assert (inbox.gate.cross, inbox.cross.panes, {}) == (restored.gate.cross, restored.cross.panes,
                                                         restored.baseline.panes)  # fmt: skip


def test_the_default_scope_leaves_the_plan_version_alone() -> None:
    """``requests: all`` written out gives the same plan_version as leaving it out (plans written before the
    field keep their decision ids); ``cross_region`` changes it and names the criterion apart."""
    plain = small_plan("v", "1", [small_tier("canary", 5)])
    written = small_plan("v", "1", [small_tier("canary", 5)])
    written["phases"][0]["tiers"][0]["criteria"][1]["requests"] = "all"
    scoped = small_plan("v", "1", [small_tier("canary", 5, more_criteria=[CROSS])])
    versions = [Plan.model_validate(p).plan_version for p in (plain, written, scoped)]
    assert versions[0] == versions[1] != versions[2]
    assert "p99_latency_ms_cross_region" == LatencyCriterion.model_validate(CROSS).name
