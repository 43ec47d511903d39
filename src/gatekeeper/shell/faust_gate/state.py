"""Stage 2 (the gate role) over a key-value state table, message by message: what the Faust gate agent runs.

The same core as every other stage 2 (``core/merge.py``'s ``Merger`` over ``GateInbox``es, ``core/gate.py``
behind it), so decisions equal replay's by ``decision_id``. What differs is where the state lives: a table whose
every write is a changelog record (a Faust table), so the state is split to be written only where it changed:

- ``g:<region/tier>``: the gate's inbox without its buffered partials (core gate state, the digests of recently
  merged partials, counters, breach alerts, and the source marks it closed on): written when a watermark closed
  panes (or a partial for a closed pane changed the late count), i.e. about once per closed pane, not per message.
- ``p:<region/tier>|<pane>|<source>``: where a buffered partial is: its offset in the gate's partition of
  ``<app-id>-panes`` (the partial itself is there already), written when it arrives and deleted (a tombstone) once
  its pane is merged. A restored gate reads its buffered partials back from there (``wanted`` / ``supply``).
- ``x:global/<tier>``: a global gate's fold (``core/global_gate.py``), homed with its regional gates: written when
  it changed.
- ``m:<q>``: the telemetry sources' watermarks heard on panes partition ``q``, shared by every gate homed at
  ``q`` (each of them hears the same watermarks in the same order, so their marks are equal): written when one
  changed. The side-input partitions' marks (incidents, approvals, business metrics: sources of the gates they
  concern, ``core/side_watermarks.py``) are in each gate's own inbox, written when one changed; side records go
  into the gate's ledger, in its inbox too (``worker/side.py`` forwards and applies them, as for the default
  engine).

Every key of gate g is written from partition q = g's home of ``<app-id>-panes`` (a Faust table writes to the
changelog partition of the event being processed), so one changelog partition holds one panes partition's
state, in the order written: after a crash the changelog holds a prefix of what was written, and since the inbox
is written before the tombstones of the partials it merged, a restored gate never misses a buffered partial
(one of a pane the restored inbox already closed is dropped on restore). Offsets are committed only after the
changelog is flushed (Faust), so the messages after the restored state are read again: merging is idempotent.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import Any

import msgspec

from gatekeeper.core import breach, global_gate, inbox_snapshot, panes_batch, side_watermarks
from gatekeeper.core import partials as contract
from gatekeeper.core.decision import Decision
from gatekeeper.core.gate import GateState
from gatekeeper.core.merge import GateInbox, Merger, SourceMark
from gatekeeper.core.partials import Partial, Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.shell.worker.global_stage import GlobalStage
from gatekeeper.shell.worker.outgoing import Outgoing, verdicts
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics, home_partition
from gatekeeper.shell.worker.side import SideStage
from gatekeeper.shell.worker.state_entry import StateError, decode_entry, encode_entry

_MARKS = msgspec.msgpack.Encoder()
_MARKS_DECODER = msgspec.msgpack.Decoder(dict[str, tuple[int | None, bool]])


def inbox_key(gate: str) -> str:
    return f"g:{gate}"


def partial_key(gate: str, pane: int, source: str) -> str:
    return f"p:{gate}|{pane}|{source}"


def marks_key(q: int) -> str:
    return f"m:{q}"


def global_key(key: str) -> str:
    """A global gate's fold state (``key``: ``global/<tier>``)."""
    return f"x:{key}"


@dataclasses.dataclass(slots=True)
class Totals:
    """What the gate stage did (the worker's ``worker totals`` fields of stage 2)."""

    messages: int = 0  # panes-topic messages read
    partials: int = 0
    watermarks: int = 0
    duplicates: int = 0
    conflicts: int = 0
    late_partials: int = 0
    writes: int = 0  # state table writes (changelog records), tombstones included
    write_bytes: int = 0  # their keys and values
    bytes_by_kind: Counter[str] = dataclasses.field(default_factory=Counter)  # g: inboxes, p: partials, m: marks
    decided: Counter[str] = dataclasses.field(default_factory=Counter)
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)


