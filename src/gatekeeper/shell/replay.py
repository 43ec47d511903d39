"""Replay: run both stages (``core.pipeline``) over a telemetry JSONL stream, its one source, in event time and
write decision JSONL (and, on request, the burn-rate breach alert events as JSONL)."""

from __future__ import annotations

import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

import msgspec

from gatekeeper.core import breach
from gatekeeper.core import decision as decisions
from gatekeeper.core.decision import Decision
from gatekeeper.core.otlp import OtlpDecoder, SpanBatch, frames, is_otlp_json
from gatekeeper.core.otlp_mapping import OtlpMapping
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import Plan
from gatekeeper.core.telemetry import EventBatch, Rejection, TelemetryDecoder
from gatekeeper.errors import UserError
from gatekeeper.shell.side_files import SideFile, load_side_files

BLOCK_BYTES = 4 << 20  # decoded at a time: what bounds the memory of decoded events
# merged (stage 2) at a time, of the input: stage 2's cost is mostly per close, not per pane (docs/benchmarks.md)
MERGE_BYTES = 16 << 20
Format = Literal["json", "otlp-json", "otlp-proto"]  # gatekeeper.shell.otlp_options.INPUT_FORMATS


@dataclass(slots=True)
class ReplaySummary:
    lines: int = 0
    blank: int = 0
    events: int = 0
    late: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    breaches: Counter[str] = field(default_factory=Counter)  # breach alert events by change (opened, ...)
    ignored: Counter[str] = field(default_factory=Counter)  # OTLP spans not used, by reason
    unit: str = "lines"  # what ``lines`` counts: lines, or the batches of a protobuf file
    side: Counter[str] = field(default_factory=Counter)  # side records applied, by kind

    def render(self) -> str:
        rejected = sum(self.rejected.values())
        parts = [f"{self.lines} {self.unit}: {self.events} events, {rejected} rejected, {self.late} late"]
        if self.blank:
            parts.append(f"{self.blank} blank lines skipped")
        for code, count in sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0])):
            parts.append(f"  rejected {code}: {count}")
        if self.ignored:
            parts.append(f"{sum(self.ignored.values())} spans ignored")
        for code, count in sorted(self.ignored.items(), key=lambda kv: (-kv[1], kv[0])):
            parts.append(f"  ignored {code}: {count}")
        if self.side:
            parts.append("side inputs: " + ", ".join(f"{v} {k}" for k, v in sorted(self.side.items())))
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.decisions.items())) or "none"
        parts.append(f"decisions: {sum(self.decisions.values())} ({kinds})")
        if self.breaches:
            changes = ", ".join(f"{k} {v}" for k, v in sorted(self.breaches.items()))
            parts.append(f"breach events: {sum(self.breaches.values())} ({changes})")
        return "\n".join(parts)


def read_blocks(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """Blocks of whole lines: (number of the first line, the lines without the final newline, bytes consumed)."""
    line_no = 1
    rest = b""
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            break
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        block = data[:cut]
        yield line_no, block, cut + 1
        line_no += block.count(b"\n") + 1
    if rest:
        yield line_no, rest, len(rest)


def read_frames(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, list[bytes], int]]:
    """Length-prefixed protobuf messages in groups of about ``block_bytes``: (number of the first message, the
    messages, bytes consumed). A stream that ends inside a frame is a ``UserError`` naming the frame."""
    number, rest = 1, b""
    while True:
        chunk = stream.read(block_bytes)
        data = rest + chunk
        cut = _whole_frames(data)
        if cut:
            messages = list(frames(data[:cut]))
            yield number, messages, cut
            number += len(messages)
        rest = data[cut:]
        if not chunk:
            break
    if rest:
        raise UserError(f"the input ends inside protobuf batch {number} ({len(rest)} bytes left): is it truncated?")


def _whole_frames(data: bytes) -> int:
    """How many leading bytes of ``data`` are whole frames."""
    at = 0
    while at + 4 <= len(data):
        end = at + 4 + int.from_bytes(data[at : at + 4], "big")
        if end > len(data):
            break
        at = end
    return at


def detect_format(source: BinaryIO) -> Format:
    """The input's format from its first bytes (without consuming them): a JSON object whose first member is
    ``resourceSpans`` is OTLP/JSON, another JSON object contract v1, anything else length-prefixed protobuf."""
    peek = getattr(source, "peek", None)
    head = peek(256)[:256] if peek is not None else b""
    text = head.lstrip()
    if not text or text.startswith(b"{"):
        return "otlp-json" if is_otlp_json(text) else "json"
    return "otlp-proto"


def read_records(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, list[bytes], int]]:
    """Like ``read_blocks``, with each block split into its lines."""
    for first, block, consumed in read_blocks(stream, block_bytes):
        yield first, block.split(b"\n"), consumed


class _RejectWriter:
    """Writes rejected records as JSONL: position, code, message and the original bytes (as latin-1 text)."""

    def __init__(self, out: BinaryIO | None) -> None:
        self._out = out
        self._enc = msgspec.json.Encoder()

    def write(self, rejections: list[Rejection]) -> None:
        if self._out is None:
            return
        for r in rejections:
            record = {
                "line": r.position,
                "code": r.code,
                "message": r.message,
                "raw": r.raw.decode("latin-1"),
            }
            self._out.write(self._enc.encode(record) + b"\n")


