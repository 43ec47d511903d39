"""OpenTelemetry trace batches against the JSON contract, each measured beside the other in the same run.

    python bench/otlp_bench.py                      # 500k requests; decode, replay and the worker on a local broker
    python bench/otlp_bench.py --phases dr          # no broker: decoding and replay only

The same N requests (bench/telemetry_file.py: the plan's 24 gates over --days of event time) as
- contract-v1 JSON lines, one request per record / line;
- OTLP trace batches of --spans (default 100) SERVER spans, one ExportTraceServiceRequest per record, each batch
  one gate's consecutive requests in one resource (cloud.region, rollout.tier, service.name), each span with six
  attributes as HTTP server instrumentation sets them; protobuf and OTLP/JSON (hex ids, integer enums).

(d) decoding into columns, in this process: ``TelemetryDecoder.decode_block`` on the lines against
    ``OtlpDecoder.decode`` on the batches; rounds interleaved, best of --rounds each.
(r) ``gatekeeper replay`` (decode + engine + decisions), --jobs 1 and 2, on a JSONL file, a length-prefixed
    protobuf file and an OTLP/JSON-lines file.
(w) the worker's processing of polls without a broker, in this process: records of one partition (all gates'
    home, so every request is applied there) in polls of 10,000 requests -- decode, (expand,) processor flush --
    for the lines and for the protobuf batches; rounds interleaved, best of --rounds each.
(k) the worker through a local Kafka broker (scripts/local_kafka.py), 8 partitions, records keyed region/tier:
    ``--telemetry-format json`` on the lines, ``--telemetry-format otlp`` on the protobuf batches, each on fresh
    topics; events/s from the committed offsets (bench/kafka_measure.py ``watch_commits``), converted from
    records to requests for the batches (requests / batches per record).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: ``bench`` importable too
from aiokafka import AIOKafkaProducer
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bench.kafka_bench import broker, worker_argv
from bench.kafka_measure import PLAN, Rate, known_groups, produce_file, running, settings_for, watch_commits
from bench.telemetry_file import write_file
from gatekeeper.core.otlp import OtlpDecoder
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.planfile import load_plan
from gatekeeper.shell.kafka_admin import ensure_topics, gatekeeper_topics
from gatekeeper.shell.kafka_settings import KafkaSettings
from gatekeeper.shell.replay import Format, replay
from gatekeeper.shell.worker.processor import Processor
from gatekeeper.shell.worker.records import Record
from gatekeeper.shell.worker.routing import Topics

WORKER_CMD = (
    "{python} -m gatekeeper.shell.cli worker --plan {plan} --bootstrap {bootstrap} --telemetry-topic {telemetry} "
    "--decisions-topic {decisions} --dlq-topic {dlq} --breaches-topic {breaches} --app-id {app_id}"
)


def _attribute(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_batches(lines: list[bytes], per_batch: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(protobuf batches, OTLP/JSON batches, their Kafka keys) of the requests in ``lines``, per gate."""
    by_gate: dict[tuple[str, str], list[dict[str, object]]] = {}
    for line in lines:
        record = json.loads(line)
        by_gate.setdefault((record["region"], record["tier"]), []).append(record)
    protos, jsons, keys = [], [], []
    n = 0
    for (region, tier), records in by_gate.items():
        for i in range(0, len(records), per_batch):
            request = ExportTraceServiceRequest()
            rs = request.resource_spans.add()
            resource = {"service.name": "learner-analyzer", "cloud.region": region, "rollout.tier": tier}
            rs.resource.attributes.extend(_attribute(k, v) for k, v in {**resource, "service.version": "2.4"}.items())
            scope = rs.scope_spans.add()
            scope.scope.name = "opentelemetry.instrumentation.flask"
            for record in records[i : i + per_batch]:
                n += 1
                end = round(float(str(record["ts"])) * 1000) * 1_000_000
                code = int(str(record["status"]))
                span = scope.spans.add(
                    trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), name="POST /v1/analyze",
                    kind=Span.SPAN_KIND_SERVER, end_time_unix_nano=end,
                    start_time_unix_nano=end - round(float(str(record["latency_ms"])) * 1_000_000),
                )  # fmt: skip
                span.attributes.extend(
                    [
                        _attribute("http.request.method", "POST"),
                        _attribute("url.path", "/v1/analyze"),
                        _attribute("http.route", "/v1/analyze"),
                        _attribute("server.address", "analyzer.internal"),
                        _attribute("network.protocol.version", "1.1"),
                        _attribute("http.response.status_code", code),
                    ]
                )
                if code >= 500:
                    span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR))
            protos.append(request.SerializeToString())
            jsons.append(
                json.dumps(MessageToDict(request, use_integers_for_enums=True), separators=(",", ":")).encode()
            )
            keys.append(f"{region}/{tier}".encode())
    return protos, jsons, keys


