// The virtualized grid: only the visible rows and columns (plus a margin) exist in the DOM, pooled
// and repositioned through the CSSOM as the grid scrolls; the cursor, keyboard moves and the cell
// editor.

import { el, HEAD_H, KIND_EXTRA, KIND_LABEL, MISSING, OVERSCAN_COLS, OVERSCAN_ROWS, ROW_H, state, ui, WIDTH, hooks, trim } from './base.js';
import { formatThreshold, reasonText } from './cells.js';
import { cellText, editCell, rowId } from './table.js';
import { updateInfo } from './status.js';

/** Displayed columns: {key (data-col), label, kind, c (file column, -1 for results), w}. */
let cols = [];
/** Left edge of each displayed column, in content pixels. */
let colX = new Float64Array(0);
let totalWidth = 0;
let colIndexByKey = new Map();
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

export function buildColumns() {
  const d = state.data;
  cols = [{ key: 'id', label: d.header[d.idCol] || 'Wafer', kind: 'id', c: d.idCol, w: WIDTH.id }];
  if (state.results) {
    cols.push({ key: 'probability', label: 'probability', kind: 'probability', c: -1, w: WIDTH.probability });
    cols.push({ key: 'fault', label: 'fault', kind: 'fault', c: -1, w: WIDTH.fault });
    cols.push({ key: 'contributions', label: 'contributions (log-odds)', kind: 'contributions', c: -1, w: WIDTH.contributions });
  }
  for (let c = 0; c < d.nCols; c++) {
    if (c === d.idCol) continue;
    const label = d.kinds[c] === KIND_LABEL;
    const kind = label ? 'label' : d.kinds[c] === KIND_EXTRA ? 'extra' : 'sensor';
    // Keyed by position, not by name: a file may have a column named like a result column
    // (`probability`, `fault`, `contributions` in a re-opened download) or `id`.
    cols.push({ key: `#${c}`, label: d.header[c], kind, c, w: label ? WIDTH.label : WIDTH.sensor });
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

export function columnOfFileColumn(c) {
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

export function rebuildView() {
  const d = state.data;
  const n = d.nRows;
  let order;
  if (state.sortByProbability && state.results) {
    order = state.results.byProbability;
  } else {
    order = new Int32Array(n);
    for (let r = 0; r < n; r++) order[r] = r;
  }
  if (state.faultsOnly && state.results) {
    const kept = new Int32Array(n);
    let k = 0;
    const t = Math.fround(state.threshold);
    for (let j = 0; j < n; j++) {
      const r = order[j];
      if (Math.fround(state.results.prob[r]) >= t) kept[k++] = r;
    }
    order = kept.slice(0, k);
  }
  state.view = order;
  state.viewPos = new Int32Array(n).fill(-1);
  for (let k = 0; k < state.view.length; k++) state.viewPos[state.view[k]] = k;
  content.style.width = `${totalWidth}px`;
  content.style.height = `${HEAD_H + state.view.length * ROW_H}px`;
  headRow.style.width = `${totalWidth}px`;
  ui.grid.setAttribute('aria-rowcount', String(state.view.length + 1));
  dirty = true;
}

export function invalidate() {
  dirty = true;
  scheduleRender();
}

function scheduleRender() {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
}

/** Paints the visible window (plus overscan) when it left the painted one or the data changed. */
function render() {
  if (!state.data || ui.grid.hidden) return;
  const top = ui.grid.scrollTop;
  const left = ui.grid.scrollLeft;
  const height = ui.grid.clientHeight;
  const width = ui.grid.clientWidth;
  const n = state.view.length;
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
  const d = state.data;
  const t = Math.fround(state.threshold);
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
    if (col.key === 'probability' && state.sortByProbability) cls += ' sorted';
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
    const r = state.view[disp];
    const row = rowPool[disp % nr];
    const fault = state.results ? Math.fround(state.results.prob[r]) >= t : false;
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
    const target = cellByKey.get(`${state.cursor.r}|${state.cursor.key}`);
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
      const p = state.results.prob[r];
      text = formatThreshold(p);
      title = state.results.probText[r];
      cls += ' num result';
      break;
    }
    case 'fault':
      text = fault ? 'true' : 'false';
      cls += fault ? ' result flag' : ' result';
      break;
    case 'contributions':
      text = state.results.topText[r];
      title = text;
      cls += ' result top';
      break;
    default: {
      const i = r * d.nCols + col.c;
      const value = cellText(d, r, col.c);
      const reason = d.invalid.get(i);
      if (col.kind === 'id') cls += ' id pinned';
      else if (col.kind === 'extra') cls += ' extra';
      else cls += col.kind === 'sensor' ? ' num' : ' num label';
      text = trim(value);
      if (reason !== undefined) {
        cls += ' invalid';
        title = reasonText(value, reason);
      } else if (col.kind !== 'id' && col.kind !== 'extra' && MISSING.has(text)) {
        cls += ' missing';
        text = 'NA';
        title = 'missing value';
      }
      if (d.edits.has(i)) cls += ' edited';
    }
  }
  if (state.results && state.results.stale && col.c < 0) cls += ' stale';
  setIf(cell, 'className', cls);
  setIf(cell, 'textContent', text);
  setIf(cell, 'title', title);
  const rs = String(r);
  if (cell.dataset.row !== rs) cell.dataset.row = rs;
  if (cell.dataset.col !== col.key) cell.dataset.col = col.key;
  const isCursor = state.cursor.r === r && state.cursor.key === col.key;
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
export function goToCell(r, key, focus) {
  if (!state.data) return;
  if (state.viewPos[r] < 0 && state.faultsOnly) {
    state.faultsOnly = false;
    ui.filter.checked = false;
    rebuildView();
    updateInfo();
  }
  const disp = state.viewPos[r];
  const ci = colIndexByKey.get(key);
  if (disp < 0 || ci === undefined) return;
  state.cursor = { r, key };
  scrollIntoView(disp, ci);
  dirty = true;
  render();
  const cell = cellByKey.get(`${r}|${key}`);
  if (cell && focus) cell.focus({ preventScroll: true });
}

function moveCursor(dRow, dCol, absoluteRow, absoluteCol) {
  if (!state.data || !state.view.length) return;
  let disp = state.viewPos[state.cursor.r];
  if (disp < 0) disp = 0;
  let ci = colIndexByKey.get(state.cursor.key);
  if (ci === undefined) ci = 0;
  disp = absoluteRow !== undefined ? absoluteRow : disp + dRow;
  ci = absoluteCol !== undefined ? absoluteCol : ci + dCol;
  disp = Math.max(0, Math.min(state.view.length - 1, disp));
  ci = Math.max(0, Math.min(cols.length - 1, ci));
  goToCell(state.view[disp], cols[ci].key, true);
}

function editable(col) {
  return col && col.c >= 0;
}

function openEditor(r, key, initial) {
  if (!state.data || state.busy) return;
  const col = cols[colIndexByKey.get(key)];
  if (!editable(col) || state.viewPos[r] < 0) return;
  closeEditor(true);
  const input = document.createElement('input');
  input.type = 'text';
  input.className = 'cell-editor';
  input.spellcheck = false;
  input.autocomplete = 'off';
  input.setAttribute('aria-label', `Edit ${col.kind === 'id' ? 'the wafer id' : col.label} of row ${r + 1} (${rowId(state.data, r) || 'no id'}); Enter keeps it, Escape cancels`);
  input.value = initial !== undefined ? initial : trim(cellText(state.data, r, col.c));
  editing = { input, r, key, c: col.c };
  state.cursor = { r, key };
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
export function closeEditor(commit, refocus) {
  if (!editing) return;
  const ed = editing;
  editing = null;
  const value = ed.input.value;
  ed.input.remove();
  if (commit && state.data) editCell(ed.r, ed.c, value);
  if (refocus) goToCell(ed.r, ed.key, true);
}

function placeEditor() {
  if (!editing) return;
  const disp = state.viewPos[editing.r];
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
    if (state.cursor.r !== r || state.cursor.key !== key) {
      const previous = cellByKey.get(`${state.cursor.r}|${state.cursor.key}`);
      if (previous) previous.tabIndex = -1;
      state.cursor = { r, key };
      cell.tabIndex = 0;
    }
    if (state.results && !state.results.stale && Math.fround(state.results.prob[r]) >= Math.fround(state.threshold)) hooks.showExplanation(r);
  } else if (e.target === ui.grid && state.data) {
    const target = cellByKey.get(`${state.cursor.r}|${state.cursor.key}`);
    if (target) target.focus({ preventScroll: true });
  }
});

ui.grid.addEventListener('dblclick', (e) => {
  const cell = e.target.closest && e.target.closest('.cell[data-row]');
  if (cell) openEditor(Number(cell.dataset.row), cell.dataset.col);
});

ui.grid.addEventListener('keydown', (e) => {
  // Shift+Tab from a cell leaves the table: the grid itself (focusable, to let Tab in) comes just
  // before its cells in tab order and would hand focus straight back to the cell, a trap. It is
  // out of the order for this one move.
  if (e.key === 'Tab' && e.shiftKey && e.target !== ui.grid) {
    ui.grid.tabIndex = -1;
    setTimeout(() => { ui.grid.tabIndex = 0; }, 0);
    return;
  }
  if (!state.data || editing) return;
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
    case 'End': if (ctrl) moveCursor(0, 0, state.view.length - 1, cols.length - 1); else moveCursor(0, 0, undefined, cols.length - 1); break;
    case 'Enter':
    case 'F2':
      openEditor(state.cursor.r, state.cursor.key);
      break;
    case 'Delete':
    case 'Backspace': {
      const col = cols[colIndexByKey.get(state.cursor.key)];
      if (!editable(col) || col.kind === 'id' || state.busy) return;
      editCell(state.cursor.r, col.c, '');
      break;
    }
    default:
      if (e.key.length === 1 && !ctrl && !e.altKey) {
        openEditor(state.cursor.r, state.cursor.key, e.key);
        break;
      }
      return;
  }
  e.preventDefault();
});
