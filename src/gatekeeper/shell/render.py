"""One readable, coloured line per decision (rich), shared by ``demo`` and ``tail``."""

from __future__ import annotations

from rich.text import Text

from gatekeeper.core.decision import Decision

STYLES = {
    "pass": "bold green",
    "fail": "bold red",
    "hold": "bold yellow",
    "release": "bold cyan",
    "pending": "blue",
}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.3g}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}ms"


def decision_line(d: Decision) -> Text:
    """``2025-11-09 00:00  PASS     us-east/canary  error 0.04% (<= 0.05%)  p99 34ms (<= 36ms)  n=605k  why``"""
    m = d.metrics
    line = Text()
    line.append(f"{d.at[:16].replace('T', ' ')}  ", style="dim")
    line.append(f"{d.decision.upper():<8}", style=STYLES.get(d.decision, ""))
    line.append(f" {d.region}/{d.tier:<12}", style="bold")
    if m.requests:
        line.append(f" err {_pct(m.error_rate)} (<= {_pct(m.error_rate_upper)})")
        line.append(f"  p99 {_ms(m.p99_ms)} (<= {_ms(m.p99_upper_ms)})")
        line.append(f"  n={m.requests:,}", style="dim")
    if d.hold_until:
        line.append(f"  until {d.hold_until[:16].replace('T', ' ')}", style="yellow")
    if d.reasons:
        line.append(f"  {d.reasons[0]}", style="italic")
    return line
