"""The rollout plan as a validated domain model (spec -> model -> validation, as in sloth).

Durations are text ("5m", "2w") in files and integer milliseconds here; rates and uptimes are
text percentages ("0.1%") or fractions (0.001) in files and fractions here.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gatekeeper.core.timefmt import parse_duration


def _to_fraction(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a percentage: {value!r} (write e.g. '0.1%')") from None
    return value


def to_duration_ms(value: object) -> object:
    """Field validator: duration text or seconds -> ms; ``parse_duration`` refuses a boolean (an int here), so
    a YAML ``true`` is an error, not 1 ms. Other values are left to the field's own type check."""
    if isinstance(value, str | int | float):
        return parse_duration(value)
    return value


Fraction = Annotated[float, BeforeValidator(_to_fraction), Field(gt=0, lt=1)]
SignedFraction = Annotated[float, BeforeValidator(_to_fraction), Field(gt=-1, lt=10)]  # a lift: "-2%", "+5.8%"
DurationMs = Annotated[int, BeforeValidator(to_duration_ms), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorRateCriterion(_Strict):
    """Share of requests that failed: fail when confidently above ``fail_above``, pass when below ``pass_below``."""

    kind: Literal["error_rate"]
    pass_below: Fraction
    fail_above: Fraction
    min_requests: int = Field(default=1000, ge=1)
    min_requests_to_fail: int = Field(default=100, ge=1)
    false_fail_weight: float = Field(default=1.0, gt=0)  # share of the gate's false_fail, relative to the others
    dry_run: bool = False  # judged and reported, never fails, holds or blocks a pass (core/dry_run.py)

    @model_validator(mode="after")
    def _ordered(self) -> ErrorRateCriterion:
        if self.fail_above < self.pass_below:
            raise ValueError(f"fail_above ({self.fail_above}) must be >= pass_below ({self.pass_below})")
        return self

    @property
    def name(self) -> str:
        return "error_rate"


class LatencyCriterion(_Strict):
    """A latency quantile (default P99) in milliseconds, judged with an order-statistic bound."""

    kind: Literal["latency"]
    quantile: float = Field(default=0.99, gt=0, lt=1)
    pass_below_ms: float = Field(gt=0)
    fail_above_ms: float = Field(gt=0)
    min_requests: int = Field(default=1000, ge=1)
    min_requests_to_fail: int = Field(default=100, ge=1)
    false_fail_weight: float = Field(default=1.0, gt=0)  # share of the gate's false_fail, relative to the others
    dry_run: bool = False  # judged and reported, never fails, holds or blocks a pass (core/dry_run.py)
    # which requests: all of the gate's, or only those from clients in another region (core/cross_region.py)
    requests: Literal["all", "cross_region"] = "all"

    @model_validator(mode="after")
    def _ordered(self) -> LatencyCriterion:
        if self.fail_above_ms < self.pass_below_ms:
            raise ValueError(f"fail_above_ms ({self.fail_above_ms}) must be >= pass_below_ms ({self.pass_below_ms})")
        return self

    @property
    def name(self) -> str:
        scoped = "_cross_region" if self.requests == "cross_region" else ""
        return f"p{self.quantile * 100:g}_latency_ms{scoped}"


class UptimeCriterion(_Strict):
    """Time-based availability over the soak, from telemetry (see ``UptimeDefinition``)."""

    kind: Literal["uptime"]
    at_least: Fraction
    dry_run: bool = False  # judged and reported, never fails, holds or blocks a pass (core/dry_run.py)

    @property
    def name(self) -> str:
        return "uptime"


class NoIncidentsCriterion(_Strict):
    """No incident of the given severities and kinds in the gate's region and tier over ``scope`` (the soak so
    far, or the latest window): one that was open at any time of it fails the tier (core/incidents.py)."""

    kind: Literal["no_incidents"]
    severities: tuple[Literal["critical", "major", "minor"], ...] = Field(default=("critical",), min_length=1)
    kinds: tuple[str, ...] | None = Field(default=None, min_length=1)  # None: any kind (outage, data_loss, ...)
    scope: Literal["soak", "window"] = "soak"
    label: str = Field(default="", pattern=r"^[a-z0-9_]*$")  # tells two incident criteria of one tier apart
    dry_run: bool = False  # judged and reported, never fails, holds or blocks a pass (core/dry_run.py)

    @property
    def name(self) -> str:
        return f"no_incidents_{self.label}" if self.label else "no_incidents"


class LiftCriterion(_Strict):
    """Relative lift of the treatment's mean ``metric`` over the control's, with an anytime-valid confidence
    sequence (core/lift.py, docs/statistics.md). Pass: the lower bound above ``pass_lower_above`` and (if set)
    the estimate at least ``pass_estimate_at_least``; fail: the upper bound below ``fail_upper_below``."""

    kind: Literal["lift"]
    metric: str = Field(default="revenue", min_length=1, max_length=64)
    pass_lower_above: SignedFraction = 0.0
    pass_estimate_at_least: SignedFraction | None = None
    fail_upper_below: SignedFraction
    # None (default): its false_fail is its share of the gate's by ``false_fail_weight`` (with the statistical
    # criteria), its false_pass the gate's; a number: its own, both sides, outside the plan's split
    alpha: float | None = Field(default=None, gt=0, lt=0.5)
    false_fail_weight: float | None = Field(default=None, gt=0)  # share of the gate's false_fail (None: 1)
    tune_at: int = Field(default=20_000, ge=10)  # observations (both arms) where the sequence is tightest
    min_per_arm: int = Field(default=100, ge=2)
    dry_run: bool = False  # judged and reported, never fails, holds or blocks a pass (core/dry_run.py)

    @property
    def name(self) -> str:
        return f"{self.metric}_lift"


class NoRegressionCriterion(_Strict):
    """The tier's version against the baseline version in the same region and windows (core/regression.py):
    ``metric: error_rate`` compares error rates (``margin``: allowed excess, absolute, e.g. "0.05%");
    ``metric: latency`` compares a quantile (``margin_ms``). Fails when the treatment is confidently worse by more
    than the margin; passes when confidently not worse by more than it. Telemetry of the region whose ``version``
    is ``baseline_version`` is the baseline's, whatever its tier label."""

    kind: Literal["no_regression"]
    metric: Literal["error_rate", "latency"]
    baseline_version: str = Field(min_length=1, max_length=256)
    margin: float | None = Field(default=None, ge=0, lt=1)  # error_rate: fraction ("0.05%" is 0.0005)
    margin_ms: float | None = Field(default=None, ge=0)  # latency
    quantile: float = Field(default=0.99, gt=0, lt=1)
    min_requests: int = Field(default=1000, ge=1)  # per side, to pass
    min_requests_to_fail: int = Field(default=100, ge=1)  # per side, to fail
    false_fail_weight: float = Field(default=1.0, gt=0)  # share of the gate's false_fail, relative to the others
    dry_run: bool = False  # judged and reported, never fails, holds or blocks a pass (core/dry_run.py)

    @model_validator(mode="before")
    @classmethod
    def _percent(cls, data: object) -> object:
        if isinstance(data, dict) and "margin" in data:
            return {**data, "margin": _to_fraction(data["margin"])}
        return data

    @model_validator(mode="after")
    def _margin_of_metric(self) -> NoRegressionCriterion:
        wanted, other = ("margin", "margin_ms") if self.metric == "error_rate" else ("margin_ms", "margin")
        if getattr(self, wanted) is None or getattr(self, other) is not None:
            raise ValueError(f"no_regression on {self.metric} takes {wanted} (and not {other})")
        return self

    @property
    def name(self) -> str:
        return (
            "no_regression_error_rate"
            if self.metric == "error_rate"
            else f"no_regression_p{self.quantile * 100:g}_latency_ms"
        )


Criterion = Annotated[
    ErrorRateCriterion
    | LatencyCriterion
    | UptimeCriterion
    | NoIncidentsCriterion
    | LiftCriterion
    | NoRegressionCriterion,
    Field(discriminator="kind"),
]


class Checkpoint(_Strict):
    """A GO/NO-GO point, ``after`` the tier's soak started: a tier not passed by then is reported ``pending``.
    With ``approval``, the tier passes only once a person's ``go`` for this checkpoint exists (a ``no-go`` fails
    and holds it; core/approvals.py); ``approvers``, when given, are the only people whose decision counts."""

    name: str
    after: DurationMs
    approval: bool = False
    approvers: tuple[str, ...] = ()


class Tier(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    traffic_percent: float = Field(gt=0, le=100)
    learners: int | None = Field(default=None, ge=1)
    soak: DurationMs
    checkpoints: tuple[Checkpoint, ...] = ()
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    regions: tuple[str, ...] | None = Field(default=None, min_length=1)  # None: every region of the plan
    alerts: Alerting | None = None  # None: the plan's evaluation.alerts
    dry_run: bool = False  # every criterion in dry run: the tier never fails nor holds (core/dry_run.py)

    @model_validator(mode="after")
    def _unique_criteria(self) -> Tier:
        names = [c.name for c in self.criteria]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier {self.name!r} lists criterion {', '.join(dupes)} more than once")
        return self


class Phase(_Strict):
    name: str
    hold_on_fail: DurationMs
    tiers: tuple[Tier, ...] = Field(min_length=1)


class Confidence(_Strict):
    """Error probabilities of the verdicts over every gate's whole soak and any extension.

    ``scope: rollout`` (default): ``false_fail`` and ``false_pass`` hold for the whole rollout, each gate getting
    an even share (the plan's number of (region, tier) gates); ``scope: gate``: each holds per gate. Inside a
    gate, ``false_fail`` is split over the statistical criteria by their ``false_fail_weight`` (a pass needs every
    criterion, so ``false_pass`` needs no split). ``restart_share`` (sequential method) is the part of a
    criterion's ``false_fail`` kept for tests restarted each window, which catch breaches that start mid-soak."""

    false_fail: float = Field(default=0.01, gt=0, lt=0.5)  # healthy tier failed by chance, any look
    false_pass: float = Field(default=0.05, gt=0, lt=0.5)  # breaching tier passed by chance, any look
    interval: Literal["exact", "wilson", "wilson_cc"] = "exact"  # error-rate bounds; see core/stats.py
    scope: Literal["rollout", "gate"] = "rollout"
    restart_share: float = Field(default=0.1, gt=0, lt=1)


class UptimeDefinition(_Strict):
    """A pane is *down* when it carries >= ``min_requests`` and more than ``down_error_rate`` of them fail;
    a silence longer than ``stall_after`` counts as down only when ``silence_counts_as_down`` (off by default:
    missing data is reported as ``pending``, it never fails a tier by itself).
    Uptime = 1 - down time / elapsed soak time."""

    down_error_rate: Fraction = 0.5
    min_requests: int = Field(default=5, ge=1)
    silence_counts_as_down: bool = False


class BurnRule(_Strict):
    """One multi-window burn-rate alert rule (the SRE workbook's): it fires when the error budget burns at least
    ``burn_rate`` times the sustainable rate over both the ``long`` and the ``short`` window."""

    severity: Literal["page", "ticket"]
    long: DurationMs
    short: DurationMs
    burn_rate: float = Field(gt=0)

    @model_validator(mode="after")
    def _short_inside_long(self) -> BurnRule:
        if self.short >= self.long:
            raise ValueError(f"short window ({self.short} ms) must be shorter than the long one ({self.long} ms)")
        return self


WORKBOOK_RULES = (  # "The Site Reliability Workbook", ch. 5, table 5-8, for a 30-day objective
    BurnRule(severity="page", long="1h", short="5m", burn_rate=14.4),  # 2 % of the budget in 1 h
    BurnRule(severity="page", long="6h", short="30m", burn_rate=6),  # 5 % in 6 h
    BurnRule(severity="ticket", long="3d", short="6h", burn_rate=1),  # 10 % in 3 days
)


class Alerting(_Strict):
    """Breach alerts on the error budget each tier's objectives imply (``core/burn_rate.py``). A breach opens
    when any rule fires, escalates to ``page`` at once, and resolves (or drops to ``ticket``) only after its
    rules have been silent for ``resolve_after``: the hysteresis that keeps a flapping rate from opening a storm
    of alerts. A rule needs ``min_requests`` in its long window, so a few errors in thin traffic never page."""

    rules: tuple[BurnRule, ...] = Field(default=WORKBOOK_RULES, min_length=1)
    resolve_after: DurationMs = 3_600_000
    min_requests: int = Field(default=100, ge=1)
    # a rule fires only if its long window's bad count has at most this chance at a burn of just its rate
    false_alarm: float = Field(default=0.01, gt=0, lt=0.5)


class Evaluation(_Strict):
    # sequential: anytime-valid likelihood-ratio tests, fail checked after every pane (docs/statistics.md);
    # fixed: the former fixed-sample bounds with alpha spent over hourly looks (kept for comparison)
    method: Literal["sequential", "fixed"] = "sequential"
    pane: DurationMs = 60_000
    window: DurationMs = 3_600_000
    lateness: DurationMs = 300_000
    stall_after: DurationMs = 900_000
    stall_mean_gaps: int = Field(default=10, ge=0)  # thin traffic: a stall is also longer than k mean gaps
    max_future_skew: DurationMs = 3_600_000  # records timestamped later than the clock plus this are rejected
    confidence: Confidence = Confidence()
    uptime: UptimeDefinition = UptimeDefinition()
    alerts: Alerting = Alerting()

    @model_validator(mode="after")
    def _grid(self) -> Evaluation:
        if self.window % self.pane:
            raise ValueError(f"evaluation.window ({self.window} ms) must be a whole number of panes ({self.pane} ms)")
        if self.stall_after % self.pane:
            raise ValueError("evaluation.stall_after must be a whole number of panes")
        if self.stall_after <= self.lateness:
            raise ValueError("evaluation.stall_after must be longer than evaluation.lateness")
        _check_alert_grid(self.alerts, self.pane, "evaluation.alerts")
        return self


class TierDates(_Strict):
    """A tier's planned days in the seed's calendar, both inclusive (``end``: the planned GO day)."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> TierDates:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class Calendar(_Strict):
    """The rollout's planned dates, for the status page (planned vs actual). It gates nothing, so it is not
    part of ``plan_version``: moving a date changes no decision id."""

    contingency_weeks: tuple[float, float]  # the seed's contingency buffer, low and high
    tiers: dict[str, TierDates] = Field(min_length=1)


def _check_alert_grid(alerts: Alerting, pane: int, where: str) -> None:
    spans = [("resolve_after", alerts.resolve_after)]
    spans += [
        (f"rules[{i}].{side}", getattr(r, side)) for i, r in enumerate(alerts.rules) for side in ("long", "short")
    ]
    for label, span in spans:
        if span % pane:
            raise ValueError(f"{where}.{label} must be a whole number of panes ({pane} ms)")


# Fields added after plans were in use, left out of plan_version at their default so existing plans keep their
# version and decision ids: (field name, default), wherever it sits in the plan.
_LATER_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("false_alarm", 0.01),
    ("dry_run", False),
    ("approval", False),
    ("approvers", []),
    ("alpha", None),  # lift criteria (an own alpha before the split; their decisions change, so do their ids)
    ("false_fail_weight", None),  # lift criteria (the statistical ones always carry a number)
    ("requests", "all"),  # latency criteria (cross-region scope)
)


def _without_later_defaults(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: _without_later_defaults(v)
            for k, v in value.items()
            if not any(k == name and v == default for name, default in _LATER_DEFAULTS)
        }
    if isinstance(value, list):
        return [_without_later_defaults(v) for v in value]
    return value


class Plan(_Strict):
    plan: str
    version: str
    source: str | None = None
    regions: tuple[str, ...] = Field(min_length=1)
    evaluation: Evaluation = Evaluation()
    phases: tuple[Phase, ...] = Field(min_length=1)
    calendar: Calendar | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        tiers = [t.name for p in self.phases for t in p.tiers]
        dupes = sorted({n for n in tiers if tiers.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique across phases; repeated: {', '.join(dupes)}")
        unknown = sorted(set(self.calendar.tiers) - set(tiers)) if self.calendar else []
        if unknown:
            raise ValueError(f"calendar.tiers names tiers not in the plan: {', '.join(unknown)}")
        window = self.evaluation.window
        for phase in self.phases:
            if phase.hold_on_fail % window:
                raise ValueError(f"phase {phase.name!r}: hold_on_fail must be a whole number of windows")
            for tier in phase.tiers:
                if tier.alerts is not None:
                    _check_alert_grid(tier.alerts, self.evaluation.pane, f"tier {tier.name!r}: alerts")
                for region in tier.regions or ():
                    if region not in self.regions:
                        raise ValueError(
                            f"tier {tier.name!r}: unknown region {region!r} (plan regions: {', '.join(self.regions)})"
                        )
                spans = [("soak", tier.soak)] + [(f"checkpoint {c.name!r}", c.after) for c in tier.checkpoints]
                for label, span in spans:
                    if span % window:
                        raise ValueError(f"tier {tier.name!r}: {label} must be a whole number of windows")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Plan:
        """A copy, without the cached ``plan_version`` (an updated copy is another plan)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("plan_version", None)
        return copy

    @functools.cached_property
    def plan_version(self) -> str:
        """``version`` plus a short hash of the whole plan, so two different plans never share a version. Cached
        (the plan is frozen): every gate and alert asks for it, and each dump cost ~15 ms of replay's start-up."""
        gating = _without_later_defaults(self.model_dump(mode="json", exclude={"calendar"}))
        canonical = json.dumps(gating, sort_keys=True, separators=(",", ":"))
        return f"{self.version}+{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"

    def gates(self) -> list[tuple[str, Phase, Tier]]:
        """Every (region, phase, tier) the plan gates, in plan order: the engine's key space."""
        return [
            (region, phase, tier)
            for phase in self.phases
            for tier in phase.tiers
            for region in (tier.regions or self.regions)
        ]