class FaustGateState:
    """Stage 2 for the gates homed at the panes partitions this process is given, over ``table``."""

    def __init__(
        self, plan: Plan, topics: Topics, table: MutableMapping[str, bytes], warn: Callable[[str], None]
    ) -> None:
        self.plan, self.topics, self.table, self._warn = plan, topics, table, warn
        self.version = plan.plan_version
        self.keys = [f"{region}/{tier.name}" for region, _phase, tier in plan.gates()]
        homes = global_gate.home_keys(plan)  # a global tier's regional gates live with its global gate
        self.home = {key: home_partition(homes.get(key, key).encode(), topics.partitions) for key in self.keys}
        self.gates_of: dict[int, list[str]] = {q: [k for k in self.keys if self.home[k] == q] for q in
                                               range(topics.partitions)}  # fmt: skip
        self.merger = Merger(plan, [f"{topics.telemetry}:{p}" for p in range(topics.partitions)])
        self.globals = GlobalStage(plan, topics.partitions, lambda key: self.table.get(global_key(key.decode())))
        for key in self.globals.gates.region_keys_all():
            self.merger.gate(key, self.merger.start()).down_sink = []  # their panes, for the multi-region uptime
        self._made: list[Decision] = []  # the regional decisions of the message being handled
        self.pane = plan.evaluation.pane
        self._inboxes: dict[str, GateInbox] = {}
        self._marks: dict[int, dict[str, SourceMark]] = {}
        self._pane_values: dict[tuple[int, int], bytes] = {}  # (q, offset) -> partial read back for a restore
        self.totals = Totals()
        self.side: SideStage | None = None  # incidents, approvals, business metrics (worker/side.py), if read

    def forget(self) -> None:
        """Drop what is held in memory (partitions were revoked or assigned): the table is the state, read again
        at the next message of each gate."""
        self._inboxes.clear()
        self._marks.clear()
        self._pane_values.clear()
        self._made.clear()
        self.globals.revoke(set(range(self.topics.partitions)))

    def inboxes(self) -> dict[str, GateInbox]:
        """The inboxes of the gates this process holds, by gate (``region/tier``)."""
        return dict(self._inboxes)

    def wanted(self, q: int) -> set[int]:
        """The offsets in panes partition ``q`` of the partials its gates hold buffered (by reference), for the
        gates not restored yet: read them (``supply``) before the first message of ``q`` after ``forget``."""
        prefixes = tuple(_partials_of(gate) for gate in self.gates_of[q] if gate not in self._inboxes)
        if not prefixes:
            return set()
        return {_offset(k, self.table[k]) for k in list(self.table.keys()) if k.startswith(prefixes)}

    def supply(self, q: int, values: dict[tuple[int, int], bytes]) -> None:
        """Partials read back from panes partition ``q`` at the offsets ``wanted`` gave."""
        self._pane_values.update({at: v for at, v in values.items() if at[0] == q})

    # -- messages ------------------------------------------------------------------------------------------
    def on_message(self, q: int, offset: int, key: bytes | None, value: bytes | None) -> list[Outgoing]:
        """One message of panes partition ``q``: what to send (decisions, breaches, dead letters)."""
        self.totals.messages += 1
        out: list[Outgoing] = []
        try:
            messages = panes_batch.read(value or b"")  # a one-partial message, a watermark, or stage 1's batch
        except contract.PartialError as exc:
            out.append(self._dead_letter(q, offset, key, value, "invalid_partial", str(exc)))
            return out
        refused: list[tuple[str, str]] = []  # (code, why) of partials not merged: one dead letter for the record
        for message in messages:
            if isinstance(message, Partial):
                refusal = self._on_partial(q, offset, message)
                if refusal is not None:
                    refused.append(refusal)
            else:
                self._on_watermark(q, message, out)
                self.fold_globals(q, out)
        if refused:  # as the default engine (worker/gate_stage.py)
            why = "; ".join(w for _c, w in refused)
            if len(messages) > 1:
                why = f"{len(refused)} of its {len(messages)} partials not merged: {why}"
            out.append(self._dead_letter(q, offset, key, value, refused[0][0], why))
        return out

    def fold_globals(self, q: int, out: list[Outgoing]) -> None:
        """The global gates homed at ``q`` after the regional decisions and closed panes of the message just
        handled (``core/global_gate.py``, as the default engine's ``GlobalStage``); their states to the table."""
        made, self._made = self._made, []
        closed_until = lambda key: self._inbox(key, q).closed_until  # noqa: E731
        panes = lambda key: global_gate.drain(self.merger.gate(key, self._inbox(key, q)))  # noqa: E731
        for tier_key, decided in self.globals.fold(q, made, closed_until, panes).items():
            out += verdicts(self.topics, q, tier_key, decided, ())
            self.totals.decided.update(d.decision for d in decided)
        for key, entry in self.globals.checkpoint().items():
            self._write(global_key(key.decode()), entry)

    def _on_partial(self, q: int, offset: int, p: Partial) -> tuple[str, str] | None:
        """A partial to its gate's inbox; (code, why) if it cannot be merged."""
        self.totals.partials += 1
        home = self.home.get(p.gate)
        if home != q:
            why = "not a gate of the plan" if home is None else f"its home partition is {home}"
            return "partial_elsewhere", f"gate {p.gate}: {why}"
        inbox = self._inbox(p.gate, q)
        c = inbox.counts
        before = (c.duplicates, c.conflicts, c.late_partials)
        try:
            self.merger.on_partial(inbox, p)
        except ValueError as exc:
            return "invalid_partial", str(exc)
        self.totals.duplicates += c.duplicates - before[0]
        self.totals.conflicts += c.conflicts - before[1]
        self.totals.late_partials += c.late_partials - before[2]
        if c.late_partials != before[2]:
            mark = inbox.sources.get(p.source)
            self._warn(
                f"gate {p.gate}: partial (pane {p.pane}, source {p.source}, seq {p.seq}, offset {offset}) for a pane "
                f"closed already (until {inbox.closed_until}; the source's watermark {mark}): counted late"
            )
        if inbox.buffered.get(p.pane, {}).get(p.source) is p:
            self._write(partial_key(p.gate, p.pane, p.source), b"%d" % offset)  # buffered: where it is
        elif (c.conflicts, c.late_partials) != before[1:]:
            self._write_inbox(p.gate, inbox)  # the late count or the conflict count changed
        return None

    def _on_watermark(self, q: int, w: Watermark, out: list[Outgoing]) -> None:
        self.totals.watermarks += 1
        gates = self.gates_of[q]
        if not gates:
            return
        marks_before = self._marks_of(q)
        for gate in gates:
            self._close(gate, self._inbox(gate, q), w, out)
        marks = {s: m for s, m in _plain(self._inboxes[gates[0]].sources).items() if s in self.merger.sources}
        if marks != marks_before:
            self._marks[q] = {s: SourceMark(*m) for s, m in marks.items()}
            self._write(marks_key(q), _MARKS.encode(marks))

    def _close(self, gate: str, inbox: GateInbox, w: Watermark, out: list[Outgoing]) -> bool:
        """A source's watermark to one gate; True when the inbox was written (it closed panes)."""
        closed = inbox.closed_until
        made: list[Decision] = []
        alerts: list[breach.Breach] = []
        merged_before = {pane: set(parts) for pane, parts in inbox.buffered.items()}
        self.merger.on_watermark(gate, inbox, w, made, alerts)
        if inbox.closed_until != closed:
            self._write_inbox(gate, inbox)  # first the inbox, then the tombstones of what it merged
            for pane, sources in merged_before.items():
                if pane not in inbox.buffered:
                    for source in sorted(sources):
                        self._delete(partial_key(gate, pane, source))
        self._emit(gate, made, alerts, out)
        return inbox.closed_until != closed

    # -- for the side inputs' stage (worker/side.py's ``Gates``) -------------------------------------------
    def outgoing_to_gate(self, topic: str, key: str, value: bytes) -> Outgoing:
        return Outgoing(topic, self.home[key], key.encode(), value)

    def watermark_gate(self, key: str, watermark: Watermark, out: Any) -> None:
        """A side partition's watermark to gate ``key`` (homed at the partition being read). The inbox keeps
        the side partitions' marks (the shared ``m:<q>`` holds the telemetry sources'), so it is written when
        one of them changed."""
        inbox = self._inbox(key, self.home[key])
        mark = inbox.sources.get(watermark.source)
        if mark is not None and (mark.watermark, mark.idle) == (watermark.watermark, watermark.idle):
            return
        if not self._close(key, inbox, watermark, out.messages):
            self._write_inbox(key, inbox)

    def owns_gate(self, key: str, q: int) -> bool:
        return self.home.get(key) == q

    def gate_state(self, key: str) -> GateState:
        return self._inbox(key, self.home[key]).gate

    def touched(self, key: str) -> None:
        """A side record went into the gate's ledger: the inbox (which holds it) is written."""
        self._write_inbox(key, self._inboxes[key])

    # -- state --------------------------------------------------------------------------------------------
    def _marks_of(self, q: int) -> dict[str, tuple[int | None, bool]]:
        held = self._marks.get(q)
        if held is None:
            raw = self.table.get(marks_key(q))
            try:
                stored = {} if raw is None else _MARKS_DECODER.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise StateError(f"source watermarks of panes partition {q}: {exc}") from None
            held = {s: SourceMark(None, False) for s in self.merger.sources}
            held.update({s: SourceMark(w, idle) for s, (w, idle) in stored.items()})
            self._marks[q] = held
        return _plain(held)

    def _inbox(self, gate: str, q: int) -> GateInbox:
        """The gate's inbox, rebuilt from the table at its first message after a start or a rebalance."""
        inbox = self._inboxes.get(gate)
        if inbox is not None:
            return inbox
        inbox = self.merger.start()
        raw = self.table.get(inbox_key(gate))
        if raw is not None:
            version, snap = decode_entry(raw)
            if version != self.version:
                self._warn(f"gate {gate}: stored state is from plan version {version}, this is {self.version}; "
                           "the gate starts afresh")  # fmt: skip
            else:
                try:
                    inbox, _buffered, _merged = inbox_snapshot.load_inbox(snap)
                except ValueError as exc:
                    raise StateError(f"gate {gate}: {exc}") from None
        # The inbox keeps the marks it was closed on: a restored table whose m:<q> is older than the inbox (seen
        # after SIGKILLs) must not let partials of panes the inbox closed count as late. The newer of the two wins.
        own = _plain(inbox.sources)  # the side partitions' marks are the inbox's own only
        shared = self._marks_of(q)
        inbox.sources = {s: SourceMark(*m) for s, m in own.items() if s not in shared}
        inbox.sources |= {s: SourceMark(*_newer(own.get(s), m)) for s, m in shared.items()}
        if self.side is not None:  # its side-input partitions hold its panes too (core/side_watermarks.py)
            side_watermarks.hold(inbox, self.side.sources_of(gate))
            # ... and are active again, as the default engine's ``SideStage.resumed`` reports a gained side partition:
            # an idleness restored from the table is stale (records may have been produced since, not forwarded yet,
            # and the telemetry's backlog would overtake them); their reader says idle anew after ``idle_after``.
            for source in self.side.sources_of(gate):
                inbox.sources[source].idle = False
        for k in [k for k in list(self.table.keys()) if k.startswith(_partials_of(gate))]:
            offset = _offset(k, self.table[k])
            raw = self._pane_values.get((q, offset))  # kept until forget(): a batch holds partials of many gates
            try:
                p = inbox_snapshot.read_back(_ident(k), raw, (self.topics.panes, q, offset))
            except ValueError as exc:
                raise StateError(str(exc)) from None
            if inbox.closed_until is not None and p.pane + self.pane <= inbox.closed_until:
                self._delete(k)  # merged before a crash that came before its tombstone was written
            else:
                inbox_snapshot.place(inbox, p, merged=False)
        self._inboxes[gate] = inbox
        return inbox

    def _write_inbox(self, gate: str, inbox: GateInbox) -> None:
        bare = dataclasses.replace(inbox, buffered={})
        self._write(inbox_key(gate), encode_entry(self.version, inbox_snapshot.dump_inbox(bare)))

    def _write(self, key: str, value: bytes) -> None:
        self.table[key] = value
        self._count(key, len(key) + len(value))

    def _count(self, key: str, size: int) -> None:
        self.totals.writes += 1
        self.totals.write_bytes += size
        self.totals.bytes_by_kind[key[0]] += size

    def _delete(self, key: str) -> None:
        if key in self.table:
            del self.table[key]
            self._count(key, len(key))

    # -- output -------------------------------------------------------------------------------------------
    def _emit(self, gate: str, decisions: list[Decision], breaches: list[breach.Breach], out: list[Outgoing]) -> None:
        out += verdicts(self.topics, self.home[gate], gate.encode(), decisions, breaches)
        self._made += decisions
        self.totals.decided.update(d.decision for d in decisions)

    def _dead_letter(
        self, q: int, offset: int, key: bytes | None, value: bytes | None, code: str, message: str
    ) -> Outgoing:
        self.totals.rejected[code] += 1
        return self.topics.rejected(Record(self.topics.panes, q, offset, key, value), code, message)


def _partials_of(gate: str) -> str:
    """The key prefix of a gate's buffered partials."""
    return f"p:{gate}|"


def _ident(key: str) -> tuple[str, int, str]:
    """(gate, pane, source) of a ``partial_key``."""
    try:
        gate, pane, source = key[len("p:") :].split("|", 2)
        return gate, int(pane), source
    except ValueError:
        raise StateError(f"state table entry {key}: not a partial's key") from None


def _offset(key: str, value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise StateError(f"state table entry {key}: not an offset") from None


def _newer(a: tuple[int | None, bool] | None, b: tuple[int | None, bool]) -> tuple[int | None, bool]:
    """The later of two marks of one source (a watermark only grows; equal: ``b``, the shared, later written)."""
    if a is None or a[0] is None or (b[0] is not None and b[0] >= a[0]):
        return b
    return a


def _plain(marks: dict[str, SourceMark]) -> dict[str, tuple[int | None, bool]]:
    return {s: (m.watermark, m.idle) for s, m in sorted(marks.items())}
