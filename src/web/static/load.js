// Loading a wafer CSV: the file checks, the FileReader, a chunked RFC 4180 parser that keeps the
// page responsive, and the header check against the model card's features, as the daemon does.

import { C_MISSING, C_OK, C_SLOW, KIND_EXTRA, KIND_ID, KIND_LABEL, KIND_SENSOR, LABEL_COLUMN, MAX_INVALID_CELLS, PAGE_MAX_BYTES, SLICE_MS, state, trim, ui, hooks } from './base.js';
import { uploadLimits } from './api.js';
import { inForce } from './card.js';
import { classify, classifySensor, decodeUtf8, fmtBytes, fmtInt, plural, summarizeNames, summarizePositions, unquote } from './cells.js';
import { buildColumns, closeEditor, invalidate, rebuildView } from './grid.js';
import { hideProgress, refreshCellErrors, sentence, setBusy, setErrorGroup, showProgress, updateControls, updateInfo } from './status.js';

function looksLikeCsv(file) {
  return /\.csv$/i.test(file.name) || /^text\/csv\b/i.test(file.type || '');
}

export async function loadFile(file) {
  if (state.busy) {
    const what = { loading: 'loading a file', scoring: 'scoring', exporting: 'preparing the download' }[state.busy];
    setErrorGroup('file', { title: `${file.name} was not loaded: the page is still ${what}; try again when it is done.`, items: [] });
    return;
  }
  const kept = state.data ? ` The table still shows ${state.data.name}.` : '';
  const edits = state.data ? state.data.editedRows.size : 0;
  if (edits && !window.confirm(`Open ${file.name}? The ${plural(edits, 'edited row')} of ${state.data.name} will be lost (download the results first to keep them).`)) {
    ui.fileInput.value = '';
    return;
  }
  setErrorGroup('file', null);
  if (!looksLikeCsv(file)) {
    setErrorGroup('file', {
      title: `${file.name} was not loaded: it is not a CSV file (its type is '${file.type || 'unknown'}'). Choose a .csv file (text/csv).${kept}`,
      items: [],
    });
    return;
  }
  if (file.size > PAGE_MAX_BYTES) {
    setErrorGroup('file', {
      title: `${file.name} was not loaded: it is ${fmtBytes(file.size)}, and the page opens files up to ${fmtBytes(PAGE_MAX_BYTES)} (a browser holds no more text at once). Score it with faultline score, or split it.${kept}`,
      items: [],
    });
    return;
  }
  setBusy('loading');
  try {
    // The daemon's own limits: a file it would refuse is refused here, before it is read.
    const limits = await uploadLimits();
    if (limits && file.size > limits.max_body_bytes) {
      setErrorGroup('file', {
        title: `${file.name} was not loaded: it is ${fmtBytes(file.size)}, over the daemon's limit of ${fmtBytes(limits.max_body_bytes)} ([web] max_body_bytes). Split it into smaller files.${kept}`,
        items: [],
      });
      return;
    }
    showProgress(0, state.cardPromise && !state.card ? 'Waiting for the model card…' : `Reading ${file.name}…`);
    let features;
    try {
      features = (await state.cardPromise).input.features;
    } catch (e) {
      setErrorGroup('file', {
        title: `${file.name} was not loaded: its columns cannot be checked without the model card (${sentence(e.message)})${kept}`,
        items: [],
      });
      return;
    }
    const read = await readText(file);
    if (read.error) {
      setErrorGroup('file', { title: `${file.name} was not loaded: ${read.error}${kept}`, items: [] });
      return;
    }
    const loaded = await loadText(file.name, read.text, features, Boolean(limits && limits.allow_extra_columns));
    if (loaded.errors) {
      setErrorGroup('file', { title: `${file.name} was not loaded: ${loaded.title}${kept}`, items: loaded.errors.map((t) => ({ text: t })) });
      return;
    }
    if (limits && loaded.data.nRows > limits.max_rows) {
      setErrorGroup('file', {
        title: `${file.name} was not loaded: it has ${fmtInt(loaded.data.nRows)} rows, and the daemon scores at most ${fmtInt(limits.max_rows)} at once ([web] max_rows). Split it into smaller files.${kept}`,
        items: [],
      });
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

/**
 * Reads the file as UTF-8: {text}, or {error} for bytes that are not UTF-8, naming where, as the
 * daemon and `faultline score` refuse them (a lenient decoder would quietly turn them into
 * U+FFFD, and the page would score what the CLI refuses). The progress bar shows 0–30 %.
 */
function readText(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener('progress', (e) => {
      if (e.lengthComputable) showProgress(0.3 * e.loaded / e.total, `Reading ${file.name}… ${Math.round(100 * e.loaded / e.total)} %`);
    });
    reader.addEventListener('load', () => {
      try {
        resolve(decodeUtf8(new Uint8Array(reader.result)));
      } catch (e) {
        reject(e);
      }
    });
    reader.addEventListener('error', () => reject(new Error(`the file cannot be read (${reader.error ? reader.error.message : 'unknown error'})`)));
    reader.readAsArrayBuffer(file);
  });
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
    names.push(trim(text.charCodeAt(s) === 34 ? unquote(text, s, e) : text.slice(s, e)));
  }
  return { names, end: rec.end, next: rec.next, lines: 1 + rec.newlines };
}

