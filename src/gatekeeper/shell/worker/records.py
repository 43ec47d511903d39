"""A consumed Kafka record as the worker's stages read it: aiokafka's ``ConsumerRecord`` or ``processor.Record``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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
