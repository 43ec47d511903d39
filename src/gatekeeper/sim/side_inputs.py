"""A scenario's side inputs as JSON lines: incident records (opened, then resolved), approvals, and per-learner
revenue of treatment and control (business metrics), seeded from the scenario's seed. Replay reads them as its
``--incidents``, ``--approvals`` and ``--business`` files; ``gatekeeper simulate --side-dir`` writes them."""

from __future__ import annotations

import json

import numpy as np

from gatekeeper.core.side_inputs import Kind
from gatekeeper.core.timefmt import format_ms
from gatekeeper.sim.scenario import Revenue, Scenario

FILES: dict[Kind, str] = {"incident": "incidents.jsonl", "approval": "approvals.jsonl", "business": "business.jsonl"}


def side_lines(scenario: Scenario) -> dict[Kind, list[bytes]]:
    """Each kind's records (JSON, no newline) in time order; kinds the scenario has none of are absent."""
    start = scenario.start_ms
    out: dict[Kind, list[bytes]] = {}
    incidents: list[tuple[int, bytes]] = []
    for i in scenario.incidents:
        record = {"id": i.id, "severity": i.severity, "kind": i.kind, "region": i.region, "tier": i.tier,
                  "opened_at": format_ms(start + i.opened), "title": i.title}  # fmt: skip
        incidents.append((i.opened, json.dumps(record).encode()))
        if i.resolved is not None:
            incidents.append((i.resolved, json.dumps(record | {"resolved_at": format_ms(start + i.resolved)}).encode()))
    if incidents:
        out["incident"] = [line for _at, line in sorted(incidents, key=lambda t: t[0])]
    if scenario.approvals:
        out["approval"] = [
            json.dumps(
                {
                    "checkpoint": a.checkpoint,
                    "decision": a.decision,
                    "by": a.by,
                    "region": a.region,
                    "at": format_ms(start + a.at),
                    "note": a.note,
                }
            ).encode()
            for a in sorted(scenario.approvals, key=lambda a: a.at)
        ]
    business: list[tuple[int, bytes]] = []
    for index, r in enumerate(scenario.revenue):
        business += _revenue(r, start, np.random.default_rng([scenario.seed, 7919, index]))
    if business:
        out["business"] = [line for _at, line in sorted(business, key=lambda t: t[0])]
    return out


def _revenue(r: Revenue, start: int, rng: np.random.Generator) -> list[tuple[int, bytes]]:
    sigma2 = float(np.log1p(r.amount_cv**2))
    out: list[tuple[int, bytes]] = []
    for cohort, learners, mean in (("treatment", r.treatment_learners, r.mean * (1 + r.lift)),
                                   ("control", r.control_learners, r.mean)):  # fmt: skip
        phase = rng.integers(0, r.period, learners)
        amount = mean / r.purchase_share if r.purchase_share > 0 else 0.0
        periods = (r.end - r.begin) // r.period
        for k in range(1, periods + 1):
            at = r.begin + phase + k * r.period
            keep = at <= r.end
            n = int(keep.sum())
            bought = rng.random(n) < r.purchase_share
            values = np.where(bought, rng.lognormal(np.log(max(amount, 1e-9)) - sigma2 / 2, np.sqrt(sigma2), n), 0.0)
            for learner, when, value in zip(np.flatnonzero(keep).tolist(), at[keep].tolist(), values.tolist(),
                                            strict=True):  # fmt: skip
                record = {"ts": format_ms(start + when), "region": r.region, "learner_id": f"{cohort[0]}{learner}",
                          "cohort": cohort, "metric": r.metric, "value": round(value, 2)}  # fmt: skip
                if cohort == "treatment":
                    record["tier"] = r.tier
                out.append((when, json.dumps(record).encode()))
    return out
