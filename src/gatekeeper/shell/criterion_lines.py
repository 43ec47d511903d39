"""One line per criterion and checkpoint for ``gatekeeper plan check``: what it demands and the input it is
judged on (telemetry, the incidents topic, the approvals topic, the business-metrics topic)."""

from __future__ import annotations

from gatekeeper.core.plan import (
    Checkpoint,
    Criterion,
    ErrorRateCriterion,
    LatencyCriterion,
    LiftCriterion,
    NoIncidentsCriterion,
    NoRegressionCriterion,
)
from gatekeeper.core.timefmt import format_duration


def _signed(x: float) -> str:
    return f"{x * 100:+.4g}%"


def criterion_line(c: Criterion) -> str:
    if isinstance(c, ErrorRateCriterion):
        text = f"error rate: pass < {c.pass_below:.4%}, fail > {c.fail_above:.4%} (min {c.min_requests} requests)"
        return f"{text} [input: telemetry]"
    if isinstance(c, LatencyCriterion):
        text = f"{c.name}: pass < {c.pass_below_ms:g} ms, fail > {c.fail_above_ms:g} ms (min {c.min_requests} requests)"
        scoped = " whose client_region is another region" if c.requests == "cross_region" else ""
        return f"{text} [input: telemetry{scoped}]"
    if isinstance(c, NoIncidentsCriterion):
        kinds = "any kind" if c.kinds is None else "/".join(c.kinds)
        return f"{c.name}: zero {'/'.join(c.severities)} incidents ({kinds}) over the {c.scope} [input: incidents]"
    if isinstance(c, LiftCriterion):
        passing = f"lower bound > {_signed(c.pass_lower_above)}"
        if c.pass_estimate_at_least is not None:
            passing += f" and estimate >= {_signed(c.pass_estimate_at_least)}"
        level = "at the plan's false_fail / false_pass split" if c.alpha is None else f"at {1 - c.alpha:.4g}"
        return (f"{c.name} vs control: pass {passing}, fail upper bound < {_signed(c.fail_upper_below)} "
                f"(anytime-valid, {level}) [input: business-metrics]")  # fmt: skip
    if isinstance(c, NoRegressionCriterion):
        margin = f"{c.margin:.4%}" if c.metric == "error_rate" else f"{c.margin_ms:g} ms"
        return (f"{c.name}: not worse than baseline version {c.baseline_version!r} by more than {margin} "
                f"(min {c.min_requests} requests a side) [input: telemetry]")  # fmt: skip
    return f"uptime >= {c.at_least:.4%} [input: telemetry]"


def checkpoint_line(cp: Checkpoint) -> str:
    text = f"checkpoint {cp.name!r} after {format_duration(cp.after)}"
    if cp.approval:
        who = f" by {', '.join(cp.approvers)}" if cp.approvers else ""
        text += f": requires a GO{who} to pass, a NO-GO fails [input: approvals]"
    return text
