"""Scenario files: what traffic to simulate, for which (region, tier) gates, with which incidents.

A scenario is YAML validated into frozen pydantic models. Times inside a scenario (a stream's ``begin`` /
``end``, an episode's ``begin`` / ``end``) are durations after the scenario's ``start`` ("0s", "2d", "3w"),
held here as integer milliseconds; rates and shares are fractions (0.0005) or percentages ("0.05%").
``load_scenario`` turns every problem into one ``ScenarioError`` naming the file, the field and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from gatekeeper import planfile, validation
from gatekeeper.core import slot_routing
from gatekeeper.core.plan import Plan, to_duration_ms
from gatekeeper.core.telemetry import EPOCH_MAX_S, EPOCH_MIN_S
from gatekeeper.core.timefmt import format_duration, parse_instant
from gatekeeper.errors import UserError

DAY_MS = 86_400_000
DEFAULT_PLAN = "config/rollout-plan.yaml"


class ScenarioError(Exception):
    """A scenario that cannot be used; ``str()`` is a one-line (or one-line-per-problem) message for users."""

    def __init__(self, message: str, *, file: str = "", field: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.file, self.field, self.reason = file, field, reason

    @classmethod
    def at(cls, file: str | Path, field: str, reason: str) -> ScenarioError:
        where = f"{file}: {field}" if field else str(file)
        return cls(f"{where}: {reason}", file=str(file), field=field, reason=reason)


def _to_share(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"not a share: {value!r} (write a fraction such as 0.0005 or a percentage such as '0.05%')"
            ) from None
    return value


def _dur(ms: int) -> str:
    return format_duration(ms) if ms else "0s"


Share = Annotated[float, BeforeValidator(_to_share), Field(ge=0, le=1)]
"""A fraction in [0, 1]; YAML may give ``0.0005`` or ``"0.05%"``."""
Offset = Annotated[int, BeforeValidator(to_duration_ms), PlainSerializer(format_duration, return_type=str), Field(ge=0)]
"""Milliseconds; YAML gives a duration such as ``"90s"``, ``"26h"``, ``"3w"`` (a bare number is seconds).
Dumped back as duration text, so ``model_dump()`` output validates to the same scenario."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Strict):
    """Lognormal latencies: ``median_ms * exp(sigma * N(0, 1))``; a ``tail_share`` of requests instead come
    from a second lognormal around ``tail_median_ms`` (same sigma), for a bimodal mix."""

    median_ms: float = Field(gt=0, le=1e6)
    sigma: float = Field(ge=0, le=5)
    tail_share: Share = 0.0
    tail_median_ms: float | None = Field(default=None, gt=0, le=1e6)

    @model_validator(mode="after")
    def _tail(self) -> Latency:
        if self.tail_share > 0 and self.tail_median_ms is None:
            raise ValueError("tail_share > 0 needs tail_median_ms (the median of the slow mode)")
        return self


class Episode(_Strict):
    """A regime change over [begin, end) (offsets from the scenario start, like the stream's own)."""

    begin: Offset
    end: Offset
    error_rate: Share | None = None
    latency_multiplier: float | None = Field(default=None, gt=0, le=1e4)
    outage: bool = False  # every request fails with status 503
    silence: bool = False  # no requests at all

    @model_validator(mode="after")
    def _valid(self) -> Episode:
        if self.end <= self.begin:
            raise ValueError(f"end ({_dur(self.end)}) must be after begin ({_dur(self.begin)})")
        if self.error_rate is None and self.latency_multiplier is None and not (self.outage or self.silence):
            raise ValueError("an episode needs at least one of: error_rate, latency_multiplier, outage, silence")
        return self


class Stream(_Strict):
    """Traffic of one (region, tier) over [begin, end): Poisson arrivals at ``rate_per_min`` on average,
    with a daily sine of relative amplitude ``diurnal`` peaking at ``diurnal_peak`` (UTC time of day)."""

    region: str = Field(min_length=1, max_length=64)
    tier: str = Field(min_length=1, max_length=64)
    begin: Offset = 0
    end: Offset
    rate_per_min: float = Field(gt=0, le=1e6)
    diurnal: float = Field(default=0.3, ge=0, le=1)
    diurnal_peak: Offset = 15 * 3_600_000
    error_rate: Share = 0.0
    latency: Latency
    episodes: tuple[Episode, ...] = ()
    version: str | None = Field(default=None, min_length=1, max_length=256)  # telemetry's `version`, if any
    # a tenth of the requests (every tenth) from clients in this region: their `client_region` (cross-region)
    away_clients: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _valid(self) -> Stream:
        if self.end <= self.begin:
            raise ValueError(f"end ({_dur(self.end)}) must be after begin ({_dur(self.begin)})")
        if self.diurnal_peak >= DAY_MS:
            raise ValueError("diurnal_peak is a UTC time of day and must be under 24h")
        for i, ep in enumerate(self.episodes):
            if ep.begin < self.begin or ep.end > self.end:
                raise ValueError(
                    f"episodes[{i}] ({_dur(ep.begin)}..{_dur(ep.end)}) must lie inside "
                    f"the stream ({_dur(self.begin)}..{_dur(self.end)})"
                )
        return self


SignedShare = Annotated[float, BeforeValidator(_to_share), Field(ge=-0.9, le=10)]
"""A signed fraction such as a revenue lift: ``0.06`` or ``"6%"``."""


