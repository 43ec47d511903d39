"""Stage 1's routing of evidence that is not a record's own gate's: the key space of a plan (the gates' keys, then
one *slot* per (region, baseline version) for ``no_regression``, core/regression.py, and one per gate judging
cross-region latency, core/cross_region.py) and the fan-out that emits a slot's pane once per gate comparing
with it, as a ``Partial`` of that gate with the slot's ``slice`` (``BASELINE`` or ``CROSS_REGION``).

A gate's own partials carry no slice, so their bytes (and every decision id) are those of before slots existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from gatekeeper.core.partials import PartialBatch, ragged
from gatekeeper.core.plan import LatencyCriterion, NoRegressionCriterion, Plan

BASELINE = "baseline"  # the ``Partial.slice`` of baseline evidence
CROSS_REGION = "cross_region"  # the ``Partial.slice`` of cross-region evidence (core/cross_region.py)


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
