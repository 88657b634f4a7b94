// faultline's live-quality panel: how well the serving model (and the shadow, when one runs)
// matched the outcomes reported later, from GET /api/quality (polled); the label upload
// (POST /api/labels) and the promotion of the shadow (POST /api/model/promote).
//
// A module like the rest of the page, under the same Content-Security-Policy: the DOM is built
// with createElement and textContent only. The token, its form and the upload limits (api.js),
// the strict UTF-8 reading and a size format (cells.js) and the model card (card.js) are
// imported; main.js starts the panel with startQuality once the page has started.

import { askForToken, authHeaders, token, uploadLimits } from './api.js';
import { decodeUtf8, fmtBytes, formatThreshold } from './cells.js';
import { clear, el, QUALITY_OPEN_KEY } from './base.js';
import { sentence } from './status.js';
import { refreshCard, rememberOpen } from './card.js';

/** How often live quality is fetched, in milliseconds; after failures the wait doubles up to MAX_MS. */
const POLL_MS = 5000;
const MAX_MS = 60000;
/** Refused labels listed one by one; the rest are counted. */
const REJECTIONS_SHOWN = 20;
/** The table's rows: a heading, and what each model's column shows. */
const MEASURES = [
  ['version', 'Version', (m) => String(m.version || '')],
  ['labelled', 'Labelled wafers', (m, q) => `${fmtInt(q.labelled)} (${fmtInt(q.positives)} faulty / ${fmtInt(q.negatives)} good)`],
  ['roc_auc', 'ROC-AUC', (m, q) => withInterval(q.roc_auc, q.roc_auc_ci95),
    () => 'With its 95% interval (bootstrap over the labelled wafers): a window holds a few dozen faulty wafers at most, so the figure alone says little'],
  ['pr_auc', 'PR-AUC', (m, q) => fixed3(q.pr_auc)],
  // Under an alarm budget the serving model's counts are of its verdicts (basis "verdicts"),
  // whose threshold moved with the budget.
  ['threshold', 'Threshold', (m, q) => (q.basis === 'verdicts' ? 'alarm budget (the verdicts published)' : isNumber(q.threshold) ? formatThreshold(q.threshold) : '—')],
  ['recall', 'Recall', (m, q) => withInterval(q.recall, q.recall_ci95),
    (q) => `${fmtInt(q.true_positives)} of ${fmtInt(q.true_positives + q.false_negatives)} faulty wafers flagged`],
  ['false_alarm_rate', 'False-alarm rate', (m, q) => withInterval(q.false_alarm_rate, q.false_alarm_rate_ci95),
    (q) => `${fmtInt(q.false_positives)} of ${fmtInt(q.false_positives + q.true_negatives)} good wafers flagged`],
  ['confusion', 'TP / FP / FN / TN', (m, q) => [q.true_positives, q.false_positives, q.false_negatives, q.true_negatives].map(fmtInt).join(' / '),
    (q) => `Faulty wafers flagged / good wafers flagged / faulty wafers missed / good wafers passed, ${q.basis === 'verdicts' ? 'by the verdicts published' : 'at the threshold'}`],
];
const ROLES = { serving: 'Serving', shadow: 'Shadow' };

const $ = (id) => document.getElementById(id);
const ui = {
  details: $('quality-details'),
  summary: $('quality-summary'),
  error: $('quality-error'),
  storeWarning: $('store-warning'),
  table: $('quality-table'),
  head: $('quality-head'),
  rows: $('quality-rows'),
  labels: $('quality-labels'),
  store: $('quality-store'),
  input: $('labels-input'),
  inputLabel: $('labels-label'),
  promote: $('promote-button'),
  labelsResult: $('labels-result'),
  promoteResult: $('promote-result'),
};

// ---------------------------------------------------------------- helpers