class IncidentEvent(_Strict):
    """An incident opened (and perhaps resolved) at offsets from the start: two records of one id, or one."""

    id: str = Field(min_length=1, max_length=128)
    severity: Literal["critical", "major", "minor"]
    kind: str = "outage"
    region: str = "all"
    tier: str = "all"
    opened: Offset
    resolved: Offset | None = None
    title: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> IncidentEvent:
        if self.resolved is not None and self.resolved < self.opened:
            raise ValueError(f"resolved ({_dur(self.resolved)}) is before opened ({_dur(self.opened)})")
        return self


class ApprovalEvent(_Strict):
    """A person's GO or NO-GO for a checkpoint, at an offset from the start."""

    checkpoint: str = Field(min_length=1)
    decision: Literal["go", "no-go"]
    by: str = Field(min_length=1)
    at: Offset
    region: str = "all"
    note: str = ""


class Revenue(_Strict):
    """Per-learner revenue of one (region, tier) treatment and its region's control over [begin, end): each
    learner reports a value every ``period`` (its own phase in the period); a ``purchase_share`` of the values
    are purchases (lognormal, coefficient of variation ``amount_cv``), the others 0; the control's mean value is
    ``mean``, the treatment's ``mean * (1 + lift)``."""

    region: str
    tier: str
    metric: str = "revenue"
    begin: Offset = 0
    end: Offset
    lift: SignedShare
    treatment_learners: int = Field(ge=1, le=1_000_000)
    control_learners: int = Field(ge=1, le=1_000_000)
    mean: float = Field(default=15.0, gt=0)
    purchase_share: Share = 0.5
    amount_cv: float = Field(default=0.5, ge=0, le=10)
    period: Offset = 7 * DAY_MS


class Scenario(_Strict):
    """A whole scenario file."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int
    start: str
    plan: str = DEFAULT_PLAN
    streams: tuple[Stream, ...] = Field(min_length=1)
    disorder: Offset = 0  # an event arrives at most this long after events with later timestamps
    late_share: Share = 0.0  # share of events delivered ``late_delay``..2x``late_delay`` after their time
    late_delay: Offset = 30 * 60_000
    ts_format: Literal["epoch", "rfc3339", "mixed"] = "epoch"
    malformed_share: Share = 0.0  # invalid records added, per valid record
    # side inputs (sim/side_inputs.py): replay's --incidents / --approvals / --business files
    incidents: tuple[IncidentEvent, ...] = ()
    approvals: tuple[ApprovalEvent, ...] = ()
    revenue: tuple[Revenue, ...] = ()

    @field_validator("start")
    @classmethod
    def _instant(cls, value: str) -> str:
        ms = parse_instant(value)
        if not EPOCH_MIN_S * 1000 <= ms <= EPOCH_MAX_S * 1000:
            raise ValueError(f"start {value!r} is outside 2000-01-01..2100-01-01 (telemetry contract v1)")
        return value

    @property
    def start_ms(self) -> int:
        return parse_instant(self.start)

    @property
    def span_ms(self) -> tuple[int, int]:
        """[first stream begin, last stream end) as offsets from ``start``."""
        return min(s.begin for s in self.streams), max(s.end for s in self.streams)


# -- loading -------------------------------------------------------------------------------------------------
def plan_path(scenario: Scenario, scenario_file: str | Path | None = None) -> Path:
    """Where the scenario's plan is: absolute, else relative to the working directory, else to a folder
    above the scenario file (so ``config/rollout-plan.yaml`` works from anywhere inside the repository)."""
    path = Path(scenario.plan)
    if path.is_absolute() or path.exists() or scenario_file is None:
        return path
    for folder in Path(scenario_file).resolve().parents:
        if (folder / path).exists():
            return folder / path
    return path


def load_plan(path: str | Path) -> Plan:
    """The rollout plan at ``path``, or a ``ScenarioError`` saying why not (as ``gatekeeper plan check``)."""
    try:
        return planfile.load_plan(path)
    except UserError as exc:
        raise ScenarioError(str(exc), file=str(path), reason=str(exc)) from None


def check_gates(scenario: Scenario, plan: Plan, file: str | Path = "<scenario>") -> None:
    """Every stream must feed a (region, tier) the plan gates; otherwise all its events would be rejected."""
    gates = {(r, t.name) for r, _p, t in plan.gates()}
    regions = sorted({r for r, _ in gates})
    tiers = [t.name for p in plan.phases for t in p.tiers]
    baselines = slot_routing.layout(plan).baselines  # a baseline version's telemetry may carry any tier label
    for i, s in enumerate(scenario.streams):
        if s.region not in regions:
            raise ScenarioError.at(
                file, f"streams[{i}].region", f"{s.region!r} is not a plan region ({', '.join(regions)})"
            )
        if (s.region, s.tier) not in gates and (s.region, s.version) not in baselines:
            raise ScenarioError.at(
                file,
                f"streams[{i}].tier",
                f"{s.tier!r} is not a tier gated in {s.region} ({', '.join(tiers)})",
            )


def load_scenario(path: str | Path, *, check_plan: bool = True) -> Scenario:
    """Read and validate a scenario file; with ``check_plan``, also check its streams against its plan."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError.at(path, "", f"cannot read the scenario ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError.at(path, where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise ScenarioError.at(path, "", "a scenario must be a YAML mapping (name, seed, start, streams, ...)")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = validation.validation_problems(Scenario, exc)
        field, reason = problems[0]
        message = "\n".join(f"{path}: {f}: {r}" for f, r in problems)
        raise ScenarioError(message, file=str(path), field=field, reason=reason) from None
    if check_plan:
        check_gates(scenario, load_plan(plan_path(scenario, path)), path)
    return scenario
