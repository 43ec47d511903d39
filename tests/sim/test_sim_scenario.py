"""Scenario files: parsing, validation messages, and the files shipped in config/scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gatekeeper.sim.scenario import Scenario, ScenarioError, Stream, load_scenario

from .sim_support import PLAN_FILE, SCENARIO_DIR, START, make_scenario, make_stream

SCENARIO_FILES = sorted(SCENARIO_DIR.glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


MINIMAL = f"""
name: minimal
seed: 1
start: "{START}"
plan: {PLAN_FILE}
streams:
  - region: us-east
    tier: canary
    end: 2h
    rate_per_min: 10
    latency: {{median_ms: 18, sigma: 0.3}}
"""


def test_the_ten_scenario_files_exist() -> None:
    """config/scenarios ships the ten scenarios the README, the demo, the status page's test and the regression and
    expansion goldens refer to."""
    expected = {
        "error-breach",
        "expansion",
        "healthy-canary",
        "latency-breach-one-region",
        "mixed-input",
        "regression",
        "seed-gates",
        "stall",
        "status-page",
        "thin-traffic",
    }
    assert expected == {p.stem for p in SCENARIO_FILES}


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_every_scenario_file_loads_and_matches_the_plan(path: Path) -> None:
    """Each shipped scenario validates, names itself after its file, and feeds only gates of its plan."""
    scenario = load_scenario(path)
    assert path.stem == scenario.name


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_every_scenario_file_starts_with_a_comment_header(path: Path) -> None:
    """Each shipped scenario explains, in a comment header, what it exercises and what decisions to expect."""
    head = path.read_text().splitlines()[:12]
    expected = (True, True)
    assert expected == (
        any("Exercises" in line for line in head),
        any("Expected under config/rollout-plan.yaml" in line for line in head),
    )


def test_durations_and_percentages_become_milliseconds_and_fractions() -> None:
    """ "26h" is 93 600 000 ms, "0.05%" is 0.0005, a plain fraction stays as given, "0s" is 0."""
    stream = make_stream(begin="0s", end="26h", error_rate="0.05%")
    episode_stream = make_stream(episodes=[{"begin": "1h", "end": "90m", "error_rate": 0.2}])
    expected = (0, 93_600_000, 0.0005, 0.2, 5_400_000)
    assert expected == (
        stream.begin,
        stream.end,
        stream.error_rate,
        episode_stream.episodes[0].error_rate,
        episode_stream.episodes[0].end,
    )


def test_defaults_of_the_scenario_wide_knobs() -> None:
    """Unless set, a scenario is in order, on time, epoch-stamped, all valid, and uses the repo plan."""
    scenario = make_scenario()
    expected = (0, 0.0, "epoch", 0.0, "config/rollout-plan.yaml", 0.3)
    assert expected == (
        scenario.disorder,
        scenario.late_share,
        scenario.ts_format,
        scenario.malformed_share,
        scenario.plan,
        scenario.streams[0].diurnal,
    )


def test_start_is_epoch_milliseconds() -> None:
    """``start_ms`` is the RFC 3339 ``start`` as epoch milliseconds."""
    expected = 1_760_832_000_000
    assert expected == make_scenario().start_ms


def test_dump_validates_back_to_the_same_scenario() -> None:
    """``model_dump()`` writes durations as text, so a dumped scenario loads back unchanged."""
    scenario = make_scenario(
        [make_stream(begin="1h", end="2d", episodes=[{"begin": "3h", "end": "4h", "silence": True}])],
        disorder="90s",
    )
    assert scenario == Scenario.model_validate(scenario.model_dump())


def test_minimal_file_loads(tmp_path: Path) -> None:
    """A file with only the required fields (and its plan) loads and passes the check against the plan."""
    scenario = load_scenario(_write(tmp_path, MINIMAL))
    expected = ("minimal", 1, 7_200_000)
    assert expected == (scenario.name, len(scenario.streams), scenario.streams[0].end)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (
            ("    rate_per_min: 10", "    rate_per_min: 10\n    rate: 3"),
            "streams[0].rate",
            ["unknown field", "rate_per_min"],
        ),
        (("seed: 1", "seed: 1\nts_format: iso"), "ts_format", ["'epoch'", "'rfc3339'", "'mixed'"]),
        (("    rate_per_min: 10", "    rate_per_min: 0"), "streams[0].rate_per_min", ["greater than 0"]),
        (("    end: 2h", "    end: 2 hours"), "streams[0].end", ["not a duration", "ms, s, m, h, d, w"]),
        (("seed: 1", "seed: 1\nlate_share: lots"), "late_share", ["not a share", "0.05%"]),
        (("seed: 1", "seed: 1\nmalformed_share: 150%"), "malformed_share", ["less than or equal to 1"]),
        ((f'start: "{START}"', 'start: "2025-10-19 00:00"'), "start", ["no UTC offset"]),
        (("seed: 1\n", ""), "seed", ["required field is missing"]),
        (("    end: 2h", "    begin: 3h\n    end: 2h"), "streams[0]", ["must be after begin"]),
        (
            ("    end: 2h", "    end: 2h\n    episodes: [{begin: 1h, end: 3h, outage: true}]"),
            "streams[0]",
            ["episodes[0]", "inside the stream"],
        ),
        (
            ("    end: 2h", "    end: 2h\n    episodes: [{begin: 1h, end: 2h}]"),
            "streams[0].episodes[0]",
            ["error_rate, latency_multiplier, outage, silence"],
        ),
        (("sigma: 0.3}", "sigma: 0.3, tail_share: 0.01}"), "streams[0].latency", ["tail_median_ms"]),
    ],
)
def test_validation_errors_name_the_field_and_the_valid_options(
    tmp_path: Path, edit: tuple[str, str], field: str, words: list[str]
) -> None:
    """An invalid file raises one ScenarioError naming the file, the field and what is allowed."""
    path = _write(tmp_path, MINIMAL.replace(*edit))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, check_plan=False)
    err = info.value
    expected = (str(path), field, [True] * len(words), True)
    assert expected == (
        err.file,
        err.field,
        [w in err.reason for w in words],
        str(err).startswith(f"{path}: {field}: "),
    )


def test_unknown_tier_lists_the_plan_tiers(tmp_path: Path) -> None:
    """A stream for a tier the plan does not gate is rejected at load time, listing the plan's tiers."""
    path = _write(tmp_path, MINIMAL.replace("tier: canary", "tier: ramp-99"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    expected = ("streams[0].tier", True, True)
    assert expected == (
        info.value.field,
        "'ramp-99'" in info.value.reason,
        "canary, ramp-10, ramp-25" in info.value.reason,
    )


def test_unknown_region_lists_the_plan_regions(tmp_path: Path) -> None:
    """A stream for a region the plan does not know is rejected at load time, listing the plan's regions."""
    path = _write(tmp_path, MINIMAL.replace("region: us-east", "region: ap-south"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    expected = ("streams[0].region", True)
    assert expected == (info.value.field, "eu-west, us-east, us-west" in info.value.reason)


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    """Broken YAML is a ScenarioError with the line of the problem, not a parser traceback."""
    path = _write(tmp_path, MINIMAL + "  - region: [unclosed\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    expected = (True, True)
    assert expected == (info.value.field.startswith("line "), "not valid YAML" in info.value.reason)


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path: Path, text: str) -> None:
    """An empty file, a list or a scalar is not a scenario."""
    with pytest.raises(ScenarioError, match="must be a YAML mapping"):
        load_scenario(_write(tmp_path, text))


def test_missing_file_and_missing_plan(tmp_path: Path) -> None:
    """A missing scenario file, or a missing plan file, is a ScenarioError naming the file."""
    with pytest.raises(ScenarioError, match="cannot read the scenario"):
        load_scenario(tmp_path / "nope.yaml")
    path = _write(tmp_path, MINIMAL.replace(f"plan: {PLAN_FILE}", "plan: /nonexistent/plan.yaml"))
    with pytest.raises(ScenarioError, match="cannot read the plan") as info:
        load_scenario(path)
    expected = "/nonexistent/plan.yaml"
    assert expected == info.value.file


def test_relative_plan_is_found_above_the_scenario_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default plan path (config/rollout-plan.yaml) resolves from a folder above the scenario file when
    the working directory is elsewhere, as it is for files under config/scenarios/."""
    (tmp_path / "config" / "scenarios").mkdir(parents=True)
    (tmp_path / "config" / "rollout-plan.yaml").write_text(PLAN_FILE.read_text())
    path = tmp_path / "config" / "scenarios" / "minimal.yaml"
    path.write_text(MINIMAL.replace(f"plan: {PLAN_FILE}\n", ""))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    expected = "config/rollout-plan.yaml"
    assert expected == load_scenario(path).plan


def test_boolean_duration_is_an_error() -> None:
    """A YAML boolean where a duration belongs is refused, not read as 1 ms (one parser with the plan's)."""
    stream = {"region": "us-east", "tier": "canary", "end": True, "rate_per_min": 1,
              "latency": {"median_ms": 10, "sigma": 0.3}}  # fmt: skip
    with pytest.raises(ValidationError, match="a duration must be text"):
        Stream.model_validate(stream)
