// The download: the scored table as CSV with probability, fault, threshold, contributions and
// model_version columns, built in slices; cells a spreadsheet would run as formulas get a leading ',
// as in the CLI. Its name says what it holds: the file's, the model version and the threshold.
// When the daemon decides by an alarm budget, `fault`, `threshold` and `rule` are its verdicts on
// the file (the budget started afresh on it, as `faultline score` writes them), and
// `fault_at_slider` / `slider_threshold` say what the slider's one threshold flags.

import { isSpace, KIND_EXTRA, MISSING, NUMBER_RE, SLICE_MS, state, trim } from './base.js';
import { f32Text, fmtInt } from './cells.js';
import { cellText } from './table.js';
import { closeEditor } from './grid.js';
import { hideProgress, setBusy, showProgress } from './status.js';

/** A CSV field: missing spellings were blanked by the caller; quoted when RFC 4180 needs it. */
export function csvField(v) {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** '' for a missing spelling (NA, NaN, null, …), else `v`; only a letter or a blank can start one. */
function blankIfMissing(v) {
  if (v === '') return v;
  const ch = v.charCodeAt(0);
  if (ch > 57 || isSpace(ch)) return MISSING.has(trim(v)) ? '' : v;
  return v;
}

/** A cell a spreadsheet would run as a formula gets a leading `'`; plain numbers stay as they are. */
function spreadsheetSafe(v) {
  if (v === '') return v;
  const ch = v.charCodeAt(0);
  // = + - @ tab CR, as the CLI (src/score.rs)
  if (ch === 61 || ch === 43 || ch === 45 || ch === 64 || ch === 9 || ch === 13) {
    // Judged without the blanks around it, which faultline's reader drops: `-1.5 ` is a number.
    const t = trim(v);
    // A finite number only, as the CLI: `-inf` or `+NaN` a spreadsheet reads as a formula.
    if (!(NUMBER_RE.test(t) && Number.isFinite(Number(t)))) return `'${v}`;
  }
  return v;
}

/**
 * `<file>-scored-<model version>-t<threshold>.csv` (`-budget<rate>` when the daemon decides by an
 * alarm budget), in characters every file system takes.
 */
export function downloadName(file, version, rule) {
  const safe = (v) => String(v).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'x';
  const base = safe(String(file || 'wafers').replace(/\.csv$/i, ''));
  const how = /^budget/.test(rule) ? safe(rule) : `t${safe(rule)}`;
  return `${base}-scored-${safe(version || 'model')}-${how}.csv`;
}

export async function download() {
  if (!state.results || state.results.stale || state.busy || !state.data) return;
  closeEditor(true);
  const d = state.data;
  setBusy('exporting');
  try {
    const head = [];
    for (let c = 0; c < d.nCols; c++) head.push(csvField(spreadsheetSafe(d.header[c])));
    const rows = state.results.rowsOut;
    const budget = state.results.alarmRate !== null;
    head.push('probability', 'fault', 'threshold');
    if (budget) head.push('rule', 'fault_at_slider', 'slider_threshold');
    head.push('contributions', 'model_version');
    const parts = [head.join(','), '\n'];
    const t = Math.fround(state.threshold);
    // The f32 the rows were compared with, in its own digits, as the probabilities are: a
    // spreadsheet's probability >= threshold then agrees with the fault column.
    const tText = f32Text(t);
    const version = csvField(spreadsheetSafe(state.results.modelVersion));
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
              if (c === d.idCol) v = trim(v);
              else if (d.kinds[c] !== KIND_EXTRA) v = blankIfMissing(v);
              fields[c] = spreadsheetSafe(v);
            }
          } else {
            fields = new Array(d.nCols);
            for (let c = 0; c < d.nCols; c++) {
              let v = cellText(d, r, c);
              if (c === d.idCol) v = trim(v);
              else if (d.kinds[c] !== KIND_EXTRA) v = blankIfMissing(v);
              fields[c] = csvField(spreadsheetSafe(v));
            }
          }
          const atSlider = Math.fround(state.results.prob[r]) >= t ? 'true' : 'false';
          fields.length = d.nCols;
          fields.push(state.results.probText[r]);
          if (budget) {
            const x = rows[r];
            fields.push(x.fault ? 'true' : 'false', f32Text(x.threshold), csvField(String(x.rule)), atSlider, tText);
          } else {
            fields.push(atSlider, tText);
          }
          fields.push(csvField(spreadsheetSafe(state.results.topText[r])), version);
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
    a.download = downloadName(d.name, state.results.modelVersion, budget ? `budget${state.results.alarmRate}` : tText);
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
