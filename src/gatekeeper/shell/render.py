"""One readable, coloured line per decision (rich), shared by ``tail`` and ``demo``; one per breach event."""

from __future__ import annotations

from rich.text import Text

from gatekeeper.core.breach import Breach
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


def breach_line(b: Breach) -> Text:
    """One line: time, BREACH and its change and severity, region/tier, objective, the rules that fired."""
    line = Text(no_wrap=True)
    line.append(b.at, style="dim")
    line.append("  ")
    line.append(f"{'BREACH':<7}", style="bold magenta")
    line.append("  ")
    line.append(f"{b.region}/{b.tier:<{GATE_WIDTH - len(b.region) - 1}}", style="bold")
    line.append(f"  {b.change} {b.severity}", style="magenta")
    line.append(f"  {b.objective}")
    for w in b.windows:
        line.append(f"  {w.long}/{w.short} burning {w.long_burn:g}x/{w.short_burn:g}x (>= {w.burn_rate:g}x)")
    line.append(f"  budget used {b.budget_consumed:.0%}", style="dim")
    return line
