// faultline's explanation view: why the model scored one wafer as it did. Opened by scoring.js
// when a cell of a flagged row gets the focus (a click, or the keyboard). The numbers are the
// model's own (exact TreeSHAP from POST /api/score): log-odds start at `base` (the expected
// log-odds over the training wafers), each listed sensor moves them by its contribution, "other
// sensors" carries the rest, and they end at logit(P(fault)).
// Each sensor's value is shown against its training range (1st to 99th percentile, from the card).
//
// A module under the page's Content-Security-Policy: SVG and DOM built with createElementNS /
// createElement, attributes and textContent only (no inline style).

import { el } from './base.js';
import { f32Text, formatThreshold, plainNumber, signed4 } from './cells.js';
import { svg } from './chart.js';

const BAR_H = 22;
const LABEL_W = 250;
const PLOT_W = 420;
const PAD = 8;

// Numbers as the grid and the downloads write them: P(fault) and the threshold to four
// significant digits (two slider steps read apart), contributions as `{:+.4}`, a wafer's reading as
// its f32's own digits. The card's statistics get six significant digits, so a reading outside its
// training range never reads as the range's end (fixed decimals showed 0.000349 above a 99th
// percentile of 0.000312 as "0.0003 … 0.0003").
const finite = (v) => typeof v === 'number' && Number.isFinite(v);
const num = (v, d) => (finite(v) ? v.toFixed(d) : '—');
const stat = (v) => (finite(v) ? plainNumber(Number(v.toPrecision(6))) : '—');
const prob = (v) => (finite(v) ? formatThreshold(v) : '—');
const logit = (p) => Math.log(p / (1 - p));

/** The card's statistics of `sensor` (median, 1st and 99th percentiles), if any. */
function stats(card, sensor) {
  const list = (card && card.sensors) || [];
  return list.find((s) => s.name === sensor) || {};
}

function rangeText(value, s) {
  if (value === null || value === undefined) return `missing → median ${stat(s.median)}`;
  const lo = s.p01;
  const hi = s.p99;
  let where = '';
  if (typeof lo === 'number' && typeof hi === 'number') {
    if (value < lo) where = ' (below its training range)';
    else if (value > hi) where = ' (above its training range)';
    else where = ' (within its training range)';
  }
  const range = typeof lo === 'number' ? `, training ${stat(lo)} … ${stat(hi)}, median ${stat(s.median)}` : '';
  return `value ${f32Text(value)}${range}${where}`;
}

/**
 * Renders the explanation of `row` ({id, probability, threshold, rule, base, contributions,
 * fault}) into `box`; `card` is the model card.
 */
