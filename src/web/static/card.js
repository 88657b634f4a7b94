// The model card (GET /api/model: the model, its threshold and its validation figures) and the
// drift panel (GET /api/drift, polled: how the rows streamed from the message bus compare with
// the training statistics), with the streamed wafers' P(fault) over time (GET /api/recent).

import { $, CARD_OPEN_KEY, clear, DRIFT_MAX_MS, DRIFT_MIN_ROWS, DRIFT_OPEN_KEY, DRIFT_POLL_MS, DRIFT_REASONS, DRIFT_ROWS, el, state, ui, hooks } from './base.js';
import { ApiError, getJson } from './api.js';
import { fmtInt, formatThreshold, plainNumber, plural } from './cells.js';
import { sentence, setErrorGroup, updateControls } from './status.js';
import { drawStream } from './chart.js';

/** The threshold verdicts use: `[model] threshold` when set, else the card's. */
export function inForce(card) {
  const t = Number(card.threshold_in_force);
  return Number.isFinite(t) ? t : Number(card.threshold);
}

export function loadCard() {
  state.cardPromise = getJson('/api/model').then((c) => {
    state.card = c;
    setErrorGroup('card', null);
    state.baseThreshold = inForce(c);
    if (!state.thresholdTouched) hooks.setThreshold(state.baseThreshold, true);
    renderCard();
    updateControls();
    return c;
  });
  state.cardPromise.catch((e) => {
    clear(ui.card);
    ui.card.append(el('p', 'muted', 'The model card is unavailable.'));
    setErrorGroup('card', {
      title: `The model card cannot be loaded (${sentence(e.message)}) Files cannot be checked or scored until it is; reload the page when faultline is up.`,
      items: [],
    });
  });
  return state.cardPromise;
}

/** Shows the model card again (after a promotion); the threshold of scored rows stays theirs. */
export function refreshCard() {
  return getJson('/api/model').then((c) => {
    state.card = c;
    renderCard();
  });
}

