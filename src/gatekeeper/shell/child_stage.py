"""An ordered producer run in a forked child process: replay's stage 1 (read, decode, fold) beside stage 2 in
this process (``gatekeeper replay --jobs 2``, the default on 2+ cores). The child inherits the open input and
everything imported so far (fork), runs the producer and sends each item back, in order, through a pipe; the
pipe's buffer bounds how far it runs ahead (about one item). What it sends is stage 1's small output per block,
not decoded events.

Errors reach this process as they would have been raised here: a ``UserError`` or ``OSError`` as itself (the
CLI prints its message), anything else as a ``RuntimeError`` carrying the child's traceback; a child that dies
is a ``UserError`` naming its exit status. Ctrl-C reaches the whole process group: the child ignores it and this
process stops the child on its way out, whatever ends the loop.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from typing import Generic, TypeVar

from gatekeeper.errors import UserError

T = TypeVar("T")
_END = "end"  # sent after the last item
AHEAD = 32  # items received ahead of their use: stage 1's output of 32 blocks is a few MB at most


_EOF = object()  # the pipe ended without the end mark: the child died


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException  # one that pickles and means the same in the parent


def can_fork() -> bool:
    """The child inherits the open input and the imported modules: only where ``os.fork`` exists (not Windows)."""
    return hasattr(os, "fork")


def _serve(produce: Callable[[], Iterator[T]], reader: Connection, writer: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    reader.close()  # the parent's end: closed here, so a dead parent is a broken pipe, not a hang
    try:
        for item in produce():
            writer.send(item)
        writer.send(_END)
    except BrokenPipeError:
        return  # the parent stopped reading (it failed or was interrupted): nothing to tell it
    except (UserError, OSError) as exc:
        writer.send(_Failed(exc))
    except BaseException:  # a bug: the parent shows it with our traceback
        writer.send(_Failed(RuntimeError(f"replay's stage-1 process failed:\n{traceback.format_exc()}")))
    finally:
        writer.close()


class _Receiver:
    """Items from the pipe, received by a thread as they come (``recv`` waits without the GIL) into a queue of
    ``AHEAD``; the thread ends at the end mark, a failure, or the pipe's EOF (``_EOF``)."""

    def __init__(self, reader: Connection) -> None:
        self._reader = reader
        self._queue: queue.Queue[object] = queue.Queue(AHEAD)
        self._thread = threading.Thread(target=self._run, name="stage-1 receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._reader.recv()
            except (EOFError, OSError):
                item = _EOF
            self._queue.put(item)
            if item is _EOF or isinstance(item, _Failed) or (isinstance(item, str) and item == _END):
                return

    def get(self) -> object:
        return self._queue.get()

    def empty(self) -> bool:
        return self._queue.empty()

    def drain(self) -> None:
        """Wait for the thread to end (the child stopped, so the pipe ends), emptying the queue so it never blocks."""
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)


class Received(Generic[T]):
    """The child's items in order (iterate once), and whether the next one has not arrived yet."""

    def __init__(self, items: Iterator[T], receiver: _Receiver) -> None:
        self._items, self._receiver = items, receiver

    def __iter__(self) -> Iterator[T]:
        return self._items

    def behind(self) -> bool:
        """The child has not sent the next item yet: asking for it now would wait."""
        return self._receiver.empty()


@contextlib.contextmanager
def in_child(produce: Callable[[], Iterator[T]]) -> Iterator[Received[T]]:
    """``produce()``'s items, produced in a forked child process, in order. Leaving the block (at the end, on an
    error or an interrupt) stops the child and waits for it. A bare ``os.fork``, not ``multiprocessing``: its
    child closes standard input, which may be the input (``--input -``)."""
    reader, writer = Pipe(duplex=False)
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's frames
        code = 1
        try:
            _serve(produce, reader, writer)
            code = 0
        finally:
            os._exit(code)
    writer.close()  # the child's end: closed here, so a dead child is an EOF, not a hang
    status: list[int] = []

    def reap(block: bool) -> None:
        if not status:
            done, raw = os.waitpid(pid, 0 if block else os.WNOHANG)
            if done:
                status.append(os.waitstatus_to_exitcode(raw))

    received = _Receiver(reader)

    def items() -> Iterator[T]:
        while True:
            item = received.get()
            if item is _EOF:
                reap(block=True)
                raise UserError(
                    f"replay's stage-1 process stopped unexpectedly (exit status {status[0]}); "
                    "retry, or run with --jobs 1"
                ) from None
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, str) and item == _END:
                return
            yield item  # type: ignore[misc]  # the producer's items, as the child sent them

    try:
        yield Received(items(), received)
    finally:
        reap(block=False)
        if not status:
            os.kill(pid, signal.SIGTERM)  # a child still producing; one that exited is only reaped
        received.drain()
        reader.close()
        reap(block=True)
