// faultline's page, the entry module: load a wafer CSV, check it against the model card, preview
// and edit it in a virtualized grid, score it with POST /api/score, explore the threshold,
// download the results; beside them the drift and live-quality panels.
//
// Plain ES2020 modules, no framework, no build step: the daemon serves each file as it is, under
// a Content-Security-Policy that allows no inline script or style (positions are set through the
// CSSOM, which that policy allows). One module per stage of the data flow:
//   base.js      constants, DOM handles, the shared state
//   api.js       API access: the bearer token is asked for once and kept in sessionStorage
//   card.js      the model card and the drift panel (GET /api/drift, polled)
//   cells.js     cell rules (what an id, sensor or label cell may hold) and the CLI's number formats
//   load.js      loading: file checks, FileReader, a chunked RFC 4180 parser, the header check
//   table.js     the table: cell access, edits, undo
//   grid.js      the virtualized grid: only the visible rows and columns exist in the DOM
//   scoring.js   scoring, threshold, filter, sort, summary, the explanation of a row
//   download.js  download
//   status.js    errors, status, controls
//   quality.js   the live-quality panel, the label upload and the shadow's promotion
//   explain.js   the explanation view of one wafer
// This one wires the controls to them and starts the page.

import { hooks, state, ui } from './base.js';
import { loadCard, startDrift } from './card.js';
import { loadFile } from './load.js';
import { blankInvalid, cellText, rowId, undo } from './table.js';
import { closeEditor, columnOfFileColumn, goToCell, invalidate, rebuildView } from './grid.js';
import { canScore, onThresholdInput, score, setThreshold, showExplanation, updateSummary } from './scoring.js';
import { download } from './download.js';
import { sentence, setErrorGroup, updateControls, updateInfo } from './status.js';
import { startQuality } from './quality.js';

// What lower modules call back (see `hooks` in base.js), before anything starts.
Object.assign(hooks, {
  blankInvalid, canScore, cellText, closeEditor, columnOfFileColumn, goToCell, invalidate, rowId,
  setThreshold, showExplanation, updateSummary,
});

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
  if (e.dataTransfer) e.dataTransfer.dropEffect = state.busy ? 'none' : 'copy';
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
  state.faultsOnly = ui.filter.checked;
  rebuildView();
  ui.grid.scrollTop = 0;
  updateInfo();
  updateSummary();
  invalidate();
});
ui.sort.addEventListener('click', () => {
  closeEditor(true);
  state.sortByProbability = !state.sortByProbability;
  ui.sort.setAttribute('aria-pressed', String(state.sortByProbability));
  rebuildView();
  ui.grid.scrollTop = 0;
  invalidate();
});
ui.slider.addEventListener('input', onThresholdInput);
ui.reset.addEventListener('click', () => {
  state.thresholdTouched = false;
  setThreshold(state.baseThreshold, true);
  updateSummary();
  if (state.faultsOnly && state.results) {
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

updateControls();
loadCard();
startDrift();
startQuality();
