// The loaded table: a cell's text (the file's, or the edit that replaced it), edits that keep the
// counts, marks and error list in step, and undo.

import { C_MISSING, C_OK, KIND_ID, KIND_SENSOR, state, hooks, trim } from './base.js';
import { classify, unquote } from './cells.js';
import { refreshCellErrors, updateControls, updateInfo } from './status.js';

function rawCell(d, r, c) {
  const i = r * d.nCols + c;
  const s = d.starts[i];
  const e = c + 1 < d.nCols ? d.starts[i + 1] - 1 : d.rowEnd[r];
  return d.text.charCodeAt(s) === 34 ? unquote(d.text, s, e) : d.text.slice(s, e);
}

export function cellText(d, r, c) {
  const v = d.edits.get(r * d.nCols + c);
  return v === undefined ? rawCell(d, r, c) : v;
}

export function rowId(d, r) {
  return trim(cellText(d, r, d.idCol));
}

/** Sets cell (r, c) to `value` and keeps the counts, marks and error list in step. */
function setCell(r, c, value) {
  changeCell(r, c, value);
  afterChange();
}

/** The bookkeeping of one changed cell; callers run afterChange once they are done. */
function changeCell(r, c, value) {
  const d = state.data;
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
  if (state.results) {
    state.results.stale = true; // the answer no longer matches the table
    // nor does an open explanation, of the scoring before the edit
    document.getElementById('explanation').hidden = true;
  }
}

function afterChange() {
  refreshCellErrors();
  updateInfo();
  if (state.results) hooks.updateSummary();
  updateControls();
  hooks.invalidate();
}

/** An edit by the user: recorded for undo. */
export function editCell(r, c, typed) {
  const value = trim(typed);
  if (value === cellText(state.data, r, c)) return;
  state.undoStack.push([{ r, c, before: state.data.edits.get(r * state.data.nCols + c) }]);
  setCell(r, c, value);
}

/** Makes every invalid sensor or label cell missing: one step to undo. */
export function blankInvalid() {
  const d = state.data;
  if (!d || state.busy) return;
  hooks.closeEditor(true);
  const step = [];
  for (const i of [...d.invalid.keys()]) {
    const r = Math.floor(i / d.nCols);
    const c = i % d.nCols;
    if (d.kinds[c] === KIND_ID) continue;
    step.push({ r, c, before: d.edits.get(i) });
    changeCell(r, c, '');
  }
  if (!step.length) return;
  state.undoStack.push(step);
  afterChange();
}

export function undo() {
  if (!state.data || state.busy || !state.undoStack.length) return;
  hooks.closeEditor(true);
  const step = state.undoStack.pop();
  for (let k = step.length - 1; k >= 0; k--) {
    const x = step[k];
    changeCell(x.r, x.c, x.before === undefined ? rawCell(state.data, x.r, x.c) : x.before);
  }
  afterChange();
  const col = hooks.columnOfFileColumn(step[0].c);
  if (col) hooks.goToCell(step[0].r, col.key, true);
}
