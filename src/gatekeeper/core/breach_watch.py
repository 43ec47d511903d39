"""Stage 2's breach alerts: each gate's closed panes go into the burn-rate state of every objective of its tier
(``core/burn_rate.py``), and each breach event names the gate's related ``fail`` decision. Pure.

Per pane the bad requests are its errors (error-rate objective) or its requests certainly slower than the
latency ceiling (its latency buckets from the first whose lower edge is at or above the ceiling, as
``criteria.slower_than`` counts them). Time advances to the merge watermark even without data, so a breach whose
traffic stopped (a rollback) still resolves. The related decision is the gate's latest ``fail`` at or before the
event, if it came at most the longest alert window before the breach opened (older fails judged other traffic).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch
from gatekeeper.core.breach import Breach
from gatekeeper.core.burn_rate import advance
from gatekeeper.core.burn_spec import BurnSpec, BurnState, slos_of
from gatekeeper.core.decision import Decision
from gatekeeper.core.partials import Closing
from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import parse_instant


class GateAlerts(msgspec.Struct):
    """One gate's alert state, snapshotted with its inbox."""

    burn: dict[str, BurnState] = {}  # objective name -> its burn-rate state
    last_fail: tuple[int, str] | None = None  # (at ms, decision_id) of the gate's latest fail decision


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(GateAlerts)


def dump(alerts: GateAlerts) -> bytes:
    return _ENCODER.encode(alerts)


def load(raw: bytes) -> GateAlerts:
    """``dump``'s bytes (empty: a fresh state, as inboxes snapshotted before alerts existed); ValueError else."""
    if not raw:
        return GateAlerts()
    try:
        return _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a gate's alert state: {exc}") from None


class BreachWatch:
    """The burn-rate specs of a plan's gates (keys "region/tier")."""

    def __init__(self, plan: Plan) -> None:
        ev = plan.evaluation
        self.specs: dict[str, tuple[BurnSpec, ...]] = {
            f"{region}/{tier.name}": tuple(
                BurnSpec(region, tier.name, plan.plan_version, ev.pane, slo, tier.alerts or ev.alerts)
                for slo in slos_of(tier)
            )
            for region, _phase, tier in plan.gates()
        }

    def on_close(
        self,
        key: str,
        alerts: GateAlerts,
        closing: Closing,
        until: int,
        decisions: Sequence[Decision],
        out: list[Breach],
    ) -> None:
        """Panes closing (ascending, as columns), the merge watermark they closed on and the decisions the gate
        made meanwhile (this gate's only) in; breach events appended to ``out``."""
        specs = self.specs[key]
        if not specs:
            return
        starts, requests = closing.panes, closing.requests  # arrays: ``advance`` takes them as they are
        made: list[Breach] = []
        for spec in specs:
            if spec.slo.slower_than_ms is None:
                bad = closing.errors
            else:
                bad = _slow(closing, first_slow_bucket(spec.slo.slower_than_ms))
            state = alerts.burn.setdefault(spec.slo.name, BurnState())
            made += advance(spec, state, starts, requests, bad, until)
        fails = [(parse_instant(d.at), d.decision_id) for d in decisions if d.decision == "fail"]
        horizon = max((span for rule in specs[0].alerts.rules for span in (rule.long, rule.short)), default=0)
        earlier = [alerts.last_fail] if alerts.last_fail else []
        for event in sorted(made, key=lambda b: parse_instant(b.at)):  # one timeline over the objectives
            at = parse_instant(event.at)
            related = max([f for f in earlier + fails if f[0] <= at], default=None)
            if related is not None and related[0] >= parse_instant(event.opened_at) - horizon:
                out.append(msgspec.structs.replace(event, decision_id=related[1]))
            else:
                out.append(event)
        if fails:
            alerts.last_fail = max(fails)


def _slow(closing: Closing, first: int) -> npt.NDArray[np.int64]:
    """Per closing pane, its requests in latency buckets from ``first`` on (one numpy pass per close)."""
    slow = closing.buckets >= first
    at = np.searchsorted(closing.panes, closing.bin_pane[slow])
    return np.bincount(at, closing.counts[slow], closing.panes.size).astype(np.int64)


def first_slow_bucket(limit_ms: float) -> int:
    """The first latency bucket whose requests are certainly slower than ``limit_ms``: as
    ``criteria.slower_than``, a bucket straddling the limit is not counted, so a breach is never overstated."""
    return int(np.searchsorted(sketch.LOWER_EDGES, limit_ms, side="left"))
