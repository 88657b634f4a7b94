// faultline's page: load a wafer CSV, check it against the model card, preview and edit it in a
// virtualized grid, score it with POST /api/score, explore the threshold, download the results.
//
// Plain ES2020, no framework, no build step: the daemon serves this file as it is, under a
// Content-Security-Policy that allows no inline script or style (positions are set through the
// CSSOM, which that policy allows).
//
// Layout of this file, one section per stage of the data flow:
//   1. constants and DOM handles
//   2. API access: the bearer token is asked for once and kept in sessionStorage
//   3. the model card and the drift panel (GET /api/drift, polled)
//   4. cell rules (what an id, sensor or label cell may hold) and the CLI's number formats
//   5. loading: file checks, FileReader, a chunked RFC 4180 parser, the header check
//   6. the table: cell access, edits, undo
//   7. the virtualized grid: only the visible rows and columns exist in the DOM
//   8. scoring, threshold, filter, sort, summary
//   9. download
//  10. errors, status, controls, wiring
// The live-quality panel and the label upload live in quality.js, which uses window.faultline.
'use strict';

(() => {
  // ---------------------------------------------------------------- 1. constants and DOM handles

  /** Row height in pixels; every row has it, so a row's position is its index times this. */
  const ROW_H = 24;
  /** Header row height in pixels. */
  const HEAD_H = 30;
  /** Column widths in pixels, by kind of column. */
  const WIDTH = { id: 150, probability: 108, fault: 64, contributions: 460, label: 80, sensor: 96 };
  /** Rows and columns rendered beyond the visible ones, so that small scrolls need no repaint. */
  const OVERSCAN_ROWS = 8;
  const OVERSCAN_COLS = 2;
  /** The daemon's default body limit ([web] max_body_bytes). */
  const MAX_FILE_BYTES = 64 * 1024 * 1024;
  /** A file with more bad cells than this is not a sensor file; it is refused rather than kept. */
  const MAX_INVALID_CELLS = 200000;
  /** Errors listed one by one; the rest are counted. */
  const ERROR_LIST_LIMIT = 50;
  /** How long one parsing or export slice may hold the main thread, in milliseconds. */
  const SLICE_MS = 16;
  const TOKEN_KEY = 'faultline.token';
  /** Whether the drift panel is open, kept across reloads. */
  const DRIFT_OPEN_KEY = 'faultline.drift-open';
  /** How often the drift report is fetched, in milliseconds; after failures the wait doubles up to DRIFT_MAX_MS. */
  const DRIFT_POLL_MS = 5000;
  const DRIFT_MAX_MS = 60000;
  /** Out-of-range sensors listed in the drift table (the daemon sends them worst first). */
  const DRIFT_ROWS = 10;
  /** Rows the daemon's window must hold before it judges any sensor (src/drift.rs MIN_ROWS). */
  const DRIFT_MIN_ROWS = 50;
  /** The daemon's reason codes, as the table shows them. */
  const DRIFT_REASONS = { median_shift: 'median shift', missing_rate: 'missing rate' };
  const LABEL_COLUMN = 'Good/Bad';
  /** Spellings of a missing value, exactly as the daemon accepts them (src/row/mod.rs). */
  const MISSING = new Set(['', 'NA', 'NaN', 'nan', 'null', 'NULL']);
  /** A decimal number as Rust's f64 parser reads it (no hex, no Infinity, no thousands separators). */
  const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
  const INFINITY_RE = /^[+-]?(?:inf|infinity)$/i;
  const KIND_ID = 0;
  const KIND_SENSOR = 1;
  const KIND_LABEL = 2;
  /** Cell classes: a usable number, a missing value, or "look closer" (a string reason follows). */
  const C_OK = 0;
  const C_MISSING = 1;
  const C_SLOW = 2;
  const REASON_NAN = 'is not a number';
  const REASON_INFINITE = 'is not a finite float32 number';
  const REASON_LABEL = 'is not a label: use 1 (faulty), -1 (good) or leave it empty';
  const REASON_NO_ID = 'is empty: every row needs a wafer id';

  const $ = (id) => document.getElementById(id);
  const ui = {
    fileInput: $('file-input'),
    fileLabel: $('file-label'),
    dropZone: $('drop-zone'),
    grid: $('grid'),
    empty: $('empty-state'),
    score: $('score-button'),
    undo: $('undo-button'),
    filter: $('filter-faults'),
    sort: $('sort-probability'),
    slider: $('threshold'),
    count: $('threshold-count'),
    reset: $('threshold-reset'),
    download: $('download-button'),
    progressWrap: $('progress-wrap'),
    progress: $('progress'),
    progressLabel: $('progress-label'),
    errors: $('errors'),
    tableInfo: $('table-info'),
    summary: $('summary'),
    card: $('model-card'),
    tokenForm: $('token-form'),
    tokenInput: $('token-input'),
    tokenMessage: $('token-message'),
    driftDetails: $('drift-details'),
    driftSummary: $('drift-summary'),
    driftError: $('drift-error'),
    driftTable: $('drift-table'),
    driftRows: $('drift-rows'),
    driftNote: $('drift-note'),
  };

  /** The model card, once loaded. */
  let card = null;
  /** Resolves to the model card (waits for a token if the daemon wants one). */
  let cardPromise = null;
  /** The loaded file (see loadText for its fields), or null. */
  let data = null;
  /** The last scoring answer for `data`, or null (see score for its fields). */
  let results = null;
  /** The threshold the fault column, highlights, counts and download use. */
  let threshold = NaN;
  /** The threshold the scorer uses (the answer's, else the card's): the slider's "Reset". */
  let baseThreshold = NaN;
  /** Whether the user moved the slider (then a new answer does not move it back). */
  let thresholdTouched = false;
  let sortByProbability = false;
  let faultsOnly = false;
  /** Display order: original row indices of the rows shown, top to bottom. */
  let view = new Int32Array(0);
  /** For each original row, its position in `view`, or -1 when filtered out. */
  let viewPos = new Int32Array(0);
  /** Edits to undo, last on top; each is a list of {r, c, before} (before = the edit it replaced, or undefined). */
  let undoStack = [];
  /** What the page is busy with ('' = nothing): 'loading', 'scoring' or 'exporting'. */
  let busy = '';
  /** Error groups shown in #errors, by name, in display order. */
  const errorGroups = new Map([['auth', null], ['card', null], ['file', null], ['cells', null], ['api', null]]);

  // ---------------------------------------------------------------- 2. API access

  let token = '';
  try {
    token = sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (_) {
    token = '';
  }
  /** Callers waiting for the token form, or null when it is not shown. */
  let tokenWaiters = null;

  /** An error answer of the API: its status and JSON body {error, details}. */
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `the daemon answered HTTP ${status}`);
      this.status = status;
      this.details = (body && Array.isArray(body.details)) ? body.details : [];
    }
  }

  function authHeaders() {
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /** Shows the token form (once) and resolves when the user has given a token. */
  function askForToken(refused) {
    if (refused) {
      token = '';
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage unavailable */ }
    }
    const message = refused
      ? 'The token was refused; enter the current one.'
      : 'This faultline requires an access token ([web] token).';
    ui.tokenMessage.textContent = message;
    if (!tokenWaiters) {
      tokenWaiters = [];
      if (!card) {
        clear(ui.card);
        ui.card.append(el('p', 'muted', 'Waiting for the access token…'));
      }
      if (!driftShown) ui.driftSummary.textContent = 'Waiting for the access token…';
      ui.tokenForm.hidden = false;
      ui.tokenInput.value = '';
      ui.tokenInput.focus();
      setErrorGroup('auth', { title: `${message} Enter it in the form at the top of the page.`, items: [] });
    }
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }

  ui.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = ui.tokenInput.value.trim();
    if (!value) return;
    token = value;
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* kept in memory only */ }
    ui.tokenInput.value = '';
    ui.tokenForm.hidden = true;
    setErrorGroup('auth', null);
    const waiting = tokenWaiters || [];
    tokenWaiters = null;
    waiting.forEach((resolve) => resolve());
  });

  async function readJson(response) {
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch (_) {
      return { error: text.trim() || `the daemon answered HTTP ${response.status}` };
    }
  }

  /** GET a JSON resource of /api, asking for the token when the daemon answers 401. */
  async function getJson(path) {
    for (;;) {
      const response = await fetch(path, { headers: { Accept: 'application/json', ...authHeaders() }, cache: 'no-store' });
      if (response.status === 401) {
        await askForToken(Boolean(token));
        continue;
      }
      const body = await readJson(response);
      if (!response.ok) throw new ApiError(response.status, body);
      return body;
    }
  }

  /** POSTs a CSV body with XMLHttpRequest, which (unlike fetch) reports upload progress. */
  function postCsv(body, onUpload, onUploaded) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/score?explain=all');
      xhr.setRequestHeader('Content-Type', 'text/csv');
      xhr.setRequestHeader('Accept', 'application/json');
      if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
      xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onUpload(e.loaded / e.total); });
      xhr.upload.addEventListener('load', onUploaded);
      xhr.addEventListener('load', () => resolve({ status: xhr.status, text: xhr.responseText }));
      xhr.addEventListener('error', () => reject(new Error('faultline could not be reached; is the daemon running?')));
      xhr.addEventListener('abort', () => reject(new Error('the request was aborted')));
      xhr.send(body);
    });
  }

  // ---------------------------------------------------------------- 3. the model card

  function loadCard() {
    cardPromise = getJson('/api/model').then((c) => {
      card = c;
      setErrorGroup('card', null);
      baseThreshold = Number(c.threshold);
      if (!thresholdTouched) setThreshold(baseThreshold, true);
      renderCard();
      updateControls();
      return c;
    });
    cardPromise.catch((e) => {
      clear(ui.card);
      ui.card.append(el('p', 'muted', 'The model card is unavailable.'));
      setErrorGroup('card', {
        title: `The model card cannot be loaded (${sentence(e.message)}) Files cannot be checked or scored until it is; reload the page when faultline is up.`,
        items: [],
      });
    });
    return cardPromise;
  }

  function renderCard() {
    const v = card.validation || {};
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
    const metric = (term, key) => {
      if (typeof v[key] !== 'number') return;
      const ci = v[`${key}_ci95`];
      const dd = item(term, v[key].toFixed(3));
      if (Array.isArray(ci) && typeof ci[0] === 'number') {
        dd.append(' ', el('span', 'card-interval', `(95% CI ${ci[0].toFixed(2)}–${ci[1].toFixed(2)}, ${fmtInt(v.faults)} faults)`));
      }
    };
    item('Model', `${card.name || 'model'} ${card.version}`);
    item('Trained', formatDate(card.created_at), card.created_at);
    item('Threshold', formatThreshold(Number(card.threshold)), String(card.threshold));
    item('Positive class', card.positive_class || '');
    metric('ROC-AUC', 'roc_auc');
    metric('PR-AUC', 'pr_auc');
    metric('Recall', 'recall');
    metric('False-alarm rate', 'false_alarm_rate');
    if (typeof v.alarm_rate_suggested === 'number') {
      item('Suggested alarm budget', `${(v.alarm_rate_suggested * 100).toFixed(1)}% of wafers`, 'validation.alarm_rate_suggested: set [model] alarm_rate to flag this share of recent wafers');
    }
    if (typeof v.rows === 'number') {
      item('Validation set', `${fmtInt(v.rows)} rows, ${fmtInt(v.faults)} faults`, v.scheme || '');
    }
    ui.card.append(list);
    const notes = el('p', 'card-rule');
    if (v.scheme) notes.append(el('strong', '', 'Validation: '), `${v.scheme}. `);
    if (card.threshold_rule) notes.append(el('strong', '', 'Threshold rule: '), card.threshold_rule, ' ');
    if (v.expectation) notes.append(el('strong', '', 'On new wafers: '), v.expectation);
    ui.card.append(notes);
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
  /** Whether a report was shown yet (an error then keeps it, marked as stale). */
  let driftShown = false;
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
    ui.driftSummary.classList.toggle('stale', Boolean(e) && driftShown);
    if (!e) {
      ui.driftError.hidden = true;
      ui.driftError.textContent = '';
      return;
    }
    // fetch rejects with a TypeError when the daemon cannot be reached.
    const unreachable = !(e instanceof ApiError) && e instanceof TypeError && /fetch|network/i.test(e.message);
    const why = unreachable ? 'Faultline could not be reached; is the daemon running?' : sentence(e.message);
    const kept = driftShown ? ' The panel shows the last report.' : '';
    const text = `The drift report cannot be loaded. ${why}${kept} Retrying in the background.`;
    if (!driftShown) ui.driftSummary.textContent = 'Drift report unavailable.';
    if (ui.driftError.textContent !== text) ui.driftError.textContent = text;
    ui.driftError.hidden = false;
  }

  /** Renders one /api/drift answer: the summary line, and the worst sensors in the table. */
  function renderDrift(report) {
    const r = report || {};
    const rows = Number(r.window_rows) || 0;
    const out = Number(r.sensors_out_of_range) || 0;
    const sensors = Array.isArray(r.sensors) ? r.sensors : [];
    driftShown = true;
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

  function startDrift() {
    try {
      if (localStorage.getItem(DRIFT_OPEN_KEY) === 'false') ui.driftDetails.open = false;
    } catch (_) { /* storage unavailable: open */ }
    ui.driftDetails.addEventListener('toggle', () => {
      try { localStorage.setItem(DRIFT_OPEN_KEY, String(ui.driftDetails.open)); } catch (_) { /* not kept */ }
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !driftBusy) scheduleDrift(0);
    });
    pollDrift();
  }

  // ---------------------------------------------------------------- 4. cell rules and number formats

  /** A sensor cell: C_OK, C_MISSING, or why it cannot be scored. */
  function classifySensor(value) {
    const t = value.trim();
    if (MISSING.has(t)) return C_MISSING;
    if (NUMBER_RE.test(t)) {
      const v = Number(t);
      return Number.isFinite(v) && Number.isFinite(Math.fround(v)) ? C_OK : REASON_INFINITE;
    }
    return INFINITY_RE.test(t) ? REASON_INFINITE : REASON_NAN;
  }

  /** A Good/Bad cell: 1, -1 or missing. */
  function classifyLabel(value) {
    const t = value.trim();
    if (MISSING.has(t)) return C_MISSING;
    if (NUMBER_RE.test(t) && (Number(t) === 1 || Number(t) === -1)) return C_OK;
    return REASON_LABEL;
  }

  /** A wafer id: anything but empty. */
  function classifyId(value) {
    return value.trim() === '' ? REASON_NO_ID : C_OK;
  }

  function classify(kind, value) {
    if (kind === KIND_SENSOR) return classifySensor(value);
    if (kind === KIND_LABEL) return classifyLabel(value);
    return classifyId(value);
  }

  /** "'abc' is not a number", the value clipped as the daemon clips it. */
  function reasonText(value, reason) {
    const v = value.trim();
    const shown = v.length > 64 ? `${v.slice(0, 64)}…` : v;
    return `'${shown}' ${reason}`;
  }

  /**
   * An f32 as Rust's `Display` writes it (what `faultline score` prints): the shortest digits that
   * read back as the same f32, never an exponent. The API's JSON widens its f32s to f64
   * (0.19673949480056763 for the f32 0.1967395), so the digits are found again here.
   */
  function f32Text(x) {
    if (x === null || x === undefined) return 'NaN';
    const f = Math.fround(Number(x));
    if (!Number.isFinite(f) || f === 0) return plainNumber(f);
    for (let p = 1; p < 9; p++) {
      const shorter = Number(f.toPrecision(p));
      if (Math.fround(shorter) === f) return plainNumber(shorter);
    }
    return plainNumber(Number(f.toPrecision(9)));
  }

  /** A number in plain decimal notation (String() without its exponent form). */
  function plainNumber(x) {
    if (x === null || x === undefined) return 'NaN';
    const n = Number(x);
    if (Number.isNaN(n)) return 'NaN';
    if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
    if (Object.is(n, -0)) return '-0';
    const s = String(n);
    const e = s.indexOf('e');
    if (e < 0) return s;
    let mantissa = s.slice(0, e);
    const exponent = Number(s.slice(e + 1));
    let sign = '';
    if (mantissa[0] === '-') {
      sign = '-';
      mantissa = mantissa.slice(1);
    }
    const dot = mantissa.indexOf('.');
    const digits = dot < 0 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1);
    const point = (dot < 0 ? mantissa.length : dot) + exponent;
    if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
    if (point >= digits.length) return sign + digits + '0'.repeat(point - digits.length);
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  }

  /**
   * Rust's `{:+.2}` of an f32: the exact f32 value rounded to 2 decimals, ties to even, sign always.
   * A tie needs |x|·100 to end in exactly .5, i.e. |x|·8 an odd integer (x is a binary fraction).
   */
  function signed2(x) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return 'NaN';
    const f = Math.fround(Number(x));
    const negative = f < 0 || Object.is(f, -0);
    const a = Math.abs(f);
    if (!Number.isFinite(a)) return `${negative ? '-' : '+'}inf`;
    let text;
    const eighths = a * 8;
    if (Number.isInteger(eighths) && eighths % 2 === 1) {
      let n = Math.floor(a * 100);
      if (n % 2 === 1) n += 1;
      text = `${Math.floor(n / 100)}.${String(n % 100).padStart(2, '0')}`;
    } else if (a >= 1e21) {
      text = `${BigInt(a)}.00`; // an f32 this large is an integer; toFixed would switch to exponents
    } else {
      text = a.toFixed(2);
    }
    return (negative ? '-' : '+') + text;
  }

  /** The CLI's top-sensor text: `Sensor-59=2.31 (z=+6.20); Sensor-103=...`. */
  /** A verdict's contributions as `Sensor-59=2.31 (+0.412)`, largest first (log-odds). */
  function describeContributions(list) {
    return list.map((c) => `${c.sensor}=${c.value === null ? 'missing' : f32Text(c.value)} (${c.contribution >= 0 ? '+' : ''}${c.contribution.toFixed(3)})`).join('; ');
  }

  /** Opens the explanation of row `r` (explain.js), judged at the threshold the page shows. */
  function showExplanation(r) {
    if (!results || !results.rowsOut || !results.rowsOut[r] || !window.faultlineExplain) return;
    const x = results.rowsOut[r];
    const t = Math.fround(threshold);
    window.faultlineExplain.show($('explanation'), {
      ...x, fault: Math.fround(results.prob[r]) >= t, threshold, rule: 'threshold',
    }, card);
  }

  function describeSensors(top) {
    return top.map((d) => `${d.sensor}=${f32Text(d.value)} (z=${signed2(d.z)})`).join('; ');
  }

  /** Whether a probability is a fault at threshold `t`, compared as f32 like the scorer does. */
  function isFaultAt(p, t) {
    return Math.fround(p) >= Math.fround(t);
  }

  function formatThreshold(t) {
    return Number.isFinite(t) ? t.toFixed(4) : '?';
  }

  function fmtInt(n) {
    return Number(n).toLocaleString('en-US');
  }

  function plural(n, one, many) {
    return `${fmtInt(n)} ${n === 1 ? one : (many || `${one}s`)}`;
  }

  /** Column names listed compactly: runs of 3+ consecutive `Sensor-N` become `Sensor-A..Sensor-B`. */
  function summarizeNames(names) {
    const number = (s) => {
      const m = /^Sensor-(\d+)$/.exec(s);
      return m ? Number(m[1]) : null;
    };
    const parts = [];
    let i = 0;
    while (i < names.length) {
      let j = i;
      let n = number(names[i]);
      if (n !== null) {
        while (j + 1 < names.length && number(names[j + 1]) === n + 1) {
          j += 1;
          n += 1;
        }
      }
      if (j > i + 1) parts.push(`${names[i]}..${names[j]}`);
      else for (let k = i; k <= j; k++) parts.push(names[k] === '' ? '(blank)' : names[k]);
      i = j + 1;
    }
    return parts.join(', ');
  }

  /** Runs of 1-based positions: `2, 555..591`. */
  function summarizePositions(positions) {
    const parts = [];
    let i = 0;
    while (i < positions.length) {
      let j = i;
      while (j + 1 < positions.length && positions[j + 1] === positions[j] + 1) j += 1;
      parts.push(j > i ? `${positions[i] + 1}..${positions[j] + 1}` : String(positions[i] + 1));
      i = j + 1;
    }
    return parts.join(', ');
  }

  // ---------------------------------------------------------------- 5. loading

  function looksLikeCsv(file) {
    return /\.csv$/i.test(file.name) || /^text\/csv\b/i.test(file.type || '');
  }

  async function loadFile(file) {
    if (busy) {
      const what = { loading: 'loading a file', scoring: 'scoring', exporting: 'preparing the download' }[busy];
      setErrorGroup('file', { title: `${file.name} was not loaded: the page is still ${what}; try again when it is done.`, items: [] });
      return;
    }
    const kept = data ? ` The table still shows ${data.name}.` : '';
    setErrorGroup('file', null);
    if (!looksLikeCsv(file)) {
      setErrorGroup('file', {
        title: `${file.name} was not loaded: it is not a CSV file (its type is '${file.type || 'unknown'}'). Choose a .csv file (text/csv).${kept}`,
        items: [],
      });
      return;
    }
    if (file.size > MAX_FILE_BYTES) {
      setErrorGroup('file', {
        title: `${file.name} was not loaded: it is ${(file.size / 1048576).toFixed(1)} MiB, over the limit of 64 MiB ([web] max_body_bytes). Split it into smaller files.${kept}`,
        items: [],
      });
      return;
    }
    setBusy('loading');
    try {
      showProgress(0, cardPromise && !card ? 'Waiting for the model card…' : `Reading ${file.name}…`);
      let features;
      try {
        features = (await cardPromise).input.features;
      } catch (e) {
        setErrorGroup('file', {
          title: `${file.name} was not loaded: its columns cannot be checked without the model card (${sentence(e.message)})${kept}`,
          items: [],
        });
        return;
      }
      const text = await readText(file);
      const loaded = await loadText(file.name, text, features);
      if (loaded.errors) {
        setErrorGroup('file', { title: `${file.name} was not loaded: ${loaded.title}${kept}`, items: loaded.errors.map((t) => ({ text: t })) });
        return;
      }
      adopt(loaded.data);
    } catch (e) {
      setErrorGroup('file', { title: `${file.name} was not loaded: ${sentence(e.message)}${kept}`, items: [] });
    } finally {
      hideProgress();
      setBusy('');
    }
  }

  /** Reads the file as UTF-8 text; the progress bar shows 0–30 %. */
  function readText(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.addEventListener('progress', (e) => {
        if (e.lengthComputable) showProgress(0.3 * e.loaded / e.total, `Reading ${file.name}… ${Math.round(100 * e.loaded / e.total)} %`);
      });
      reader.addEventListener('load', () => resolve(String(reader.result)));
      reader.addEventListener('error', () => reject(new Error(`the file cannot be read (${reader.error ? reader.error.message : 'unknown error'})`)));
      reader.readAsText(file, 'utf-8');
    });
  }

  /** Decodes a quoted field [s, e) of `text` (s at the opening quote), RFC 4180 style. */
  function unquote(text, s, e) {
    let out = '';
    let i = s + 1;
    while (i < e) {
      const q = text.indexOf('"', i);
      if (q < 0 || q >= e) {
        out += text.slice(i, e);
        break;
      }
      out += text.slice(i, q);
      if (q + 1 < e && text.charCodeAt(q + 1) === 34) {
        out += '"';
        i = q + 2;
      } else {
        out += text.slice(q + 1, e); // lenient, like the csv crate: text after the closing quote is kept
        break;
      }
    }
    return out;
  }

  /**
   * Parses one record starting at `pos`: field starts go into `starts` (up to its length), and the
   * answer is {fields, end (where the terminator starts), next, newlines} or {unterminated: true}.
   * Quotes are special only at the start of a field; CRLF, LF and CR end a record.
   */
  function parseRecord(text, pos, starts) {
    const len = text.length;
    let p = pos;
    let fields = 0;
    let newlines = 0;
    for (;;) {
      if (fields < starts.length) starts[fields] = p;
      fields += 1;
      if (text.charCodeAt(p) === 34) {
        p += 1;
        for (;;) {
          const q = text.indexOf('"', p);
          if (q < 0) return { unterminated: true };
          for (let k = text.indexOf('\n', p); k >= 0 && k < q; k = text.indexOf('\n', k + 1)) newlines += 1;
          if (text.charCodeAt(q + 1) === 34) {
            p = q + 2;
          } else {
            p = q + 1;
            break;
          }
        }
      }
      while (p < len) {
        const ch = text.charCodeAt(p);
        if (ch === 44 || ch === 10 || ch === 13) break;
        p += 1;
      }
      if (p < len && text.charCodeAt(p) === 44) {
        p += 1;
        continue;
      }
      break;
    }
    let next = p;
    if (p < len) next = text.charCodeAt(p) === 13 && text.charCodeAt(p + 1) === 10 ? p + 2 : p + 1;
    return { fields, end: p, next, newlines };
  }

  /**
   * The fast check of an unquoted sensor field [s, e): C_OK for a plain decimal that surely fits an
   * f32, C_MISSING for an empty one, C_SLOW for anything that needs the full rules.
   */
  function quickSensor(text, s, e) {
    while (s < e && (text.charCodeAt(s) === 32 || text.charCodeAt(s) === 9)) s += 1;
    while (e > s && (text.charCodeAt(e - 1) === 32 || text.charCodeAt(e - 1) === 9)) e -= 1;
    if (s === e) return C_MISSING;
    let p = s;
    let ch = text.charCodeAt(p);
    if (ch === 43 || ch === 45) p += 1;
    let digits = 0;
    let significant = 0;
    while (p < e) {
      ch = text.charCodeAt(p);
      if (ch < 48 || ch > 57) break;
      if (significant > 0 || ch !== 48) significant += 1;
      digits += 1;
      p += 1;
    }
    if (p < e && text.charCodeAt(p) === 46) {
      p += 1;
      while (p < e) {
        ch = text.charCodeAt(p);
        if (ch < 48 || ch > 57) break;
        digits += 1;
        p += 1;
      }
    }
    if (digits === 0 || p !== e || significant > 38) return C_SLOW;
    return C_OK;
  }

  /** Header names (trimmed) and where the data starts. */
  function parseHeader(text) {
    const scratch = new Uint32Array(65536);
    const rec = parseRecord(text, 0, scratch);
    if (rec.unterminated) return { unterminated: true };
    if (rec.fields > scratch.length) return { tooWide: true };
    const names = [];
    for (let f = 0; f < rec.fields; f++) {
      const s = scratch[f];
      const e = f + 1 < rec.fields ? scratch[f + 1] - 1 : rec.end;
      names.push((text.charCodeAt(s) === 34 ? unquote(text, s, e) : text.slice(s, e)).trim());
    }
    return { names, end: rec.end, next: rec.next, lines: 1 + rec.newlines };
  }

  /** Checks the header against the model's features, as the daemon does (src/row/csv.rs). */
  function checkHeader(names, features) {
    const errors = [];
    const seen = new Map();
    const duplicates = [];
    for (const n of names) {
      if (n === '') continue;
      const k = (seen.get(n) || 0) + 1;
      seen.set(n, k);
      if (k === 2) duplicates.push(n);
    }
    if (duplicates.length) errors.push(`The header names ${duplicates.join(', ')} more than once.`);
    const featureSet = new Set(features);
    let idCol = names.findIndex((n) => n.toLowerCase() === 'wafer' || n.toLowerCase() === 'id');
    if (idCol < 0 && !featureSet.has(names[0]) && names[0] !== LABEL_COLUMN) idCol = 0;
    if (idCol < 0) {
      errors.push("There is no wafer id column: name it 'Wafer' or 'id', or leave the first header cell blank.");
    }
    const blanks = [];
    names.forEach((n, i) => { if (n === '' && i !== idCol) blanks.push(i); });
    if (blanks.length) {
      errors.push(`Header ${blanks.length === 1 ? 'cell' : 'cells'} ${summarizePositions(blanks)} ${blanks.length === 1 ? 'is' : 'are'} blank; only the first (wafer id) column may have a blank name.`);
    }
    const kinds = new Uint8Array(names.length);
    const present = new Set();
    const unknown = [];
    names.forEach((n, i) => {
      if (i === idCol) {
        kinds[i] = KIND_ID;
      } else if (n === LABEL_COLUMN) {
        kinds[i] = KIND_LABEL;
      } else if (featureSet.has(n)) {
        kinds[i] = KIND_SENSOR;
        present.add(n);
      } else if (n !== '') {
        unknown.push(n);
      }
    });
    const missing = features.filter((f) => !present.has(f));
    if (missing.length) {
      errors.push(`It lacks ${plural(missing.length, 'sensor column')} the model needs: ${summarizeNames(missing)}.`);
    }
    if (unknown.length) {
      errors.push(`It has ${plural(unknown.length, 'column')} the model does not know: ${summarizeNames(unknown)}. Remove or rename ${unknown.length === 1 ? 'it' : 'them'}; the model's columns are ${features[0]}..${features[features.length - 1]}, plus the id and ${LABEL_COLUMN}.`);
    }
    return { errors, idCol, kinds };
  }

  /**
   * Parses `text` into the table, in slices that leave the page responsive (progress 30–100 %).
   * Answers {data} or {title, errors}. The table keeps the text itself and, per cell, where its
   * field starts (the field ends one before the next one starts), so 10,000 × 592 cells cost two
   * typed arrays rather than six million strings.
   */
  async function loadText(name, rawText, features) {
    const text = rawText.charCodeAt(0) === 0xfeff ? rawText.slice(1) : rawText;
    if (text.trim() === '') {
      return { title: 'it is empty.', errors: [`Expected a header row naming the sensor columns (${features[0]}..${features[features.length - 1]}).`] };
    }
    const head = parseHeader(text);
    if (head.unterminated) return { title: 'its header cannot be parsed.', errors: ['The header has a quote that is never closed.'] };
    if (head.tooWide) return { title: 'its header cannot be parsed.', errors: ['The header has more than 65,536 columns.'] };
    const header = head.names;
    const check = checkHeader(header, features);
    if (check.errors.length) {
      return { title: "its header does not match the model's columns. Fix the header in the file and load it again.", errors: check.errors };
    }
    const nCols = header.length;
    const kinds = check.kinds;
    const len = text.length;
    let pos = head.next;
    let line = head.lines + 1;
    let rows = 0;
    let cap = 0;
    let starts = new Uint32Array(0);
    let rowStart = new Uint32Array(0);
    let rowEnd = new Uint32Array(0);
    const scratch = new Uint32Array(nCols + 1);
    const invalid = new Map();
    const ragged = [];
    let raggedCount = 0;
    let missing = 0;
    let failure = null;

    const grow = (need) => {
      if (need <= cap) return;
      const estimate = rows > 0 ? Math.ceil(((len - pos) / Math.max(1, pos - head.next)) * rows) + 16 : 64;
      const next = Math.max(need, Math.ceil(cap * 1.5), Math.min(estimate + rows, 1 << 22));
      const s = new Uint32Array(next * nCols);
      s.set(starts.subarray(0, rows * nCols));
      const a = new Uint32Array(next);
      a.set(rowStart.subarray(0, rows));
      const b = new Uint32Array(next);
      b.set(rowEnd.subarray(0, rows));
      starts = s;
      rowStart = a;
      rowEnd = b;
      cap = next;
    };

    const step = () => {
      const deadline = performance.now() + SLICE_MS;
      let n = 0;
      while (pos < len) {
        const ch = text.charCodeAt(pos);
        if (ch === 10 || ch === 13) { // a blank line: skipped
          pos += ch === 13 && text.charCodeAt(pos + 1) === 10 ? 2 : 1;
          line += 1;
          continue;
        }
        const rec = parseRecord(text, pos, scratch);
        if (rec.unterminated) {
          failure = `The file ends inside a quoted cell that starts on line ${fmtInt(line)}; check its quotes.`;
          return true;
        }
        if (rec.fields !== nCols) {
          raggedCount += 1;
          if (ragged.length < 10) ragged.push(`Line ${fmtInt(line)} has ${rec.fields} fields but the header has ${nCols}.`);
        } else if (raggedCount === 0) {
          grow(rows + 1);
          const base = rows * nCols;
          starts.set(scratch.subarray(0, nCols), base);
          rowStart[rows] = pos;
          rowEnd[rows] = rec.end;
          for (let c = 0; c < nCols; c++) {
            const s = scratch[c];
            const e = c + 1 < nCols ? scratch[c + 1] - 1 : rec.end;
            const kind = kinds[c];
            let result;
            if (kind === KIND_SENSOR && text.charCodeAt(s) !== 34) {
              result = quickSensor(text, s, e);
              if (result === C_SLOW) result = classifySensor(text.slice(s, e));
            } else {
              result = classify(kind, text.charCodeAt(s) === 34 ? unquote(text, s, e) : text.slice(s, e));
            }
            if (result === C_MISSING) {
              if (kind === KIND_SENSOR) missing += 1;
            } else if (result !== C_OK) {
              invalid.set(base + c, result);
            }
          }
          rows += 1;
          if (invalid.size > MAX_INVALID_CELLS) {
            failure = `More than ${fmtInt(MAX_INVALID_CELLS)} cells are not numbers; this does not look like a wafer sensor file.`;
            return true;
          }
        }
        line += 1 + rec.newlines;
        pos = rec.next;
        n += 1;
        if ((n & 31) === 0 && performance.now() > deadline) return false;
      }
      return true;
    };

    await new Promise((resolve) => {
      const tick = () => {
        if (step()) {
          resolve();
        } else {
          showProgress(0.3 + 0.7 * (pos / len), `Checking ${name}… ${fmtInt(rows)} rows`);
          setTimeout(tick, 0);
        }
      };
      tick();
    });

    if (failure) return { title: 'it cannot be read.', errors: [failure] };
    if (raggedCount) {
      const more = raggedCount > ragged.length ? [`…and ${plural(raggedCount - ragged.length, 'more line')}.`] : [];
      return { title: 'some lines do not have one field per header column. Fix them in the file and load it again.', errors: ragged.concat(more) };
    }
    if (rows === 0) return { title: 'it has a header but no rows.', errors: [] };
    return {
      data: {
        name,
        text,
        header,
        headerEnd: head.end,
        nCols,
        nRows: rows,
        idCol: check.idCol,
        kinds,
        starts,
        rowStart,
        rowEnd,
        /** Edited values by cell index (row * nCols + col); an edit back to the original is dropped. */
        edits: new Map(),
        /** Edited cells per row, so unedited rows are sent as their original text. */
        editedRows: new Map(),
        /** Why a cell cannot be scored, by cell index. */
        invalid,
        /** Missing sensor cells. */
        missing,
        /** Bumped by every change, so results know whether they still match the data. */
        generation: 0,
      },
    };
  }

  /** Makes a freshly loaded table the current one. */
  function adopt(d) {
    closeEditor(false);
    data = d;
    results = null;
    undoStack = [];
    sortByProbability = false;
    faultsOnly = false;
    ui.filter.checked = false;
    ui.sort.setAttribute('aria-pressed', 'false');
    thresholdTouched = false;
    baseThreshold = card ? Number(card.threshold) : NaN;
    if (card) setThreshold(baseThreshold, true);
    cursor = { r: 0, key: 'id' };
    setErrorGroup('api', null);
    ui.summary.textContent = '';
    ui.grid.hidden = false;
    ui.empty.hidden = true;
    buildColumns();
    rebuildView();
    ui.grid.scrollTop = 0;
    ui.grid.scrollLeft = 0;
    refreshCellErrors();
    updateInfo();
    updateControls();
    invalidate();
  }

  // ---------------------------------------------------------------- 6. the table: cells, edits, undo

  function rawCell(d, r, c) {
    const i = r * d.nCols + c;
    const s = d.starts[i];
    const e = c + 1 < d.nCols ? d.starts[i + 1] - 1 : d.rowEnd[r];
    return d.text.charCodeAt(s) === 34 ? unquote(d.text, s, e) : d.text.slice(s, e);
  }

  function cellText(d, r, c) {
    const v = d.edits.get(r * d.nCols + c);
    return v === undefined ? rawCell(d, r, c) : v;
  }

  function rowId(d, r) {
    return cellText(d, r, d.idCol).trim();
  }

  /** Sets cell (r, c) to `value` and keeps the counts, marks and error list in step. */
  function setCell(r, c, value) {
    changeCell(r, c, value);
    afterChange();
  }

  /** The bookkeeping of one changed cell; callers run afterChange once they are done. */
  function changeCell(r, c, value) {
    const d = data;
    const i = r * d.nCols + c;
    const kind = d.kinds[c];
    const before = classify(kind, cellText(d, r, c));
    const wasEdited = d.edits.has(i);
    if (value === rawCell(d, r, c)) d.edits.delete(i);
    else d.edits.set(i, value);
    const isEdited = d.edits.has(i);
    if (wasEdited !== isEdited) {
      const k = (d.editedRows.get(r) || 0) + (isEdited ? 1 : -1);
      if (k > 0) d.editedRows.set(r, k);
      else d.editedRows.delete(r);
    }
    const after = classify(kind, value);
    if (kind === KIND_SENSOR) d.missing += (after === C_MISSING ? 1 : 0) - (before === C_MISSING ? 1 : 0);
    if (after === C_OK || after === C_MISSING) d.invalid.delete(i);
    else d.invalid.set(i, after);
    d.generation += 1;
    if (results) results.stale = true; // the answer no longer matches the table
  }

  function afterChange() {
    refreshCellErrors();
    updateInfo();
    if (results) updateSummary();
    updateControls();
    invalidate();
  }

  /** An edit by the user: recorded for undo. */
  function editCell(r, c, typed) {
    const value = typed.trim();
    if (value === cellText(data, r, c)) return;
    undoStack.push([{ r, c, before: data.edits.get(r * data.nCols + c) }]);
    setCell(r, c, value);
  }

  /** Makes every invalid sensor or label cell missing: one step to undo. */
  function blankInvalid() {
    const d = data;
    if (!d || busy) return;
    closeEditor(true);
    const step = [];
    for (const i of [...d.invalid.keys()]) {
      const r = Math.floor(i / d.nCols);
      const c = i % d.nCols;
      if (d.kinds[c] === KIND_ID) continue;
      step.push({ r, c, before: d.edits.get(i) });
      changeCell(r, c, '');
    }
    if (!step.length) return;
    undoStack.push(step);
    afterChange();
  }

  function undo() {
    if (!data || busy || !undoStack.length) return;
    closeEditor(true);
    const step = undoStack.pop();
    for (let k = step.length - 1; k >= 0; k--) {
      const x = step[k];
      changeCell(x.r, x.c, x.before === undefined ? rawCell(data, x.r, x.c) : x.before);
    }
    afterChange();
    const col = columnOfFileColumn(step[0].c);
    if (col) goToCell(step[0].r, col.key, true);
  }

  // ---------------------------------------------------------------- 7. the virtualized grid

  /** Displayed columns: {key (data-col), label, kind, c (file column, -1 for results), w}. */
  let cols = [];
  /** Left edge of each displayed column, in content pixels. */
  let colX = new Float64Array(0);
  let totalWidth = 0;
  let colIndexByKey = new Map();
  /** The focused (or last focused) cell: original row index and column key. */
  let cursor = { r: 0, key: 'id' };
  /** The open editor: {input, r, key, c} or null. */
  let editing = null;

  const content = el('div', 'g-content');
  content.setAttribute('role', 'presentation');
  const headRow = el('div', 'g-head');
  headRow.setAttribute('role', 'row');
  const corner = el('div', 'cell head pinned');
  corner.setAttribute('role', 'columnheader');
  headRow.append(corner);
  content.append(headRow);
  ui.grid.append(content);
  /** Pooled row elements and header cells, reused in order so an element keeps its place. */
  const rowPool = [];
  const headPool = [];
  /** Rendered window {r0, r1, c0, c1} (display rows, displayed columns) or null. */
  let rendered = null;
  /** Whether the rendered cells are out of date regardless of the window. */
  let dirty = true;
  let frame = 0;
  /** Rendered cells by "row|key", to find one to focus. */
  let cellByKey = new Map();

  function buildColumns() {
    const d = data;
    cols = [{ key: 'id', label: d.header[d.idCol] || 'Wafer', kind: 'id', c: d.idCol, w: WIDTH.id }];
    if (results) {
      cols.push({ key: 'probability', label: 'probability', kind: 'probability', c: -1, w: WIDTH.probability });
      cols.push({ key: 'fault', label: 'fault', kind: 'fault', c: -1, w: WIDTH.fault });
      cols.push({ key: 'contributions', label: 'contributions (log-odds)', kind: 'contributions', c: -1, w: WIDTH.contributions });
    }
    for (let c = 0; c < d.nCols; c++) {
      if (c === d.idCol) continue;
      const label = d.kinds[c] === KIND_LABEL;
      cols.push({ key: d.header[c], label: d.header[c], kind: label ? 'label' : 'sensor', c, w: label ? WIDTH.label : WIDTH.sensor });
    }
    colX = new Float64Array(cols.length);
    colIndexByKey = new Map();
    let x = 0;
    cols.forEach((col, i) => {
      colX[i] = x;
      x += col.w;
      colIndexByKey.set(col.key, i);
    });
    totalWidth = x;
    corner.textContent = cols[0].label;
    corner.style.width = `${cols[0].w}px`;
    ui.grid.setAttribute('aria-colcount', String(cols.length));
    dirty = true;
  }

  function columnOfFileColumn(c) {
    return cols.find((col) => col.c === c && col.kind !== 'probability');
  }

  /** The displayed column whose span holds content x (at least 1: column 0 is pinned). */
  function columnAt(x) {
    let lo = 1;
    let hi = cols.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (colX[mid] <= x) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  function rebuildView() {
    const d = data;
    const n = d.nRows;
    let order;
    if (sortByProbability && results) {
      order = results.byProbability;
    } else {
      order = new Int32Array(n);
      for (let r = 0; r < n; r++) order[r] = r;
    }
    if (faultsOnly && results) {
      const kept = new Int32Array(n);
      let k = 0;
      const t = Math.fround(threshold);
      for (let j = 0; j < n; j++) {
        const r = order[j];
        if (Math.fround(results.prob[r]) >= t) kept[k++] = r;
      }
      order = kept.slice(0, k);
    }
    view = order;
    viewPos = new Int32Array(n).fill(-1);
    for (let k = 0; k < view.length; k++) viewPos[view[k]] = k;
    content.style.width = `${totalWidth}px`;
    content.style.height = `${HEAD_H + view.length * ROW_H}px`;
    headRow.style.width = `${totalWidth}px`;
    ui.grid.setAttribute('aria-rowcount', String(view.length + 1));
    dirty = true;
  }

  function invalidate() {
    dirty = true;
    scheduleRender();
  }

  function scheduleRender() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
  }

  /** Paints the visible window (plus overscan) when it left the painted one or the data changed. */
  function render() {
    if (!data || ui.grid.hidden) return;
    const top = ui.grid.scrollTop;
    const left = ui.grid.scrollLeft;
    const height = ui.grid.clientHeight;
    const width = ui.grid.clientWidth;
    const n = view.length;
    const vr0 = Math.min(n, Math.floor(top / ROW_H));
    const vr1 = Math.min(n, Math.ceil((top + height - HEAD_H) / ROW_H) + 1);
    let vc0 = 1;
    let vc1 = 1;
    if (cols.length > 1) {
      vc0 = columnAt(left + cols[0].w);
      vc1 = columnAt(left + width) + 1;
    }
    const R = rendered;
    if (dirty || !R || vr0 < R.r0 || vr1 > R.r1 || vc0 < R.c0 || vc1 > R.c1) {
      paint(
        Math.max(0, vr0 - OVERSCAN_ROWS),
        Math.min(n, vr1 + OVERSCAN_ROWS),
        Math.max(1, vc0 - OVERSCAN_COLS),
        Math.min(cols.length, vc1 + OVERSCAN_COLS),
      );
    }
    placeEditor();
  }

  /**
   * Fills the window: display rows r0..r1, displayed columns c0..c1 (plus the pinned column 0).
   * Pooled elements are keyed by display index modulo the pool size, so after a scroll only the
   * rows and columns that came into view change; the others pass their unchanged-value checks.
   */
  function paint(r0, r1, c0, c1) {
    const active = document.activeElement;
    const hadFocus = active && active.classList && active.classList.contains('cell') && ui.grid.contains(active);
    const d = data;
    const t = Math.fround(threshold);
    cellByKey = new Map();
    const nc = c1 - c0;

    // Header cells.
    while (headPool.length < nc) {
      const h = el('div', 'cell head');
      h.setAttribute('role', 'columnheader');
      headPool.push(h);
      headRow.append(h);
    }
    while (headPool.length > nc) headPool.pop().remove();
    for (let ci = c0; ci < c1; ci++) {
      const col = cols[ci];
      const h = headPool[ci % nc];
      let cls = 'cell head';
      if (col.kind === 'sensor' || col.kind === 'probability') cls += ' num';
      if (col.c < 0) cls += ' result';
      if (col.key === 'probability' && sortByProbability) cls += ' sorted';
      setIf(h, 'className', cls);
      setIf(h, 'textContent', col.label);
      if (h.dataset.header !== col.key) h.dataset.header = col.key;
      setStyle(h, 'width', `${col.w}px`);
      setStyle(h, 'transform', `translateX(${colX[ci]}px)`);
    }

    // Rows.
    const nr = r1 - r0;
    while (rowPool.length < nr) {
      const row = el('div', 'row');
      row.setAttribute('role', 'row');
      row.cells = [newCell()];
      row.append(row.cells[0]);
      rowPool.push(row);
      content.append(row);
    }
    while (rowPool.length > nr) rowPool.pop().remove();
    for (let disp = r0; disp < r1; disp++) {
      const r = view[disp];
      const row = rowPool[disp % nr];
      const fault = results ? Math.fround(results.prob[r]) >= t : false;
      setIf(row, 'className', `row${disp % 2 ? ' alt' : ''}${fault ? ' fault' : ''}`);
      const rs = String(r);
      if (row.dataset.row !== rs) row.dataset.row = rs;
      const ri = String(disp + 2);
      if (row.ariaRowIndex !== ri) row.setAttribute('aria-rowindex', ri);
      setStyle(row, 'transform', `translateY(${HEAD_H + disp * ROW_H}px)`);
      setStyle(row, 'width', `${totalWidth}px`);
      const cells = row.cells;
      while (cells.length < nc + 1) {
        const cell = newCell();
        cells.push(cell);
        row.append(cell);
      }
      while (cells.length > nc + 1) cells.pop().remove();
      fillCell(cells[0], d, r, 0, fault);
      for (let ci = c0; ci < c1; ci++) fillCell(cells[1 + (ci % nc)], d, r, ci, fault);
    }
    rendered = { r0, r1, c0, c1 };
    dirty = false;
    if (hadFocus) {
      const target = cellByKey.get(`${cursor.r}|${cursor.key}`);
      if (target) {
        if (document.activeElement !== target) target.focus({ preventScroll: true });
      } else {
        ui.grid.focus({ preventScroll: true });
      }
    }
  }

  function newCell() {
    const cell = document.createElement('div');
    cell.setAttribute('role', 'gridcell');
    cell.tabIndex = -1;
    return cell;
  }

  function fillCell(cell, d, r, ci, fault) {
    const col = cols[ci];
    let cls = 'cell';
    let text = '';
    let title = '';
    switch (col.kind) {
      case 'probability': {
        const p = results.prob[r];
        text = p.toFixed(4);
        title = results.probText[r];
        cls += ' num result';
        break;
      }
      case 'fault':
        text = fault ? 'true' : 'false';
        cls += fault ? ' result flag' : ' result';
        break;
      case 'contributions':
        text = results.topText[r];
        title = text;
        cls += ' result top';
        break;
      default: {
        const i = r * d.nCols + col.c;
        const value = cellText(d, r, col.c);
        const reason = d.invalid.get(i);
        if (col.kind === 'id') cls += ' id pinned';
        else cls += col.kind === 'sensor' ? ' num' : ' num label';
        text = value.trim();
        if (reason !== undefined) {
          cls += ' invalid';
          title = reasonText(value, reason);
        } else if (col.kind !== 'id' && MISSING.has(text)) {
          cls += ' missing';
          text = 'NA';
          title = 'missing value';
        }
        if (d.edits.has(i)) cls += ' edited';
      }
    }
    if (results && results.stale && col.c < 0) cls += ' stale';
    setIf(cell, 'className', cls);
    setIf(cell, 'textContent', text);
    setIf(cell, 'title', title);
    const rs = String(r);
    if (cell.dataset.row !== rs) cell.dataset.row = rs;
    if (cell.dataset.col !== col.key) cell.dataset.col = col.key;
    const isCursor = cursor.r === r && cursor.key === col.key;
    const tab = isCursor ? 0 : -1;
    if (cell.tabIndex !== tab) cell.tabIndex = tab;
    if (cell.ariaColIndex !== String(ci + 1)) cell.setAttribute('aria-colindex', String(ci + 1));
    setStyle(cell, 'width', `${col.w}px`);
    setStyle(cell, 'transform', ci === 0 ? '' : `translateX(${colX[ci]}px)`);
    cellByKey.set(`${rs}|${col.key}`, cell);
  }

  /** Writes a DOM property only when it changes (cheaper repaints of pooled cells). */
  function setIf(node, prop, value) {
    if (node[prop] !== value) node[prop] = value;
  }

  function setStyle(node, prop, value) {
    if (node.style[prop] !== value) node.style[prop] = value;
  }

  /** Scrolls so that display row `disp` and displayed column `ci` are visible. */
  function scrollIntoView(disp, ci) {
    const g = ui.grid;
    const y = HEAD_H + disp * ROW_H;
    if (y < g.scrollTop + HEAD_H) g.scrollTop = disp * ROW_H;
    else if (y + ROW_H > g.scrollTop + g.clientHeight) g.scrollTop = y + ROW_H - g.clientHeight;
    if (ci > 0) {
      const x = colX[ci];
      const w = cols[ci].w;
      const pinned = cols[0].w;
      if (x < g.scrollLeft + pinned) g.scrollLeft = x - pinned;
      else if (x + w > g.scrollLeft + g.clientWidth) g.scrollLeft = x + w - g.clientWidth;
    }
  }

  /** Moves the cursor to (r, key), scrolls to it, paints and focuses it. */
  function goToCell(r, key, focus) {
    if (!data) return;
    if (viewPos[r] < 0 && faultsOnly) {
      faultsOnly = false;
      ui.filter.checked = false;
      rebuildView();
      updateInfo();
    }
    const disp = viewPos[r];
    const ci = colIndexByKey.get(key);
    if (disp < 0 || ci === undefined) return;
    cursor = { r, key };
    scrollIntoView(disp, ci);
    dirty = true;
    render();
    const cell = cellByKey.get(`${r}|${key}`);
    if (cell && focus) cell.focus({ preventScroll: true });
  }

  function moveCursor(dRow, dCol, absoluteRow, absoluteCol) {
    if (!data || !view.length) return;
    let disp = viewPos[cursor.r];
    if (disp < 0) disp = 0;
    let ci = colIndexByKey.get(cursor.key);
    if (ci === undefined) ci = 0;
    disp = absoluteRow !== undefined ? absoluteRow : disp + dRow;
    ci = absoluteCol !== undefined ? absoluteCol : ci + dCol;
    disp = Math.max(0, Math.min(view.length - 1, disp));
    ci = Math.max(0, Math.min(cols.length - 1, ci));
    goToCell(view[disp], cols[ci].key, true);
  }

  function editable(col) {
    return col && col.c >= 0;
  }

  function openEditor(r, key, initial) {
    if (!data || busy) return;
    const col = cols[colIndexByKey.get(key)];
    if (!editable(col) || viewPos[r] < 0) return;
    closeEditor(true);
    const input = document.createElement('input');
    input.type = 'text';
    input.className = 'cell-editor';
    input.spellcheck = false;
    input.autocomplete = 'off';
    input.setAttribute('aria-label', `Edit ${col.kind === 'id' ? 'the wafer id' : col.label} of row ${r + 1} (${rowId(data, r) || 'no id'}); Enter keeps it, Escape cancels`);
    input.value = initial !== undefined ? initial : cellText(data, r, col.c).trim();
    editing = { input, r, key, c: col.c };
    cursor = { r, key };
    content.append(input);
    placeEditor();
    input.focus({ preventScroll: true });
    if (initial === undefined) input.select();
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        closeEditor(true, true);
      } else if (e.key === 'Escape') {
        e.preventDefault();
        closeEditor(false, true);
      } else if (e.key === 'Tab') {
        e.preventDefault();
        closeEditor(true, true);
        moveCursor(0, e.shiftKey ? -1 : 1);
      }
      e.stopPropagation();
    });
    input.addEventListener('blur', () => closeEditor(true, false));
  }

  /** Closes the editor, keeping its value when `commit`; refocuses the cell when `refocus`. */
  function closeEditor(commit, refocus) {
    if (!editing) return;
    const ed = editing;
    editing = null;
    const value = ed.input.value;
    ed.input.remove();
    if (commit && data) editCell(ed.r, ed.c, value);
    if (refocus) goToCell(ed.r, ed.key, true);
  }

  function placeEditor() {
    if (!editing) return;
    const disp = viewPos[editing.r];
    const ci = colIndexByKey.get(editing.key);
    if (disp < 0 || ci === undefined) {
      closeEditor(true, false);
      return;
    }
    const x = ci === 0 ? ui.grid.scrollLeft : colX[ci];
    setStyle(editing.input, 'transform', `translate(${x}px, ${HEAD_H + disp * ROW_H}px)`);
    setStyle(editing.input, 'width', `${cols[ci].w}px`);
  }

  ui.grid.addEventListener('scroll', scheduleRender, { passive: true });
  new ResizeObserver(scheduleRender).observe(ui.grid);

  ui.grid.addEventListener('focusin', (e) => {
    const cell = e.target.closest && e.target.closest('.cell[data-row]');
    if (cell) {
      const r = Number(cell.dataset.row);
      const key = cell.dataset.col;
      if (cursor.r !== r || cursor.key !== key) {
        const previous = cellByKey.get(`${cursor.r}|${cursor.key}`);
        if (previous) previous.tabIndex = -1;
        cursor = { r, key };
        cell.tabIndex = 0;
      }
      if (results && !results.stale && Math.fround(results.prob[r]) >= Math.fround(threshold)) showExplanation(r);
    } else if (e.target === ui.grid && data) {
      const target = cellByKey.get(`${cursor.r}|${cursor.key}`);
      if (target) target.focus({ preventScroll: true });
    }
  });

  ui.grid.addEventListener('dblclick', (e) => {
    const cell = e.target.closest && e.target.closest('.cell[data-row]');
    if (cell) openEditor(Number(cell.dataset.row), cell.dataset.col);
  });

  ui.grid.addEventListener('keydown', (e) => {
    if (!data || editing) return;
    const page = Math.max(1, Math.floor((ui.grid.clientHeight - HEAD_H) / ROW_H) - 1);
    const ctrl = e.ctrlKey || e.metaKey;
    switch (e.key) {
      case 'ArrowDown': moveCursor(1, 0); break;
      case 'ArrowUp': moveCursor(-1, 0); break;
      case 'ArrowRight': moveCursor(0, 1); break;
      case 'ArrowLeft': moveCursor(0, -1); break;
      case 'PageDown': moveCursor(page, 0); break;
      case 'PageUp': moveCursor(-page, 0); break;
      case 'Home': if (ctrl) moveCursor(0, 0, 0, 0); else moveCursor(0, 0, undefined, 0); break;
      case 'End': if (ctrl) moveCursor(0, 0, view.length - 1, cols.length - 1); else moveCursor(0, 0, undefined, cols.length - 1); break;
      case 'Enter':
      case 'F2':
        openEditor(cursor.r, cursor.key);
        break;
      case 'Delete':
      case 'Backspace': {
        const col = cols[colIndexByKey.get(cursor.key)];
        if (!editable(col) || col.kind === 'id' || busy) return;
        editCell(cursor.r, col.c, '');
        break;
      }
      default:
        if (e.key.length === 1 && !ctrl && !e.altKey) {
          openEditor(cursor.r, cursor.key, e.key);
          break;
        }
        return;
    }
    e.preventDefault();
  });

  // ---------------------------------------------------------------- 8. scoring, threshold, filter, sort

  /** The current table as the CSV body: unedited rows are sent exactly as they were read. */
  function currentCsv() {
    const d = data;
    const parts = [d.text.slice(0, d.headerEnd), '\n'];
    for (let r = 0; r < d.nRows; r++) {
      if (!d.editedRows.has(r)) {
        parts.push(d.text.slice(d.rowStart[r], d.rowEnd[r]), '\n');
        continue;
      }
      const fields = [];
      for (let c = 0; c < d.nCols; c++) {
        let v = cellText(d, r, c);
        if (d.kinds[c] !== KIND_ID && MISSING.has(v.trim())) v = '';
        fields.push(csvField(v));
      }
      parts.push(fields.join(','), '\n');
    }
    return new Blob(parts, { type: 'text/csv' });
  }

  async function score() {
    if (!canScore()) return;
    closeEditor(true);
    if (!canScore()) return;
    const d = data;
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
      if (data !== d) return; // another file was loaded meanwhile
      adoptResults(json, generation);
    } catch (e) {
      showApiError(e);
    } finally {
      hideProgress();
      setBusy('');
    }
  }

  function adoptResults(json, generation) {
    const d = data;
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
      topNames[r] = top.map((s) => s.sensor);
      rowsOut[r] = x;
      if (String(x.id) !== rowId(d, r)) mismatched += 1;
    }
    const byProbability = new Int32Array(d.nRows);
    for (let r = 0; r < d.nRows; r++) byProbability[r] = r;
    byProbability.sort((a, b) => (prob[b] - prob[a]) || (a - b));
    const hadResults = Boolean(results);
    results = {
      prob,
      probText,
      topText,
      topNames,
      rowsOut,
      byProbability,
      modelVersion: String(json.model_version || (card && card.version) || ''),
      serverThreshold: Number(json.threshold),
      // With [model] alarm_rate the daemon decides by a rolling share, not one threshold: keep its
      // own verdicts to say so beside the slider's count.
      alarmRate: typeof json.alarm_rate === 'number' ? json.alarm_rate : null,
      byBudget: list.filter((x) => x.fault && x.rule === 'alarm_rate').length,
      inWarmup: list.filter((x) => x.fault && x.rule === 'warmup').length,
      generation,
      stale: d.generation !== generation,
    };
    if (Number.isFinite(results.serverThreshold)) {
      baseThreshold = results.serverThreshold;
      if (!thresholdTouched) setThreshold(baseThreshold, true);
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
      const id = data && r >= 0 && r < data.nRows ? ` (${rowId(data, r)})` : '';
      where.push(`Row ${x.row}${id}`);
    }
    if (x.column) where.push(x.column);
    const hasValue = x.value !== null && x.value !== undefined;
    const what = `${hasValue ? `'${x.value}' ` : ''}${x.reason || ''}`.trim();
    const item = { text: where.length ? `${where.join(', ')}: ${what}` : what };
    if (data && x.row && x.column) {
      const c = data.header.indexOf(x.column);
      const r = Number(x.row) - 1;
      const col = c >= 0 ? columnOfFileColumn(c) : null;
      if (col && r >= 0 && r < data.nRows) item.goto = { r, key: col.key };
    }
    return item;
  }

  function canScore() {
    return Boolean(data && card && !busy && data.invalid.size === 0);
  }

  /** Sets the threshold in force; `moveSlider` puts the slider on it (to its nearest step). */
  function setThreshold(t, moveSlider) {
    threshold = t;
    if (moveSlider && Number.isFinite(t)) ui.slider.value = String(t);
    updateThresholdCount();
    ui.reset.disabled = !(Number.isFinite(baseThreshold) && threshold !== baseThreshold);
  }

  function updateThresholdCount() {
    const at = formatThreshold(threshold);
    if (!results) {
      ui.count.textContent = Number.isFinite(threshold) ? `threshold ${at}` : '';
      return;
    }
    let n = 0;
    const t = Math.fround(threshold);
    for (let r = 0; r < results.prob.length; r++) if (Math.fround(results.prob[r]) >= t) n += 1;
    ui.count.textContent = `${plural(n, 'wafer')} flagged at ${at}`;
  }

  function updateSummary() {
    if (!results || !data) {
      ui.summary.textContent = '';
      return;
    }
    const t = Math.fround(threshold);
    const counts = new Map();
    let flagged = 0;
    for (let r = 0; r < data.nRows; r++) {
      if (Math.fround(results.prob[r]) < t) continue;
      flagged += 1;
      for (const s of results.topNames[r]) counts.set(s, (counts.get(s) || 0) + 1);
    }
    let text = `${fmtInt(flagged)} of ${fmtInt(data.nRows)} ${data.nRows === 1 ? 'wafer' : 'wafers'} flagged (threshold ${formatThreshold(threshold)})`;
    if (flagged) {
      const top = [...counts.entries()].sort((a, b) => (b[1] - a[1]) || a[0].localeCompare(b[0], 'en', { numeric: true }));
      const shown = top.slice(0, 5).map(([s, k]) => `${s} (${k})`);
      text += `; sensors recurring among them: ${shown.join(', ')}${top.length > 5 ? ', …' : ''}`;
    } else {
      text += '.';
    }
    if (results.alarmRate !== null) {
      const flaggedByDaemon = results.byBudget + results.inWarmup;
      text += ` The daemon decides by an alarm budget, the top ${(results.alarmRate * 100).toFixed(1)}% of recent wafers: it flagged ${fmtInt(flaggedByDaemon)} of these (${fmtInt(results.byBudget)} by the budget, ${fmtInt(results.inWarmup)} by the threshold while its window warmed up); the slider recounts at one fixed threshold.`;
    }
    if (results.stale) text = `Out of date, the table changed after scoring: score again. ${text}`;
    ui.summary.textContent = text;
    ui.summary.classList.toggle('stale', results.stale);
  }

  function onThresholdInput() {
    let t = Number(ui.slider.value);
    // The slider moves in steps of 0.0001; the step nearest the scorer's threshold means that threshold.
    if (Number.isFinite(baseThreshold) && Math.abs(t - baseThreshold) <= Number(ui.slider.step) / 2) t = baseThreshold;
    thresholdTouched = t !== baseThreshold;
    setThreshold(t, false);
    if (!results) return;
    updateSummary();
    if (faultsOnly) {
      rebuildView();
      updateInfo();
    }
    invalidate();
  }

  // ---------------------------------------------------------------- 9. download

  /** A CSV field: missing spellings were blanked by the caller; quoted when RFC 4180 needs it. */
  function csvField(v) {
    return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
  }

  /** '' for a missing spelling (NA, NaN, null, …), else `v`; only a letter or a blank can start one. */
  function blankIfMissing(v) {
    if (v === '') return v;
    const ch = v.charCodeAt(0);
    if (ch > 57 || ch === 32 || ch === 9) return MISSING.has(v.trim()) ? '' : v;
    return v;
  }

  /** A cell a spreadsheet would run as a formula gets a leading `'`; plain numbers stay as they are. */
  function spreadsheetSafe(v) {
    if (v === '') return v;
    const ch = v.charCodeAt(0);
    // = + - @ tab CR, as the CLI (src/score.rs)
    if (ch === 61 || ch === 43 || ch === 45 || ch === 64 || ch === 9 || ch === 13) {
      if (!(NUMBER_RE.test(v) || /^[+-]?(?:inf|infinity|nan)$/i.test(v))) return `'${v}`;
    }
    return v;
  }

  async function download() {
    if (!results || results.stale || busy || !data) return;
    closeEditor(true);
    const d = data;
    setBusy('exporting');
    try {
      const head = [];
      for (let c = 0; c < d.nCols; c++) head.push(csvField(spreadsheetSafe(d.header[c])));
      head.push('probability', 'fault', 'contributions', 'model_version');
      const parts = [head.join(','), '\n'];
      const t = Math.fround(threshold);
      const version = csvField(spreadsheetSafe(results.modelVersion));
      let r = 0;
      await new Promise((resolve) => {
        const tick = () => {
          const deadline = performance.now() + SLICE_MS;
          while (r < d.nRows) {
            const line = d.text.slice(d.rowStart[r], d.rowEnd[r]);
            let fields;
            if (!d.editedRows.has(r) && line.indexOf('"') < 0) {
              // Fast path: an unedited row without quotes splits on commas, and none of its
              // fields can need quoting (they hold no comma, quote or line break).
              fields = line.split(',');
              for (let c = 0; c < d.nCols; c++) {
                let v = fields[c];
                if (c === d.idCol) v = v.trim();
                else v = blankIfMissing(v);
                fields[c] = spreadsheetSafe(v);
              }
            } else {
              fields = new Array(d.nCols);
              for (let c = 0; c < d.nCols; c++) {
                let v = cellText(d, r, c);
                if (c === d.idCol) v = v.trim();
                else v = blankIfMissing(v);
                fields[c] = csvField(spreadsheetSafe(v));
              }
            }
            fields[d.nCols] = results.probText[r];
            fields[d.nCols + 1] = Math.fround(results.prob[r]) >= t ? 'true' : 'false';
            fields[d.nCols + 2] = csvField(spreadsheetSafe(results.topText[r]));
            fields[d.nCols + 3] = version;
            parts.push(fields.join(','), '\n');
            r += 1;
            if ((r & 15) === 0 && performance.now() > deadline) break;
          }
          if (r < d.nRows) {
            showProgress(r / d.nRows, `Preparing the download… ${fmtInt(r)} rows`);
            setTimeout(tick, 0);
          } else {
            resolve();
          }
        };
        tick();
      });
      const url = URL.createObjectURL(new Blob(parts, { type: 'text/csv;charset=utf-8' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = 'faultline-results.csv';
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } finally {
      hideProgress();
      setBusy('');
    }
  }

  // ---------------------------------------------------------------- 10. errors, status, controls, wiring

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.firstChild.remove();
  }

  /** A message from the daemon or the browser as a sentence: capitalized, with a full stop. */
  function sentence(message) {
    const m = String(message || 'unknown error').trim();
    const s = m.charAt(0).toUpperCase() + m.slice(1);
    return /[.!?…]$/.test(s) ? s : `${s}.`;
  }

  /** Sets (or with null removes) one group of #errors: {title, items: [{text, goto?}], action?: {id, label, run}}. */
  function setErrorGroup(name, group) {
    errorGroups.set(name, group);
    renderErrors();
  }

  function renderErrors() {
    clear(ui.errors);
    let any = false;
    for (const [name, group] of errorGroups) {
      if (!group) continue;
      any = true;
      const section = el('section', `error-group error-${name}`);
      section.append(el('p', 'error-title', group.title));
      if (group.action) {
        const button = el('button', 'small error-action', group.action.label);
        button.type = 'button';
        button.id = group.action.id;
        button.addEventListener('click', group.action.run);
        section.append(button);
      }
      if (group.items.length) {
        const list = el('ul', 'error-list');
        for (const item of group.items) {
          const li = el('li', '', item.text);
          if (item.goto) {
            li.classList.add('goto');
            li.tabIndex = 0;
            li.title = 'Show this cell';
            li.dataset.gotoRow = String(item.goto.r);
            li.dataset.gotoCol = item.goto.key;
          }
          list.append(li);
        }
        section.append(list);
      }
      ui.errors.append(section);
    }
    ui.errors.hidden = !any;
  }

  function activateErrorItem(target) {
    const li = target.closest && target.closest('li.goto');
    if (li) goToCell(Number(li.dataset.gotoRow), li.dataset.gotoCol, true);
  }
  ui.errors.addEventListener('click', (e) => activateErrorItem(e.target));
  ui.errors.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      activateErrorItem(e.target);
    }
  });

  /** Lists the cells that block scoring, in file order, each linked to its cell. */
  function refreshCellErrors() {
    const d = data;
    if (!d || d.invalid.size === 0) {
      setErrorGroup('cells', null);
      return;
    }
    let keys = [...d.invalid.keys()];
    if (keys.length <= 20000) keys.sort((a, b) => a - b);
    keys = keys.slice(0, ERROR_LIST_LIMIT);
    const items = keys.map((i) => {
      const r = Math.floor(i / d.nCols);
      const c = i % d.nCols;
      const col = columnOfFileColumn(c);
      const name = d.kinds[c] === KIND_ID ? 'wafer id' : d.header[c];
      const id = rowId(d, r) || 'no id';
      return {
        text: `Row ${r + 1} (${id}), ${name}: ${reasonText(cellText(d, r, c), d.invalid.get(i))}`,
        goto: col ? { r, key: col.key } : null,
      };
    });
    const n = d.invalid.size;
    if (n > items.length) items.push({ text: `…and ${plural(n - items.length, 'more cell')}.` });
    setErrorGroup('cells', {
      title: `${plural(n, 'cell')} cannot be scored, so Score is disabled until ${n === 1 ? 'it is' : 'they are'} fixed. `
        + 'Double-click a cell (or select it and press Enter) and type a number, or leave it empty (or NA) for a missing value:',
      items,
      action: [...d.invalid.keys()].some((i) => d.kinds[i % d.nCols] !== KIND_ID)
        ? { id: 'blank-invalid', label: `Mark ${n === 1 ? 'it' : `all ${fmtInt(n)}`} as missing (undoable)`, run: blankInvalid }
        : null,
    });
  }

  function updateInfo() {
    if (!data) {
      ui.tableInfo.textContent = 'No file loaded.';
      return;
    }
    const d = data;
    let text = `${d.name}: ${plural(d.nRows, 'row')} × ${plural(d.nCols, 'column')} · ${plural(d.missing, 'missing cell')}`;
    if (d.edits.size) text += ` · ${plural(d.edits.size, 'edited cell')}`;
    if (d.invalid.size) text += ` · ${plural(d.invalid.size, 'invalid cell')}`;
    if (view.length !== d.nRows) text += ` · showing ${fmtInt(view.length)}`;
    ui.tableInfo.textContent = text;
  }

  function setBusy(what) {
    busy = what;
    document.body.classList.toggle('busy', Boolean(what));
    ui.grid.setAttribute('aria-busy', what ? 'true' : 'false');
    ui.score.textContent = what === 'scoring' ? 'Scoring…' : 'Score';
    updateControls();
  }

  function updateControls() {
    const loaded = Boolean(data);
    ui.fileInput.disabled = Boolean(busy);
    ui.fileLabel.classList.toggle('disabled', Boolean(busy));
    ui.score.disabled = !canScore();
    if (!loaded) ui.score.title = 'Open a wafer CSV first';
    else if (data.invalid.size) ui.score.title = 'Fix the invalid cells first (listed above the table)';
    else if (!card) ui.score.title = 'Waiting for the model card';
    else ui.score.title = 'Score every row with the deployed model';
    ui.undo.disabled = Boolean(busy) || !undoStack.length;
    const scored = Boolean(results) && !busy;
    ui.filter.disabled = !scored;
    ui.sort.disabled = !scored;
    ui.slider.disabled = !Number.isFinite(threshold);
    ui.reset.disabled = !(Number.isFinite(baseThreshold) && threshold !== baseThreshold);
    ui.download.disabled = !results || results.stale || Boolean(busy);
    ui.download.title = results && results.stale
      ? 'The table changed after scoring: score again to download matching results'
      : 'Download the table with probability, fault, contributions and model_version as CSV';
  }

  /** Shows progress `f` (0–1; null = indeterminate) with a label. */
  function showProgress(f, label) {
    ui.progressWrap.hidden = false;
    if (f === null) ui.progress.removeAttribute('value');
    else ui.progress.value = Math.max(0, Math.min(1, f));
    ui.progressLabel.textContent = label;
  }

  function hideProgress() {
    ui.progressWrap.hidden = true;
    ui.progress.value = 0;
    ui.progressLabel.textContent = '';
  }

  ui.fileInput.addEventListener('change', () => {
    const file = ui.fileInput.files && ui.fileInput.files[0];
    ui.fileInput.value = '';
    if (file) loadFile(file);
  });

  // Dropping anywhere else must not make the browser navigate away to the file.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  let dragDepth = 0;
  ui.dropZone.addEventListener('dragenter', (e) => {
    e.preventDefault();
    dragDepth += 1;
    ui.dropZone.classList.add('dragover');
  });
  ui.dropZone.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) ui.dropZone.classList.remove('dragover');
  });
  ui.dropZone.addEventListener('dragover', (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = busy ? 'none' : 'copy';
  });
  ui.dropZone.addEventListener('drop', (e) => {
    e.preventDefault();
    dragDepth = 0;
    ui.dropZone.classList.remove('dragover');
    const files = e.dataTransfer ? e.dataTransfer.files : null;
    if (!files || !files.length) return;
    if (files.length > 1) {
      setErrorGroup('file', { title: `${files.length} files were dropped; drop one wafer CSV at a time.`, items: [] });
      return;
    }
    loadFile(files[0]);
  });

  ui.score.addEventListener('click', score);
  ui.undo.addEventListener('click', undo);
  ui.download.addEventListener('click', () => {
    download().catch((e) => setErrorGroup('api', { title: `The download failed: ${sentence(e.message)}`, items: [] }));
  });
  ui.filter.addEventListener('change', () => {
    closeEditor(true);
    faultsOnly = ui.filter.checked;
    rebuildView();
    ui.grid.scrollTop = 0;
    updateInfo();
    invalidate();
  });
  ui.sort.addEventListener('click', () => {
    closeEditor(true);
    sortByProbability = !sortByProbability;
    ui.sort.setAttribute('aria-pressed', String(sortByProbability));
    rebuildView();
    ui.grid.scrollTop = 0;
    invalidate();
  });
  ui.slider.addEventListener('input', onThresholdInput);
  ui.reset.addEventListener('click', () => {
    thresholdTouched = false;
    setThreshold(baseThreshold, true);
    updateSummary();
    if (faultsOnly && results) {
      rebuildView();
      updateInfo();
    }
    invalidate();
  });

  document.addEventListener('keydown', (e) => {
    const typing = e.target instanceof HTMLInputElement && e.target.type !== 'checkbox' && e.target.type !== 'range';
    if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && e.key.toLowerCase() === 'z' && !typing) {
      e.preventDefault();
      undo();
    }
  });

  // The page's other scripts (quality.js) share the token, its form and the model card through
  // this; nothing else of this file is reachable from outside.
  window.faultline = Object.freeze({
    authHeaders,
    /** Shows the token form (as refused when a token was sent) and resolves once one is given. */
    askForToken: () => askForToken(Boolean(token)),
    /** Shows the model card again (after a promotion); the threshold of scored rows stays theirs. */
    refreshCard: () => getJson('/api/model').then((c) => {
      card = c;
      renderCard();
    }),
  });

  updateControls();
  loadCard();
  startDrift();
})();
