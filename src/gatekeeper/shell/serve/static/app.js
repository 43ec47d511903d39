// gatekeeper status page: draws /status.json (gatekeeper serve) and refreshes itself every REFRESH_MS.
"use strict";
const REFRESH_MS = 5000;
let selected = null;
let charts = [];

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
};

// soak progress from the worker's gate state: share elapsed (or time, when the length is unknown) and requests
function soakText(soak) {
  const done = soak.fraction === null ? duration(soak.elapsed_seconds) : `${Math.floor(soak.fraction * 100)}% of soak`;
  return `${done} · ${soak.requests} req · since ${soak.since}`;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600), m = Math.floor((seconds % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m`;
}

function renderGrid(board) {
  const grid = document.getElementById("grid");
  grid.replaceChildren();
  grid.append(el("tr", {}, el("th", {}, "tier"), ...board.regions.map((r) => el("th", {}, r))));
  const byKey = Object.fromEntries(board.gates.map((g) => [`${g.region}/${g.tier}`, g]));
  for (const tier of board.tiers) {
    const row = el("tr", {}, el("th", {}, tier));
    for (const region of board.regions) {
      const g = byKey[`${region}/${tier}`];
      if (!g) { row.append(el("td")); continue; }
      const key = `${region}/${tier}`;
      const detail = g.state === "held" ? `until ${g.hold_until ?? "…"} · ${duration(g.hold_seconds_left)} left`
        : g.state === "soaking" && g.soak ? soakText(g.soak)
        : g.latest ? `${g.latest.decision} at ${g.latest.at}` : "no decision yet";
      const cell = el("div", { class: `cell ${g.state}${key === selected ? " selected" : ""}`, "data-gate": key, "data-state": g.state,
        onclick: () => { selected = key; refresh(); } }, el("div", { class: "s" }, g.state), el("div", { class: "d" }, detail));
      row.append(el("td", {}, cell));
    }
    grid.append(row);
  }
}

function renderHolds(holds) {
  const list = document.getElementById("holds");
  list.replaceChildren(...(holds.length ? holds.map((h) => el("li", { class: "hold", "data-gate": `${h.region}/${h.tier}` },
    el("span", { class: "state held" }, "held"), el("b", {}, `${h.region}/${h.tier}`),
    ` until ${h.hold_until ?? "…"} (${duration(h.seconds_left)} left at the latest decision's time)`, el("br"),
    el("span", { class: "muted" }, h.why))) : [el("li", { class: "muted" }, "no active hold")]));
}

function renderCheckpoints(data) {
  const table = document.getElementById("checkpoints");
  const outcomes = {};
  for (const o of data.outcomes) (outcomes[`${o.tier}`] ??= []).push(o);
  table.replaceChildren(el("tr", {}, el("th", {}, "tier"), el("th", {}, "planned (after soak start)"), el("th", {}, "outcomes")));
  for (const tier of data.board.tiers) {
    const points = (data.checkpoints[tier] ?? []).map((p) => `${p.name} +${p.after}`).join(" · ");
    const done = (outcomes[tier] ?? []).map((o) => el("div", {}, el("span", { class: `state ${o.decision === "pass" ? "passed" : "pending"}` },
      o.decision === "pass" ? "GO" : "NO-GO"), `${o.region} ${o.name} at ${o.at}`));
    table.append(el("tr", {}, el("td", {}, tier), el("td", {}, points), el("td", {}, ...(done.length ? done : ["—"]))));
  }
}

function renderDecisions(decisions) {
  const table = document.getElementById("decisions");
  table.replaceChildren(el("tr", {}, ...["event time", "gate", "decision", "reasons"].map((h) => el("th", {}, h))));
  for (const d of decisions) {
    const cls = { pass: "passed", fail: "held", hold: "held", release: "soaking", pending: "pending" }[d.decision];
    table.append(el("tr", {}, el("td", {}, d.at), el("td", {}, `${d.region}/${d.tier}`),
      el("td", {}, el("span", { class: `state ${cls}` }, d.decision)), el("td", {}, d.reasons.join("; "))));
  }
}

