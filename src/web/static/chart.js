// What an upload's scores look like, drawn in the page (SVG through createElementNS, attributes
// only: no inline style, nothing fetched, under the page's Content-Security-Policy).
//
// - The threshold scale: P(fault) on a log scale from 1e-4 to 1, shared by the slider and the
//   histogram, so the scores (which mostly sit well below 0.2) spread over the whole control.
// - The histogram of P(fault) for the scored file, with the threshold in force (solid) and the
//   model's own (dashed); with Good/Bad labels in the file, faulty and good wafers stacked in two
//   colours.

import { formatThreshold } from './cells.js';

const SVG = 'http://www.w3.org/2000/svg';
/** log10 of the smallest threshold the scale shows; below it (and 0) sits at its left end. */
export const LOG_MIN = -4;
const BINS = 40;
const W = 560;
const H = 120;
const PAD_L = 36;
const PAD_B = 20;
const PAD_T = 8;

/** An SVG element with `attrs` (attributes only: no inline style, under the page's CSP). */
export function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Where threshold `t` sits on the log scale, in [LOG_MIN, 0]. */
export function scaleOf(t) {
  if (!(t > 0)) return LOG_MIN;
  return Math.min(0, Math.max(LOG_MIN, Math.log10(t)));
}

/** The threshold at scale position `v` (its left end means 0: every wafer flagged). */
export function thresholdAt(v) {
  return v <= LOG_MIN ? 0 : 10 ** v;
}

/**
 * Draws the histogram of `prob` (Float64Array) into `box`. `labels` is null or an array of
 * true (faulty) / false (good) / null (unlabelled) per row; `threshold` is the one in force,
 * `base` the model's.
 */
export function drawHistogram(box, prob, labels, threshold, base) {
  while (box.firstChild) box.removeChild(box.firstChild);
  const good = new Uint32Array(BINS);
  const bad = new Uint32Array(BINS);
  const other = new Uint32Array(BINS);
  for (let r = 0; r < prob.length; r++) {
    const b = Math.min(BINS - 1, Math.floor(((scaleOf(prob[r]) - LOG_MIN) / -LOG_MIN) * BINS));
    const y = labels ? labels[r] : null;
    if (y === true) bad[b] += 1;
    else if (y === false) good[b] += 1;
    else other[b] += 1;
  }
  let top = 1;
  for (let b = 0; b < BINS; b++) top = Math.max(top, good[b] + bad[b] + other[b]);
  const plotW = W - PAD_L - 4;
  const plotH = H - PAD_B - PAD_T;
  const x = (v) => PAD_L + ((v - LOG_MIN) / -LOG_MIN) * plotW;
  const root = svg('svg', {
    id: 'score-histogram', class: 'histogram', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'data-rows': prob.length, 'data-threshold': threshold,
    'aria-label': `Distribution of P(fault) over ${prob.length} wafers on a log scale, threshold ${formatThreshold(threshold)}`,
  });
  root.append(svg('line', { x1: PAD_L, y1: PAD_T + plotH, x2: W - 4, y2: PAD_T + plotH, class: 'axis' }));
  for (let e = LOG_MIN; e <= 0; e++) {
    const tx = x(e);
    root.append(svg('line', { x1: tx, y1: PAD_T + plotH, x2: tx, y2: PAD_T + plotH + 4, class: 'axis' }));
    root.append(svg('text', { x: tx, y: H - 4, 'text-anchor': 'middle', class: 'tick' }, e === 0 ? '1' : `1e${e}`));
  }
  root.append(svg('text', { x: 2, y: PAD_T + 10, class: 'tick' }, String(top)));
  const bw = plotW / BINS;
  for (let b = 0; b < BINS; b++) {
    let y0 = PAD_T + plotH;
    for (const [n, kind] of [[bad[b], 'faulty'], [good[b], 'good'], [other[b], 'unlabelled']]) {
      if (!n) continue;
      const h = (n / top) * plotH;
      y0 -= h;
      const lo = thresholdAt(LOG_MIN + (b / BINS) * -LOG_MIN);
      const hi = 10 ** (LOG_MIN + ((b + 1) / BINS) * -LOG_MIN);
      const bar = svg('rect', {
        x: PAD_L + b * bw + 0.5, y: y0, width: Math.max(1, bw - 1), height: h, class: `bar ${kind}`,
        'data-count': n, 'data-kind': kind,
      });
      bar.append(svg('title', {}, `${n} ${kind === 'unlabelled' ? '' : `${kind} `}wafer${n === 1 ? '' : 's'} with P(fault) in ${lo.toPrecision(2)} … ${hi.toPrecision(2)}`));
      root.append(bar);
    }
  }
  if (Number.isFinite(base)) {
    root.append(svg('line', { x1: x(scaleOf(base)), y1: PAD_T, x2: x(scaleOf(base)), y2: PAD_T + plotH, class: 'model-threshold', 'data-threshold': base }));
  }
  const tl = svg('line', { x1: x(scaleOf(threshold)), y1: PAD_T, x2: x(scaleOf(threshold)), y2: PAD_T + plotH, class: 'threshold-line' });
  tl.append(svg('title', {}, `threshold ${formatThreshold(threshold)}`));
  root.append(tl);
  box.append(root);
  if (labels) {
    const legend = document.createElement('p');
    legend.className = 'histogram-legend muted';
    legend.textContent = 'Faulty wafers (Good/Bad = 1) in red, good ones in grey; the solid line is the threshold in force, the dashed one the model\'s.';
    box.append(legend);
  }
}

