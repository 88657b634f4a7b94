// API access: the bearer token (asked for once with the form at the top, kept in sessionStorage),
// JSON GETs that ask for the token on a 401, and the CSV upload of scoring (with progress).

import { clear, el, state, TOKEN_KEY, ui } from './base.js';
import { setErrorGroup } from './status.js';

/** The bearer token ('' = none); other modules read it, only this one changes it. */
export let token = '';
/** What an HTTP header can carry, as the daemon requires of its token: visible ASCII and spaces. */
const TOKEN_RE = /^[\x20-\x7e]+$/;
try {
  token = sessionStorage.getItem(TOKEN_KEY) || '';
} catch (_) {
  token = '';
}
// One kept from before this check could never be sent (fetch throws on it): asked for again.
if (token && !TOKEN_RE.test(token)) token = '';
/** Callers waiting for the token form, or null when it is not shown. */
let tokenWaiters = null;

/** An error answer of the API: its status and JSON body {error, details}. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `the daemon answered HTTP ${status}`);
    this.status = status;
    this.details = (body && Array.isArray(body.details)) ? body.details : [];
  }
}

export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Shows the token form (once) and resolves when the user has given a token. */
export function askForToken(refused) {
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
    if (!state.card) {
      clear(ui.card);
      ui.card.append(el('p', 'muted', 'Waiting for the access token…'));
    }
    if (!state.driftShown) ui.driftSummary.textContent = 'Waiting for the access token…';
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
  if (!TOKEN_RE.test(value)) {
    // A pasted zero-width space or curly quote: fetch would refuse the header and the page
    // would stay locked; faultline's own token never holds such characters.
    ui.tokenMessage.textContent = 'A token holds letters, digits, punctuation and spaces only (no accents, curly quotes or invisible characters); enter it again.';
    ui.tokenInput.value = '';
    return;
  }
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

let limitsPromise = null;

/**
 * The daemon's upload limits (GET /api/limits: {max_body_bytes, max_rows}), or null when it does
 * not say; then the page checks nothing ahead and the daemon's own answer names the limit.
 */
export function uploadLimits() {
  if (!limitsPromise) {
    limitsPromise = getJson('/api/limits').catch(() => {
      limitsPromise = null;
      return null;
    });
  }
  return limitsPromise;
}

/** GET a JSON resource of /api, asking for the token when the daemon answers 401. */
export async function getJson(path) {
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
export function postCsv(body, onUpload, onUploaded) {
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
