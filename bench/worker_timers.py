"""The gatekeeper worker with CPU timers around the parts of its main process, for a run through a real broker.

    python bench/kafka_bench.py --phases acc --keying unkeyed \\
        --worker-cmd "env TIMERS_OUT=/tmp/main-{app_id}.json /work/main/.venv/bin/python bench/worker_timers.py worker
                      --plan {plan} --bootstrap {bootstrap} ... --app-id {app_id}" --worker-cmd "..."

Runs ``gatekeeper`` (whichever tree the interpreter imports: a worktree's venv, or PYTHONPATH) with the main
thread's CPU time (``time.thread_time``: waiting costs nothing, other threads are apart) summed per part, and
writes them as JSON to ``$TIMERS_OUT`` when the worker stops: aiokafka's record parsing (``FetchResult.getall``,
inside ``getmany``; with h-raw8's raw path only the panes topic's, the telemetry batches taken as bytes by
``RawFetch._take``), stage 1 (``PartitionStage.fold``), stage 2 (``GateStage.merge``),
checkpoints (the call; the states' writes and the commit run after it, in the background), sends, the
poll's hand-over to the decoder (``Runtime._start``), each garbage collection by generation (``gc.callbacks``),
the main thread's and the whole process's CPU (the difference: the executor's threads, which pickle the values
to the decoding child and unpickle its columns), and the decoding child's CPU (the children's times at exit).
Async parts count the CPU of whatever ran while they waited; the parts that matter are synchronous. Per-call
wrappers only: cProfile's per-call cost multiplies aiokafka's per-record functions (a profiled run went 8x
slower), which is why this exists.
"""

from __future__ import annotations

import atexit
import functools
import gc
import json
import os
import resource
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka.consumer import fetcher

from gatekeeper.shell.cli import main
from gatekeeper.shell.worker import checkpoints, gate_stage, partition_stage, processor, runtime

spent: defaultdict[str, float] = defaultdict(float)
calls: Counter[str] = Counter()
MAIN = threading.get_ident()
PID = os.getpid()
START = time.process_time(), time.thread_time()


def timed(cls: Any, name: str, label: str) -> None:
    """Sum the main thread's CPU time in ``cls.name`` (a function or a coroutine function) under ``label``."""
    f: Callable[..., Any] = getattr(cls, name)
    if hasattr(f, "__code__") and f.__code__.co_flags & 0x80:  # a coroutine function

        @functools.wraps(f)
        async def waited(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                coroutine: Coroutine[Any, Any, Any] = f(*args, **kwargs)
                return await coroutine
            finally:
                spent[label] += time.thread_time() - began
                calls[label] += 1

        setattr(cls, name, waited)
        return

    @functools.wraps(f)
    def called(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != MAIN:
            return f(*args, **kwargs)
        began = time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - began
            calls[label] += 1

    setattr(cls, name, called)


_collecting: dict[str, float] = {}


def on_collection(phase: str, info: dict[str, int]) -> None:
    if threading.get_ident() != MAIN:
        return
    if phase == "start":
        _collecting["at"] = time.thread_time()
    elif "at" in _collecting:
        label = f"gc generation {info['generation']}"
        spent[label] += time.thread_time() - _collecting.pop("at")
        calls[label] += 1


def dump() -> None:
    if os.getpid() != PID or "TIMERS_OUT" not in os.environ:  # the decoding child exits through here too
        return
    out: dict[str, Any] = {label: round(s, 3) for label, s in sorted(spent.items())}
    out["main thread CPU"] = round(time.thread_time() - START[1], 3)
    out["process CPU (all threads)"] = round(time.process_time() - START[0], 3)
    # the decoding child, once the worker has shut its pool down (joined: its CPU is in the children's times)
    children = os.times()
    out["children CPU (decoding process, joined)"] = round(children.children_user + children.children_system, 3)
    out["peak RSS MB (this process)"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak RSS MB (children)"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    out["calls"] = dict(calls)
    with open(os.environ["TIMERS_OUT"], "w") as f:
        json.dump(out, f, indent=1)


timed(fetcher.FetchResult, "getall", "fetch: records parsed (FetchResult.getall)")
timed(partition_stage.PartitionStage, "fold", "stage 1 (PartitionStage.fold)")
timed(gate_stage.GateStage, "merge", "stage 2 (GateStage.merge)")
timed(processor.Processor, "flush_polled", "stages 1 + 2 + side (Processor.flush_polled)")
timed(checkpoints.Checkpoints, "checkpoint", "checkpoints (encoding and sending states)")
timed(runtime.Runtime, "_start", "hand-over to the decoder (Runtime._start)")
try:
    from gatekeeper.shell.worker import sending

    timed(sending.Sending, "send_batched", "sends (batching)")
except ImportError:  # a tree before h-wmain: the runtime sends
    timed(runtime.Runtime, "_send_batched", "sends (batching)")
try:
    from gatekeeper.shell.worker import raw_fetch

    timed(raw_fetch.RawFetch, "_take", "fetch: telemetry batches taken as bytes (RawFetch._take)")
except ImportError:  # a tree before h-raw8: aiokafka parses every record (getall)
    pass
gc.callbacks.append(on_collection)
atexit.register(dump)

if __name__ == "__main__":
    sys.exit(main())
