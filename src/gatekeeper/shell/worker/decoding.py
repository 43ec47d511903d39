"""Where the worker decodes a poll's telemetry values: in its own process (``--jobs 1``) or in one child
process (``--jobs 2``, the default on 2+ cores), so that decoding poll N+1 overlaps applying poll N. ``parse``
takes the fetched record batches instead of the values (``raw_records.py``): parsing them moves there too.

Decoding is a pure function of the values and the rejection clock (``TelemetryDecoder.decode``), so either
place gives the same ``EventBatch``; the runtime applies polls in the order they were fetched either way.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Protocol

from gatekeeper.core.telemetry import EventBatch, TelemetryDecoder
from gatekeeper.shell.worker.raw_records import ParsedPoll, RawPoll, parse_poll

_CHILD_DECODER: TelemetryDecoder | None = None


def decode_values(decoder: TelemetryDecoder, values: list[bytes], not_after_ms: int) -> EventBatch:
    """A poll's values decoded, rejecting records timestamped after ``not_after_ms`` (positions from 0)."""
    decoder.not_after_ms = not_after_ms
    return decoder.decode(values, first_position=0)


class Decoding(Protocol):
    def submit(self, values: list[bytes], not_after_ms: int) -> asyncio.Future[EventBatch]: ...
    def parse(self, poll: RawPoll, not_after_ms: int) -> asyncio.Future[ParsedPoll]: ...
    def close(self) -> None: ...


class InlineDecoding:
    """Decodes at once, in this process (the future is already done)."""

    def __init__(self, decoder: TelemetryDecoder) -> None:
        self._decoder = decoder

    def submit(self, values: list[bytes], not_after_ms: int) -> asyncio.Future[EventBatch]:
        future: asyncio.Future[EventBatch] = asyncio.get_running_loop().create_future()
        future.set_result(decode_values(self._decoder, values, not_after_ms))
        return future

    def parse(self, poll: RawPoll, not_after_ms: int) -> asyncio.Future[ParsedPoll]:
        future: asyncio.Future[ParsedPoll] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(parse_poll(poll, partial(decode_values, self._decoder), not_after_ms))
        except Exception as exc:  # a corrupt batch: raised where the poll is applied, as from the child
            future.set_exception(exc)
        return future

    def close(self) -> None:
        pass


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)  # the worker died (e.g. SIGKILL): do not linger


def _init_child(decoder: TelemetryDecoder, parent: int) -> None:
    global _CHILD_DECODER  # noqa: PLW0603 - one decoder per child process, set once by the pool
    _CHILD_DECODER = decoder
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _decode_in_child(values: list[bytes], not_after_ms: int) -> EventBatch:
    assert _CHILD_DECODER is not None
    return decode_values(_CHILD_DECODER, values, not_after_ms)


def _parse_in_child(poll: RawPoll, not_after_ms: int) -> ParsedPoll:
    assert _CHILD_DECODER is not None
    return parse_poll(poll, partial(decode_values, _CHILD_DECODER), not_after_ms)


def _ready() -> bool:
    return _CHILD_DECODER is not None


class ChildDecoding:
    """Decodes in one child process. Create it before the event loop and the Kafka clients exist (it forks)."""

    def __init__(self, decoder: TelemetryDecoder) -> None:
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        parent = os.getpid()
        self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=_init_child, initargs=(decoder, parent))
        if not self._pool.submit(_ready).result(timeout=60):
            raise RuntimeError("the decoding process did not start")

    def submit(self, values: list[bytes], not_after_ms: int) -> asyncio.Future[EventBatch]:
        return asyncio.wrap_future(self._pool.submit(_decode_in_child, values, not_after_ms))

    def parse(self, poll: RawPoll, not_after_ms: int) -> asyncio.Future[ParsedPoll]:
        return asyncio.wrap_future(self._pool.submit(_parse_in_child, poll, not_after_ms))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def decoding(decoder: TelemetryDecoder, jobs: int) -> Decoding:
    """``jobs`` 1: in this process; 2: in a child process."""
    return ChildDecoding(decoder) if jobs >= 2 else InlineDecoding(decoder)
