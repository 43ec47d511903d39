"""Where the worker's messages go: its topics, each gate's home partition of ``<app-id>-panes`` (Java murmur2 of
``b"region/tier"``, or of ``global/<tier>`` for the regional gates of a global tier), and dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from gatekeeper.core import global_gate
from gatekeeper.core.plan import Plan
from gatekeeper.shell.worker.outgoing import Outgoing, rejected
from gatekeeper.shell.worker.records import Consumed


def home_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner (Java murmur2, as aiokafka's) puts ``key`` among ``partitions``."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names the worker reads and writes, and their (common) partition count."""

    telemetry: str
    panes: str
    decisions: str
    breaches: str
    dlq: str
    partitions: int

    def source_id(self, partition: int) -> str:
        """The watermark source of telemetry partition ``partition`` (``<topic>:<p>``)."""
        return f"{self.telemetry}:{partition}"

    def rejected(self, record: Consumed, code: str, message: str) -> Outgoing:
        """``record`` as a dead letter, on the DLQ partition of its own partition number."""
        return rejected(self.dlq, self.partitions, record, code, message)


class Homes:
    """The plan's gates (``keys``: ``b"region/tier"``, in plan order) and the panes partition each is homed on."""

    def __init__(self, plan: Plan, partitions: int) -> None:
        self.keys = [f"{region}/{tier.name}".encode() for region, _phase, tier in plan.gates()]
        homes = global_gate.home_keys(plan)  # a global tier's regional gates live with its global gate
        self.home = [home_partition(homes.get(k, k).encode(), partitions) for k in map(bytes.decode, self.keys)]
        self.index = {key.decode(): g for g, key in enumerate(self.keys)}
        self.gates_of = {q: [g for g, home in enumerate(self.home) if home == q] for q in range(partitions)}
        self.partitions = partitions

    def state_partition(self, key: bytes) -> int:
        """The gate-state changelog partition of ``key`` (a gate's or a global gate's): its home."""
        g = self.index.get(key.decode(errors="replace"))
        return self.home[g] if g is not None else home_partition(key, self.partitions)
