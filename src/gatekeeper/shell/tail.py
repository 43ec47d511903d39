"""``gatekeeper tail``: print decisions from the decisions topic, one readable line each (or raw JSON).

Reads every partition of the decisions topic without a consumer group (nothing is committed; any number of
tails can run), from the end (only new decisions) or, with ``--from-beginning``, from the start. With
``--no-follow`` it stops once it has read up to the end offsets the topic had when it started. A record
that is not a decision gets a warning on stderr and is skipped. Ctrl-C (or SIGTERM) exits with status 0.

This module imports only lightly at load time; aiokafka and rich are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import msgspec

from gatekeeper.core.decision import Decision, DecisionKind, decode
from gatekeeper.errors import UserError
from gatekeeper.shell.kafka_settings import KafkaSettings, add_kafka_arguments, kafka_settings
from gatekeeper.shell.render import decision_line

if TYPE_CHECKING:
    pass

KINDS: tuple[str, ...] = get_args(DecisionKind)
POLL_MS = 500
TOPIC_WAIT_S = 2.0
WARN_BYTES = 120


def _names(values: list[str] | None) -> frozenset[str] | None:
    """Repeated flags and comma lists, as one set (None: no filter)."""
    if not values:
        return None
    return frozenset(part.strip() for value in values for part in value.split(",") if part.strip()) or None


@dataclass(frozen=True, slots=True)
class Filters:
    regions: frozenset[str] | None = None
    tiers: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    @staticmethod
    def of(args: argparse.Namespace) -> Filters:
        kinds = _names(args.decision)
        unknown = sorted(kinds - set(KINDS)) if kinds else []
        if unknown:
            raise UserError(f"--decision {', '.join(unknown)}: not a decision kind (choose from {', '.join(KINDS)})")
        return Filters(_names(args.region), _names(args.tier), kinds)

    def __call__(self, d: Decision) -> bool:
        return (
            (self.regions is None or d.region in self.regions)
            and (self.tiers is None or d.tier in self.tiers)
            and (self.kinds is None or d.decision in self.kinds)
        )


def configure(parser: argparse.ArgumentParser) -> None:
    add_kafka_arguments(parser)
    show = parser.add_argument_group("what to show")
    show.add_argument("--region", action="append", metavar="NAME[,NAME]", help="only these regions (repeatable)")
    show.add_argument("--tier", action="append", metavar="NAME[,NAME]", help="only these tiers (repeatable)")
    show.add_argument(
        "--decision", action="append", metavar="KIND[,KIND]", help=f"only these kinds: {', '.join(KINDS)}"
    )
    show.add_argument("--json", action="store_true", help="print each decision as its raw JSON line (for scripts)")
    show.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest decision (default: only new ones)"
    )
    show.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep waiting for new decisions (default); --no-follow exits at the end of the topic",
    )
    show.add_argument("--no-color", action="store_true", help="plain text, no colours")


# -- consuming -----------------------------------------------------------------------------------------------
class _Printer:
    def __init__(self, *, as_json: bool, color: bool, filters: Filters) -> None:
        from rich.console import Console

        self.as_json, self.filters = as_json, filters
        self.console = Console(
            file=sys.stdout,
            color_system="auto" if color else None,
            highlight=False,
            soft_wrap=True,
            emoji=False,
        )
        self.shown = self.skipped = 0

    def record(self, partition: int, offset: int, value: bytes | None) -> None:
        try:
            d = decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.skipped += 1
            raw = (value or b"")[:WARN_BYTES].decode("utf-8", "replace")
            print(
                f"gatekeeper tail: warning: partition {partition} offset {offset}: not a decision ({exc}): {raw!r}",
                file=sys.stderr,
            )
            return
        if not self.filters(d):
            return
        self.shown += 1
        if self.as_json:
            sys.stdout.buffer.write((value or b"") + b"\n")
        else:
            self.console.print(decision_line(d))

    def flush(self) -> None:
        if self.as_json:
            sys.stdout.buffer.flush()
        sys.stdout.flush()


async def _partitions(settings: KafkaSettings, topic: str, follow: bool, stop: asyncio.Event) -> int | None:
    """Partitions of the decisions topic; while following, waits for it to be created (None: stopped)."""
    from gatekeeper.shell.kafka_admin import topic_partitions

    told = False
    while not stop.is_set():
        count = await topic_partitions(settings, topic)
        if count:
            return count
        if not follow:
            raise UserError(f"topic {topic} does not exist on {settings.bootstrap} (no decisions produced yet?)")
        if not told:
            print(f"gatekeeper tail: waiting for topic {topic} on {settings.bootstrap} ...", file=sys.stderr)
            told = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TOPIC_WAIT_S)
    return None


async def _consume(
    consumer: Any, partitions: list[Any], args: argparse.Namespace, printer: _Printer, stop: asyncio.Event
) -> None:
    """Print what ``consumer`` reads until stopped (with --no-follow: up to the end offsets of now)."""
    consumer.assign(partitions)
    if args.from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    remaining: dict[Any, int] | None = None
    if not args.follow:
        ends = await consumer.end_offsets(partitions)
        remaining = {tp: end for tp, end in ends.items() if await consumer.position(tp) < end}
    while not stop.is_set() and (remaining is None or remaining):
        batches = await consumer.getmany(timeout_ms=POLL_MS)
        for tp, records in batches.items():
            for record in records:
                printer.record(tp.partition, record.offset, record.value)
        printer.flush()
        if remaining is not None:
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]


async def _tail(settings: KafkaSettings, args: argparse.Namespace, printer: _Printer) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from gatekeeper.shell.kafka_admin import describe_error

    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not in the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    topic = settings.topics.decisions
    count = await _partitions(settings, topic, args.follow, stop)
    if count is None:
        return
    if sys.stderr.isatty() and not args.json:
        mode = "following" if args.follow else "reading"
        print(f"gatekeeper tail: {mode} {topic} on {settings.bootstrap} (Ctrl-C to stop)", file=sys.stderr)
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        await _consume(consumer, [TopicPartition(topic, p) for p in range(count)], args, printer, stop)
    except KafkaError as exc:
        raise UserError(f"reading {topic} on {settings.bootstrap} failed: {describe_error(exc)}") from None
    finally:
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``gatekeeper tail``."""
    settings = kafka_settings(args)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retried warnings are noise; failures raise
    printer = _Printer(as_json=args.json, color=not args.no_color, filters=Filters.of(args))
    try:
        asyncio.run(_tail(settings, args, printer))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            printer.flush()
    return 0
