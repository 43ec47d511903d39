"""One readable, coloured line per decision (rich), shared by ``tail`` and ``demo``."""

from __future__ import annotations

from rich.text import Text

from gatekeeper.core.decision import Decision

STYLES = {
    "pass": "bold green",
    "fail": "bold red",
    "hold": "bold dark_orange",
    "release": "bold cyan",
    "pending": "blue",
}
GATE_WIDTH = 20  # region/tier column


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def decision_line(d: Decision) -> Text:
    """One line: time, kind (coloured), region/tier, hold end, key metrics, first reason."""
    m = d.metrics
    line = Text(no_wrap=True)
    line.append(d.at, style="dim")
    line.append("  ")
    line.append(f"{d.decision.upper():<7}", style=STYLES.get(d.decision, ""))
    line.append("  ")
    line.append(f"{d.region}/{d.tier:<{GATE_WIDTH - len(d.region) - 1}}", style="bold")
    line.append(f"  {d.phase:<8}", style="dim")
    if d.decision == "hold" and d.hold_until:
        line.append("  until ")
        line.append(d.hold_until, style=STYLES["hold"])
    if m.requests:
        line.append(f"  requests {m.requests:,}")
    if m.error_rate is not None:
        line.append(f"  errors {_pct(m.error_rate)} [{_pct(m.error_rate_lower)}, {_pct(m.error_rate_upper)}]")
    if m.p99_ms is not None:
        line.append(f"  p99 {_ms(m.p99_ms)} ms (<= {_ms(m.p99_upper_ms)})")
    if d.reasons:
        line.append(f"  {d.reasons[0]}", style="italic")
    return line