function isNumber(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

/** A figure with 3 decimals; '—' when the daemon says it is undefined (null). */
function fixed3(x) {
  return isNumber(x) ? x.toFixed(3) : '—';
}

/** A figure with its 95% interval, when the daemon gave one: `0.652 (0.57–0.73)`. */
function withInterval(x, ci) {
  return isNumber(x) && Array.isArray(ci) && isNumber(ci[0]) && isNumber(ci[1])
    ? `${x.toFixed(3)} (${ci[0].toFixed(2)}–${ci[1].toFixed(2)})` : fixed3(x);
}

/** A signed figure: `+0.031`, `−0.020`. */
function signed(x) {
  return `${x < 0 ? '−' : '+'}${Math.abs(x).toFixed(3)}`;
}

function fmtInt(n) {
  return isNumber(Number(n)) ? Number(n).toLocaleString('en-US') : '—';
}

function plural(n, one, many) {
  return `${fmtInt(n)} ${n === 1 ? one : (many || `${one}s`)}`;
}

/** Shows `text` in a status line (hidden when empty), marked as bad news or not. */
function say(node, text, bad) {
  node.textContent = text || '';
  node.hidden = !text;
  node.classList.toggle('bad', Boolean(bad));
}

// ---------------------------------------------------------------- API access

/** An answer of the daemon: its status and JSON body (an {error} object when it sent no JSON). */
async function call(method, path, body, type) {
  for (;;) {
    const headers = { Accept: 'application/json', ...authHeaders() };
    if (type) headers['Content-Type'] = type;
    let response;
    try {
      response = await fetch(path, { method, headers, body, cache: 'no-store' });
    } catch (_) {
      throw new Error('faultline could not be reached; is the daemon running?');
    }
    if (response.status === 401) {
      if (!shown) ui.summary.textContent = 'Waiting for the access token…';
      await askForToken(Boolean(token));
      continue;
    }
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = { error: text.trim() || `the daemon answered HTTP ${response.status}` };
    }
    return { status: response.status, ok: response.ok, body: json || {} };
  }
}

// ---------------------------------------------------------------- the panel, polled

let timer = 0;
let busy = false;
/** A refresh was asked for while a request was under way: fetch again as soon as it ends. */
let again = false;
let failures = 0;
/** Whether an answer was shown yet (an error then keeps it, marked as stale). */
let shown = false;
/** The table's content as JSON: an unchanged answer does not rebuild it. */
let tableKey = '';

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(poll, ms);
}

/** Fetches and shows live quality; one request at a time, none while the tab is hidden. */
async function poll() {
  timer = 0;
  if (busy || document.hidden) return; // a hidden tab resumes on visibilitychange
  busy = true;
  try {
    const answer = await call('GET', '/api/quality');
    if (!answer.ok) throw new Error(answer.body.error || `the daemon answered HTTP ${answer.status}`);
    render(answer.body);
    failures = 0;
    showError(null);
  } catch (e) {
    failures += 1;
    showError(e);
  } finally {
    busy = false;
    schedule(again ? 0 : failures ? Math.min(MAX_MS, POLL_MS * 2 ** (failures - 1)) : POLL_MS);
    again = false;
  }
}

/** Fetches live quality now (after an upload or a promotion), or right after the request under way. */
function refresh() {
  if (busy) again = true;
  else schedule(0);
}

function showError(e) {
  ui.summary.classList.toggle('stale', Boolean(e) && shown);
  if (!e) {
    say(ui.error, '');
    return;
  }
  const kept = shown ? ' The panel shows the last figures.' : '';
  if (!shown) ui.summary.textContent = 'Live quality unavailable.';
  say(ui.error, `Live quality cannot be loaded. ${sentence(e.message)}${kept} Retrying in the background.`);
}

/** Renders one /api/quality answer. */
function render(report) {
  const r = report || {};
  const models = Array.isArray(r.models) ? r.models : [];
  const labels = r.labels || {};
  const store = r.store || {};
  shown = true;

  const serving = models.find((m) => m.role === 'serving') || models[0];
  const shadow = models.find((m) => m.role === 'shadow');
  renderSummary(serving, shadow, labels, store, r.comparison);
  renderTable(models);

  const over = isNumber(r.window_rows) ? ` · figures over the last ${plural(r.window_rows, 'labelled wafer')}` : '';
  const remembered = isNumber(r.rows_remembered) ? ` · ${plural(r.rows_remembered, 'scored row')} remembered for the join` : '';
  say(ui.labels, `Labels: ${fmtInt(labels.received)} received · ${fmtInt(labels.joined)} joined · ` +
    `${fmtInt(labels.pending)} pending · ${fmtInt(labels.expired)} expired${over}${remembered}`);

  let storeText;
  if (store.enabled) {
    const recovered = (store.rows_recovered || store.labels_recovered)
      ? ` · read back at start: ${plural(store.rows_recovered || 0, 'row')}, ${plural(store.labels_recovered || 0, 'label')}`
      : '';
    storeText = `Store${store.dir ? ` (${store.dir})` : ''}: ${plural(store.rows_written || 0, 'row')} written · ` +
      `${plural(store.rows_dropped || 0, 'row')} dropped · ${plural(store.labels_written || 0, 'label')} written${recovered}`;
  } else {
    storeText = 'Store: off ([store] dir is empty); scored rows and labels are kept in memory only, until a restart.';
  }
  say(ui.store, storeText, Number(store.rows_dropped) > 0);
  say(ui.storeWarning, store.error
    ? `The store is failing: ${sentence(store.error)} Scoring and publishing go on, but rows and labels are not all kept on disk.`
    : '');

  ui.promote.hidden = !shadow;
  ui.promote.dataset.shadow = shadow ? String(shadow.version) : '';
  ui.promote.dataset.serving = serving ? String(serving.version) : '';
}