/**
 * Draws the ROC curve of `prob` against `labels` (true faulty, false good, null skipped) into
 * `box`, with the point of `threshold` marked and its confusion counts; nothing without both
 * classes. Returns the area under the curve (ties count a half, as scikit-learn's roc_auc_score).
 */
export function drawRoc(box, prob, labels, threshold) {
  while (box.firstChild) box.removeChild(box.firstChild);
  const pairs = [];
  for (let r = 0; r < prob.length; r++) if (labels[r] === true || labels[r] === false) pairs.push([Math.fround(prob[r]), labels[r]]);
  const pos = pairs.filter(([, y]) => y).length;
  const neg = pairs.length - pos;
  if (!pos || !neg) return null;
  pairs.sort((a, b) => b[0] - a[0]);
  // One point per distinct score, from the highest down: (false-alarm rate, recall).
  const points = [[0, 0]];
  let tp = 0;
  let fp = 0;
  let area = 0;
  for (let i = 0; i < pairs.length;) {
    const s = pairs[i][0];
    let dtp = 0;
    let dfp = 0;
    for (; i < pairs.length && pairs[i][0] === s; i++) {
      if (pairs[i][1]) dtp += 1;
      else dfp += 1;
    }
    area += (dfp / neg) * ((tp + dtp / 2) / pos);
    tp += dtp;
    fp += dfp;
    points.push([fp / neg, tp / pos]);
  }
  const t = Math.fround(threshold);
  let atTp = 0;
  let atFp = 0;
  for (const [p, y] of pairs) if (p >= t) { if (y) atTp += 1; else atFp += 1; }
  const S = 120;
  const P = 22;
  const root = svg('svg', {
    id: 'roc-curve', class: 'roc', viewBox: `0 0 ${S + P + 6} ${S + P + 6}`, width: S + P + 6, height: S + P + 6, role: 'img',
    'data-auc': area, 'data-tp': atTp, 'data-fp': atFp, 'data-fn': pos - atTp, 'data-tn': neg - atFp,
    'aria-label': `ROC curve of this file's scores against its labels, area ${area.toFixed(3)}`,
  });
  const px = (f) => P + f * S;
  const py = (r) => 4 + (1 - r) * S;
  root.append(svg('rect', { x: P, y: 4, width: S, height: S, class: 'roc-frame' }));
  root.append(svg('line', { x1: px(0), y1: py(0), x2: px(1), y2: py(1), class: 'roc-chance' }));
  root.append(svg('polyline', { points: points.map(([f, r]) => `${px(f).toFixed(1)},${py(r).toFixed(1)}`).join(' '), class: 'roc-line' }));
  const dot = svg('circle', { cx: px(atFp / neg), cy: py(atTp / pos), r: 4, class: 'roc-point' });
  dot.append(svg('title', {}, `at ${formatThreshold(threshold)}: ${atTp} of ${pos} faulty flagged, ${atFp} of ${neg} good flagged`));
  root.append(dot);
  root.append(svg('text', { x: P + S / 2, y: S + P + 4, 'text-anchor': 'middle', class: 'tick' }, 'false-alarm rate'));
  root.append(svg('text', { x: 10, y: 4 + S / 2, 'text-anchor': 'middle', class: 'tick', transform: `rotate(-90 10 ${4 + S / 2})` }, 'recall'));
  box.append(root);
  const table = document.createElement('p');
  table.className = 'roc-counts muted';
  table.id = 'roc-counts';
  table.textContent = `At ${formatThreshold(threshold)}: ${atTp} faulty flagged, ${pos - atTp} missed; ${atFp} good flagged, ${neg - atFp} passed. AUC ${area.toFixed(3)}.`;
  box.append(table);
  return area;
}

