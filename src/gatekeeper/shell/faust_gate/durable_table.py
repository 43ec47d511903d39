"""The gate-state table: a Faust table whose changelog records the agent can wait for.

Faust acks an event when the agent takes the next one, and commits acked offsets after ``producer.flush()``. That
flush does not wait for the table's changelog records: they go through Faust's producer buffer, whose flush
returns after 0.1 s without a message sent even when records are still queued (``ProducerBuffer.flush_atmost``),
and a record taken from the buffer is not in aiokafka's batch yet. So a commit could cover a panes message whose
state (a buffered partial's place, a gate's inbox) had not reached the changelog, and a SIGKILL then lost it: the
restarted gate missed partials, stalled and passed on less evidence (tests/kafka/test_faust_gate.py's restart,
about one CI run in three). The agent waits for ``confirmed()`` before it takes the next message, so an acked
message's state is on the broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables.table import Table
from faust.types.tuples import FutureMessage


class DurableTable(Table[bytes, bytes]):
    """A ``faust.Table`` that keeps the changelog records sent since the last ``confirmed()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent: list[FutureMessage] = []

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> FutureMessage:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._sent.append(sent)
        return sent

    async def confirmed(self) -> int:
        """Wait until the broker has acknowledged every changelog record sent so far (raises what a failed send
        raised); how many there were."""
        sent, self._sent = self._sent, []
        if sent:
            await asyncio.gather(*sent)
        return len(sent)