function renderSummary(serving, shadow, labels, store, comparison) {
  const q = (serving && serving.quality) || {};
  let text;
  if (!serving) text = 'No model reported.';
  else if (!q.labelled) text = `No labelled wafers yet (${plural(Number(labels.received) || 0, 'label')} received)`;
  else {
    text = `${plural(q.labelled, 'labelled wafer')} · serving ROC-AUC ${withInterval(q.roc_auc, q.roc_auc_ci95)} · recall ${fixed3(q.recall)}`;
    // Recall rests on the faulty wafers alone: under 30 (the live-quality alert's floor) it is mostly
    // noise.
    if (isNumber(q.positives)) text += ` (${plural(q.positives, 'faulty wafer')}${q.positives < 30 ? ': rough' : ''})`;
    const sq = (shadow && shadow.quality) || null;
    if (sq && sq.labelled) text += ` · shadow ROC-AUC ${withInterval(sq.roc_auc, sq.roc_auc_ci95)}`;
    text += compared(comparison);
  }
  const failing = store.error ? ' · store failing' : '';
  if (ui.summary.textContent === text + failing) return;
  clear(ui.summary);
  ui.summary.append(text);
  if (failing) ui.summary.append(el('span', 'drift-out alert', failing));
}

/**
 * The shadow against the serving model on the wafers both scored: the difference of their
 * ROC-AUC with its interval, and whether that interval leaves 0 out (the figures to weigh a
 * promotion on; the columns below may rest on different wafers).
 */
function compared(c) {
  if (!c || !isNumber(c.difference)) return '';
  const ci = Array.isArray(c.difference_ci95) && isNumber(c.difference_ci95[0]) ? c.difference_ci95 : null;
  const range = ci ? ` (95% CI ${signed(ci[0])} to ${signed(ci[1])})` : '';
  let verdict = '';
  if (ci && ci[0] > 0) verdict = ': the shadow ranks better';
  else if (ci && ci[1] < 0) verdict = ': the shadow ranks worse';
  else if (ci) verdict = ': no clear difference';
  return ` · shadow − serving ROC-AUC ${signed(c.difference)}${range} on the ${plural(c.labelled, 'wafer')} both scored${verdict}`;
}

/** One column per model (serving first), one row per measure. */
function renderTable(models) {
  ui.table.hidden = !models.length;
  const key = JSON.stringify(models);
  if (key === tableKey) return;
  tableKey = key;
  while (ui.head.children.length > 1) ui.head.lastElementChild.remove();
  for (const m of models) {
    const th = el('th', 'num', ROLES[m.role] || String(m.role));
    th.scope = 'col';
    th.dataset.role = String(m.role);
    ui.head.append(th);
  }
  clear(ui.rows);
  for (const [measure, heading, value, explain] of MEASURES) {
    const tr = el('tr');
    tr.dataset.measure = measure;
    const th = el('th', '', heading);
    th.scope = 'row';
    tr.append(th);
    for (const m of models) {
      const q = m.quality || {};
      const td = el('td', measure === 'version' ? 'version' : 'num', value(m, q));
      td.dataset.role = String(m.role);
      td.dataset.measure = measure;
      if (explain && isNumber(q.labelled)) td.title = explain(q);
      tr.append(td);
    }
    ui.rows.append(tr);
  }
}

// ---------------------------------------------------------------- labels upload

