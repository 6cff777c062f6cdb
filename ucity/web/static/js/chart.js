// A small SVG line chart: time on x (KST labels), one or more series, and the crisis-ladder
// edges of the rules as dashed horizontal lines in the level colours.
import { t } from './i18n.js';
import { kstShort } from './time.js';

const SVG = 'http://www.w3.org/2000/svg';
const LEVEL_COLOURS = { interest: '#2f80ed', caution: '#d4a100', warning: '#ef7d00', serious: '#d62828' };
const SERIES_COLOURS = ['#1f5fbf', '#2a9d8f', '#8e44ad', '#e76f51', '#555', '#b08900'];

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

export function niceTicks(lo, hi, count = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

// The y range: the data, plus the nearest edge beyond it on each side so the margin to the next
// level is visible; edges further out are listed, not drawn (they would flatten the data).
export function yRange(values, edges) {
  let lo = Math.min(...values), hi = Math.max(...values);
  const above = edges.filter((e) => e.at > hi).sort((a, b) => a.at - b.at)[0];
  const below = edges.filter((e) => e.at < lo).sort((a, b) => b.at - a.at)[0];
  if (above) hi = above.at; if (below) lo = below.at;
  if (hi === lo) { hi += Math.abs(hi) * 0.1 || 1; lo -= Math.abs(lo) * 0.1 || 1; }
  const pad = (hi - lo) * 0.06;
  return [lo - pad, hi + pad];
}

// series: [{name, points: [[ms, value], ...]}]; edges: [{level, at}] already in display units; `digits`: the fixed
// decimals of the edge labels (2 for mrad, mm, mm/s); `role`: the svg's data-role (assessed / raw).
export function lineChart({ title, series, edges = [], unit = '', width = 640, height = 190, digits = null, role = null }) {
  const m = { l: 52, r: 78, t: 10, b: 24 };
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': t('chart.label', { name: title }),
    'data-unit': unit, ...(role ? { 'data-role': role } : {}) });
  svg.append(el('title', {}, t('chart.label', { name: title })));
  const all = series.flatMap((s) => s.points);
  if (!all.length) { svg.append(el('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle' }, t('facility.noData'))); return svg; }
  const xs = all.map((p) => p[0]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || Math.min(...xs) + 1];
  const [y0, y1] = yRange(all.map((p) => p[1]), edges);
  const X = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (width - m.l - m.r);
  const Y = (v) => height - m.b - ((v - y0) / (y1 - y0)) * (height - m.t - m.b);
  for (const v of niceTicks(y0, y1)) {
    svg.append(el('line', { class: 'grid', x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v) }));
    svg.append(el('text', { x: m.l - 4, y: Y(v) + 3, 'text-anchor': 'end' }, `${+v.toPrecision(4)}`));
  }
  svg.append(el('text', { x: 4, y: m.t + 8 }, unit));
  for (const frac of [0, 0.5, 1]) {
    const v = x0 + (x1 - x0) * frac;
    svg.append(el('text', { x: X(v), y: height - 6, 'text-anchor': frac === 0 ? 'start' : frac === 1 ? 'end' : 'middle' }, kstShort(v)));
  }
  svg.append(el('line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }));
  svg.append(el('line', { class: 'axis', x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }));
  for (const edge of edges) {
    const colour = LEVEL_COLOURS[edge.level] || '#888';
    if (edge.at < y0 || edge.at > y1) continue;
    svg.append(el('line', { class: 'edge', 'data-level': edge.level, 'data-at': edge.at, stroke: colour, x1: m.l, x2: width - m.r, y1: Y(edge.at), y2: Y(edge.at) }));
    svg.append(el('text', { class: 'edge-label', fill: colour, x: width - m.r + 4, y: Y(edge.at) + 3 }, `${t(`level.${edge.level}`)} ${digits != null ? edge.at.toFixed(digits) : +edge.at.toPrecision(4)}`));
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    const colour = SERIES_COLOURS[i % SERIES_COLOURS.length];
    svg.append(el('path', { class: 'series', d, stroke: colour, 'data-series': s.name }));
    svg.append(el('text', { x: m.l + 6 + i * 90, y: m.t + 8, fill: colour, 'font-weight': 600 }, s.name));
  });
  return svg;
}
