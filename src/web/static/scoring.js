// Scoring (POST /api/score with every row's contributions) and what follows from the answer: the
// threshold slider, the fault filter, the sort by probability, the summary line, and the
// explanation of a flagged row (explain.js).

import { $, ERROR_LIST_LIMIT, KIND_EXTRA, KIND_ID, KIND_LABEL, MISSING, NUMBER_RE, state, trim, ui } from './base.js';
import { ApiError, askForToken, postCsv, token } from './api.js';
import { describeContributions, f32Text, fmtInt, formatThreshold, plural } from './cells.js';
import { cellText, rowId } from './table.js';
import { buildColumns, closeEditor, columnOfFileColumn, invalidate, rebuildView } from './grid.js';
import { csvField } from './download.js';
import * as explain from './explain.js';
import { drawHistogram, drawRoc, scaleOf, thresholdAt } from './chart.js';
import { hideProgress, sentence, setBusy, setErrorGroup, showProgress, updateControls, updateInfo } from './status.js';

/** The row whose explanation was opened last (its box may since have been closed). */
let explainedRow = null;

/** The current table as the CSV body: unedited rows are sent exactly as they were read. */
function currentCsv() {
  const d = state.data;
  const parts = [d.text.slice(0, d.headerEnd), '\n'];
  for (let r = 0; r < d.nRows; r++) {
    if (!d.editedRows.has(r)) {
      parts.push(d.text.slice(d.rowStart[r], d.rowEnd[r]), '\n');
      continue;
    }
    const fields = [];
    for (let c = 0; c < d.nCols; c++) {
      let v = cellText(d, r, c);
      if (d.kinds[c] !== KIND_ID && d.kinds[c] !== KIND_EXTRA && MISSING.has(trim(v))) v = '';
      fields.push(csvField(v));
    }
    parts.push(fields.join(','), '\n');
  }
  return new Blob(parts, { type: 'text/csv' });
}

export async function score() {
  if (!canScore()) return;
  closeEditor(true);
  if (!canScore()) return;
  const d = state.data;
  const generation = d.generation;
  setBusy('scoring');
  setErrorGroup('api', null);
  try {
    const body = currentCsv();
    let answer;
    for (;;) {
      showProgress(0, `Uploading ${fmtInt(d.nRows)} rows…`);
      answer = await postCsv(body,
        (f) => showProgress(f, `Uploading ${fmtInt(d.nRows)} rows… ${Math.round(100 * f)} %`),
        () => showProgress(null, `Scoring ${fmtInt(d.nRows)} rows…`));
      if (answer.status === 401) {
        showProgress(null, 'Waiting for the access token…');
        await askForToken(Boolean(token));
        continue;
      }
      break;
    }
    let json;
    try {
      json = JSON.parse(answer.text);
    } catch (_) {
      json = { error: answer.text.trim() || `the daemon answered HTTP ${answer.status}` };
    }
    if (answer.status < 200 || answer.status >= 300) throw new ApiError(answer.status, json);
    if (state.data !== d) return; // another file was loaded meanwhile
    adoptResults(json, generation);
  } catch (e) {
    showApiError(e);
  } finally {
    hideProgress();
    setBusy('');
  }
}

function adoptResults(json, generation) {
  const d = state.data;
  const list = Array.isArray(json.results) ? json.results : [];
  if (list.length !== d.nRows) {
    throw new Error(`the daemon answered ${fmtInt(list.length)} results for ${fmtInt(d.nRows)} rows`);
  }
  const prob = new Float64Array(d.nRows);
  const probText = new Array(d.nRows);
  const topText = new Array(d.nRows);
  const topNames = new Array(d.nRows);
  const rowsOut = new Array(d.nRows);
  let mismatched = 0;
  for (let r = 0; r < d.nRows; r++) {
    const x = list[r];
    prob[r] = Number(x.probability);
    probText[r] = f32Text(x.probability);
    const top = Array.isArray(x.contributions) ? x.contributions : [];
    topText[r] = describeContributions(top);
    // The sensors that raised this wafer's P(fault): a contribution below 0 made it look less
    // faulty, so it is no driver of the fault.
    topNames[r] = top.filter((s) => Number(s.contribution) > 0).map((s) => s.sensor);
    rowsOut[r] = x;
    if (String(x.id) !== rowId(d, r)) mismatched += 1;
  }
  const byProbability = new Int32Array(d.nRows);
  for (let r = 0; r < d.nRows; r++) byProbability[r] = r;
  byProbability.sort((a, b) => (prob[b] - prob[a]) || (a - b));
  const hadResults = Boolean(state.results);
  state.results = {
    prob,
    probText,
    topText,
    topNames,
    rowsOut,
    byProbability,
    modelVersion: String(json.model_version || (state.card && state.card.version) || ''),
    serverThreshold: Number(json.threshold),
    // With [model] alarm_rate the daemon decides by a rolling share, not one threshold: keep its
    // own verdicts to say so beside the slider's count.
    alarmRate: typeof json.alarm_rate === 'number' ? json.alarm_rate : null,
    byBudget: list.filter((x) => x.fault && x.rule === 'alarm_rate').length,
    inWarmup: list.filter((x) => x.fault && x.rule === 'warmup').length,
    generation,
    stale: d.generation !== generation,
    // The file's own Good/Bad labels per row (true faulty, false good, null none), when it has them.
    labels: fileLabels(d),
    evaluation: json.evaluation || null,
    warning: typeof json.warning === 'string' ? json.warning : null,
  };
  if (Number.isFinite(state.results.serverThreshold)) {
    state.baseThreshold = state.results.serverThreshold;
    // Moved before scoring: the note, the count and the model's mark are said again now that
    // there are results to compare with.
    setThreshold(state.thresholdTouched ? state.threshold : state.baseThreshold, !state.thresholdTouched);
  }
  if (mismatched) {
    setErrorGroup('api', { title: `The answer's wafer ids differ from the table's in ${plural(mismatched, 'row')}; the results may not line up. Score again.`, items: [] });
  }
  if (!hadResults) {
    buildColumns();
  }
  rebuildView();
  updateSummary();
  updateInfo();
  updateControls();
  invalidate();
}

