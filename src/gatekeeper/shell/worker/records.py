"""A consumed Kafka record as the worker's stages read it: aiokafka's ``ConsumerRecord`` or ``Record``; a run of
telemetry records parsed from the fetched bytes (``ParsedRun``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

import numpy as np
import numpy.typing as npt

Headers = tuple[tuple[str, bytes], ...]


class Consumed(Protocol):
    """A consumed Kafka record: aiokafka's ``ConsumerRecord`` or a ``Record``."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record built by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


class ParsedRun(Sequence[Record]):
    """A telemetry partition's records of a poll, parsed from the fetched bytes in the decoding process
    (``raw_records.py``): their offsets, and the key and value of those the decoder rejected (their dead letters
    carry them). The other records' key and value are None here: their values are decoded already and nothing
    reads them again, and bringing them back would cost what parsing them elsewhere saved."""

    __slots__ = ("_kept", "offsets", "partition", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        offsets: npt.NDArray[np.int64],
        kept: Mapping[int, tuple[bytes | None, bytes | None]],
    ) -> None:
        """``kept``: key and value by position in this run."""
        self.topic, self.partition, self.offsets, self._kept = topic, partition, offsets, kept

    def __len__(self) -> int:
        return int(self.offsets.size)

    @overload
    def __getitem__(self, i: int) -> Record: ...
    @overload
    def __getitem__(self, i: slice) -> list[Record]: ...
    def __getitem__(self, i: int | slice) -> Record | list[Record]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        i = range(len(self))[i]  # negative positions and bounds as a list's
        key, value = self._kept.get(i, (None, None))
        return Record(self.topic, self.partition, int(self.offsets[i]), key, value)