function renderCard() {
  const v = state.card.validation || {};
  clear(ui.card);
  const list = el('dl', 'card-list');
  const item = (term, value, title) => {
    const box = el('div', 'card-item');
    box.append(el('dt', '', term));
    const dd = el('dd', '', value);
    if (title) dd.title = title;
    box.append(dd);
    list.append(box);
    return dd;
  };
  // Every figure with its bootstrap 95% interval and the number of faulty wafers behind it: no
  // tick or cross, since a target "met" on a few dozen faults can be noise.
  // `basis` says which wafers a figure rests on: the faulty ones for most, the good ones for the
  // false-alarm rate.
  const metric = (term, key, basis) => {
    if (typeof v[key] !== 'number') return null;
    const ci = v[`${key}_ci95`];
    const dd = item(term, v[key].toFixed(3));
    if (Array.isArray(ci) && typeof ci[0] === 'number') {
      dd.append(' ', el('span', 'card-interval', `(95% CI ${ci[0].toFixed(2)}–${ci[1].toFixed(2)}, ${basis})`));
    }
    return dd;
  };
  const faults = `${fmtInt(v.faults)} faults`;
  const good = typeof v.rows === 'number' && typeof v.faults === 'number' ? `${fmtInt(v.rows - v.faults)} good wafers` : 'the good wafers';
  item('Model', `${state.card.name || 'model'} ${state.card.version}`);
  item('Trained', formatDate(state.card.created_at), state.card.created_at);
  const trained = Number(state.card.threshold);
  const used = inForce(state.card);
  const budget = state.card.alarm_budget_in_force;
  const byBudget = Boolean(budget) && typeof budget.rate === 'number';
  const threshold = byBudget
    ? item('Decides by', `alarm budget: the top ${percent(budget.rate)} of the last ${fmtInt(budget.window_rows)} wafers`,
      `[model] alarm_rate: a wafer is flagged when its P(fault) is among that share of the recent wafers' scores; the threshold ${used} decides until the window holds ${budget.warmup_rows} wafers (this one included), and ties at the cutoff`)
    : item('Threshold', formatThreshold(used), String(used));
  if (byBudget) {
    threshold.append(' ', el('span', 'card-interval', `(threshold ${formatThreshold(used)} until it holds ${fmtInt(budget.warmup_rows)}, and for ties)`));
  }
  if (used !== trained) {
    threshold.append(' ', el('span', 'card-interval', `(set by [model] threshold; the card's figures are at ${formatThreshold(trained)})`));
  }
  item('Positive class', state.card.positive_class || '');
  metric('ROC-AUC', 'roc_auc', faults);
  metric('PR-AUC', 'pr_auc', faults);
  metric('Recall', 'recall', faults);
  const falseAlarms = metric('False-alarm rate', 'false_alarm_rate', good);
  if (falseAlarms && state.card.threshold_rule) {
    // The threshold rule caps this rate on these same predictions: it is a limit the rule kept,
    // not a measurement of new wafers.
    falseAlarms.append(el('span', 'card-interval', ' capped by the rule'));
  }
  if (typeof v.alarm_rate_suggested === 'number') {
    const dd = item('Suggested alarm budget', `${percent(v.alarm_rate_suggested)} of wafers`, 'validation.alarm_rate_suggested: set [model] alarm_rate to flag this share of recent wafers');
    // What that budget did in validation, when training measured it (validation.alarm_budget).
    const b = v.alarm_budget;
    if (b && typeof b.recall === 'number' && typeof b.false_alarm_rate === 'number') {
      // Short on the line (the card must leave a laptop's screen to the table); the rest on hover.
      const ci = Array.isArray(b.recall_ci95) && typeof b.recall_ci95[0] === 'number'
        ? ` (95% CI ${b.recall_ci95[0].toFixed(2)}–${b.recall_ci95[1].toFixed(2)})` : '';
      dd.append(' ', el('span', 'card-interval',
        `(tuned on these: recall ${b.recall.toFixed(3)}, ${fmtInt(b.true_positives)} of ${fmtInt(b.faults)} faults)`));
      dd.title = `${dd.title}. validation.alarm_budget, over a window of ${fmtInt(b.window_rows)} wafers: recall ${b.recall.toFixed(3)}${ci}, ` +
        `false-alarm rate ${b.false_alarm_rate.toFixed(3)}. ${b.rule || ''}`;
    }
  }
  ui.card.append(list);
  // The prose is long: folded under what the figures are, which stays in sight (opened, it
  // stays open across reloads).
  const more = el('details', 'card-more');
  more.id = 'card-more';
  const head = el('summary', 'card-more-head');
  const caution = cardCaution(state.card, byBudget);
  if (caution) {
    const span = el('span', 'card-caution', caution);
    span.title = v.scheme || '';
    head.append(span, ' ');
  }
  head.append(el('span', 'card-more-link', caution ? 'How it was validated' : 'How it was validated, the threshold rule, and what to expect on new wafers'));
  more.append(head);
  const notes = el('p', 'card-rule');
  if (v.scheme) notes.append(el('strong', '', 'Validation: '), `${v.scheme}. `);
  if (state.card.threshold_rule) notes.append(el('strong', '', 'Threshold rule: '), state.card.threshold_rule, ' ');
  if (v.expectation) notes.append(el('strong', '', 'On new wafers: '), v.expectation);
  more.append(notes);
  rememberOpen(more, CARD_OPEN_KEY, false);
  ui.card.append(more);
}

/**
 * What the card's figures are, in one short paragraph left unfolded: they are the validation
 * models' pooled predictions, on which the threshold and the budget were chosen; and, when the
 * fixed threshold decides, what it did with the shipped model on the later validation windows
 * (validation.windows, the later half, as training's own expectation counts them).
 */
