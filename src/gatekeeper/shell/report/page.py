"""The rollout report as one self-contained HTML page: plotly figures (plotly.js embedded once, so the page opens
without a network), one per gate, and the rollout summary as HTML tables.

Per gate, four rows on one time axis: error rate, P99 latency and uptime at each decision with their confidence
bands and thresholds; soak progress (with the plan) and holds. Every decision is a marker whose hover shows its
kind, reason code and reasons. Each chart's mode bar has plotly's "download plot as a PNG" button
(``toImageButtonOptions``: named after the gate, twice the screen resolution, for tickets and postmortems).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gatekeeper.core.decision import Decision
from gatekeeper.core.timefmt import format_duration, format_ms
from gatekeeper.shell.report.timeline import GateTimeline, Summary, at_ms, soak_progress

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "hold": "#ef6c00", "release": "#1565c0", "pending": "#757575"}
SYMBOLS = {"pass": "circle", "fail": "x", "hold": "square", "release": "triangle-up", "pending": "diamond"}
ROWS = ("Error rate", "P99 latency (ms)", "Uptime", "Soak progress and holds")
_METRICS = (  # row, value, lower, upper, criterion-name prefix
    (1, "error_rate", "error_rate_lower", "error_rate_upper", "error_rate"),
    (2, "p99_ms", "p99_lower_ms", "p99_upper_ms", "p99"),
    (3, "uptime", None, None, "uptime"),
)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _hover(d: Decision) -> str:
    reasons = "<br>".join(html.escape(r) for r in d.reasons[:4]) or "(no reason given)"
    code = f" ({html.escape(d.reason_code)})" if d.reason_code else ""
    return f"<b>{d.decision}</b>{code} at {d.at}<br>{reasons}"


def gate_figure(gate: GateTimeline) -> go.Figure:
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.05, subplot_titles=ROWS)
    ends = [_time(at_ms(gate.decisions[0])), _time(at_ms(gate.decisions[-1]))]
    for period in gate.periods:
        ends += [_time(period.start_ms), _time(period.end_ms)]
    span = [min(ends), max(ends)]
    for row, value, lower, upper, prefix in _METRICS:
        seen = [d for d in gate.decisions if getattr(d.metrics, value) is not None]
        x = [_time(at_ms(d)) for d in seen]
        if lower and upper and seen:
            low = [getattr(d.metrics, lower) for d in seen]
            high = [getattr(d.metrics, upper) for d in seen]
            fig.add_trace(
                go.Scatter(x=x, y=low, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"), row, 1
            )
            fig.add_trace(
                go.Scatter(
                    x=x, y=high, mode="lines", line={"width": 0}, fill="tonexty", fillcolor="rgba(21,101,192,0.15)",
                    name="confidence band", showlegend=row == 1, hoverinfo="skip",
                ),
                row, 1,
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x, y=[getattr(d.metrics, value) for d in seen], mode="lines+markers", line={"color": "#1565c0"},
                marker={"color": [COLORS[d.decision] for d in seen], "size": 9,
                        "symbol": [SYMBOLS[d.decision] for d in seen]},
                hovertext=[_hover(d) for d in seen], hoverinfo="text", name=ROWS[row - 1], showlegend=False,
            ),
            row, 1,
        )  # fmt: skip
        thresholds = sorted(
            {(c.threshold, c.scope) for d in gate.decisions for c in d.criteria if c.name.startswith(prefix)}
        )
        for threshold, scope in thresholds:
            fig.add_trace(
                go.Scatter(
                    x=span, y=[threshold, threshold], mode="lines",
                    line={"color": "#c62828", "dash": "dash", "width": 1}, name=f"threshold ({scope})",
                    showlegend=False, hovertext=f"{prefix} threshold {threshold:g} ({scope})", hoverinfo="text",
                ),
                row, 1,
            )  # fmt: skip
    _soak_row(fig, gate)
    fig.update_layout(
        height=780, margin={"l": 60, "r": 20, "t": 100, "b": 40}, hovermode="closest",
        title={"text": f"{html.escape(gate.region)} / {html.escape(gate.tier)} (phase {html.escape(gate.phase)})",
               "y": 0.985, "yanchor": "top"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "xanchor": "right", "x": 1},
    )  # fmt: skip
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], title_text="of the soak", row=4, col=1)
    return fig


def _soak_row(fig: go.Figure, gate: GateTimeline) -> None:
    """Soak periods as rising lines (progress, when the plan gives the soak length), holds as shaded spans over
    every row, and every decision as a marker with its reasons."""
    for period in gate.periods:
        start, end = _time(period.start_ms), _time(period.end_ms)
        if period.kind == "hold":
            fig.add_vrect(x0=start, x1=end, fillcolor=COLORS["hold"], opacity=0.12, line_width=0)
            fig.add_trace(
                go.Scatter(
                    x=[start, end], y=[0.5, 0.5], mode="lines", line={"color": COLORS["hold"], "width": 6},
                    hovertext=f"held {format_duration(period.end_ms - period.start_ms)}: {html.escape(period.cause)}",
                    hoverinfo="text", showlegend=False,
                ),
                4, 1,
            )  # fmt: skip
        else:
            progress = min(1.0, (period.end_ms - period.start_ms) / gate.soak_ms) if gate.soak_ms else 1.0
            fig.add_trace(
                go.Scatter(
                    x=[start, end], y=[0.0, progress], mode="lines", line={"color": "#9e9e9e", "width": 3},
                    hovertext=f"soak {period.cause}: {format_duration(period.end_ms - period.start_ms)}",
                    hoverinfo="text", showlegend=False,
                ),
                4, 1,
            )  # fmt: skip
    for kind, color in COLORS.items():
        picked = [d for d in gate.decisions if d.decision == kind]
        if not picked:
            continue
        y = [soak_progress(gate, d) for d in picked]
        fig.add_trace(
            go.Scatter(
                x=[_time(at_ms(d)) for d in picked], y=[0.5 if v is None else v for v in y], mode="markers",
                marker={"color": color, "symbol": SYMBOLS[kind], "size": 12}, name=kind,
                hovertext=[_hover(d) for d in picked], hoverinfo="text",
            ),
            4, 1,
        )  # fmt: skip


def _summary_html(summary: Summary, gates: list[GateTimeline]) -> str:
    rows = []
    for region, tier in summary.regions.items():
        region_gates = [g for g in gates if g.region == region]
        held = sum(1 for h in summary.holds if h.region == region)
        lost = format_duration(summary.lost_ms[region]) if summary.lost_ms[region] else "0"
        rows.append(
            f"<tr><td>{html.escape(region)}</td><td>{html.escape(tier or '(none passed)')}</td>"
            f"<td>{len(region_gates)}</td><td>{held}</td><td>{lost}</td></tr>"
        )
    holds = [
        f"<tr><td>{html.escape(h.region)}</td><td>{html.escape(h.tier)}</td><td>{format_ms(h.start_ms)}</td>"
        f"<td>{format_ms(h.end_ms)}{'' if h.released else ' (planned; no release seen)'}</td>"
        f"<td>{format_duration(h.end_ms - h.start_ms)}</td><td>{html.escape(h.cause)}</td></tr>"
        for h in summary.holds
    ]
    hold_table = (
        "<table id='holds'><tr><th>region</th><th>tier</th><th>held from</th><th>until</th><th>time lost</th>"
        f"<th>cause</th></tr>{''.join(holds)}</table>"
        if holds
        else "<p id='holds'>No holds.</p>"
    )
    return (
        "<h2>Rollout summary</h2><table id='summary'><tr><th>region</th><th>tier reached</th><th>gates decided</th>"
        f"<th>holds</th><th>time lost to holds</th></tr>{''.join(rows)}</table>"
        f"<h2>Holds and their causes</h2>{hold_table}"
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #212121; }
table { border-collapse: collapse; margin-bottom: 16px; }
th, td { border: 1px solid #bdbdbd; padding: 4px 10px; text-align: left; font-size: 14px; }
th { background: #eeeeee; }
section.gate { margin-top: 28px; }
"""


def render(gates: list[GateTimeline], summary: Summary, title: str) -> str:
    """The whole page. plotly.js is embedded in the first chart only; the others use it."""
    charts = []
    for i, gate in enumerate(gates):
        name = f"gatekeeper-{gate.region}-{gate.tier}"
        config: dict[str, Any] = {
            "displaylogo": False,
            "modeBarButtonsToRemove": ["sendChartToCloud", "sendDataToCloud"],  # the page stays offline
            "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2},
        }
        div = gate_figure(gate).to_html(
            full_html=False, include_plotlyjs=i == 0, config=config, div_id=f"gate-{gate.region}-{gate.tier}"
        )
        charts.append(f"<section class='gate'>{div}</section>")
    period = f"{format_ms(summary.first_ms)} .. {format_ms(summary.last_ms)}" if gates else "no decisions"
    counts: dict[str, int] = {}
    for gate in gates:
        for d in gate.decisions:
            counts[d.decision] = counts.get(d.decision, 0) + 1
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p id='period'>Decisions from {period}: {kinds}. Hover a marker for its reasons; each chart's camera "
        "button downloads it as a PNG.</p>"
        f"{_summary_html(summary, gates)}<h2>Gates</h2>{''.join(charts)}</body></html>"
    )