function renderCalendar(cal) {
  const summary = document.getElementById("calendar-summary"), table = document.getElementById("calendar");
  if (!cal) { summary.replaceChildren("the plan has no calendar"); table.replaceChildren(); return; }
  const [low, high] = cal.contingency_weeks, [usedOfHigh, usedOfLow] = cal.buffer_used;
  const slip = cal.slip_days > 0 ? el("span", { class: "late" }, `${cal.slip_days.toFixed(1)} days late`) : el("span", { class: "early" }, "on time");
  summary.replaceChildren(el("div", {}, `As of ${cal.as_of ?? "—"}: `, slip, ` · planned end ${cal.planned_end} · projected end `,
    el("b", { id: "projected-end" }, cal.projected_end)),
    el("div", { class: "muted" }, `contingency buffer used: ${(usedOfHigh * 100).toFixed(0)}% of ${high} weeks (${(usedOfLow * 100).toFixed(0)}% of ${low} weeks)`),
    el("div", { class: "bar" }, el("div", { style: `width:${Math.min(100, usedOfHigh * 100)}%` })));
  table.replaceChildren(el("tr", {}, ...["tier", "planned", "actual (first evidence → GO)", "status", "slip vs planned GO", "holds"].map((h) => el("th", {}, h))));
  for (const t of cal.tiers) {
    const cls = { done: "passed", held: "held", "in progress": "soaking", upcoming: "waiting" }[t.status];
    const slipText = t.slip_days === null ? "—" : t.slip_days > 0 ? `+${t.slip_days.toFixed(1)} d` : `${t.slip_days.toFixed(1)} d`;
    table.append(el("tr", {}, el("td", {}, t.tier), el("td", {}, `${t.planned_start} → ${t.planned_end}`),
      el("td", {}, t.actual_start ? `${t.actual_start} → ${t.actual_end ?? "…"}` : "—"),
      el("td", {}, el("span", { class: `state ${cls}` }, t.status)),
      el("td", { class: t.slip_days > 0 ? "late" : "" }, slipText), el("td", {}, t.holds)));
  }
}

function chart(target, points, fields, limits, scale) {
  const node = document.getElementById(target);
  node.replaceChildren();
  if (!points || !points.length) { node.append(el("div", { class: "muted" }, "no decision with evidence yet")); return null; }
  points = points.filter((p, i) => i === 0 || p.at !== points[i - 1].at); // a fail and its hold share one look
  // a few decisions, often at one instant: pad the time axis by a day on each side (the thresholds span it)
  const times = points.map((p) => Date.parse(p.at) / 1000);
  const xs = [times[0] - 86400, ...times, times[times.length - 1] + 86400];
  const col = (f) => [null, ...points.map((p) => (p[f] === null || p[f] === undefined ? null : p[f] * scale)), null];
  const pass = xs.map(() => limits[0]), fail = xs.map(() => limits[1]);
  const data = [xs, col(fields[1]), col(fields[0]), col(fields[2]), pass, fail];
  const opts = {
    width: Math.max(320, node.clientWidth || 520), height: 200,
    series: [{}, { label: "upper bound", stroke: "#9aa5b8", dash: [4, 4], points: { show: true, size: 5 } },
      { label: "observed", stroke: "#1b4f91", width: 2, points: { show: true, size: 8 } },
      { label: "lower bound", stroke: "#9aa5b8", dash: [4, 4], points: { show: true, size: 5 } },
      { label: "pass below", stroke: "#17643a", width: 1.5 }, { label: "fail above", stroke: "#8e1b17", width: 1.5 }],
    bands: [{ series: [1, 3], fill: "rgba(27,79,145,0.12)" }],
    legend: { live: false },
  };
  return new uPlot(opts, data, node);
}

function renderCharts(data) {
  for (const c of charts) c && c.destroy();
  const keys = Object.keys(data.series);
  if (!selected || !data.series[selected]) selected = data.holds.length ? `${data.holds[0].region}/${data.holds[0].tier}` : keys[keys.length - 1] ?? null;
  document.getElementById("chart-gate").textContent = selected ? `gate ${selected}` : "";
  const points = selected ? data.series[selected] : null, limits = selected ? data.thresholds[selected.split("/")[1]] : {};
  charts = [
    chart("chart-error", points, ["error_rate", "error_rate_upper", "error_rate_lower"], [limits.error_pass_below * 100, limits.error_fail_above * 100], 100),
    chart("chart-p99", points, ["p99_ms", "p99_upper_ms", "p99_lower_ms"], [limits.p99_pass_below_ms, limits.p99_fail_above_ms], 1),
  ];
}

async function refresh() {
  try {
    const response = await fetch("/status.json", { cache: "no-store" });
    const data = await response.json();
    const b = data.board, f = b.freshness;
    document.getElementById("plan").textContent = `${b.plan} ${b.plan_version}`;
    document.getElementById("freshness").textContent =
      `latest decision: event time ${f.board_event_time ?? "—"}, written ${f.decided_wall_time ?? "—"} · ${f.caught_up ? "caught up" : "catching up…"} · served ${f.served_at}`;
    renderGrid(b); renderHolds(data.holds); renderCheckpoints(data); renderCalendar(data.calendar); renderDecisions(data.decisions); renderCharts(data);
    document.body.dataset.loaded = "true";
  } catch (error) {
    document.getElementById("freshness").textContent = `cannot load /status.json: ${error}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