def replay(
    plan: Plan,
    source: BinaryIO,
    sink: BinaryIO,
    *,
    flush: bool = False,
    rejects: BinaryIO | None = None,
    breaches: BinaryIO | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_decisions: Callable[[list[Decision]], None] | None = None,
    now_ms: int | None = None,
    jobs: int = 1,
    input_format: Format = "json",
    mapping: OtlpMapping | None = None,
    side: list[SideFile] | None = None,
    block_bytes: int = BLOCK_BYTES,
    merge_bytes: int = MERGE_BYTES,
) -> ReplaySummary:
    """Run ``plan`` over ``source`` (telemetry JSONL) and write decisions to ``sink`` (JSONL). With ``now_ms``,
    records timestamped beyond it plus the plan's ``max_future_skew`` are rejected. With ``jobs`` > 1, blocks are
    decoded in that many worker processes, in order; the pipeline sees exactly the same batches, so the
    decisions are byte-identical to ``jobs=1``. ``input_format``: see the module; ``mapping``: where OTLP spans'
    region and tier come from. ``breaches``: where the burn-rate breach events go (JSONL, contract v2 of the
    ``breaches`` topic); ``side``: incident, approval and business-metric files (``shell/side_files.py``).
    ``block_bytes``: how much input is read and decoded at a time, ``merge_bytes``: how much of it stage 2 merges
    at a time; the output depends on neither (``core/output_order.py``, ``core/partial_buffer.py``)."""
    engine = Pipeline(plan)
    decoder = engine.decoder(now_ms)
    if input_format != "json":
        decoder = OtlpDecoder(engine.keys, mapping, decoder.not_after_ms, engine.layout.baselines, engine.layout.cross)
    summary = ReplaySummary(unit="batches" if input_format == "otlp-proto" else "lines")
    reject_writer = _RejectWriter(rejects)
    if side:
        summary.side, side_rejected, side_rejections = load_side_files(engine, side)
        summary.rejected.update(side_rejected)
        reject_writer.write(side_rejections)

    def emit(out: list[Decision]) -> None:
        for d in out:
            sink.write(decisions.encode(d) + b"\n")
            summary.decisions[d.decision] += 1
        if out and on_decisions is not None:
            on_decisions(out)
        for b in engine.take_breaches():
            summary.breaches[b.change] += 1
            if breaches is not None:
                breaches.write(breach.encode(b) + b"\n")

    unmerged = 0  # input bytes folded by stage 1 since stage 2 last merged
    for count, blank, batch, consumed in _decoded_blocks(decoder, source, jobs, input_format, block_bytes):
        summary.lines += count
        summary.blank += blank
        if isinstance(batch, SpanBatch):
            summary.ignored.update(batch.ignored)
        summary.rejected.update(r.code for r in batch.rejections)
        reject_writer.write(batch.rejections)
        unmerged += consumed
        emit(engine.ingest(batch, merge=unmerged >= merge_bytes))
        unmerged = 0 if unmerged >= merge_bytes else unmerged
        if on_progress is not None:
            on_progress(consumed)
    emit(engine.settle())
    if flush:
        emit(engine.flush())
    summary.events, summary.late = engine.stats.events, engine.stats.late
    return summary


Decoded = tuple[int, int, EventBatch, int]  # lines, blank lines, the batch, bytes consumed
_WORKER_DECODER: TelemetryDecoder | None = None


def _decode_block(decoder: TelemetryDecoder, first: int, block: bytes | list[bytes]) -> tuple[int, int, EventBatch]:
    if isinstance(block, list):  # protobuf messages, numbered from ``first``
        return len(block), 0, decoder.decode(block, first)
    count = block.count(b"\n") + 1
    if b"\n\n" not in block and block[:1] != b"\n" and block[-1:] != b"\n" and block.strip():
        return count, 0, decoder.decode_block(block, first)
    lines = block.split(b"\n")  # skip blank lines, keeping line numbers exact
    numbers = [first + i for i, ln in enumerate(lines) if ln.strip()]
    return count, count - len(numbers), decoder.decode([lines[n - first] for n in numbers], positions=numbers)


def _init_worker(decoder: TelemetryDecoder) -> None:
    global _WORKER_DECODER  # noqa: PLW0603 - one decoder per worker process, set once by the pool
    _WORKER_DECODER = decoder


def _decode_in_worker(task: tuple[int, bytes | list[bytes], int]) -> Decoded:
    first, block, consumed = task
    assert _WORKER_DECODER is not None
    count, blank, batch = _decode_block(_WORKER_DECODER, first, block)
    return count, blank, batch, consumed


def _decoded_blocks(
    decoder: TelemetryDecoder, source: BinaryIO, jobs: int, input_format: Format, block_bytes: int
) -> Iterator[Decoded]:
    """Decoded blocks in input order, decoded here or, with ``jobs`` > 1, in worker processes."""
    blocks: Iterator[tuple[int, bytes | list[bytes], int]] = (
        read_frames(source, block_bytes) if input_format == "otlp-proto" else read_blocks(source, block_bytes)
    )
    if jobs <= 1:
        for first, block, consumed in blocks:
            count, blank, batch = _decode_block(decoder, first, block)
            yield count, blank, batch, consumed
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(jobs, initializer=_init_worker, initargs=(decoder,)) as pool:
        yield from pool.imap(_decode_in_worker, blocks, chunksize=1)
