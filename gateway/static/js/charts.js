// Small time-series charts drawn as SVG: a line and a filled area over the last minutes
// (up to ten), the current value, and the min/max of the window. No library.

import { fill, h, svg } from "./dom.js";

const W = 240;
const H = 56;
const PAD = 3;

export class Series {
  constructor({ key, label, unit = "", format = (v) => String(v), windowMs = 10 * 60 * 1000 }) {
    Object.assign(this, { key, label, unit, format, windowMs });
    this.points = []; // [time ms, value]
  }

  add(value, at = Date.now()) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return;
    this.points.push([at, Number(value)]);
    const oldest = at - this.windowMs;
    while (this.points.length && this.points[0][0] < oldest) this.points.shift();
  }
}

function path(points, x, y) {
  return points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
}

/** Render one series into `box` (replacing what was there). */
export function renderChart(box, series, now = Date.now()) {
  const pts = series.points;
  const values = pts.map(([, v]) => v);
  const current = values.length ? values[values.length - 1] : null;
  const min = values.length ? Math.min(...values) : 0;
  const max = values.length ? Math.max(...values) : 0;
  const lo = Math.min(0, min);
  const hi = max === lo ? lo + 1 : max;
  // the x axis spans what has been seen, up to the window: a fresh page fills its charts
  const first = pts.length ? pts[0][0] : now;
  const start = Math.max(now - series.windowMs, Math.min(first, now - 30_000));
  const span = Math.max(now - start, 1);
  const x = (t) => PAD + ((t - start) / span) * (W - 2 * PAD);
  const y = (v) => H - PAD - ((v - lo) / (hi - lo)) * (H - 2 * PAD);
  const spanText = span >= 90_000 ? `${Math.round(span / 60_000)} min` : `${Math.round(span / 1000)} s`;
  const summary = values.length
    ? `${series.label}: now ${series.format(current)}, min ${series.format(min)}, max ${series.format(max)} over the last ${spanText}`
    : `${series.label}: no samples yet`;

  const graphic = svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": summary, class: "chart-svg" },
    svg("title", {}, summary),
    svg("line", { x1: 0, x2: W, y1: H - PAD, y2: H - PAD, class: "chart-axis" }),
  );
  if (pts.length >= 2) {
    const line = path(pts, x, y);
    const first = x(pts[0][0]).toFixed(1);
    const last = x(pts[pts.length - 1][0]).toFixed(1);
    graphic.append(
      svg("path", { d: `${line} L${last},${H - PAD} L${first},${H - PAD} Z`, class: "chart-area" }),
      svg("path", { d: line, class: "chart-line" }),
    );
  }
  if (pts.length === 1) {
    const [t, v] = pts[0];
    graphic.append(svg("path", { d: `M${(x(t) - 6).toFixed(1)},${y(v).toFixed(1)} h6`, class: "chart-line" }));
  }
  fill(
    box,
    h(
      "div",
      { class: "chart-head" },
      h("span", { class: "chart-label" }, series.label),
      h("span", { class: "chart-value" }, current === null ? "—" : series.format(current)),
    ),
    graphic,
    h(
      "div",
      { class: "chart-foot", "aria-hidden": "true" },
      h("span", {}, `last ${spanText}`),
      h("span", {}, values.length ? `min ${series.format(min)} · max ${series.format(max)}` : "waiting for samples"),
    ),
  );
}