/** JSON when the name says so, or (without a telling name) when the text starts like JSON. */
function labelsType(file, text) {
  const name = String(file.name || '').toLowerCase();
  if (name.endsWith('.json')) return 'application/json';
  if (name.endsWith('.csv')) return 'text/csv';
  if (/json/.test(file.type || '')) return 'application/json';
  return /^\s*[[{]/.test(text) ? 'application/json' : 'text/csv';
}

async function uploadLabels(file) {
  ui.input.disabled = true;
  ui.inputLabel.classList.add('disabled');
  showUpload(`Uploading ${file.name}…`);
  try {
    const limits = await uploadLimits();
    if (limits && file.size > limits.max_body_bytes) {
      throw new Error(`${file.name} is ${fmtBytes(file.size)}; the daemon takes at most ${fmtBytes(limits.max_body_bytes)} at once ([web] max_body_bytes)`);
    }
    // Read strictly, as the daemon reads what curl sends: file.text() would change bytes that
    // are not UTF-8 into U+FFFD, and with them the ids.
    const read = decodeUtf8(new Uint8Array(await file.arrayBuffer()));
    if (read.error) throw new Error(read.error);
    const text = read.text;
    const answer = await call('POST', '/api/labels', text, labelsType(file, text));
    showUploadAnswer(file.name, answer);
  } catch (e) {
    showUpload(`The labels were not sent: ${sentence(e.message)}`, true);
  } finally {
    ui.input.disabled = false;
    ui.inputLabel.classList.remove('disabled');
    refresh();
  }
}

function showUpload(text, bad, rejected) {
  clear(ui.labelsResult);
  ui.labelsResult.classList.toggle('bad', Boolean(bad));
  ui.labelsResult.append(el('p', 'labels-counts', text));
  const list = Array.isArray(rejected) ? rejected : [];
  if (list.length) {
    const ul = el('ul', 'labels-rejected');
    for (const r of list.slice(0, REJECTIONS_SHOWN)) {
      ul.append(el('li', '', `Row ${fmtInt(r.row)}: ${r.reason}`));
    }
    ui.labelsResult.append(ul);
    if (list.length > REJECTIONS_SHOWN) {
      ui.labelsResult.append(el('p', 'muted', `…and ${plural(list.length - REJECTIONS_SHOWN, 'more refused label')}.`));
    }
  }
  ui.labelsResult.hidden = false;
}

function showUploadAnswer(name, answer) {
  const b = answer.body;
  if (answer.status === 200 || answer.status === 422) {
    const rejected = Array.isArray(b.rejected) ? b.rejected : [];
    const counts = `${fmtInt(b.accepted)} accepted: ${fmtInt(b.joined)} joined, ${fmtInt(b.relabelled)} relabelled, ` +
      `${fmtInt(b.pending)} pending (not scored yet)` +
      (b.unlabelled > 0 ? `; ${plural(b.unlabelled, 'row')} without a label left out` : '');
    const refused = rejected.length ? `; ${plural(rejected.length, 'label')} refused:` : '.';
    const head = answer.status === 422 ? `${name}: every label was refused:` : `${name}: ${counts}${refused}`;
    showUpload(head, answer.status === 422, rejected);
    return;
  }
  if (b.applied === true) {
    // Applied (they count in live quality) but not on disk: neither refused nor kept.
    showUpload(`${name}: ${fmtInt(b.accepted)} accepted and applied, but not stored: ${sentence(b.error || '')}`, true,
      Array.isArray(b.rejected) ? b.rejected : []);
    return;
  }
  const details = Array.isArray(b.details) ? b.details : [];
  showUpload(`${name} was refused: ${sentence(b.error || `the daemon answered HTTP ${answer.status}`)}`, true,
    details.map((d, i) => (typeof d === 'object' && d ? { row: d.row ?? i + 1, reason: d.reason || d.message || JSON.stringify(d) } : { row: i + 1, reason: String(d) })));
}

// ---------------------------------------------------------------- promotion

async function promote() {
  const seen = { shadow: ui.promote.dataset.shadow, serving: ui.promote.dataset.serving };
  const shadow = seen.shadow || 'the shadow model';
  const serving = seen.serving || 'the serving model';
  if (!window.confirm(`Promote ${shadow}? It scores and publishes from the next batch on, and ${serving} ` +
    'runs as the shadow (promote again to roll back). The promotion lasts until the daemon restarts.')) return;
  ui.promote.disabled = true;
  say(ui.promoteResult, 'Promoting…');
  // Only the models this page showed: if another operator promoted or a reload came in the
  // meantime, the daemon refuses rather than roll back or serve a model nobody here looked at.
  const expect = new URLSearchParams();
  if (seen.shadow) expect.set('shadow', seen.shadow);
  if (seen.serving) expect.set('serving', seen.serving);
  try {
    const answer = await call('POST', `/api/model/promote?${expect}`);
    const b = answer.body;
    if (answer.ok && b.ok) {
      say(ui.promoteResult, `Promoted: ${b.version} serves now; ${b.previous_version} runs as the shadow.`);
      refreshCard().catch(() => { /* the card keeps the old version until the page reloads */ });
    } else {
      say(ui.promoteResult, `Not promoted: ${sentence(b.error || `the daemon answered HTTP ${answer.status}`)}`, true);
    }
  } catch (e) {
    say(ui.promoteResult, `Not promoted: ${sentence(e.message)}`, true);
  } finally {
    ui.promote.disabled = false;
    refresh();
  }
}

// ---------------------------------------------------------------- wiring

/** Wires the panel's controls and starts polling. */
export function startQuality() {
  ui.input.addEventListener('change', () => {
    const file = ui.input.files && ui.input.files[0];
    ui.input.value = '';
    if (file) uploadLabels(file);
  });
  ui.promote.addEventListener('click', promote);
  // Folded by default (its summary line says the state), so the table fits a laptop's screen.
  rememberOpen(ui.details, QUALITY_OPEN_KEY, false);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });
  poll();
}
