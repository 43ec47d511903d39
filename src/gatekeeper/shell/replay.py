"""Replay: run both stages (``core.pipeline``) over a telemetry JSONL stream, its one source, in event time and
write decision JSONL (and, on request, the burn-rate breach alert events as JSONL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Literal

import msgspec

from gatekeeper.core import breach
from gatekeeper.core import decision as decisions
from gatekeeper.core.decision import Decision
from gatekeeper.core.otlp_sniff import is_otlp_json
from gatekeeper.core.plan import Plan
from gatekeeper.core.source_fold import Folded, SourceFold
from gatekeeper.core.telemetry import EventBatch, Rejection, TelemetryDecoder
from gatekeeper.errors import UserError
from gatekeeper.shell.child_stage import can_fork, in_child

if TYPE_CHECKING:  # imported when used: stage 2's modules load after stage 1's process has started
    from gatekeeper.core.otlp_mapping import OtlpMapping
    from gatekeeper.shell.side_files import SideFile

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
    for block, consumed in _line_blocks(stream, block_bytes):
        yield line_no, block, consumed
        line_no += block.count(b"\n") + 1


def _line_blocks(stream: BinaryIO, block_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines (without the final newline) and the bytes each consumed, not numbered: replay's
    stage 1 numbers them from the decoder's line count, so the bytes are not scanned once more for newlines."""
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
        yield data[:cut], cut + 1
    if rest:
        yield rest, len(rest)


def read_frames(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, list[bytes], int]]:
    """Length-prefixed protobuf messages in groups of about ``block_bytes``: (number of the first message, the
    messages, bytes consumed). A stream that ends inside a frame is a ``UserError`` naming the frame."""
    from gatekeeper.core.otlp import frames

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


@dataclass(frozen=True, slots=True)
class Block:
    """Stage 1's output for one block of input: what stage 2 and the summary need, far smaller than the decoded
    events (it crosses a process boundary with ``--jobs 2``)."""

    lines: int  # lines, or protobuf batches
    blank: int
    consumed: int  # input bytes
    rejections: list[Rejection]
    ignored: Counter[str] | None  # OTLP spans not used, by reason
    folded: Folded


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
    records timestamped beyond it plus the plan's ``max_future_skew`` are rejected. With ``jobs`` > 1, stage 1
    (reading, decoding, folding: ``core/source_fold.py``) runs in a child process that reads ``source`` itself,
    in order, and this process runs stage 2 on what it sends back (``shell/child_stage.py``); stage 1 is the same
    sequential fold either way, so the decisions are byte-identical to ``jobs=1``. ``input_format``: see the
    module; ``mapping``: where OTLP spans' region and tier come from. ``breaches``: where the burn-rate breach
    events go (JSONL, contract v2 of the ``breaches`` topic); ``side``: incident, approval and business-metric
    files (``shell/side_files.py``). ``block_bytes``: how much input is read and decoded at a time,
    ``merge_bytes``: how much of it stage 2 merges at a time at most (with ``jobs`` > 1 also whenever the child
    has no block ready); the output depends on neither
    (``core/output_order.py``, ``core/partial_buffer.py``)."""
    fold = SourceFold(plan)
    decoder = fold.decoder(now_ms)
    if input_format != "json":
        from gatekeeper.core.otlp import OtlpDecoder

        decoder = OtlpDecoder(fold.keys, mapping, decoder.not_after_ms, fold.layout.baselines, fold.layout.cross)

    def stage1() -> Iterator[Block]:
        first = 1  # the number of the block's first line (or protobuf batch)
        for block, consumed in _blocks(source, input_format, block_bytes):
            count, blank, batch = _decode_block(decoder, first, block)
            first += count
            ignored: Counter[str] | None = getattr(batch, "ignored", None)  # an OTLP SpanBatch's
            yield Block(count, blank, consumed, batch.rejections, ignored, fold.fold(batch))
        if flush:
            yield Block(0, 0, 0, [], None, fold.finish())

    args = (sink, rejects, breaches, on_progress, on_decisions, input_format, side, merge_bytes)
    if not (jobs > 1 and can_fork()):
        return _stage2(plan, fold, stage1(), None, *args)
    # the child forks first, so that stage 2's imports and set-up below overlap its decoding
    with in_child(stage1) as received:
        return _stage2(plan, fold, received, received.behind, *args)


def _stage2(
    plan: Plan,
    fold: SourceFold,
    blocks: Iterable[Block],
    behind: Callable[[], bool] | None,
    sink: BinaryIO,
    rejects: BinaryIO | None,
    breaches: BinaryIO | None,
    on_progress: Callable[[int], None] | None,
    on_decisions: Callable[[list[Decision]], None] | None,
    input_format: Format,
    side: list[SideFile] | None,
    merge_bytes: int,
) -> ReplaySummary:
    """Stage 2 over stage 1's blocks: merging, gates, alerts, global gates, output; the summary. Merges every
    ``merge_bytes`` of input, and whenever stage 1 (``behind``, with ``--jobs 2``) has no block ready: this process
    has time then, and what is merged while the child still reads is not left to merge after it ends."""
    from gatekeeper.core.pipeline import Pipeline
    from gatekeeper.shell.side_files import load_side_files

    engine = Pipeline(plan, stage1=fold)
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
    for block in blocks:
        summary.lines += block.lines
        summary.blank += block.blank
        if block.ignored:
            summary.ignored.update(block.ignored)
        summary.rejected.update(r.code for r in block.rejections)
        reject_writer.write(block.rejections)
        unmerged += block.consumed
        due = unmerged >= merge_bytes or (behind is not None and behind())
        emit(engine.take(block.folded, merge=due))
        if due:
            unmerged = 0
        if on_progress is not None:
            on_progress(block.consumed)
    emit(engine.settle())
    summary.events, summary.late = engine.stats.events, engine.stats.late
    return summary


def _decode_block(decoder: TelemetryDecoder, first: int, block: bytes | list[bytes]) -> tuple[int, int, EventBatch]:
    if isinstance(block, list):  # protobuf messages, numbered from ``first``
        return len(block), 0, decoder.decode(block, first)
    return decoder.decode_lines(block, first)


def _blocks(source: BinaryIO, input_format: Format, block_bytes: int) -> Iterator[tuple[bytes | list[bytes], int]]:
    """The input's blocks in order, with the bytes each consumed; a read error is a ``UserError`` naming it (with
    either ``jobs``)."""
    blocks: Iterator[tuple[bytes | list[bytes], int]] = (
        ((messages, consumed) for _number, messages, consumed in read_frames(source, block_bytes))
        if input_format == "otlp-proto"
        else _line_blocks(source, block_bytes)
    )
    try:
        yield from blocks
    except OSError as exc:
        raise UserError(f"cannot read the input: {exc.strerror or exc}") from None
