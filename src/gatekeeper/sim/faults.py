"""Invalid telemetry records, one of each kind a real pipeline sees, for exercising the decoder's rejections.

Every record here breaks contract v1 in exactly one way (so each maps to one rejection reason), apart from
the unknown region / tier ones, which are valid JSON and valid records for a plan that is not ours.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np
import numpy.typing as npt

Fault = Callable[[dict[str, object]], bytes]

_encode = msgspec.json.encode


def _truncated(rec: dict[str, object]) -> bytes:
    raw = _encode(rec)
    return raw[: len(raw) // 2]


def _without(name: str) -> Fault:
    def fault(rec: dict[str, object]) -> bytes:
        return _encode({k: v for k, v in rec.items() if k != name})

    return fault


def _with(name: str, value: object) -> Fault:
    def fault(rec: dict[str, object]) -> bytes:
        return _encode(rec | {name: value})

    return fault


FAULTS: dict[str, Fault] = {
    "bad_json": _truncated,
    "not_an_object": lambda rec: _encode([rec["ts"], rec["latency_ms"]]),
    "missing_ts": _without("ts"),
    "missing_latency": _without("latency_ms"),
    "missing_region": _without("region"),
    "no_outcome": _without("status"),  # neither status nor error
    "negative_latency": _with("latency_ms", -12.5),
    "latency_as_text": _with("latency_ms", "fast"),
    "status_out_of_range": _with("status", 999),
    "ts_garbage": _with("ts", "yesterday"),
    "ts_out_of_range": _with("ts", 4_200_000_000.0),  # year 2103
    "unknown_tier": _with("tier", "ramp-99"),
    "unknown_region": _with("region", "ap-south"),
}
"""Kind -> how to spoil a valid record (as a dict) into the bytes of an invalid one."""


def malformed(ts_ms: npt.NDArray[np.int64], gates: list[tuple[str, str]], rng: np.random.Generator) -> list[bytes]:
    """One invalid record per timestamp, of a uniformly drawn kind, about a uniformly drawn gate."""
    n = ts_ms.size
    if n == 0:
        return []
    kinds = list(FAULTS.values())
    which = rng.integers(0, len(kinds), n).tolist()
    gate = rng.integers(0, len(gates), n).tolist()
    latency = np.round(rng.lognormal(np.log(20.0), 0.4, n), 3).tolist()
    out: list[bytes] = []
    for k, g, t, lat in zip(which, gate, ts_ms.tolist(), latency, strict=True):
        region, tier = gates[g]
        rec: dict[str, object] = {
            "ts": t / 1000,
            "region": region,
            "tier": tier,
            "latency_ms": lat,
            "status": 200,
        }
        out.append(kinds[k](rec))
    return out
