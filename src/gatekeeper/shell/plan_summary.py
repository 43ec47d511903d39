"""``gatekeeper plan check``: a readable summary of what a plan gates."""

from __future__ import annotations

from gatekeeper.core import global_gate
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_duration
from gatekeeper.shell.criterion_lines import checkpoint_line, criterion_line


def summarize(plan: Plan) -> str:
    """A readable summary of what the plan gates."""
    ev = plan.evaluation
    globals_ = global_gate.specs(plan)
    out = [
        f"plan {plan.plan} version {plan.plan_version}" + (f" (from {plan.source})" if plan.source else ""),
        f"regions: {', '.join(plan.regions)}",
        f"evaluation: pane {format_duration(ev.pane)}, window {format_duration(ev.window)}, "
        f"lateness {format_duration(ev.lateness)}, stall after {format_duration(ev.stall_after)}; "
        f"false fail <= {ev.confidence.false_fail:g}, false pass <= {ev.confidence.false_pass:g} "
        f"per {ev.confidence.scope} ({ev.method} method; {ev.confidence.interval} pass bounds)",
    ]
    for phase in plan.phases:
        out.append(f"phase {phase.name}: hold {format_duration(phase.hold_on_fail)} on fail")
        for tier in phase.tiers:
            regions = ", ".join(tier.regions or plan.regions)
            soak = format_duration(tier.soak)
            out.append(f"  tier {tier.name}: {tier.traffic_percent:g}% traffic, soak {soak}, regions {regions}")
            for cp in tier.checkpoints:
                out.append(f"    {checkpoint_line(cp)}")
            for c in tier.criteria:
                out.append(f"    {criterion_line(c)}")
            if tier.name in globals_:
                out.append(
                    f"    all-regions gate global/{tier.name}: passes once {regions} all passed, holds while any "
                    "is held; uptime counts a minute down when a region serving traffic is down"
                )
    out.append(f"{len(plan.gates())} gates (region x tier)" + (f", {len(globals_)} global" if globals_ else ""))
    return "\n".join(out)