/** The loaded file's Good/Bad labels, or null without that column. */
function fileLabels(d) {
  const c = d.kinds.indexOf(KIND_LABEL);
  if (c < 0) return null;
  const out = new Array(d.nRows);
  for (let r = 0; r < d.nRows; r++) {
    // Any spelling of 1 or -1 the daemon takes (1.0, +1, -1e0): the load checked the rest.
    const v = trim(cellText(d, r, c));
    const y = NUMBER_RE.test(v) ? Number(v) : NaN;
    out[r] = y === 1 ? true : y === -1 ? false : null;
  }
  return out;
}

const figure = (v) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(2) : 'n/a');

/** The scored file's panel: the histogram, its evaluation against its labels, its drift warning. */
function updateFileChecks() {
  const box = $('file-checks');
  const res = state.results;
  if (!res || !state.data) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  drawHistogram($('histogram'), res.prob, res.labels, state.threshold, state.baseThreshold);
  const roc = $('roc');
  roc.hidden = !res.labels || drawRoc(roc, res.prob, res.labels, state.threshold) === null;
  const ev = $('file-evaluation');
  const q = res.evaluation;
  ev.hidden = !q;
  if (q) {
    ev.textContent = `Against this file's Good/Bad labels (${fmtInt(q.labelled)} wafers, ${fmtInt(q.positives)} faulty), at the model's threshold ${formatThreshold(q.threshold)}: `
      + `caught ${fmtInt(q.true_positives)} of ${fmtInt(q.positives)} faulty wafers (recall ${figure(q.recall)}) with ${plural(q.false_positives, 'false alarm')} among ${fmtInt(q.negatives)} good ones (false-alarm rate ${figure(q.false_alarm_rate)}); `
      + `precision ${figure(q.precision)}, ROC-AUC ${figure(q.roc_auc)}, PR-AUC ${figure(q.pr_auc)}.`
      + (q.positives < 20 ? ` With ${plural(q.positives, 'faulty wafer')} these figures are rough.` : '');
  }
  const warn = $('file-warning');
  warn.hidden = !res.warning;
  warn.textContent = res.warning ? `${sentence(res.warning)}` : '';
}

function showApiError(e) {
  const details = (e.details || []).map(formatDetail);
  const items = details.slice(0, ERROR_LIST_LIMIT);
  if (details.length > items.length) items.push({ text: `…and ${plural(details.length - items.length, 'more problem')}.` });
  const status = e.status ? ` (HTTP ${e.status})` : '';
  setErrorGroup('api', { title: `Scoring failed${status}: ${sentence(e.message)}`, items });
}

/** One detail of an API error in words, linked to its cell when the table has it. */
function formatDetail(x) {
  const where = [];
  if (x.row !== null && x.row !== undefined) {
    const r = Number(x.row) - 1;
    const id = state.data && r >= 0 && r < state.data.nRows ? ` (${rowId(state.data, r)})` : '';
    where.push(`Row ${x.row}${id}`);
  }
  if (x.column) where.push(x.column);
  const hasValue = x.value !== null && x.value !== undefined;
  const what = `${hasValue ? `'${x.value}' ` : ''}${x.reason || ''}`.trim();
  const item = { text: where.length ? `${where.join(', ')}: ${what}` : what };
  if (state.data && x.row && x.column) {
    const c = state.data.header.indexOf(x.column);
    const r = Number(x.row) - 1;
    const col = c >= 0 ? columnOfFileColumn(c) : null;
    if (col && r >= 0 && r < state.data.nRows) item.goto = { r, key: col.key };
  }
  return item;
}

export function canScore() {
  return Boolean(state.data && state.card && !state.busy && state.data.invalid.size === 0);
}

