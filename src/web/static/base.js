// The page's constants, its DOM handles, the state its modules share, and the two helpers that
// build DOM nodes. Imports nothing, so every other module can rely on it being evaluated first.

/** Row height in pixels; every row has it, so a row's position is its index times this. */
export const ROW_H = 24;
/** Header row height in pixels. */
export const HEAD_H = 30;
/** Column widths in pixels, by kind of column. */
export const WIDTH = { id: 150, probability: 108, fault: 64, contributions: 460, label: 80, sensor: 96 };
/** Rows and columns rendered beyond the visible ones, so that small scrolls need no repaint. */
export const OVERSCAN_ROWS = 8;
export const OVERSCAN_COLS = 2;
/**
 * The largest file the page opens: a browser holds at most about 512 MiB of text in one string
 * (V8), and the table keeps the text and two arrays beside it. The daemon's own limit
 * ([web] max_body_bytes, GET /api/limits) is checked too.
 */
export const PAGE_MAX_BYTES = 256 * 1024 * 1024;
/** A file with more bad cells than this is not a sensor file; it is refused rather than kept. */
export const MAX_INVALID_CELLS = 200000;
/** Errors listed one by one; the rest are counted. */
export const ERROR_LIST_LIMIT = 50;
/** How long one parsing or export slice may hold the main thread, in milliseconds. */
export const SLICE_MS = 16;
export const TOKEN_KEY = 'faultline.token';
/** Whether the drift panel is open, kept across reloads. */
export const DRIFT_OPEN_KEY = 'faultline.drift-open';
/** Whether the live-quality panel is open, kept across reloads. */
export const QUALITY_OPEN_KEY = 'faultline.quality-open';
/** Whether the model card's prose is open, kept across reloads. */
export const CARD_OPEN_KEY = 'faultline.card-open';
/** How often the drift report is fetched, in milliseconds; after failures the wait doubles up to DRIFT_MAX_MS. */
export const DRIFT_POLL_MS = 5000;
export const DRIFT_MAX_MS = 60000;
/** Out-of-range sensors listed in the drift table (the daemon sends them worst first). */
export const DRIFT_ROWS = 10;
/** Rows the daemon's window must hold before it judges any sensor (src/drift.rs MIN_ROWS). */
export const DRIFT_MIN_ROWS = 50;
/** The daemon's reason codes, as the table shows them. */
export const DRIFT_REASONS = { median_shift: 'median shift', missing_rate: 'missing rate' };
export const LABEL_COLUMN = 'Good/Bad';
/** Spellings of a missing value, exactly as the daemon accepts them (src/row/mod.rs). */
export const MISSING = new Set(['', 'NA', 'NaN', 'nan', 'null', 'NULL']);
/** A decimal number as Rust's f64 parser reads it (no hex, no Infinity, no thousands separators). */
export const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
export const INFINITY_RE = /^[+-]?(?:inf|infinity)$/i;
export const KIND_ID = 0;
export const KIND_SENSOR = 1;
export const KIND_LABEL = 2;
/** A column the model does not use, kept as it is ([input] allow_extra_columns). */
export const KIND_EXTRA = 3;
/** Cell classes: a usable number, a missing value, or "look closer" (a string reason follows). */
export const C_OK = 0;
export const C_MISSING = 1;
export const C_SLOW = 2;
export const REASON_NAN = 'is not a number';
export const REASON_INFINITE = 'is not a finite float32 number';
export const REASON_LABEL = 'is not a label: use 1 (faulty), -1 (good) or leave it empty';
export const REASON_NO_ID = 'is empty: every row needs a wafer id';
export const REASON_ID_LONG = 'is longer than 256 bytes, the most an id may hold';
/** The longest wafer id, in UTF-8 bytes, as the daemon takes it (MAX_ID_BYTES). */
export const MAX_ID_BYTES = 256;

export const $ = (id) => document.getElementById(id);
export const ui = {
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

/**
 * The page's state, shared by its modules: one object, so that any module can change a field
 * (an imported binding cannot be assigned).
 */
export const state = {
  /** Whether a drift report was shown yet (an error then keeps it, marked as stale). */
  driftShown: false,
  /** The model card, once loaded. */
  card: null,
  /** Resolves to the model card (waits for a token if the daemon wants one). */
  cardPromise: null,
  /** The loaded file (see loadText for its fields), or null. */
  data: null,
  /** The last scoring answer for `data`, or null (see score for its fields). */
  results: null,
  /** The threshold the fault column, highlights, counts and download use. */
  threshold: NaN,
  /** The threshold the scorer uses (the answer's, else the card's): the slider's "Reset". */
  baseThreshold: NaN,
  /** Whether the user moved the slider (then a new answer does not move it back). */
  thresholdTouched: false,
  sortByProbability: false,
  faultsOnly: false,
  /** Display order: original row indices of the rows shown, top to bottom. */
  view: new Int32Array(0),
  /** For each original row, its position in `view`, or -1 when filtered out. */
  viewPos: new Int32Array(0),
  /** Edits to undo, last on top; each is a list of {r, c, before} (before = the edit it replaced, or undefined). */
  undoStack: [],
  /** What the page is busy with ('' = nothing): 'loading', 'scoring' or 'exporting'. */
  busy: '',
  /** The focused (or last focused) cell of the grid: original row index and column key. */
  cursor: { r: 0, key: 'id' },
};

/**
 * Whether a UTF-16 unit is white space as Rust's `char::is_whitespace` has it, which the daemon
 * trims from every cell and header (`str::trim`). JavaScript's own `trim` differs at two
 * characters: it strips U+FEFF (a byte-order mark, not white space to Rust) and keeps U+0085.
 */
export function isSpace(c) {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 0x85) return false;
  return c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a)
    || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

/** `s` without the white space around it, as the daemon trims a cell (Rust's `str::trim`). */
export function trim(s) {
  let a = 0;
  let b = s.length;
  while (a < b && isSpace(s.charCodeAt(a))) a++;
  while (b > a && isSpace(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** A new element with an optional class and text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Removes every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

/**
 * Functions of upper modules that lower ones call back, set once by main.js before the page
 * starts, so that every module imports only downward:
 * base ← cells ← status ← api ← table ← grid ← load, download ← card ← scoring ← quality ← main.
 */
export const hooks = {};