export function show(box, row, card) {
  while (box.firstChild) box.removeChild(box.firstChild);
  box.hidden = false;
  const head = el('div', 'explain-head');
  head.append(el('strong', '', `Wafer ${row.id}: P(fault) ${prob(row.probability)}`));
  head.append(` — ${row.fault ? 'flagged' : 'not flagged'} by ${row.rule === 'alarm_rate' ? 'the alarm budget' : 'the threshold'} ${prob(row.threshold)}`);
  const close = el('button', 'explain-close', 'Close');
  close.type = 'button';
  close.addEventListener('click', () => { box.hidden = true; });
  head.append(' ', close);
  box.append(head);
  const list = Array.isArray(row.contributions) ? row.contributions : [];
  if (typeof row.base !== 'number') {
    box.append(el('p', 'muted', 'This verdict comes without the model\'s explanation: the daemon is set to list none ([model] contributions_top_k = 0), or this model\'s graph cannot be explained (it carries no node cover).'));
    return;
  }
  if (!list.length) {
    box.append(el('p', 'muted', 'No sensor moved this wafer\'s score from the model\'s base value.'));
    return;
  }
  // P(fault) 0 or 1 in float32 (log-odds past about ±17): its log-odds, and so the other
  // sensors' part, cannot be had from it; the listed contributions are drawn alone.
  const end = logit(row.probability);
  const saturated = !Number.isFinite(end);
  const listed = list.reduce((a, c) => a + c.contribution, 0);
  const rest = saturated ? 0 : end - row.base - listed;
  const steps = list.map((c) => ({ label: c.sensor, delta: c.contribution, c }));
  if (Math.abs(rest) > 1e-6) steps.push({ label: 'other sensors', delta: rest });
  // Running totals, from base to logit(P).
  let at = row.base;
  const bars = steps.map((s) => {
    const from = at;
    at += s.delta;
    return { ...s, from, to: at };
  });
  const xs = [row.base, ...(saturated ? [] : [end]), ...bars.map((b) => b.to)];
  let lo = Math.min(...xs);
  let hi = Math.max(...xs);
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const x = (v) => LABEL_W + ((v - lo) / (hi - lo)) * PLOT_W;
  const rows = bars.length + 2;
  const height = rows * BAR_H + 2 * PAD + 14;
  const chart = svg('svg', {
    class: 'explain-chart', width: LABEL_W + PLOT_W + 80, height,
    viewBox: `0 0 ${LABEL_W + PLOT_W + 80} ${height}`, role: 'img',
    'aria-label': `Contributions to the log-odds of wafer ${row.id}`,
  });
  const y = (i) => PAD + i * BAR_H;
  const line = (i, v, label, cls) => {
    chart.append(svg('text', { x: LABEL_W - 6, y: y(i) + 15, 'text-anchor': 'end', class: 'explain-label' }, label));
    chart.append(svg('line', { x1: x(v), x2: x(v), y1: y(i) + 3, y2: y(i) + BAR_H - 3, class: cls }));
    chart.append(svg('text', { x: x(v) + 4, y: y(i) + 15, class: 'explain-value' }, num(v, 3)));
  };
  line(0, row.base, 'base (expected log-odds)', 'explain-base');
  bars.forEach((b, i) => {
    const left = Math.min(x(b.from), x(b.to));
    const w = Math.max(1, Math.abs(x(b.to) - x(b.from)));
    const cls = b.delta >= 0 ? 'explain-up' : 'explain-down';
    const r = svg('rect', { x: left, y: y(i + 1) + 3, width: w, height: BAR_H - 6, class: cls });
    const s = b.c ? stats(card, b.c.sensor) : null;
    r.append(svg('title', {}, b.c ? `${b.label}: ${signed4(b.delta)} log-odds; ${rangeText(b.c.value, s)}` : `${b.label}: ${signed4(b.delta)}`));
    chart.append(svg('text', { x: LABEL_W - 6, y: y(i + 1) + 15, 'text-anchor': 'end', class: 'explain-label' }, b.label));
    chart.append(r);
    chart.append(svg('text', { x: Math.max(x(b.from), x(b.to)) + 4, y: y(i + 1) + 15, class: 'explain-value' }, signed4(b.delta)));
  });
  if (!saturated) line(bars.length + 1, end, 'logit P(fault)', 'explain-end');
  box.append(chart);
  if (saturated) {
    box.append(el('p', 'muted', `P(fault) is ${row.probability >= 0.5 ? '1' : '0'} to float32 precision: its log-odds are beyond what it can show, so the other sensors' part and the end are not drawn.`));
  }
  const table = el('table', 'explain-table');
  const hr = el('tr');
  for (const h of ['sensor', 'contribution (log-odds)', 'value against training']) hr.append(el('th', '', h));
  table.append(hr);
  for (const c of list) {
    const tr = el('tr');
    tr.append(el('td', '', c.sensor));
    tr.append(el('td', c.contribution >= 0 ? 'up' : 'down', signed4(c.contribution)));
    tr.append(el('td', '', rangeText(c.value, stats(card, c.sensor))));
    table.append(tr);
  }
  box.append(table);
  box.append(el('p', 'muted', 'Contributions are the model\'s own (exact TreeSHAP): base + every sensor\'s contribution = logit(P(fault)). Red raised the risk, blue lowered it.'));
}
