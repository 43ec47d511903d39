"""The rollout plan model: the repo's plan validates as the seed describes, and invalid plans are refused with
an error that names the offending field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gatekeeper.core.plan import (
    ErrorRateCriterion,
    LatencyCriterion,
    LiftCriterion,
    NoIncidentsCriterion,
    Plan,
    UptimeCriterion,
)

from .helpers import HOUR, MINUTE, make_plan, plan_dict, tier_of

PLAN_FILE = Path(__file__).resolve().parents[2] / "config" / "rollout-plan.yaml"
WEEK = 7 * 24 * HOUR


def load_raw() -> dict[str, Any]:
    """The repo plan as plain data; a JSON round trip unshares the YAML anchors (rollout tiers' criteria)."""
    raw: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(PLAN_FILE.read_text())))
    return raw


@pytest.fixture(scope="module")
def repo_plan() -> Plan:
    return Plan.model_validate(load_raw())


def error_rate(plan: Plan, tier: str) -> ErrorRateCriterion:
    found = [c for _, t in plan_tiers(plan) if t.name == tier for c in t.criteria if c.kind == "error_rate"]
    assert 1 == len(found)
    criterion = found[0]
    assert isinstance(criterion, ErrorRateCriterion)
    return criterion


def plan_tiers(plan: Plan) -> list[tuple[str, Any]]:
    return [(phase.name, tier) for phase in plan.phases for tier in phase.tiers]


# -- the repo's plan -------------------------------------------------------------------------------------


def test_repo_plan_shape(repo_plan: Plan) -> None:
    """config/rollout-plan.yaml validates: 3 regions, 4 phases holding 2w/2w/1w/1w on fail, 9 tiers, 27 gates."""
    assert ("us-east", "us-west", "eu-west") == repo_plan.regions
    assert [(p.name, p.hold_on_fail) for p in repo_plan.phases] == [
        ("canary", 2 * WEEK),
        ("ramp", 2 * WEEK),
        ("rollout", WEEK),
        ("expansion", WEEK),
    ]
    assert [
        "canary",
        "ramp-10",
        "ramp-25",
        "ramp-50",
        "rollout-75",
        "rollout-90",
        "rollout-95",
        "rollout-100",
        "expansion",
    ] == [t.name for _, t in plan_tiers(repo_plan)]
    assert len(repo_plan.gates()) == 9 * 3


def test_repo_plan_evaluation(repo_plan: Plan) -> None:
    """The repo plan judges per minute pane and per hour window, with 5m lateness and a 15m stall."""
    ev = repo_plan.evaluation
    assert (ev.pane, ev.window, ev.lateness, ev.stall_after) == (MINUTE, HOUR, 5 * MINUTE, 15 * MINUTE)
    assert (0.01, 0.05) == (ev.confidence.false_fail, ev.confidence.false_pass)
    assert 0.5 == ev.uptime.down_error_rate


def test_repo_plan_statistics(repo_plan: Plan) -> None:
    """The repo plan judges with the sequential method, its error probabilities held per rollout, 10 % of each
    criterion's false_fail kept for restarted tests, and 9 parts of a gate's false_fail on its error rate to 1 on
    each other statistical criterion (latency; on the ramp tiers the two no_regression criteria too)."""
    ev = repo_plan.evaluation
    assert ("sequential", "rollout", 0.1) == (ev.method, ev.confidence.scope, ev.confidence.restart_share)
    weights = {
        (t.name, c.kind, getattr(c, "false_fail_weight", None)) for _, t in plan_tiers(repo_plan) for c in t.criteria
    }
    assert {1.0, 9.0, None} == {w for _, _, w in weights}
    kinds = {
        ("error_rate", 9.0),
        ("latency", 1.0),
        ("uptime", None),
        ("no_incidents", None),
        ("lift", None),
        ("no_regression", 1.0),
    }
    assert kinds == {(k, w) for _, k, w in weights}