/** Sets the threshold in force; `moveSlider` puts the slider on it (to its nearest step). */
export function setThreshold(t, moveSlider) {
  state.threshold = t;
  if (moveSlider && Number.isFinite(t)) ui.slider.value = String(scaleOf(t));
  if (Number.isFinite(t)) ui.slider.setAttribute('aria-valuetext', formatThreshold(t));
  if (Number.isFinite(state.baseThreshold)) $('threshold-mark').value = String(scaleOf(state.baseThreshold));
  updateThresholdCount();
  const custom = Number.isFinite(state.baseThreshold) && state.threshold !== state.baseThreshold;
  ui.reset.disabled = !custom;
  const note = $('download-note');
  const budget = Boolean(state.results) && state.results.alarmRate !== null;
  note.hidden = !((custom || budget) && state.results);
  if (budget) {
    note.textContent = 'The download\'s fault column is the daemon\'s verdict on this file by its alarm budget, started ' +
      `afresh on it (with rule and threshold per wafer); fault_at_slider flags at ${formatThreshold(state.threshold)}.`;
  } else {
    note.textContent = note.hidden ? '' : `The download flags wafers at ${formatThreshold(state.threshold)}, not the model's ${formatThreshold(state.baseThreshold)}.`;
  }
  // An open explanation says whether its wafer is flagged at the threshold shown: judged again.
  if (explainedRow !== null && !$('explanation').hidden) showExplanation(explainedRow);
}


function updateThresholdCount() {
  const at = formatThreshold(state.threshold);
  if (!state.results) {
    ui.count.textContent = Number.isFinite(state.threshold) ? `threshold ${at}` : '';
    return;
  }
  let n = 0;
  const t = Math.fround(state.threshold);
  for (let r = 0; r < state.results.prob.length; r++) if (Math.fround(state.results.prob[r]) >= t) n += 1;
  ui.count.textContent = `${plural(n, 'wafer')} flagged at ${at}`;
}

export function updateSummary() {
  if (!state.results || !state.data) {
    ui.summary.textContent = '';
    return;
  }
  const t = Math.fround(state.threshold);
  const counts = new Map();
  let flagged = 0;
  for (let r = 0; r < state.data.nRows; r++) {
    if (Math.fround(state.results.prob[r]) < t) continue;
    flagged += 1;
    for (const s of state.results.topNames[r]) counts.set(s, (counts.get(s) || 0) + 1);
  }
  const rate = state.data.nRows ? (100 * flagged) / state.data.nRows : 0;
  let text = `${fmtInt(flagged)} of ${fmtInt(state.data.nRows)} ${state.data.nRows === 1 ? 'wafer' : 'wafers'} flagged (${rate.toFixed(1)}%; threshold ${formatThreshold(state.threshold)}, model ${state.results.modelVersion})`;
  const empty = $('file-empty');
  empty.hidden = !(flagged === 0 && state.faultsOnly);
  empty.textContent = empty.hidden ? '' : `No wafer reaches P(fault) ${formatThreshold(state.threshold)}, so "Faults only" shows none: lower the threshold or untick "Faults only".`;
  if (flagged) {
    const top = [...counts.entries()].sort((a, b) => (b[1] - a[1]) || a[0].localeCompare(b[0], 'en', { numeric: true }));
    const shown = top.slice(0, 5).map(([s, k]) => `${s} (${k})`);
    text += `; sensors that raised P(fault) most often among them: ${shown.join(', ')}${top.length > 5 ? ', …' : ''}`;
  } else {
    text += '.';
  }
  if (state.results.alarmRate !== null) {
    const flaggedByDaemon = state.results.byBudget + state.results.inWarmup;
    text += ` The daemon decides by an alarm budget, the top ${(state.results.alarmRate * 100).toFixed(1)}% of recent wafers: it flagged ${fmtInt(flaggedByDaemon)} of these (${fmtInt(state.results.byBudget)} by the budget, ${fmtInt(state.results.inWarmup)} by the threshold while its window warmed up); the slider recounts at one fixed threshold.`;
  }
  if (state.results.stale) text = `Out of date, the table changed after scoring: score again. ${text}`;
  ui.summary.textContent = text;
  ui.summary.classList.toggle('stale', state.results.stale);
  updateFileChecks();
}

export function onThresholdInput() {
  const v = Number(ui.slider.value);
  let t = thresholdAt(v);
  // The slider moves in steps of 0.001 on the log scale; the step nearest the scorer's threshold
  // means that threshold.
  if (Number.isFinite(state.baseThreshold) && Math.abs(v - scaleOf(state.baseThreshold)) <= Number(ui.slider.step) / 2) t = state.baseThreshold;
  state.thresholdTouched = t !== state.baseThreshold;
  setThreshold(t, false);
  if (!state.results) return;
  updateSummary();
  if (state.faultsOnly) {
    rebuildView();
    updateInfo();
  }
  invalidate();
}

/** Opens the explanation of row `r` (explain.js), judged at the threshold the page shows. */
export function showExplanation(r) {
  if (!state.results || !state.results.rowsOut || !state.results.rowsOut[r]) return;
  const x = state.results.rowsOut[r];
  explainedRow = r;
  const t = Math.fround(state.threshold);
  explain.show($('explanation'), {
    ...x, fault: Math.fround(state.results.prob[r]) >= t, threshold: state.threshold, rule: 'threshold',
  }, state.card);
}
