"""Event time: epoch milliseconds <-> RFC 3339 text, and duration text <-> milliseconds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core.timefmt import format_duration, format_ms, parse_duration, parse_instant

from .helpers import HOUR, MINUTE, T0, T0_TEXT

EPOCH_2000_MS = 946_684_800_000
EPOCH_2100_MS = 4_102_444_800_000


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (T0, T0_TEXT),
        (T0 + 1, "2025-10-19T00:00:00.001Z"),
        (T0 + 999, "2025-10-19T00:00:00.999Z"),
        (T0 + HOUR + 1_500, "2025-10-19T01:00:01.500Z"),
        (0, "1970-01-01T00:00:00Z"),
        (-500, "1969-12-31T23:59:59.500Z"),
    ],
)
def test_format_ms(ms: int, text: str) -> None:
    """format_ms gives UTC RFC 3339 text with a Z, and milliseconds only when there are any."""
    assert text == format_ms(ms)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        (T0_TEXT, T0),
        ("2025-10-19T00:00:00z", T0),
        ("2025-10-19T02:00:00+02:00", T0),
        ("2025-10-18T19:00:00-05:00", T0),
        ("2025-10-19T00:00:00.250Z", T0 + 250),
        ("2025-10-19T00:00:00+00:00", T0),
    ],
)
def test_parse_instant(text: str, ms: int) -> None:
    """parse_instant reads RFC 3339 with Z (either case) or a numeric offset into epoch milliseconds."""
    assert ms == parse_instant(text)


def test_parse_instant_rejects_naive_time() -> None:
    """A timestamp without a UTC offset is ambiguous and rejected, naming the offset as the problem."""
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_instant("2025-10-19T00:00:00")


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-01T00:00:00Z", "2025-10-19 nonsense"])
def test_parse_instant_rejects_garbage(text: str) -> None:
    """Text that is not a timestamp raises ValueError quoting the text."""
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        parse_instant(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=EPOCH_2000_MS, max_value=EPOCH_2100_MS))
def test_instant_round_trip(ms: int) -> None:
    """Every millisecond instant of 2000..2100 survives format_ms then parse_instant exactly."""
    assert ms == parse_instant(format_ms(ms))


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("250ms", 250),
        ("90s", 90_000),
        ("5m", 5 * MINUTE),
        ("1h", HOUR),
        ("1.5h", 90 * MINUTE),
        ("2d", 48 * HOUR),
        ("2w", 14 * 24 * HOUR),
        (" 3m ", 3 * MINUTE),
        ("10 m", 10 * MINUTE),
        (90, 90_000),
        (1.5, 1_500),
    ],
)
def test_parse_duration(text: str | int | float, ms: int) -> None:
    """Durations are a number and a unit (ms, s, m, h, d, w); a bare number is seconds."""
    assert ms == parse_duration(text)


@pytest.mark.parametrize("text", ["3 weeks", "5", "5 min", "-5m", "m", "1e3s", "", "5M"])
def test_parse_duration_rejects_bad_text(text: str) -> None:
    """Duration text without a known unit is rejected with a message that quotes it and lists the units."""
    with pytest.raises(ValueError, match="not a duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "ms, s, m, h, d, w" in str(info.value)


def test_parse_duration_rejects_bool() -> None:
    """A YAML boolean (true/false) is not taken for 1 or 0 seconds."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (14 * 24 * HOUR, "2w"),
        (3 * 24 * HOUR, "3d"),
        (HOUR, "1h"),
        (90 * MINUTE, "90m"),
        (90_000, "90s"),
        (1_500, "1500ms"),
        (0, "0ms"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    """format_duration picks the largest unit that divides the duration exactly."""
    assert text == format_duration(ms)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=10**13))
def test_duration_round_trip(ms: int) -> None:
    """Every positive duration survives format_duration then parse_duration exactly."""
    assert ms == parse_duration(format_duration(ms))
