// Small SVG charts drawn here (no library, no CDN): lines over time or days, and stacked bars.
// Labels are SVG text nodes (textContent), so data never becomes markup.
"use strict";

import { h, s } from "./dom.js";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const W = 720;
const H = 260;
const PAD = { left: 72, right: 16, top: 16, bottom: 36 };

function extent(values, zero) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (zero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  return [lo, hi];
}

function ticks(lo, hi, n = 5) {
  const step = (hi - lo) / (n - 1);
  return Array.from({ length: n }, (_, i) => lo + i * step);
}

export function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  if (a === 0) return "0";
  return a < 0.01 ? v.toExponential(1) : v.toFixed(a < 10 ? 3 : 1);
}

function frame(title, yLo, yHi, yFormat) {
  const root = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const y = (v) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - (v - yLo) / (yHi - yLo));
  for (const t of ticks(yLo, yHi)) {
    root.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t), class: "gridline" }));
    root.append(s("text", { x: PAD.left - 6, y: y(t) + 4, "text-anchor": "end", class: "tick" }, yFormat(t)));
  }
  return { root, y };
}

function legend(root, labels, colors) {
  labels.forEach((label, i) => {
    const x = PAD.left + 8 + i * 150;
    const fill = (colors && colors[i]) || PALETTE[i % PALETTE.length];
    root.append(s("rect", { x, y: 4, width: 10, height: 10, fill }));
    root.append(s("text", { x: x + 14, y: 13, class: "legend" }, label));
  });
}

/**
 * Lines: series = [{label, points: [[x, y], ...]}] with numeric x (epoch seconds or a day index).
 * opts: {title, xFormat, yFormat, zero, markers: [[x, y], ...] drawn as crosses}.
 */
export function lineChart(series, opts = {}) {
  const title = opts.title || "chart";
  const all = series.flatMap((x) => x.points);
  const marks = opts.markers || [];
  if (all.length === 0) return h("p", { class: "empty" }, `${title}: no data yet`);
  const xs = all.map((p) => p[0]);
  const [xLo, xHi] = extent(xs, false);
  const [yLo, yHi] = extent(all.map((p) => p[1]).concat(marks.map((m) => m[1])), opts.zero !== false);
  const yFormat = opts.yFormat || compact;
  const xFormat = opts.xFormat || ((v) => String(v));
  const { root, y } = frame(title, yLo, yHi, yFormat);
  const x = (v) => PAD.left + (W - PAD.left - PAD.right) * ((v - xLo) / (xHi - xLo));
  ticks(xLo, xHi, 4).forEach((t, i, all) => {
    const anchor = i === 0 ? "start" : i === all.length - 1 ? "end" : "middle"; // the ends stay inside
    root.append(s("text", { x: x(t), y: H - 12, "text-anchor": anchor, class: "tick" }, xFormat(t)));
  });
  series.forEach((one, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = one.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length === 1) {
      root.append(s("circle", { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: color, class: "series" }));
    } else if (pts.length > 1) {
      const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      root.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 1.5, class: "series" }));
    }
  });
  for (const [mx, my] of marks) {
    const cx = x(mx);
    const cy = y(my);
    root.append(s("path", { d: `M${cx - 4},${cy - 4} L${cx + 4},${cy + 4} M${cx - 4},${cy + 4} L${cx + 4},${cy - 4}`,
      stroke: "#000", "stroke-width": 1.5, class: "marker" }));
  }
  const colors = series.map((_, i) => PALETTE[i % PALETTE.length]).concat(marks.length ? ["#000"] : []);
  legend(root, series.map((one) => one.label).concat(marks.length ? ["exception (x)"] : []), colors);
  return root;
}

/** Stacked bars: categories (x labels) and stacks [{label, values: [per category]}]. */
export function stackedBars(categories, stacks, opts = {}) {
  const title = opts.title || "chart";
  if (categories.length === 0) return h("p", { class: "empty" }, `${title}: nothing to show`);
  const totals = categories.map((_, i) => stacks.reduce((acc, st) => acc + (st.values[i] || 0), 0));
  const { root, y } = frame(title, 0, Math.max(...totals) || 1, opts.yFormat || compact);
  const band = (W - PAD.left - PAD.right) / categories.length;
  const width = Math.max(2, band * 0.7);
  categories.forEach((label, i) => {
    let base = 0;
    const left = PAD.left + i * band + (band - width) / 2;
    stacks.forEach((st, k) => {
      const v = st.values[i] || 0;
      if (v > 0) {
        root.append(s("rect", { x: left, y: y(base + v), width, height: y(base) - y(base + v),
          fill: PALETTE[k % PALETTE.length], class: "bar" },
          s("title", null, `${label} ${st.label}: ${v.toLocaleString("en-US")}`)));
      }
      base += v;
    });
    const every = Math.ceil(categories.length / 8);
    if (i % every === 0) {
      root.append(s("text", { x: left + width / 2, y: H - 12, "text-anchor": "middle", class: "tick" }, label));
    }
  });
  legend(root, stacks.map((st) => st.label));
  return root;
}
