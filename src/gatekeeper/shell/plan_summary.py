"""``gatekeeper plan check``: a readable summary of what a plan gates."""

from __future__ import annotations

from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_duration


def summarize(plan: Plan) -> str:
    """A readable summary of what the plan gates."""
    ev = plan.evaluation
    out = [
        f"plan {plan.plan} version {plan.plan_version}" + (f" (from {plan.source})" if plan.source else ""),
        f"regions: {', '.join(plan.regions)}",
        f"evaluation: pane {format_duration(ev.pane)}, window {format_duration(ev.window)}, "
        f"lateness {format_duration(ev.lateness)}, stall after {format_duration(ev.stall_after)}; "
        f"false fail <= {ev.confidence.false_fail:g}, false pass <= {ev.confidence.false_pass:g} "
        f"({ev.confidence.interval})",
    ]
    for phase in plan.phases:
        out.append(f"phase {phase.name}: hold {format_duration(phase.hold_on_fail)} on fail")
        for tier in phase.tiers:
            regions = ", ".join(tier.regions or plan.regions)
            soak = format_duration(tier.soak)
            out.append(f"  tier {tier.name}: {tier.traffic_percent:g}% traffic, soak {soak}, regions {regions}")
            for cp in tier.checkpoints:
                out.append(f"    checkpoint {cp.name!r} after {format_duration(cp.after)}")
            for c in tier.criteria:
                if c.kind == "error_rate":
                    text = f"error rate: pass < {c.pass_below:.4%}, fail > {c.fail_above:.4%}"
                    text += f" (min {c.min_requests} requests)"
                elif c.kind == "latency":
                    text = f"{c.name}: pass < {c.pass_below_ms:g} ms, fail > {c.fail_above_ms:g} ms"
                    text += f" (min {c.min_requests} requests)"
                else:
                    text = f"uptime >= {c.at_least:.4%}"
                out.append(f"    {text}")
    out.append(f"{len(plan.gates())} gates (region x tier)")
    return "\n".join(out)
