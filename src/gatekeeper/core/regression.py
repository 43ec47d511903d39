"""No regression against the baseline version (plan criterion ``no_regression``, issue 12), as Kayenta's canary
analysis does, with the error guarantees of the other criteria.

Which telemetry is the baseline: a record of region R whose ``version`` is the ``baseline_version`` a
``no_regression`` criterion of a gate of R names, whatever its tier label (``baseline`` is the usual one; it is
not rejected as an unknown tier). Such a record is baseline evidence only, never its tier's own. Records without
a version, or of another version, count for their (region, tier) gate as before.

Where it flows: the decoder gives a baseline record the key of a *baseline slot* (one per region and baseline
version, after the gates' keys); stage 1 aggregates slots as it does gates and emits each slot's pane once per
gate that compares with it, as a ``Partial`` of that gate with ``slice: "baseline"`` (``fan_out``). Stage 2 keeps
those apart from the gate's own partials (``BaselineInbox``: newest ``seq`` per (pane, source), as the gate's own)
and, as panes close, adds them to the gate state's ``BaselineLedger`` per window, before the gate's own panes of
the same close, so replay and the worker judge on the same evidence. The gate folds a window's baseline into the
baseline soak when it closes that window (the soak restarts with the gate's own after a hold).

The test (docs/statistics.md): at the gate's k-th window close of a soak, the criterion fails when
  lower(treatment) - upper(baseline) > margin
with each one-sided bound at alpha_k / 2 (Clopper-Pearson for error rates, order-statistic bounds for the
quantile), alpha_k = ``stats.look_alpha`` of the criterion's share of the gate's ``false_fail``: the alpha_k sum
to that share, so by the union bound the chance of ever failing a treatment that is not worse by more than the
margin stays within it, however long the soak runs. It passes when
  upper(treatment) - lower(baseline) <= margin
at the pass look's alpha (split in two the same way). Each side needs ``min_requests`` to pass and
``min_requests_to_fail`` to fail; with less baseline the verdict is inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgspec
import numpy as np
import numpy.typing as npt

from gatekeeper.core import sketch, stats
from gatekeeper.core.decision import CriterionResult, Verdict
from gatekeeper.core.partials import Partial, PartialBatch, ragged
from gatekeeper.core.plan import LatencyCriterion, NoRegressionCriterion, Plan

_J = TypeVar("_J")


# What this module reads of its callers' types (structural, so it imports none of criteria, gate or merge).
class _Sampled(Protocol):
    requests: int
    errors: int
    bins: sketch.Bins


class _Look(Protocol):
    @property
    def soak(self) -> _Sampled: ...

    @property
    def baseline(self) -> BaselineLook | None: ...


class _Mark(Protocol):
    watermark: int | None


class _Counts(Protocol):
    duplicates: int
    conflicts: int
    late_partials: int


BASELINE = "baseline"  # the ``Partial.slice`` of baseline evidence


@runtime_checkable
class _SpendsOwn(Protocol):
    fail_weight: float

    def with_share(self, alpha: float, planned: int) -> Any: ...


CROSS_REGION = "cross_region"  # the ``Partial.slice`` of cross-region evidence (core/cross_region.py)


# -- stage 1: the key space ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Layout:
    """Stage 1's key space for a plan: the gates' keys, then one baseline slot per (region, baseline version);
    ``targets[slot]``: the gates (indices) comparing with it."""

    gates: list[tuple[str, str]]
    keys: list[str]  # per key index: "region/tier", or "region@version" for a slot
    baselines: dict[tuple[str, str], int]  # (region, version) -> slot's key index
    targets: dict[int, list[int]]
    cross: dict[int, int] = field(default_factory=dict)  # gate -> its cross-region slot (core/cross_region.py)

    def fan(self) -> Fan | None:
        slices = dict.fromkeys(self.cross.values(), CROSS_REGION)
        return Fan(self.keys, self.targets, slices) if self.targets else None


def layout(plan: Plan) -> Layout:
    gates = [(region, tier.name) for region, _phase, tier in plan.gates()]
    keys = [f"{region}/{tier}" for region, tier in gates]
    baselines: dict[tuple[str, str], int] = {}
    targets: dict[int, list[int]] = {}
    for g, (region, _phase, tier) in enumerate(plan.gates()):
        for version in sorted({c.baseline_version for c in tier.criteria if isinstance(c, NoRegressionCriterion)}):
            slot = baselines.setdefault((region, version), len(keys))
            if slot == len(keys):
                keys.append(f"{region}@{version}")
            targets.setdefault(slot, []).append(g)
    cross: dict[int, int] = {}
    for g, (region, _phase, tier) in enumerate(plan.gates()):
        if any(isinstance(c, LatencyCriterion) and c.requests == CROSS_REGION for c in tier.criteria):
            cross[g] = len(keys)
            targets[len(keys)] = [g]
            keys.append(f"{region}/{tier.name}@{CROSS_REGION}")
    return Layout(gates, keys, baselines, targets, cross)


@dataclass(frozen=True, slots=True)
class Fan:
    """How stage 1 emits slots: row index space ``keys`` (gates, then one entry per (slot, gate)), slices."""

    internal: list[str]
    targets: dict[int, list[int]]
    slot_slices: dict[int, str] = field(default_factory=dict)  # a slot's slice when not the baseline's
    keys: list[str] = field(init=False)
    slices: list[str] = field(init=False)
    _flat: npt.NDArray[np.int64] = field(init=False)
    _first: npt.NDArray[np.int64] = field(init=False)
    _count: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        gates = min(self.targets)
        keys, slices = list(self.internal[:gates]), [""] * gates
        flat: list[int] = list(range(gates))
        count = [1] * gates
        for slot in range(gates, len(self.internal)):
            for g in self.targets.get(slot, []):
                flat.append(len(keys))
                keys.append(self.internal[g])
                slices.append(self.slot_slices.get(slot, BASELINE))
            count.append(len(self.targets.get(slot, [])))
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "slices", slices)
        object.__setattr__(self, "_flat", np.asarray(flat, np.int64))
        object.__setattr__(self, "_count", np.asarray(count, np.int64))
        object.__setattr__(self, "_first", np.cumsum(self._count) - self._count)

    def emitted(self, index: int) -> list[tuple[str, str]]:
        """(gate key, slice) of each partial an internal key index's pane is emitted as."""
        lo, n = int(self._first[index]), int(self._count[index])
        return [(self.keys[e], self.slices[e]) for e in self._flat[lo : lo + n].tolist()]

    def batch(self, b: PartialBatch) -> PartialBatch:
        """``b`` (internal key indices) with each slot's rows repeated once per gate comparing with it."""
        if not b.gate.size or int(b.gate.max()) < len(self._first) - len(self.targets):
            return replace(b, keys=self.keys, slices=self.slices)  # no baseline rows: the indices stay
        reps = self._count[b.gate]
        rows = np.repeat(np.arange(b.gate.size, dtype=np.int64), reps)
        k = np.arange(rows.size, dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
        sizes = b.offsets[1:] - b.offsets[:-1]
        at = ragged(b.offsets[:-1][rows], sizes[rows])
        offsets = np.zeros(rows.size + 1, np.int64)
        np.cumsum(sizes[rows], out=offsets[1:])
        return PartialBatch(b.source, self.keys, self._flat[self._first[b.gate[rows]] + k], b.pane[rows], b.seq[rows],
                            b.requests[rows], b.errors[rows], b.late[rows], offsets, b.bins[at], b.counts[at],
                            self.slices)  # fmt: skip


# -- stage 2: the inbox's baseline partials ------------------------------------------------------------------
@dataclass(slots=True)
class BaselineInbox:
    """A gate's baseline partials of open panes: pane -> source -> the newest version."""

    panes: dict[int, dict[str, Partial]] = field(default_factory=dict)


def on_partial(
    box: BaselineInbox, p: Partial, closed_until: int | None, mark: _Mark | None, pane: int, counts: _Counts
) -> None:
    """Buffer a baseline partial; one for a closed pane is a re-delivery (its source passed it) or late, and
    changes nothing (the baseline's late records are not the gate's)."""
    if closed_until is not None and p.pane + pane <= closed_until:
        if mark is not None and mark.watermark is not None and p.pane + pane <= mark.watermark:
            counts.duplicates += 1
        else:
            counts.late_partials += 1
        return
    slot = box.panes.setdefault(p.pane, {})
    before = slot.get(p.source)
    if before is None or p.seq > before.seq:
        slot[p.source] = p
    elif p.seq < before.seq or before == p:
        counts.duplicates += 1
    else:
        counts.conflicts += 1


def close(box: BaselineInbox, ledger: BaselineLedger, until: int, pane: int, window: int) -> None:
    """Hand the baseline panes ending at or before ``until`` to the gate's ledger, by window."""
    for start in sorted(p for p in box.panes if p + pane <= until):
        for p in box.panes.pop(start).values():
            bins = sketch.from_sparse(list(p.bins), list(p.counts))
            ledger.add(start - start % window, p.requests, p.errors, bins)


# -- the gate's baseline evidence -----------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Sample:
    """Counts and latency sketch of one side (duck-typed like ``criteria.Evidence``)."""

    requests: int = 0
    errors: int = 0
    bins: sketch.Bins = field(default_factory=sketch.empty)

    def __eq__(self, other: object) -> bool:  # the sketch compared by value (snapshot round trips)
        if not isinstance(other, Sample):
            return NotImplemented
        return (self.requests, self.errors) == (other.requests, other.errors) and bool(
            np.array_equal(self.bins, other.bins)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


@dataclass(frozen=True, slots=True)
class BaselineLook:
    """The baseline as of a window's close: that window, the soak so far, and the look's number in the soak."""

    window: Sample
    soak: Sample
    looks: int


@dataclass(slots=True)
class BaselineLedger:
    """A gate's baseline: open windows (start -> sample) and the soak so far."""

    open: dict[int, Sample] = field(default_factory=dict)
    soak: Sample = field(default_factory=Sample)
    looks: int = 0

    def add(self, window_start: int, requests: int, errors: int, bins: sketch.Bins) -> None:
        s = self.open.setdefault(window_start, Sample())
        s.requests += requests
        s.errors += errors
        s.bins = s.bins + bins

    def close(self, window_start: int, fold: bool) -> BaselineLook:
        """Close a window; ``fold``: add it to the soak (not while the gate is held)."""
        w = self.open.pop(window_start, None) or Sample()
        if fold:
            self.soak = Sample(self.soak.requests + w.requests, self.soak.errors + w.errors, self.soak.bins + w.bins)
            self.looks += 1
        return BaselineLook(w, self.soak, self.looks)

    def drop_ended(self, until: int, window: int) -> None:
        """Forget windows ending at or before ``until`` that no look will take (the gate was not soaking)."""
        for start in [s for s in self.open if s + window <= until]:
            del self.open[start]

    def restart(self) -> None:
        """A new soak (after a hold): the baseline is compared over the same span as the gate's own."""
        self.soak, self.looks = Sample(), 0


class _Side(msgspec.Struct, array_like=True):
    requests: int
    errors: int
    indices: list[int]
    counts: list[int]


class _Ledger(msgspec.Struct, array_like=True):
    open: dict[int, _Side]
    soak: _Side
    looks: int


def _side(s: Sample) -> _Side:
    return _Side(s.requests, s.errors, *sketch.to_sparse(s.bins))


def _sample(s: _Side) -> Sample:
    return Sample(s.requests, s.errors, sketch.from_sparse(s.indices, s.counts))


def dump_ledger(ledger: BaselineLedger) -> bytes:
    """Empty for a gate that never saw baseline evidence (older snapshots have none)."""
    if not ledger.open and not ledger.soak.requests and not ledger.looks:
        return b""
    return msgspec.msgpack.encode(
        _Ledger({w: _side(s) for w, s in ledger.open.items()}, _side(ledger.soak), ledger.looks)
    )


def load_ledger(raw: bytes) -> BaselineLedger:
    if not raw:
        return BaselineLedger()
    try:
        snap = msgspec.msgpack.decode(raw, type=_Ledger)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a baseline ledger: {exc}") from None
    return BaselineLedger({w: _sample(s) for w, s in snap.open.items()}, _sample(snap.soak), snap.looks)


# -- the judge ----------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _confidence(alpha: float) -> str:
    """The confidence as "99.99%", or as "1 - 3.1e-08" where six digits would round to 100 %."""
    return f"{(1 - alpha) * 100:.6g}%" if alpha >= 5e-7 else f"1 - {alpha:.2g}"


def _ms(x: float) -> str:
    return "unbounded" if math.isinf(x) else f"{x:.4g} ms"


@dataclass(frozen=True, slots=True)
class NoRegressionJudge:
    """``alpha``: the criterion's share of the gate's ``false_fail`` and ``planned`` looks of a soak, set by
    ``GateSpec.of`` (``with_share``)."""

    spec: NoRegressionCriterion
    alpha: float = 0.0
    planned: int = 1
    statistical: bool = True

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fail_weight(self) -> float:
        return self.spec.false_fail_weight

    def with_share(self, alpha: float, planned: int) -> NoRegressionJudge:
        return replace(self, alpha=alpha, planned=max(1, planned))

    @property
    def _margin(self) -> float:
        margin = self.spec.margin if self.spec.metric == "error_rate" else self.spec.margin_ms
        return float(margin or 0.0)

    def _show(self, x: float) -> str:
        return _pct(x) if self.spec.metric == "error_rate" else _ms(x)

    def _label(self) -> str:
        return "error rate" if self.spec.metric == "error_rate" else f"P{self.spec.quantile * 100:g} latency"

    def _measure(self, s: _Sampled, alpha: float) -> tuple[float | None, float, float]:
        if self.spec.metric == "error_rate":
            lower, upper = stats.clopper_pearson(s.errors, s.requests, alpha)
            return (s.errors / s.requests if s.requests else None), lower, upper
        lower, upper = stats.quantile_bounds(s.bins, self.spec.quantile, alpha)
        return sketch.quantile(s.bins, self.spec.quantile), lower, upper

    def may_fail(self, look: _Look) -> bool:
        """The difference of the point estimates bounds the confident one from above."""
        base, own, needed = look.baseline, look.soak, self.spec.min_requests_to_fail
        if base is None or min(own.requests, base.soak.requests) < needed:
            return False
        t, b = self._measure(own, 0.5)[0], self._measure(base.soak, 0.5)[0]
        return t is not None and b is not None and t - b > self._margin

    def fail_checks(self, look: _Look, alpha: float) -> list[CriterionResult]:
        """The gate's ``alpha`` is not used: the criterion spends its own share over the soak's looks."""
        looks = 1 if look.baseline is None else max(1, look.baseline.looks)
        return [self._judge(look, stats.look_alpha(self.alpha, looks, self.planned), failing=True)]

    def pass_check(self, look: _Look, alpha: float) -> CriterionResult:
        return self._judge(look, alpha, failing=False)

    def _judge(self, look: _Look, alpha: float, failing: bool) -> CriterionResult:
        spec, margin, show = self.spec, self._margin, self._show
        own = look.soak
        base = look.baseline.soak if look.baseline is not None else Sample()
        needed = spec.min_requests_to_fail if failing else spec.min_requests
        t, t_lo, t_hi = self._measure(own, alpha / 2)
        b, b_lo, b_hi = self._measure(base, alpha / 2)
        lower, upper = t_lo - b_hi, t_hi - b_lo
        observed = None if t is None or b is None else t - b
        conf = _confidence(alpha)
        seen = (f"{self._label()} {'n/a' if t is None else show(t)} vs {'n/a' if b is None else show(b)} for "
                f"baseline {spec.baseline_version} ({own.requests:,} vs {base.requests:,} requests)")  # fmt: skip
        verdict: Verdict = "inconclusive"
        if min(own.requests, base.requests) < needed:
            side = "baseline" if base.requests < needed else "treatment"
            action = "fail" if failing else "pass"
            why = f"{seen}: too little {side} evidence; {needed:,} requests a side needed to {action}"
        elif failing and lower > margin:
            verdict = "fail"
            why = f"{seen}: at least {show(lower)} worse at {conf} confidence, more than the {show(margin)} margin"
        elif not failing and upper <= margin:
            verdict = "pass"
            why = f"{seen}: at most {show(upper)} worse at {conf} confidence, within the {show(margin)} margin"
        else:
            why = (f"{seen}: between {show(lower)} and {show(upper)} worse at {conf}, not yet conclusive against "
                   f"the {show(margin)} margin")  # fmt: skip
        return CriterionResult(
            name=self.name, scope="soak", verdict=verdict, threshold=margin, observed=observed,
            lower=None if math.isinf(lower) else lower, upper=None if math.isinf(upper) else upper,
            requests=own.requests, reason=why,
        )  # fmt: skip


def share(judge: _J, false_fail: float, total: float, planned: int) -> _J:
    """``judge`` given its share of the gate's ``false_fail`` when it spends it itself over the soak's looks
    (a ``NoRegressionJudge`` or a cross-region ``CrossRegionJudge``)."""
    if isinstance(judge, _SpendsOwn):
        return judge.with_share(false_fail * judge.fail_weight / total, planned)  # type: ignore[no-any-return]
    return judge
