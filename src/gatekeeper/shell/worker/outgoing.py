"""What stage 2 produces, as messages on explicit partitions: one gate's decisions and breach alert events, and
dead letters. Shared by both gate engines (``gate_stage.py``, ``faust_gate/state.py``) and the side inputs'
stage (``side.py``), so they send the same bytes and headers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from gatekeeper.core import breach
from gatekeeper.core.decision import Decision, encode
from gatekeeper.shell.cloudevents import breach_headers, headers_of
from gatekeeper.shell.worker.records import Consumed, Headers

SOURCE_HEADER = "gk.source"  # b"topic/partition/offset" of the original record
REASON_HEADER = "gk.reason"
MESSAGE_HEADER = "gk.message"
MAX_MESSAGE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to produce, on an explicit partition."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None  # None: a dead letter of a record without a value
    headers: Headers = ()


class Outputs(Protocol):
    """Where a gate's verdicts go (``routing.Topics``)."""

    @property
    def decisions(self) -> str: ...
    @property
    def breaches(self) -> str: ...


def verdicts(
    topics: Outputs, partition: int, key: bytes, decisions: Iterable[Decision], breaches: Iterable[breach.Breach]
) -> list[Outgoing]:
    """A gate's decisions and breach alerts, keyed ``key`` (its ``region/tier``) on its home ``partition`` of
    the decisions and breaches topics, with their CloudEvents headers."""
    out = [Outgoing(topics.decisions, partition, key, encode(d), headers_of(d)) for d in decisions]
    out += [Outgoing(topics.breaches, partition, key, breach.encode(b), breach_headers(b)) for b in breaches]
    return out


def dead_letter(
    dlq: tuple[str, int], source: tuple[str, int, int], key: bytes | None, value: bytes | None, why: tuple[str, str]
) -> Outgoing:
    """A rejected record (``source``: its topic, partition, offset) to partition ``dlq[1]`` of topic ``dlq[0]``
    with its original key and bytes, and why (``why``: a reason code and a message) in its headers."""
    code, message = why
    topic, partition, offset = source
    headers = (
        (REASON_HEADER, code.encode()),
        (MESSAGE_HEADER, message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]),
        (SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode()),
    )
    return Outgoing(dlq[0], dlq[1], key, value, headers)


def rejected(dlq: str, partitions: int, record: Consumed, code: str, message: str) -> Outgoing:
    """``record`` as a dead letter on topic ``dlq``, on the partition of its own partition number (of
    ``partitions``, the worker's common count), with ``code`` and ``message`` saying why."""
    where = (record.topic, record.partition, record.offset)
    return dead_letter((dlq, record.partition % partitions), where, record.key, record.value, (code, message))