def best_rate(events: int, work: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return events / best


def decode_phase(lines: list[bytes], protos: list[bytes], jsons: list[bytes], rounds: int) -> dict[str, float]:
    gates = Pipeline(load_plan(PLAN)).keys
    block = b"\n".join(lines)
    v1, otlp = Pipeline(load_plan(PLAN)).decoder(), OtlpDecoder(gates)
    rates: dict[str, list[float]] = {"json contract": [], "otlp protobuf": [], "otlp json": []}
    for _ in range(rounds):  # interleaved: a busy spell of the machine hits all three alike
        rates["json contract"].append(best_rate(len(lines), lambda: v1.decode_block(block), 1))
        rates["otlp protobuf"].append(best_rate(len(lines), lambda: otlp.decode(protos), 1))
        rates["otlp json"].append(best_rate(len(lines), lambda: otlp.decode(jsons), 1))
    return {name: max(values) for name, values in rates.items()}


def worker_phase(lines: list[bytes], protos: list[bytes], rounds: int) -> dict[str, float]:
    plan = load_plan(PLAN)
    gates = Pipeline(plan).keys
    topics = Topics("telemetry", "panes", "decisions", "breaches", "dlq", 1)
    per_poll = max(1, round(10_000 * len(protos) / len(lines)))

    def run_json() -> None:
        processor = Processor(plan, topics, lambda _key: None, lambda _key: None)
        decoder = Pipeline(plan).decoder()
        for start in range(0, len(lines), 10_000):
            records = [Record("telemetry", 0, start + i, None, v) for i, v in enumerate(lines[start : start + 10_000])]
            batch = decoder.decode([r.value or b"" for r in records], first_position=0)
            processor.flush_polled([("telemetry", 0, records)], decoded=batch)

    def run_otlp() -> None:
        processor = Processor(plan, topics, lambda _key: None, lambda _key: None)
        decoder = OtlpDecoder(gates)
        for start in range(0, len(protos), per_poll):
            records = [
                Record("telemetry", 0, start + i, None, v) for i, v in enumerate(protos[start : start + per_poll])
            ]
            batch = decoder.decode([r.value or b"" for r in records], first_position=0)
            processor.flush_polled([("telemetry", 0, records)], decoded=batch)

    rates: dict[str, list[float]] = {"json contract": [], "otlp protobuf": []}
    for _ in range(rounds):
        rates["json contract"].append(best_rate(len(lines), run_json, 1))
        rates["otlp protobuf"].append(best_rate(len(lines), run_otlp, 1))
    return {name: max(values) for name, values in rates.items()}


def replay_phase(files: dict[str, tuple[Path, Format]], events: int, jobs: int, rounds: int) -> dict[str, float]:
    plan = load_plan(PLAN)
    rates: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, (path, fmt) in files.items():
            began = time.perf_counter()
            with path.open("rb") as source, open("/dev/null", "wb") as sink:
                summary = replay(plan, source, sink, jobs=jobs, input_format=fmt)
            assert summary.events == events, (name, summary.events, events)
            rates[name].append(events / (time.perf_counter() - began))
    return {name: max(values) for name, values in rates.items()}


async def produce_batches(settings: KafkaSettings, topic: str, keys: list[bytes], values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        **settings.aiokafka_kwargs(),
        acks="all", linger_ms=5, max_request_size=4 << 20, max_batch_size=1 << 20,
    )  # fmt: skip
    await producer.start()
    try:
        for start in range(0, len(values), 500):
            chunk = zip(keys[start : start + 500], values[start : start + 500], strict=True)
            futures = [await producer.send(topic, value, key=key) for key, value in chunk]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def kafka_phase(
    args: argparse.Namespace, jsonl: Path, keys: list[bytes], protos: list[bytes], workdir: Path
) -> dict[str, Rate | str]:
    run = uuid.uuid4().hex[:8]
    out: dict[str, Rate | str] = {}
    with broker(args) as bootstrap:
        for name, extra in (("json contract", ""), ("otlp protobuf", " --telemetry-format otlp")):
            phase = "json" if extra == "" else "otlp"
            settings = settings_for(bootstrap, run, phase)
            await ensure_topics(settings, gatekeeper_topics(settings))
            if phase == "json":
                await produce_file(settings, jsonl)
                total = args.events
            else:
                await produce_batches(settings, settings.topics.telemetry, keys, protos)
                total = len(protos)
            ignore = await known_groups(settings)
            argv = worker_argv(WORKER_CMD + extra, settings, f"bench-{run}-{phase}-worker", workdir)
            with running(f"{phase} worker", argv, workdir) as proc:
                rate = await watch_commits(settings, proc, total, args.phase_seconds, ignore)
            if phase == "otlp":  # committed offsets count batches: as requests
                per = args.events / len(protos)
                rate = Rate(round(rate.events * per), rate.seconds, round(rate.done * per), args.events, rate.commits,
                            rate.startup_s, rate.peak_rss_mb, rate.cpu_share, rate.with_startup)  # fmt: skip
            out[name] = rate
            print(f"  (k) {name}: {rate.text()}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--spans", type=int, default=100, help="spans per trace batch (default 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", default="drwk", help="d: decoding, r: replay, w: worker w/o Kafka, k: on Kafka")
    parser.add_argument("--phase-seconds", type=float, default=150.0)
    parser.add_argument("--bootstrap", help="an existing cluster instead of a local broker")
    args = parser.parse_args(argv)
    gates = Pipeline(load_plan(PLAN)).keys
    with tempfile.TemporaryDirectory(prefix="otlp-bench-") as tmp:
        workdir = Path(tmp)
        jsonl = workdir / "telemetry.jsonl"
        write_file(jsonl, args.events, int(args.days * 86_400), gates)
        lines = jsonl.read_bytes().splitlines()
        began = time.perf_counter()
        protos, jsons, keys = build_batches(lines, args.spans)
        print(f"  {len(lines):,} requests, {len(protos):,} batches of <= {args.spans} spans "
              f"(protobuf {sum(map(len, protos)) / len(lines):.0f} B/span, OTLP/JSON "
              f"{sum(map(len, jsons)) / len(lines):.0f} B/span, contract v1 {jsonl.stat().st_size / len(lines):.0f} "
              f"B/request; built in {time.perf_counter() - began:.0f} s)", file=sys.stderr)  # fmt: skip
        if "d" in args.phases:
            rates = decode_phase(lines, protos, jsons, args.rounds)
            base = rates["json contract"]
            print("(d) decoding into columns, best of rounds:")
            for name, rate in rates.items():
                print(f"    {name:14} {rate:>12,.0f} events/s  {rate / base:.2f}x")
        if "r" in args.phases:
            proto_file, json_file = workdir / "spans.pb", workdir / "spans.jsonl"
            proto_file.write_bytes(b"".join(len(p).to_bytes(4, "big") + p for p in protos))
            json_file.write_bytes(b"\n".join(jsons) + b"\n")
            files: dict[str, tuple[Path, Format]] = {
                "json contract": (jsonl, "json"), "otlp protobuf": (proto_file, "otlp-proto"),
                "otlp json": (json_file, "otlp-json"),
            }  # fmt: skip
            for jobs in (1, 2):
                rates = replay_phase(files, args.events, jobs, args.rounds)
                base = rates["json contract"]
                print(f"(r) replay --jobs {jobs}, best of rounds:")
                for name, rate in rates.items():
                    print(f"    {name:14} {rate:>12,.0f} events/s  {rate / base:.2f}x")
        if "w" in args.phases:
            rates = worker_phase(lines, protos, args.rounds)
            base = rates["json contract"]
            print("(w) the worker's processing of polls (one partition, no broker), best of rounds:")
            for name, rate in rates.items():
                print(f"    {name:14} {rate:>12,.0f} events/s  {rate / base:.2f}x")
        if "k" in args.phases:
            with contextlib.suppress(KeyboardInterrupt):
                results = asyncio.run(kafka_phase(args, jsonl, keys, protos, workdir))
                base_rate = results["json contract"]
                print("(k) the worker through Kafka (default --jobs), committed offsets:")
                for name, result in results.items():
                    if isinstance(result, Rate) and isinstance(base_rate, Rate):
                        print(f"    {name:14} {result.text()}  {result.per_s / base_rate.per_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
