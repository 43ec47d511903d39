"""Writes a large telemetry JSONL file for benchmarks: N events over a span of event time, spread over the
plan's gates, in time order, contract v1 (epoch-seconds ts, status). Deterministic for a seed."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

CHUNK = 200_000


def write_file(path: Path, events: int, span_s: int, gates: list[tuple[str, str]], seed: int = 1) -> int:
    """Write ``events`` records over ``span_s`` seconds starting 2025-10-19; returns bytes written."""
    rng = np.random.default_rng(seed)
    start = 1_760_832_000.0
    step = span_s / events
    written = 0
    with path.open("wb") as out:
        for first in range(0, events, CHUNK):
            n = min(CHUNK, events - first)
            ts = start + (first + np.arange(n)) * step + rng.random(n) * step
            gate = rng.integers(0, len(gates), n)
            latency = rng.lognormal(np.log(18.0), 0.35, n)
            status = np.where(rng.random(n) < 0.0005, 503, 200)
            lines = [
                f'{{"ts":{t:.3f},"region":"{gates[g][0]}","tier":"{gates[g][1]}","latency_ms":{lat:.3f},'
                f'"status":{s},"request_id":"r-{first + i}"}}\n'
                for i, (t, g, lat, s) in enumerate(
                    zip(ts.tolist(), gate.tolist(), latency.tolist(), status.tolist(), strict=True)
                )
            ]
            data = "".join(lines).encode()
            out.write(data)
            written += len(data)
    return written


def lines_of(events: int, days: float, gates: list[tuple[str, str]]) -> list[bytes]:
    """The file's lines (``write_file`` through a temporary file), for benches that feed records by hand."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "telemetry.jsonl"
        write_file(path, events, int(days * 86_400), gates)
        return path.read_bytes().splitlines()


def main() -> None:
    from gatekeeper.planfile import load_plan

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--days", type=float, default=21)
    parser.add_argument("--plan", default="config/rollout-plan.yaml")
    args = parser.parse_args()
    plan = load_plan(args.plan)
    gates = [(region, tier.name) for region, _phase, tier in plan.gates()]
    size = write_file(args.path, args.events, int(args.days * 86_400), gates)
    print(f"wrote {args.events} events, {size / 1e6:.1f} MB, to {args.path}")


if __name__ == "__main__":
    main()
