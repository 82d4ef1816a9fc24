// Hand-drawn SVG charts for the traffic simulator: outcomes over time as
// stacked bars, and one lane per agent. Every bar carries its numbers as
// data-* attributes (the tests read them) and a <title> tooltip.

import { s, clear } from "./dom.js";

// Colours come from the stylesheet (`.bar.allow`, `.cell.revoked`, …).
export const SERIES = [
  { key: "allow", label: "allowed" },
  { key: "approval", label: "approval required" },
  { key: "limited", label: "429 rate-limited" },
  { key: "deny", label: "other deny" },
  { key: "revoked", label: "revoked" },
];
const SEVERITY = ["allow", "approval", "limited", "deny", "revoked"];

/** A y-axis: a round step (1, 2 or 5 × 10^k) and a top that is a multiple of it, about four ticks. */
function yAxis(v) {
  const raw = Math.max(1, v) / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw);
  const top = Math.max(step, Math.ceil(v / step) * step);
  return { step, top };
}

const fmtT = (sec) => (sec >= 60 && sec % 60 === 0 ? `${sec / 60}m` : sec >= 60 ? `${Math.floor(sec / 60)}m${sec % 60}s` : `${sec}s`);

/**
 * `data`: `{bucketSec, buckets: [{t, allow, approval, limited, deny, revoked}], events: [{t, label}]}`.
 */
export function stackedChart(container, data, { width = 720, height = 250 } = {}) {
  clear(container);
  const m = { l: 44, r: 12, t: 24, b: 30 };
  const w = width - m.l - m.r;
  const hh = height - m.t - m.b;
  const n = Math.max(1, data.buckets.length);
  const { step: yStep, top: max } = yAxis(Math.max(...data.buckets.map((b) => SERIES.reduce((a, x) => a + b[x.key], 0))));
  const x = (i) => m.l + (i * w) / n;
  const y = (v) => m.t + hh - (v / max) * hh;
  const totals = Object.fromEntries(SERIES.map((x) => [x.key, data.buckets.reduce((a, b) => a + b[x.key], 0)]));
  const svg = s("svg", {
    class: "chart stacked",
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    role: "img",
    "aria-label": "outcomes over time",
    ...Object.fromEntries(SERIES.map((x) => [`data-total-${x.key}`, totals[x.key]])),
  });
  // Grid and y axis.
  for (let v = 0; v <= max; v += yStep) {
    const k = v;
    svg.append(
      s("line", { x1: m.l, x2: m.l + w, y1: y(v), y2: y(v), class: k ? "grid" : "axis" }),
      s("text", { x: m.l - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, String(Math.round(v))),
    );
  }
  svg.append(s("text", { x: 12, y: m.t + hh / 2, class: "axis-label", transform: `rotate(-90 12 ${m.t + hh / 2})`, "text-anchor": "middle" }, `requests / ${fmtT(data.bucketSec)}`));
  // Bars.
  const bw = Math.max(1, w / n - (n > 60 ? 0.5 : 2));
  data.buckets.forEach((b, i) => {
    let acc = 0;
    const g = s("g", { class: "bucket", "data-t": b.t });
    for (const ser of SERIES) {
      const v = b[ser.key];
      if (!v) continue;
      g.append(
        s(
          "rect",
          {
            class: `bar ${ser.key}`,
            x: x(i) + (w / n - bw) / 2,
            y: y(acc + v),
            width: bw,
            height: Math.max(0.5, y(acc) - y(acc + v)),
            "data-outcome": ser.key,
            "data-count": v,
            "data-t": b.t,
          },
          s("title", {}, `+${fmtT(b.t)}: ${v} ${ser.label}`),
        ),
      );
      acc += v;
    }
    svg.append(g);
  });
  // X axis ticks: about eight labels.
  const step = Math.max(1, Math.ceil(n / 8));
  for (let i = 0; i <= n; i += step) {
    svg.append(
      s("line", { x1: x(i), x2: x(i), y1: m.t + hh, y2: m.t + hh + 4, class: "axis" }),
      s("text", { x: x(i), y: m.t + hh + 17, class: "tick", "text-anchor": "middle" }, `+${fmtT(i * data.bucketSec)}`),
    );
  }
  // Events (breaker trips) as labelled markers.
  (data.events ?? []).forEach((e, k) => {
    const ex = m.l + (e.t / (n * data.bucketSec)) * w;
    svg.append(
      s("line", { x1: ex, x2: ex, y1: m.t - 4, y2: m.t + hh, class: "event", "data-t": e.t }),
      k < 3
        ? s("text", { x: ex > m.l + w * 0.6 ? ex - 4 : ex + 4, y: m.t - 8 + k * 13, class: "event-label", "text-anchor": ex > m.l + w * 0.6 ? "end" : "start" }, e.label)
        : null,
    );
  });
  container.append(svg);
  return svg;
}

/** One lane per agent: each cell is the most severe outcome of that agent in that bucket. */
export function laneChart(container, data, { width = 720 } = {}) {
  clear(container);
  const agents = data.agents;
  const n = Math.max(1, data.buckets.length);
  const rowH = 16;
  const m = { l: 150, r: 12, t: 4, b: 4 };
  const w = width - m.l - m.r;
  const height = m.t + m.b + agents.length * rowH;
  const svg = s("svg", { class: "chart lanes", viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": "outcomes per agent" });
  agents.forEach((agent, r) => {
    const yy = m.t + r * rowH;
    svg.append(s("text", { x: m.l - 8, y: yy + rowH - 4, class: "tick", "text-anchor": "end" }, agent.label));
    data.lanes[r].forEach((cell, i) => {
      if (!cell) return;
      const worst = SEVERITY.reduce((a, k) => (cell[k] ? k : a), null);
      svg.append(
        s(
          "rect",
          { class: `cell ${worst}`, x: m.l + (i * w) / n, y: yy + 2, width: Math.max(1, w / n - 1), height: rowH - 4, "data-outcome": worst, "data-agent": agent.label },
          s("title", {}, `${agent.label} +${fmtT(i * data.bucketSec)}: ${SERIES.filter((x) => cell[x.key]).map((x) => `${cell[x.key]} ${x.label}`).join(", ")}`),
        ),
      );
    });
  });
  container.append(svg);
  return svg;
}