/**
 * Draws the streamed wafers' P(fault) over time (GET /api/recent: `rows` oldest first with `at`
 * and `probability`, and the serving `threshold`) into `box`: one dot per wafer on the log scale,
 * faults (at or above the threshold) in red, the threshold as a line.
 */
export function drawStream(box, recent) {
  while (box.firstChild) box.removeChild(box.firstChild);
  const rows = (recent && Array.isArray(recent.rows)) ? recent.rows : [];
  const threshold = Number(recent && recent.threshold);
  if (!rows.length) {
    const p = document.createElement('p');
    p.className = 'muted stream-empty';
    p.textContent = 'No wafer has been scored from the message bus yet.';
    box.append(p);
    return;
  }
  const times = rows.map((r) => Date.parse(r.at));
  const t0 = times[0];
  const span = times[times.length - 1] - t0;
  const plotW = W - PAD_L - 4;
  const plotH = H - PAD_B - PAD_T;
  // By time; when every wafer came within the same millisecond, by arrival.
  const x = (i) => PAD_L + (span > 0 ? (times[i] - t0) / span : rows.length > 1 ? i / (rows.length - 1) : 0.5) * plotW;
  const y = (p) => PAD_T + (1 - (scaleOf(p) - LOG_MIN) / -LOG_MIN) * plotH;
  const t = Math.fround(threshold);
  // Wafers another model scored (before a reload or a promotion) sit on that model's scale: they
  // are drawn hollow and not judged at this model's threshold.
  const serving = recent.model_version;
  const other = (r) => serving != null && r.model_version != null && r.model_version !== serving;
  let faults = 0;
  let others = 0;
  const root = svg('svg', {
    id: 'stream-svg', class: 'histogram stream', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'data-rows': rows.length,
  });
  root.append(svg('line', { x1: PAD_L, y1: PAD_T + plotH, x2: W - 4, y2: PAD_T + plotH, class: 'axis' }));
  for (let e = LOG_MIN; e <= 0; e += 2) {
    root.append(svg('text', { x: 2, y: y(10 ** e) + 3, class: 'tick' }, e === 0 ? '1' : `1e${e}`));
  }
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
  root.append(svg('text', { x: PAD_L, y: H - 4, class: 'tick' }, clock(t0)));
  root.append(svg('text', { x: W - 4, y: H - 4, 'text-anchor': 'end', class: 'tick' }, `${clock(t0 + span)} UTC`));
  rows.forEach((r, i) => {
    const p = Number(r.probability);
    if (other(r)) {
      others += 1;
      const dot = svg('circle', { cx: x(i).toFixed(1), cy: y(p).toFixed(1), r: 1.5, class: 'dot other' });
      dot.append(svg('title', {}, `${r.id}: P(fault) ${formatThreshold(p)} by ${r.model_version} at ${r.at}`));
      root.append(dot);
      return;
    }
    const fault = Math.fround(p) >= t;
    if (fault) faults += 1;
    const dot = svg('circle', { cx: x(i).toFixed(1), cy: y(p).toFixed(1), r: fault ? 2.5 : 1.5, class: fault ? 'dot fault' : 'dot' });
    if (fault) dot.append(svg('title', {}, `${r.id}: P(fault) ${formatThreshold(p)} at ${r.at}`));
    root.append(dot);
  });
  if (Number.isFinite(threshold)) {
    root.append(svg('line', { x1: PAD_L, y1: y(threshold), x2: W - 4, y2: y(threshold), class: 'model-threshold' }));
  }
  root.setAttribute('data-faults', String(faults));
  root.setAttribute('data-others', String(others));
  root.setAttribute('aria-label', `P(fault) of the last ${rows.length} streamed wafers over time, ${faults} at or above the threshold ${formatThreshold(threshold)}`);
  box.append(root);
  const note = document.createElement('p');
  note.className = 'muted histogram-legend';
  note.textContent = `The last ${rows.length} wafers scored from the bus: ${faults} at or above ${formatThreshold(threshold)} (red), on the log scale of the threshold slider.`
    + (others ? ` ${others} of them ${others === 1 ? 'was' : 'were'} scored by an earlier model (hollow), on its own scale: not judged at this threshold.` : '')
    + (recent.alarm_rate != null ? ' The daemon decides by an alarm budget; the line is the model\'s fixed threshold.' : '');
  box.append(note);
}