export function cardCaution(card, byBudget) {
  const v = card.validation || {};
  if (typeof v.rows !== 'number') return '';
  let text = `These are the validation models' pooled figures (${fmtInt(v.rows)} wafers, ${fmtInt(v.faults)} faults); ` +
    'the threshold and budget were chosen on them, so expect less on new wafers.';
  const windows = Array.isArray(v.windows) ? v.windows : [];
  const late = windows.slice(Math.floor(windows.length / 2));
  const known = late.length > 0 && late.every((w) => typeof w.shipped_threshold_flagged === 'number' && w.rows > 0);
  if (!byBudget && known) {
    const rows = late.reduce((n, w) => n + w.rows, 0);
    // The card keeps each window's share flagged, rounded: the count it stands for.
    const flagged = Math.round(late.reduce((n, w) => n + w.shipped_threshold_flagged * w.rows, 0));
    const caught = late.reduce((n, w) => n + (Number(w.shipped_threshold_caught) || 0), 0);
    const faults = late.reduce((n, w) => n + (Number(w.faults) || 0), 0);
    const windows = late.length === 1 ? 'later window\'s' : `later ${late.length} windows'`;
    text += ` The model served, refit on every wafer, flagged ${fmtInt(flagged)} of the ${windows} ${fmtInt(rows)} wafers ` +
      `at its threshold and caught ${fmtInt(caught)} of their ${fmtInt(faults)} faults, though fitted on them: ` +
      'on new wafers the fixed threshold may flag very few.' +
      (typeof v.alarm_rate_suggested === 'number' ? ` Set [model] alarm_rate (suggested ${v.alarm_rate_suggested}).` : '');
  }
  return text;
}

/** Keeps `details` open or closed across reloads under `key`; `fallback` when never chosen. */
export function rememberOpen(details, key, fallback) {
  let open = fallback;
  try {
    const kept = localStorage.getItem(key);
    if (kept !== null) open = kept === 'true';
  } catch (_) { /* storage unavailable */ }
  details.open = open;
  details.addEventListener('toggle', () => {
    try { localStorage.setItem(key, String(details.open)); } catch (_) { /* not kept */ }
  });
}

