"""The global gates (``core/global_gate.py``) of the panes partitions a worker owns, next to its stage 2."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gatekeeper.core import global_gate
from gatekeeper.core.decision import Decision
from gatekeeper.core.plan import Plan
from gatekeeper.shell.worker.routing import home_partition
from gatekeeper.shell.worker.state_entry import StateError, decode_entry, encode_entry


class GlobalStage:
    """The global gates (``core/global_gate.py``) of the panes partitions owned: fed in-process with the
    decisions of their regional gates, which are homed on the same partition, after each run of that partition's
    records; their states go to the gate-state changelog under ``global/<tier>`` with the gates'."""

    def __init__(self, plan: Plan, partitions: int, entries: Callable[[bytes], bytes | None]) -> None:
        self.gates = global_gate.GlobalGates(plan)
        self.version = plan.plan_version
        self.home = {tier: home_partition(global_gate.key(tier).encode(), partitions) for tier in self.gates.specs}
        self._entries = entries
        self._states: dict[str, global_gate.TierFold] = {}
        self._dirty: set[str] = set()

    def fold(
        self,
        q: int,
        decisions: Sequence[Decision],
        closed_until: Callable[[str], int | None],
        panes: Callable[[str], list[tuple[int, list[int]]]],
    ) -> dict[bytes, list[Decision]]:
        """The global decisions of the tiers homed at ``q``, by key, after ``decisions`` and the panes the
        regional gates closed (this run's)."""
        out: dict[bytes, list[Decision]] = {}
        for tier, home in self.home.items():
            if home != q:
                continue
            keys = self.gates.region_keys(tier)
            closed = [closed_until(k) for k in keys]
            progress = None if None in closed else min(c for c in closed if c is not None)
            state = self._state(tier)
            before = (len(state.buffer), state.progress)
            closed_panes = {k.split("/")[0]: panes(k) for k in keys}
            made = self.gates.fold(tier, state, [d for d in decisions if d.tier == tier], progress, closed_panes)
            if made:
                out[global_gate.key(tier).encode()] = made
            if made or before != (len(state.buffer), state.progress):
                self._dirty.add(tier)
        return out

    def checkpoint(self) -> dict[bytes, bytes]:
        out = {
            global_gate.key(t).encode(): encode_entry(self.version, global_gate.dump(self._states[t]))
            for t in sorted(self._dirty & set(self._states))
        }
        self._dirty.clear()
        return out

    def revoke(self, partitions: set[int]) -> None:
        for tier in [t for t in self._states if self.home[t] in partitions]:
            del self._states[tier]

    def _state(self, tier: str) -> global_gate.TierFold:
        """A tier's global state, restored from the changelog the first time it is needed after a (re)start."""
        state = self._states.get(tier)
        if state is not None:
            return state
        state = global_gate.TierFold()
        raw = self._entries(global_gate.key(tier).encode())
        if raw is not None:
            version, snap = decode_entry(raw)
            if version == self.version:  # another plan's: the gates start afresh too
                try:
                    state = global_gate.load(snap)
                except ValueError as exc:
                    raise StateError(f"{global_gate.key(tier)}: {exc}") from None
        self._states[tier] = state
        return state
