"""Decisions for a report: from a JSON-lines file (``gatekeeper replay``'s output, or ``gatekeeper tail --json``)
or from the decisions topic, read from the beginning to its end. A line or record that is not a decision is
skipped and said (where and why); a decision seen twice (the worker delivers at least once) counts once."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from gatekeeper.core import decision as decisions
from gatekeeper.core.decision import Decision
from gatekeeper.shell.kafka_settings import KafkaSettings

MAX_PROBLEMS_SHOWN = 5


@dataclass(slots=True)
class Collected:
    decisions: list[Decision] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "where: why" of each record that is not a decision
    _ids: set[str] = field(default_factory=set)

    def add(self, where: str, raw: bytes | None) -> None:
        if raw is None or not raw.strip():
            return
        try:
            d = decisions.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.problems.append(f"{where}: not a decision ({exc})")
            return
        if d.decision_id not in self._ids:
            self._ids.add(d.decision_id)
            self.decisions.append(d)

    # the ``tail.RecordSink`` of the Kafka reader
    def record(self, partition: int, offset: int, value: bytes | None) -> None:
        self.add(f"partition {partition} offset {offset}", value)

    def flush(self) -> None:
        pass

    def say_problems(self) -> str:
        """One line per problem (the first few), for stderr."""
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        return "\n".join([*shown, *([f"... and {more} more"] if more else [])])


def from_lines(lines: Iterable[bytes], name: str) -> Collected:
    out = Collected()
    for number, line in enumerate(lines, start=1):
        out.add(f"{name} line {number}", line)
    return out


def from_topic(settings: KafkaSettings) -> Collected:
    """Every decision on the decisions topic now (from the first record to the end offsets of now)."""
    from gatekeeper.shell.tail import read_decisions

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    out = Collected()
    asyncio.run(read_decisions(settings, argparse.Namespace(from_beginning=True, follow=False), out))
    return out
