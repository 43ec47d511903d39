"""Stage 2 of the worker (``core/merge.py``), per owned partition q of ``<app-id>-panes``: partials go to their
gate's inbox, watermarks to the inbox of every gate homed at q; decisions go to ``decisions`` and burn-rate breach
alert events (contract v2, ``core/breach_watch.py``) to ``breaches``, both key ``region/tier``; each touched inbox
goes to ``<app-id>-gate-state-changelog`` (key ``region/tier``, partition q), the partials it holds as their
offsets in partition q of the panes topic (``inbox_snapshot``), read back from there on restore
(``pane_records``). Merging is idempotent, so partials and watermarks read again after a crash change nothing.
Within a run of records, the panes a watermark releases close once per gate at the run's end (a poll's 8
source watermarks would otherwise close each gate several times), or at once when a partial arrives for a pane
that close ends: what is merged, late or a duplicate is as if each watermark had closed on arrival.
The global gates of q (``global_stage.py``) follow each run of q's records; the side inputs' stage
(``side.py``) reaches the gates through the hook methods at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from gatekeeper.core import breach, global_gate, inbox_snapshot, panes_batch, side_watermarks
from gatekeeper.core import partials as contract
from gatekeeper.core.decision import Decision, encode
from gatekeeper.core.gate import GateState
from gatekeeper.core.merge import GateInbox, Merger
from gatekeeper.core.partials import Partial, Watermark
from gatekeeper.core.plan import Plan
from gatekeeper.shell.cloudevents import headers_of
from gatekeeper.shell.worker.flush import Flush
from gatekeeper.shell.worker.global_stage import GlobalStage
from gatekeeper.shell.worker.outgoing import Outgoing, verdicts
from gatekeeper.shell.worker.records import Consumed
from gatekeeper.shell.worker.routing import Homes, Topics
from gatekeeper.shell.worker.side import SideStage
from gatekeeper.shell.worker.state_entry import StateError, decode_entry, encode_entry


class GateStage:
    """Stage 2 for the gates homed at the owned panes partitions; ``entries``: the restored gate table entries,
    ``pane_records(q, offset)``: the value of a record of the panes topic read back for a restore."""

    def __init__(
        self,
        plan: Plan,
        topics: Topics,
        homes: Homes,
        entries: Callable[[bytes], bytes | None],
        warn: Callable[[str], None] | None,
        pane_records: Callable[[int, int], bytes | None] | None,
    ) -> None:
        self.topics, self._homes, self._entries, self._warn = topics, homes, entries, warn
        self.keys, self.home, self._index = homes.keys, homes.home, homes.index
        self._pane_records = pane_records or (lambda _q, _offset: None)
        self._refs: Counter[tuple[int, int]] = Counter()  # panes records to read back: references still to come
        self._held: dict[tuple[int, int], bytes] = {}  # ... a batch's, kept for the other references to it
        self.version = plan.plan_version
        self.globals = GlobalStage(plan, topics.partitions, entries)
        self.merger = Merger(plan, [topics.source_id(p) for p in range(topics.partitions)])
        for key in self.globals.gates.region_keys_all():
            self.merger.gate(key, self.merger.start()).down_sink = []  # their panes, for the multi-region uptime
        self._inboxes: dict[int, GateInbox] = {}
        self._located: dict[int, inbox_snapshot.Located] = {}  # gate -> panes-topic offsets of its partials
        self._dirty: set[int] = set()
        # gate -> the merge watermark its panes close up to at the end of the run of records being merged: a
        # poll's watermarks of 8 sources advance a gate's merge watermark several times, closed once
        self._deferred: dict[int, int] = {}
        self.side: SideStage | None = None  # incidents, approvals, business metrics (worker/side.py), if read

    def inboxes(self) -> dict[str, GateInbox]:
        """The inboxes of the gates this process holds, by gate (``region/tier``)."""
        return {self.keys[g].decode(): inbox for g, inbox in self._inboxes.items()}

    def checkpoint(self) -> dict[bytes, bytes]:
        """The entries of the gates (and global gates) changed since the last checkpoint, by key."""
        out: dict[bytes, bytes] = {}
        for g in sorted(self._dirty & set(self._inboxes)):
            located = self._located_in(g)
            out[self.keys[g]] = encode_entry(self.version, inbox_snapshot.dump_inbox(self._inboxes[g], located))
        self._dirty.clear()
        return out | self.globals.checkpoint()

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the inboxes of the gates homed at panes partitions ``partitions`` (their next owner restores
        them from the table)."""
        gone = set(partitions)
        for g in [g for g in self._inboxes if self.home[g] in gone]:
            del self._inboxes[g]
            self._located.pop(g, None)
        for at in [at for at in self._refs if at[0] in gone]:
            del self._refs[at]
            self._held.pop(at, None)
        self.globals.revoke(gone)

    def located_partials(self, entries: Mapping[bytes, bytes]) -> dict[int, set[int]]:
        """The panes-topic offsets, by partition, of the partials the restored gate entries ``entries`` hold by
        reference: what to read back before their gates can be restored."""
        wanted: dict[int, set[int]] = {}
        for key, raw in entries.items():
            g = self._index.get(key.decode(errors="replace"))
            if g is None:
                continue
            version, snap = decode_entry(raw)
            if version != self.version:
                continue
            try:
                _inbox, buffered, merged = inbox_snapshot.load_inbox(snap)
            except ValueError as exc:
                raise StateError(f"gate {key.decode(errors='replace')}: {exc}") from None
            wanted.setdefault(self.home[g], set()).update([*buffered.values(), *merged.values()])
            self._refs.update((self.home[g], offset) for offset in [*buffered.values(), *merged.values()])
        return wanted

    def merge(self, q: int, records: Sequence[Consumed], out: Flush) -> None:
        """A run of records of panes partition ``q``."""
        made_from = len(out.decisions)
        touched: set[int] = set()
        self._deferred.clear()
        for r in records:
            try:
                messages = panes_batch.read(r.value or b"")  # a one-partial message, a watermark, or a batch
            except contract.PartialError as exc:
                out.messages.append(self.topics.rejected(r, "invalid_partial", str(exc)))
                out.rejected["invalid_partial"] += 1
                continue
            refused: list[tuple[str, str]] = []  # (code, why) of partials not merged: one dead letter for the record
            for message in messages:
                if isinstance(message, Partial):
                    refusal = self._partial(q, message, r.offset, out)
                    if refusal is None:
                        touched.add(self._index[message.gate])
                    else:
                        refused.append(refusal)
                else:
                    touched.update(g for g in self._homes.gates_of[q] if self._watermark(g, message, out, defer=True))
            if refused:
                code = refused[0][0]
                why = "; ".join(w for _c, w in refused)
                if len(messages) > 1:
                    why = f"{len(refused)} of its {len(messages)} partials not merged: {why}"
                out.messages.append(self.topics.rejected(r, code, why))
                out.rejected[code] += 1
        for g in list(self._deferred):
            self._close_deferred(g, out)
        self._dirty |= touched
        made = out.decisions[made_from:]
        for tier_key, decided in self.globals.fold(q, made, self._closed_until, self._panes).items():
            for d in decided:
                out.messages.append(Outgoing(self.topics.decisions, q, tier_key, encode(d), headers_of(d)))
            out.decisions += decided

    def _partial(self, q: int, message: Partial, offset: int, out: Flush) -> tuple[str, str] | None:
        """Merge a partial read at ``offset`` of panes partition ``q``; (dead-letter code, why) when refused."""
        g = self._index.get(message.gate)
        if g is None or self.home[g] != q:
            why = "not a gate of the plan" if g is None else f"its home partition is {self.home[g]}"
            return "partial_elsewhere", f"gate {message.gate}: {why}"
        inbox = self._inbox(g)
        deferred = self._deferred.get(g)
        if deferred is not None and (message.part or message.pane + self.merger.pane <= deferred):
            self._close_deferred(g, out)  # it may fall in a pane that close ends: as if closed on time
        c = inbox.counts
        duplicates, conflicts, late = c.duplicates, c.conflicts, c.late_partials
        try:
            self.merger.on_partial(inbox, message)
        except ValueError as exc:
            return "invalid_partial", str(exc)
        out.duplicates += c.duplicates - duplicates
        out.conflicts += c.conflicts - conflicts
        out.late_partials += c.late_partials - late
        self._locate(g, inbox, message, offset)
        return None

    def _closed_until(self, key: str) -> int | None:
        return self._inbox(self._index[key]).closed_until

    def _panes(self, key: str) -> list[tuple[int, list[int]]]:
        return global_gate.drain(self.merger.gate(key, self._inbox(self._index[key])))

    def _watermark(self, g: int, message: Watermark, out: Flush, *, defer: bool = False) -> bool:
        """A source's watermark to gate ``g``; False when it is a re-delivery (nothing to do, nothing to write).
        ``defer``: the panes it releases close at the end of the run (``merge``), or before a partial that
        falls in them: the same closes, in one pass per gate and run."""
        inbox = self._inbox(g)
        mark = inbox.sources.get(message.source)
        if mark is not None and (mark.watermark, mark.idle) == (message.watermark, message.idle):
            return False
        until = self.merger.advance(inbox, message, self._deferred.get(g, inbox.closed_until))
        if until is not None:
            self._deferred[g] = until
            if not defer:
                self._close_deferred(g, out)
        return True

    def _close_deferred(self, g: int, out: Flush) -> None:
        made: list[Decision] = []
        alerts: list[breach.Breach] = []
        self.merger.close(self.keys[g].decode(), self._inboxes[g], self._deferred.pop(g), made, alerts)
        self._emit(g, made, alerts, out)

    def _inbox(self, g: int) -> GateInbox:
        """Gate ``g``'s inbox, restored from the table the first time it is needed after a (re)start."""
        inbox = self._inboxes.get(g)
        if inbox is not None:
            return inbox
        inbox = self.merger.start()
        raw = self._entries(self.keys[g])
        if raw is not None:
            version, snap = decode_entry(raw)
            if version != self.version:
                if self._warn is not None:
                    self._warn(
                        f"gate {self.keys[g].decode()}: stored state is from plan version {version}, this is "
                        f"{self.version}; the gate starts afresh"
                    )
            else:
                try:
                    inbox, buffered, merged = inbox_snapshot.load_inbox(snap)
                except ValueError as exc:
                    raise StateError(f"gate {self.keys[g].decode()}: {exc}") from None
                self._read_back(g, inbox, buffered, merged=False)
                self._read_back(g, inbox, merged, merged=True)
        if self.side is not None:  # its side-input partitions hold its panes too (core/side_watermarks.py)
            side_watermarks.hold(inbox, self.side.sources_of(self.keys[g].decode()))
        self._inboxes[g] = inbox
        return inbox

    def _read_back(self, g: int, inbox: GateInbox, located: inbox_snapshot.Located, *, merged: bool) -> None:
        """Put the partials a restored inbox holds by reference back in, from the panes records read for it."""
        key, q = self.keys[g].decode(), self.home[g]
        for (pane, source), offset in located.items():
            raw = self._record(q, offset)
            try:
                partial = inbox_snapshot.read_back((key, pane, source), raw, (self.topics.panes, q, offset))
            except ValueError as exc:
                raise StateError(str(exc)) from None
            inbox_snapshot.place(inbox, partial, merged)
            self._located.setdefault(g, {})[pane, source] = offset

    def _record(self, q: int, offset: int) -> bytes | None:
        """A panes record read back for a restore. ``pane_records`` gives each record once, and a batch is
        referred to by several partials, of several gates: kept until its last reference counted by
        ``located_partials`` is read."""
        at = (q, offset)
        raw = self._held.get(at)
        if raw is None:
            raw = self._pane_records(q, offset)
        left = self._refs[at] - 1
        if left > 0 and raw is not None:
            self._refs[at], self._held[at] = left, raw
        else:
            self._refs.pop(at, None)
            self._held.pop(at, None)
        return raw

    def _locate(self, g: int, inbox: GateInbox, partial: Partial, offset: int) -> None:
        """Remember where a partial the inbox now holds (buffered, or merged: a newer version of a closed pane)
        is in the panes topic, so checkpoints write that instead of the partial."""
        buffered = inbox.buffered.get(partial.pane, {}).get(partial.source)
        if buffered is partial or inbox.merged.get(partial.pane, {}).get(partial.source) is partial:
            self._located.setdefault(g, {})[partial.pane, partial.source] = offset

    def _located_in(self, g: int) -> inbox_snapshot.Located:
        """The offsets of the partials gate ``g``'s inbox still holds (the others are forgotten)."""
        inbox, located = self._inboxes[g], self._located.get(g, {})
        held = {(pane, s) for parts in (inbox.buffered, inbox.merged) for pane, ss in parts.items() for s in ss}
        self._located[g] = {k: v for k, v in located.items() if k in held}
        return self._located[g]

    def _emit(self, g: int, decisions: list[Decision], breaches: list[breach.Breach], out: Flush) -> None:
        out.messages += verdicts(self.topics, self.home[g], self.keys[g], decisions, breaches)
        out.decisions += decisions
        out.breaches += breaches

    # -- for the side inputs' stage (worker/side.py: its ``Gates`` hook) ------------------------------------
    def outgoing_to_gate(self, topic: str, key: str, value: bytes) -> Outgoing:
        """A message keyed ``key`` (a gate) on the gate's home partition of ``topic``."""
        g = self._index[key]
        return Outgoing(topic, self.home[g], self.keys[g], value)

    def watermark_gate(self, key: str, watermark: Watermark, out: Flush) -> None:
        """A side partition's watermark to gate ``key`` (owned here)."""
        g = self._index[key]
        if self._watermark(g, watermark, out):
            self._dirty.add(g)

    def owns_gate(self, key: str, q: int) -> bool:
        g = self._index.get(key)
        return g is not None and self.home[g] == q

    def gate_state(self, key: str) -> GateState:
        return self._inbox(self._index[key]).gate

    def touched(self, key: str) -> None:
        """The gate's state changed: it is written at the next checkpoint."""
        self._dirty.add(self._index[key])
