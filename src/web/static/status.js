// Errors, status and controls: the error groups above the table (each linked to its cell when it
// has one), the status bar, the busy state, the progress bar and which buttons are enabled.

import { clear, el, ERROR_LIST_LIMIT, KIND_ID, state, ui, hooks } from './base.js';
import { fmtInt, plural, reasonText } from './cells.js';

/** Error groups shown in #errors, by name, in display order. */
const errorGroups = new Map([['auth', null], ['card', null], ['file', null], ['cells', null], ['api', null]]);

/** A message from the daemon or the browser as a sentence: capitalized, with a full stop. */
export function sentence(message) {
  const m = String(message || 'unknown error').trim();
  const s = m.charAt(0).toUpperCase() + m.slice(1);
  return /[.!?…]$/.test(s) ? s : `${s}.`;
}

/** Sets (or with null removes) one group of #errors: {title, items: [{text, goto?}], action?: {id, label, run}}. */
export function setErrorGroup(name, group) {
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

/** Lists the cells that block scoring, in file order, each linked to its cell. */
export function refreshCellErrors() {
  const d = state.data;
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
    const col = hooks.columnOfFileColumn(c);
    const name = d.kinds[c] === KIND_ID ? 'wafer id' : d.header[c];
    const id = hooks.rowId(d, r) || 'no id';
    return {
      text: `Row ${r + 1} (${id}), ${name}: ${reasonText(hooks.cellText(d, r, c), d.invalid.get(i))}`,
      goto: col ? { r, key: col.key } : null,
    };
  });
  const n = d.invalid.size;
  if (n > items.length) items.push({ text: `…and ${plural(n - items.length, 'more cell')}.` });
  // Ids are not blanked (a wafer needs one): the button counts what it changes.
  let blankable = 0;
  for (const i of d.invalid.keys()) if (d.kinds[i % d.nCols] !== KIND_ID) blankable += 1;
  const which = blankable === n ? (n === 1 ? 'it' : `all ${fmtInt(n)}`) : `the ${fmtInt(blankable)} that ${blankable === 1 ? 'is not an id' : 'are not ids'}`;
  setErrorGroup('cells', {
    title: `${plural(n, 'cell')} cannot be scored, so Score is disabled until ${n === 1 ? 'it is' : 'they are'} fixed. `
      + 'Double-click a cell (or select it and press Enter) and type a number, or leave it empty (or NA) for a missing value:',
    items,
    action: blankable
      ? { id: 'blank-invalid', label: `Mark ${which} as missing (undoable)`, run: () => hooks.blankInvalid() }
      : null,
  });
}

export function updateInfo() {
  if (!state.data) {
    ui.tableInfo.textContent = 'No file loaded.';
    return;
  }
  const d = state.data;
  let text = `${d.name}: ${plural(d.nRows, 'row')} × ${plural(d.nCols, 'column')} · ${plural(d.missing, 'missing cell')}`;
  if (d.edits.size) text += ` · ${plural(d.edits.size, 'edited cell')}`;
  if (d.invalid.size) text += ` · ${plural(d.invalid.size, 'invalid cell')}`;
  if (state.view.length !== d.nRows) text += ` · showing ${fmtInt(state.view.length)}`;
  ui.tableInfo.textContent = text;
}

export function setBusy(what) {
  state.busy = what;
  document.body.classList.toggle('busy', Boolean(what));
  ui.grid.setAttribute('aria-busy', what ? 'true' : 'false');
  ui.score.textContent = what === 'scoring' ? 'Scoring…' : 'Score';
  updateControls();
}

export function updateControls() {
  const loaded = Boolean(state.data);
  ui.fileInput.disabled = Boolean(state.busy);
  ui.fileLabel.classList.toggle('disabled', Boolean(state.busy));
  ui.score.disabled = !hooks.canScore();
  if (!loaded) ui.score.title = 'Open a wafer CSV first';
  else if (state.data.invalid.size) ui.score.title = 'Fix the invalid cells first (listed above the table)';
  else if (!state.card) ui.score.title = 'Waiting for the model card';
  else ui.score.title = 'Score every row with the deployed model';
  ui.undo.disabled = Boolean(state.busy) || !state.undoStack.length;
  const scored = Boolean(state.results) && !state.busy;
  ui.filter.disabled = !scored;
  ui.sort.disabled = !scored;
  ui.slider.disabled = !Number.isFinite(state.threshold);
  ui.reset.disabled = !(Number.isFinite(state.baseThreshold) && state.threshold !== state.baseThreshold);
  ui.download.disabled = !state.results || state.results.stale || Boolean(state.busy);
  ui.download.title = state.results && state.results.stale
    ? 'The table changed after scoring: score again to download matching results'
    : 'Download the table with probability, fault, contributions and model_version as CSV';
}

/** Shows progress `f` (0–1; null = indeterminate) with a label. */
export function showProgress(f, label) {
  ui.progressWrap.hidden = false;
  if (f === null) ui.progress.removeAttribute('value');
  else ui.progress.value = Math.max(0, Math.min(1, f));
  ui.progressLabel.textContent = label;
}

export function hideProgress() {
  ui.progressWrap.hidden = true;
  ui.progress.value = 0;
  ui.progressLabel.textContent = '';
}