def test_statistics_defaults() -> None:
    """Without settings: the sequential method, error probabilities per rollout, equal criterion weights."""
    plan = make_plan()
    ev = plan.evaluation
    assert ("sequential", "rollout", 0.1) == (ev.method, ev.confidence.scope, ev.confidence.restart_share)
    criteria = plan.phases[0].tiers[0].criteria
    assert [1.0, 1.0] == [c.false_fail_weight for c in criteria if isinstance(c, ErrorRateCriterion | LatencyCriterion)]


@pytest.mark.parametrize(
    ("tier", "pass_below", "fail_above"),
    [("ramp-10", 0.0015, 0.002), ("ramp-25", 0.0012, 0.0015), ("ramp-50", 0.0010, 0.0012)],
)
def test_repo_plan_ramp_thresholds(repo_plan: Plan, tier: str, pass_below: float, fail_above: float) -> None:
    """Each ramp tier carries both error ceilings of the seed: advance below 0.15/0.12/0.10 %, fail above
    0.2/0.15/0.12 %."""
    criterion = error_rate(repo_plan, tier)
    assert (pass_below, fail_above) == (criterion.pass_below, criterion.fail_above)


def test_repo_plan_canary(repo_plan: Plan) -> None:
    """The canary soaks 3 weeks with a GO/NO-GO checkpoint at 4 weeks that requires approval, and the seed's five
    criteria: error rate, P99, uptime, zero critical incidents, revenue lift."""
    canary = repo_plan.phases[0].tiers[0]
    assert canary.soak == 3 * WEEK
    assert [(c.after, c.approval) for c in canary.checkpoints] == [(4 * WEEK, True)]
    kinds = {type(c) for c in canary.criteria}
    assert {ErrorRateCriterion, LatencyCriterion, UptimeCriterion, NoIncidentsCriterion, LiftCriterion} == kinds
    assert (
        0.001,
        0.001,
    ) == (error_rate(repo_plan, "canary").pass_below, error_rate(repo_plan, "canary").fail_above)


def test_repo_plan_tiers_gate_every_region(repo_plan: Plan) -> None:
    """No tier of the repo plan restricts its regions, so every (region, tier) pair is a gate."""
    expected = {(r, t.name) for _, t in plan_tiers(repo_plan) for r in repo_plan.regions}
    assert expected == {(region, tier.name) for region, _, tier in repo_plan.gates()}


# -- parsing ---------------------------------------------------------------------------------------------


def test_percentage_text_is_a_fraction() -> None:
    """'0.1%' in a plan is the fraction 0.001, exactly as if 0.001 had been written."""
    raw = plan_dict()
    tier_of(raw)["criteria"][0].update(pass_below="0.1%", fail_above="0.1 %")
    criterion = make_plan(raw).phases[0].tiers[0].criteria[0]
    assert isinstance(criterion, ErrorRateCriterion)
    assert (0.001, 0.001) == (criterion.pass_below, criterion.fail_above)


def test_durations_are_milliseconds() -> None:
    """Duration text and bare seconds both become integer milliseconds."""
    raw = plan_dict(pane=60, window="10m", lateness="120s", stall_after="0.1h")
    ev = make_plan(raw).evaluation
    assert (ev.pane, ev.window, ev.lateness, ev.stall_after) == (MINUTE, 10 * MINUTE, 2 * MINUTE, 6 * MINUTE)


def test_latency_criterion_names() -> None:
    """A latency criterion is named after its quantile: p99_latency_ms, p99.9_latency_ms, p50_latency_ms."""
    qs = (0.99, 0.999, 0.5)
    criteria = [LatencyCriterion(kind="latency", quantile=q, pass_below_ms=1, fail_above_ms=1) for q in qs]
    names = [c.name for c in criteria]
    assert ["p99_latency_ms", "p99.9_latency_ms", "p50_latency_ms"] == names


