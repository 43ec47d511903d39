"""An optional CPU profile of the worker's main process, for measuring it through a real broker.

``GATEKEEPER_WORKER_PROFILE=FILE``: the event loop runs under cProfile with a CPU clock (``time.process_time``,
so waiting on the broker costs nothing) and the pstats are written to FILE when the worker stops. The decoding
child is not profiled (it forks before the profiler starts). Unset: no profiler, no cost.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import time
from collections.abc import Iterator

ENV = "GATEKEEPER_WORKER_PROFILE"


@contextlib.contextmanager
def profiled() -> Iterator[None]:
    """Profile the block's CPU time into ``$GATEKEEPER_WORKER_PROFILE`` if it is set."""
    path = os.environ.get(ENV)
    if not path:
        yield
        return
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)