function formatDate(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return String(iso || 'unknown');
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

// The drift panel: polled every DRIFT_POLL_MS (one request at a time, none while the tab is
// hidden). A failure shows one message in the panel, keeps the last report and retries quietly,
// waiting longer after each failure in a row.

let driftTimer = 0;
let driftBusy = false;
let driftFailures = 0;
/** The sensors the table shows, as JSON: an unchanged report does not rebuild it. */
let driftKey = '';

function scheduleDrift(ms) {
  clearTimeout(driftTimer);
  driftTimer = setTimeout(pollDrift, ms);
}

async function pollDrift() {
  driftTimer = 0;
  if (driftBusy || document.hidden) return; // a hidden tab resumes on visibilitychange
  driftBusy = true;
  try {
    renderDrift(await getJson('/api/drift'));
    drawStream($('stream-chart'), await getJson('/api/recent?rows=1000'));
    driftFailures = 0;
    showDriftError(null);
  } catch (e) {
    driftFailures += 1;
    showDriftError(e);
  } finally {
    driftBusy = false;
    scheduleDrift(driftDelay());
  }
}

function driftDelay() {
  return driftFailures ? Math.min(DRIFT_MAX_MS, DRIFT_POLL_MS * 2 ** (driftFailures - 1)) : DRIFT_POLL_MS;
}

function showDriftError(e) {
  ui.driftSummary.classList.toggle('stale', Boolean(e) && state.driftShown);
  if (!e) {
    ui.driftError.hidden = true;
    ui.driftError.textContent = '';
    return;
  }
  // fetch rejects with a TypeError when the daemon cannot be reached.
  const unreachable = !(e instanceof ApiError) && e instanceof TypeError && /fetch|network/i.test(e.message);
  const why = unreachable ? 'Faultline could not be reached; is the daemon running?' : sentence(e.message);
  const kept = state.driftShown ? ' The panel shows the last report.' : '';
  const text = `The drift report cannot be loaded. ${why}${kept} Retrying in the background.`;
  if (!state.driftShown) ui.driftSummary.textContent = 'Drift report unavailable.';
  if (ui.driftError.textContent !== text) ui.driftError.textContent = text;
  ui.driftError.hidden = false;
}

/** Renders one /api/drift answer: the summary line, and the worst sensors in the table. */
function renderDrift(report) {
  const r = report || {};
  const rows = Number(r.window_rows) || 0;
  const out = Number(r.sensors_out_of_range) || 0;
  const sensors = Array.isArray(r.sensors) ? r.sensors : [];
  state.driftShown = true;
  // Parts of the summary line; the out-of-range count is marked when it is not 0.
  const parts = r.judged
    ? [`${plural(rows, 'recent row')} from the bus · `, `${plural(out, 'sensor')} out of range`,
      ` · missing cells ${percent(r.missing_ratio)} · mean P(fault) ${fixed(r.score_mean, 3)}`]
    : [`Not enough streamed rows yet (${fmtInt(rows)} of ${DRIFT_MIN_ROWS})`];
  if (ui.driftSummary.textContent !== parts.join('')) {
    clear(ui.driftSummary);
    if (r.judged) ui.driftSummary.append(parts[0], el('span', out > 0 ? 'drift-out alert' : 'drift-out', parts[1]), parts[2]);
    else ui.driftSummary.append(parts[0]);
  }
  ui.driftSummary.title = Number.isFinite(Number(r.rows_seen))
    ? `${plural(Number(r.rows_seen), 'row')} scored from the message bus since the daemon started`
    : '';

  const shown = r.judged ? sensors.slice(0, DRIFT_ROWS) : [];
  let note = '';
  if (r.judged && !sensors.length) note = 'No sensor is out of range.';
  else if (sensors.length < out || shown.length < sensors.length) note = `The ${shown.length} worst of ${plural(Math.max(out, sensors.length), 'sensor')} out of range are listed.`;
  ui.driftNote.textContent = note;
  ui.driftNote.hidden = !note;
  ui.driftTable.hidden = !shown.length;

  const key = JSON.stringify(shown);
  if (key === driftKey) return;
  driftKey = key;
  clear(ui.driftRows);
  for (const s of shown) {
    const reasons = Array.isArray(s.reasons) ? s.reasons : [];
    const tr = el('tr');
    tr.dataset.sensor = String(s.sensor);
    tr.append(el('td', '', String(s.sensor)));
    tr.append(el('td', '', reasons.map((x) => DRIFT_REASONS[x] || String(x)).join(', ')));
    const median = el('td', 'num', driftNumber(s.median));
    median.append(' ', el('span', 'training', `(${driftNumber(s.training_median)})`));
    const shift = el('td', 'num', isNumber(s.shift_z) ? signed1(s.shift_z) : '—');
    const missing = el('td', 'num', percent(s.missing_ratio));
    missing.append(' ', el('span', 'training', `(${percent(s.training_missing_ratio)})`));
    if (reasons.includes('median_shift')) {
      median.classList.add('hit');
      shift.classList.add('hit');
    }
    if (reasons.includes('missing_rate')) missing.classList.add('hit');
    tr.append(median, shift, missing);
    ui.driftRows.append(tr);
  }
}

function isNumber(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

/** A sensor value with 4 significant digits, never in exponent form; '—' when absent. */
function driftNumber(x) {
  return isNumber(x) ? plainNumber(Number(x.toPrecision(4))) : '—';
}

function percent(x) {
  return isNumber(x) ? `${(100 * x).toFixed(1)}%` : '—';
}

function fixed(x, digits) {
  return isNumber(x) ? x.toFixed(digits) : '—';
}

function signed1(x) {
  const t = Math.abs(x).toFixed(1);
  return `${x < 0 && t !== '0.0' ? '-' : '+'}${t}`;
}

export function startDrift() {
  // Folded by default (its summary line says the state), so the table fits a laptop's screen.
  rememberOpen(ui.driftDetails, DRIFT_OPEN_KEY, false);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !driftBusy) scheduleDrift(0);
  });
  pollDrift();
}