def test_tier_regions_subset() -> None:
    """A tier listing some regions is gated in those regions only, in plan order."""
    raw = plan_dict()
    tier_of(raw)["regions"] = ["eu-west"]
    assert [("eu-west", "canary")] == [(r, t.name) for r, _, t in make_plan(raw).gates()]


# -- invalid plans ---------------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


SECOND_ERROR_RATE = {"kind": "error_rate", "pass_below": 0.01, "fail_above": 0.02}


def _dup_tier(raw: dict[str, Any]) -> None:
    raw["phases"].append({"name": "ramp", "hold_on_fail": "30m", "tiers": [copy.deepcopy(tier_of(raw))]})


INVALID: list[tuple[str, Mutation, list[str]]] = [
    ("unknown top-level field", lambda r: r.update(owner="me"), ["owner", "Extra inputs are not permitted"]),
    ("unknown tier field", lambda r: tier_of(r).update(colour="red"), ["colour", "Extra inputs"]),
    (
        "fail_above below pass_below",
        lambda r: tier_of(r)["criteria"][0].update(pass_below="5%", fail_above="2%"),
        ["fail_above", "pass_below", "must be >="],
    ),
    (
        "fail_above_ms below pass_below_ms",
        lambda r: tier_of(r)["criteria"][1].update(pass_below_ms=900),
        ["fail_above_ms", "pass_below_ms"],
    ),
    ("soak not a whole number of windows", lambda r: tier_of(r).update(soak="65m"), ["soak", "whole number"]),
    (
        "checkpoint not a whole number of windows",
        lambda r: tier_of(r).update(checkpoints=[{"name": "mid", "after": "25m"}]),
        ["checkpoint 'mid'", "whole number"],
    ),
    (
        "hold not a whole number of windows",
        lambda r: r["phases"][0].update(hold_on_fail="15m"),
        ["hold_on_fail", "whole number"],
    ),
    (
        "window not a whole number of panes",
        lambda r: r["evaluation"].update(window="90s"),
        ["evaluation.window", "panes"],
    ),
    (
        "stall_after not longer than lateness",
        lambda r: r["evaluation"].update(stall_after="2m"),
        ["stall_after"],
    ),
    (
        "unknown region in tier.regions",
        lambda r: tier_of(r).update(regions=["us-east", "mars"]),
        ["unknown region 'mars'", "canary"],
    ),
    ("duplicate tier names", _dup_tier, ["tier names must be unique", "canary"]),
    ("duration in words", lambda r: tier_of(r).update(soak="3 weeks"), ["soak", "not a duration: '3 weeks'"]),
    (
        "percentage that is not a number",
        lambda r: tier_of(r)["criteria"][0].update(pass_below="low%"),
        ["pass_below", "not a percentage"],
    ),
    ("negative duration", lambda r: tier_of(r).update(soak=-60), ["soak", "greater than 0"]),
    ("tier name with capitals", lambda r: tier_of(r).update(name="Canary"), ["name", "pattern"]),
    (
        "uptime of 100 %",
        lambda r: tier_of(r)["criteria"][2].update(at_least="100%"),
        ["at_least", "less than 1"],
    ),
    (
        "criterion kind unknown",
        lambda r: tier_of(r)["criteria"].append({"kind": "apdex", "at_least": 0.9}),
        ["apdex", "error_rate", "latency", "uptime"],
    ),
    ("unknown method", lambda r: r["evaluation"].update(method="bayes"), ["method", "sequential", "fixed"]),
    ("unknown alpha scope", lambda r: r["evaluation"]["confidence"].update(scope="region"), ["scope", "rollout"]),
    ("restart share of 1", lambda r: r["evaluation"]["confidence"].update(restart_share=1), ["restart_share"]),
    (
        "criterion weight of 0",
        lambda r: tier_of(r)["criteria"][0].update(false_fail_weight=0),
        ["false_fail_weight", "greater than 0"],
    ),
    (
        "criterion listed twice",
        lambda r: tier_of(r)["criteria"].append(SECOND_ERROR_RATE),
        ["error_rate more than once"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [(m, n) for _, m, n in INVALID],
    ids=[i for i, _, _ in INVALID],
)
def test_invalid_plan_names_the_field(mutate: Mutation, needles: list[str]) -> None:
    """An invalid plan raises a ValidationError whose text names the field and the problem."""
    raw = plan_dict()
    mutate(raw)
    with pytest.raises(ValidationError) as info:
        make_plan(raw)
    text = str(info.value)
    assert [] == [n for n in needles if n not in text]


def test_infinite_duration_is_a_validation_error() -> None:
    """A duration of .inf (a valid YAML float) is refused as a ValidationError naming the field
    (regression: parse_duration raised OverflowError, which pydantic passes through)."""
    raw = plan_dict()
    tier_of(raw)["soak"] = float("inf")
    with pytest.raises(ValidationError, match="soak"):
        make_plan(raw)


# -- plan_version ----------------------------------------------------------------------------------------


def _thresholds(raw: dict[str, Any]) -> list[tuple[int, int, int, str]]:
    """(phase, tier, criterion, key) of every threshold in a plan dict."""
    keys = ("pass_below", "fail_above", "pass_below_ms", "fail_above_ms", "at_least", "min_requests")
    return [
        (p, t, c, key)
        for p, phase in enumerate(raw["phases"])
        for t, tier in enumerate(phase["tiers"])
        for c, criterion in enumerate(tier["criteria"])
        for key in keys
        if key in criterion
    ]


def _bumped(key: str, value: Any) -> Any:
    """A changed threshold that keeps the plan valid: pass/at-least levels lower, fail levels higher."""
    if key == "min_requests":
        return value + 1
    factor = 1.1 if key.startswith("fail_above") else 0.9
    if isinstance(value, str) and value.endswith("%"):
        return f"{float(value[:-1]) * factor:g}%"
    return value * factor


def test_plan_version_is_stable() -> None:
    """Loading the same plan twice, with its keys in another order, gives the same plan_version."""
    raw = load_raw()
    reordered = dict(reversed(list(load_raw().items())))
    first = Plan.model_validate(raw).plan_version
    assert first == Plan.model_validate(reordered).plan_version
    assert first.startswith("2.0+")


def test_plan_version_ignores_spelling() -> None:
    """The version hashes the parsed plan: '0.1%' and 0.001, '1h' and '60m' give the same version."""
    raw = plan_dict()
    tier_of(raw)["criteria"][0].update(pass_below="0.1%")
    respelled = plan_dict()
    tier_of(respelled)["criteria"][0].update(pass_below=0.001)
    tier_of(respelled)["soak"] = "60m"
    assert make_plan(raw).plan_version == make_plan(respelled).plan_version


def test_plan_version_changes_with_every_threshold() -> None:
    """Changing any single threshold of the repo plan (in any tier) gives a new, distinct plan_version."""
    base = Plan.model_validate(load_raw()).plan_version
    versions = []
    for p, t, c, key in _thresholds(load_raw()):
        raw = load_raw()
        criterion = raw["phases"][p]["tiers"][t]["criteria"][c]
        criterion[key] = _bumped(key, criterion[key])
        versions.append(Plan.model_validate(raw).plan_version)
    assert len(versions) == 6 + 8 * 5  # canary also sets min_requests; the other tiers 2 + 2 + 1 levels
    assert base not in versions
    assert len(versions) == len(set(versions))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("confidence", "false_fail", 0.02),
        ("confidence", "false_pass", 0.1),
        ("confidence", "scope", "gate"),
        ("confidence", "restart_share", 0.2),
        ("uptime", "down_error_rate", "40%"),
    ],
)
def test_plan_version_changes_with_confidence(section: str, key: str, value: Any) -> None:
    """The error probabilities and the down-minute definition are part of the version too."""
    raw = load_raw()
    raw["evaluation"][section][key] = value
    assert Plan.model_validate(load_raw()).plan_version != Plan.model_validate(raw).plan_version