/**
 * Checks the header against the model's features, as the daemon does (crates/rows/src/csv):
 * a column the model does not know is refused unless the daemon allows extra columns, when it
 * is shown and sent as it is.
 */
function checkHeader(names, features, allowExtra) {
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
  // A file saved with another separator is one column: say so, not that 590 columns are missing.
  const separator = names.length === 1 && features.length > 1 ? [';', '\t', '|'].find((c) => names[0].includes(c)) : undefined;
  if (separator !== undefined) {
    const which = separator === '\t' ? 'tabs' : `'${separator}'`;
    errors.push(`The header is one column holding ${which}: faultline reads comma-separated files. Save the file as CSV with commas (a spreadsheet set to a decimal comma writes ';').`);
    return { errors, idCol: 0, kinds: new Uint8Array(1) };
  }
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
      if (allowExtra) kinds[i] = KIND_EXTRA;
      else unknown.push(n);
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
async function loadText(name, rawText, features, allowExtra) {
  const text = rawText.charCodeAt(0) === 0xfeff ? rawText.slice(1) : rawText;
  if (text.trim() === '') {
    return { title: 'it is empty.', errors: [`Expected a header row naming the sensor columns (${features[0]}..${features[features.length - 1]}).`] };
  }
  const head = parseHeader(text);
  if (head.unterminated) return { title: 'its header cannot be parsed.', errors: ['The header has a quote that is never closed.'] };
  if (head.tooWide) return { title: 'its header cannot be parsed.', errors: ['The header has more than 65,536 columns.'] };
  const header = head.names;
  const check = checkHeader(header, features, allowExtra);
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
  const spellings = new Map();
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
            // The spellings, to name the commonest if there are too many to show (bounded).
            const v = trim(text.slice(s, e));
            if (spellings.size < 1000 || spellings.has(v)) spellings.set(v, (spellings.get(v) || 0) + 1);
          }
        }
        rows += 1;
        if (invalid.size > MAX_INVALID_CELLS) {
          const common = [...spellings].sort((a, b) => b[1] - a[1]).slice(0, 3)
            .map(([v, k]) => `'${v.length > 24 ? `${v.slice(0, 24)}…` : v}' ${fmtInt(k)} times`);
          failure = `More than ${fmtInt(MAX_INVALID_CELLS)} cells cannot be read, most often ${common.join(', ')}. ` +
            'If a spelling means a missing value, write it as an empty cell, NA or null in the file and load it again; ' +
            'faultline score and the daemon refuse it too.';
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
  state.data = d;
  state.results = null;
  state.undoStack = [];
  state.sortByProbability = false;
  state.faultsOnly = false;
  ui.filter.checked = false;
  ui.sort.setAttribute('aria-pressed', 'false');
  state.thresholdTouched = false;
  state.baseThreshold = state.card ? inForce(state.card) : NaN;
  if (state.card) hooks.setThreshold(state.baseThreshold, true);
  state.cursor = { r: 0, key: 'id' };
  setErrorGroup('api', null);
  ui.summary.textContent = '';
  document.getElementById('file-checks').hidden = true;
  document.getElementById('download-note').hidden = true;
  // An open explanation is of a wafer of the previous table.
  document.getElementById('explanation').hidden = true;
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
