"""The worker's garbage-collector settings, for its main process (measured: docs/benchmarks.md, "h-wmain").

aiokafka makes one ``ConsumerRecord`` (a tracked object) per record fetched, and a poll's 10,000 of them stay alive
until the poll is applied: with CPython's default thresholds (700, 10, 10) nearly every record is scanned by a
young collection, survives it (the poll still holds it), is scanned again in generation 1 and promoted to the old
generation, where it counts towards a full collection of the whole heap. On thin unkeyed input that cost ~1.9 s of
CPU per million records, a fifth of the main process. A young generation larger than a few polls' objects lets
them die of their reference count before any collection looks at them; the older generations keep the default
cadence relative to it. Start-up's objects (modules, the plan, the libraries) are frozen out of every collection:
they live as long as the process. Only when cyclic garbage is reclaimed changes, never what the worker computes.
"""

from __future__ import annotations

import gc

YOUNG = 100_000  # allocations between young collections: more than a poll's records and what applying it makes
OLDER = (10, 10)  # CPython's default: generation 1 every 10 young collections, a full one every 10 of those


def settle() -> None:
    """Call once start-up is over, before the loop: collect and freeze what exists, then widen the young
    generation."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, *OLDER)
