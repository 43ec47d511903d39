"""Event time: integer milliseconds since the epoch, and RFC 3339 text for humans and JSON."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_MS_PER_UNIT = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def format_ms(ms: int) -> str:
    """RFC 3339 UTC text for an epoch-milliseconds instant, e.g. ``2025-10-19T00:00:00Z``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ms % 1000
    return f"{text}.{frac:03d}Z" if frac else f"{text}Z"


def parse_instant(text: str) -> int:
    """Epoch milliseconds from RFC 3339 text; raises ValueError naming the problem."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (RFC 3339 requires one)")
    return round(dt.timestamp() * 1000)


def parse_duration(text: str | int | float) -> int:
    """Milliseconds from ``"90s"``, ``"5m"``, ``"1h"``, ``"2w"`` (a bare number is seconds)."""
    if isinstance(text, bool):
        raise ValueError("a duration must be text such as '5m' or a number of seconds")
    if isinstance(text, int | float):
        if not math.isfinite(text):
            raise ValueError(f"a duration must be finite, not {text!r}")
        return round(text * 1000)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use a number and a unit: ms, s, m, h, d, w; e.g. '5m')")
    return round(float(match.group(1)) * _MS_PER_UNIT[match.group(2)])


def format_duration(ms: int) -> str:
    """The shortest exact text for a duration, e.g. 1209600000 -> ``2w``."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _MS_PER_UNIT[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
