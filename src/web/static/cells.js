// Cell rules (what an id, sensor or label cell may hold, as the daemon reads them) and the
// number formats of the CLI (`faultline score`), so that the page shows and downloads the same
// text; also the counts and name lists the messages use.

import { C_MISSING, C_OK, INFINITY_RE, KIND_EXTRA, KIND_LABEL, KIND_SENSOR, MISSING, NUMBER_RE, REASON_INFINITE, REASON_LABEL, REASON_ID_LONG, REASON_NAN, REASON_NO_ID, MAX_ID_BYTES, trim } from './base.js';

/** A sensor cell: C_OK, C_MISSING, or why it cannot be scored. */
export function classifySensor(value) {
  const t = trim(value);
  if (MISSING.has(t)) return C_MISSING;
  if (NUMBER_RE.test(t)) {
    const v = Number(t);
    return Number.isFinite(v) && Number.isFinite(Math.fround(v)) ? C_OK : REASON_INFINITE;
  }
  return INFINITY_RE.test(t) ? REASON_INFINITE : REASON_NAN;
}

/** A Good/Bad cell: 1, -1 or missing. */
function classifyLabel(value) {
  const t = trim(value);
  if (MISSING.has(t)) return C_MISSING;
  if (NUMBER_RE.test(t) && (Number(t) === 1 || Number(t) === -1)) return C_OK;
  return REASON_LABEL;
}

const utf8 = new TextEncoder();

/** A wafer id: anything but empty, of at most MAX_ID_BYTES bytes of UTF-8 once trimmed. */
function classifyId(value) {
  const t = trim(value);
  if (t === '') return REASON_NO_ID;
  // Three bytes at most a UTF-16 unit: only a long id is encoded to count its bytes.
  if (t.length * 3 > MAX_ID_BYTES && utf8.encode(t).length > MAX_ID_BYTES) return REASON_ID_LONG;
  return C_OK;
}

export function classify(kind, value) {
  if (kind === KIND_EXTRA) return C_OK;
  if (kind === KIND_SENSOR) return classifySensor(value);
  if (kind === KIND_LABEL) return classifyLabel(value);
  return classifyId(value);
}

/** "'abc' is not a number", the value clipped as the daemon clips it. */
export function reasonText(value, reason) {
  const v = trim(value);
  const shown = v.length > 64 ? `${v.slice(0, 64)}…` : v;
  return `'${shown}' ${reason}`;
}

/**
 * An f32 as Rust's `Display` writes it (what `faultline score` prints): the shortest digits that
 * read back as the same f32, never an exponent. The API's JSON widens its f32s to f64
 * (0.19673949480056763 for the f32 0.1967395), so the digits are found again here.
 */
export function f32Text(x) {
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
export function plainNumber(x) {
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
 * Rust's `{:+.N}` of an f32 (N = `places`): the exact f32 value rounded to N decimals, ties to
 * even, sign always. A tie needs |x|·10^N to end in exactly .5, i.e. |x|·2·10^N an odd integer
 * (exact in a double: an f32 has 24 bits, and 2·10^4 adds 15).
 */
function signedFixed(x, places) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return 'NaN';
  const f = Math.fround(Number(x));
  const negative = f < 0 || Object.is(f, -0);
  const a = Math.abs(f);
  if (!Number.isFinite(a)) return `${negative ? '-' : '+'}inf`;
  const scale = 10 ** places;
  let text;
  const twice = a * 2 * scale;
  if (Number.isInteger(twice) && twice % 2 === 1) {
    let n = Math.floor(a * scale);
    if (n % 2 === 1) n += 1;
    text = `${Math.floor(n / scale)}.${String(n % scale).padStart(places, '0')}`;
  } else if (a >= 1e21) {
    // An f32 this large is an integer; toFixed would switch to exponents.
    text = `${BigInt(a)}.${'0'.repeat(places)}`;
  } else {
    text = a.toFixed(places);
  }
  return (negative ? '-' : '+') + text;
}

/** A z-score as `faultline score` writes it: `{:+.2}`. */
const signed2 = (x) => signedFixed(x, 2);

/** A contribution as `faultline score` writes it: `{:+.4}`. */
export const signed4 = (x) => signedFixed(x, 4);

/** A verdict's contributions as `faultline score` writes them: `Sensor-59=2.31 (+0.4120); ...`,
 * largest first (log-odds); a missing value is `NaN`, as there. */
export function describeContributions(list) {
  return list.map((c) => `${c.sensor}=${c.value === null ? 'NaN' : f32Text(c.value)} (${signed4(c.contribution)})`).join('; ');
}

/** The CLI's top-sensor text: `Sensor-59=2.31 (z=+6.20); Sensor-103=...`. */
function describeSensors(top) {
  return top.map((d) => `${d.sensor}=${f32Text(d.value)} (z=${signed2(d.z)})`).join('; ');
}

/** Whether a probability is a fault at threshold `t`, compared as f32 like the scorer does. */
function isFaultAt(p, t) {
  return Math.fround(p) >= Math.fround(t);
}

/**
 * A threshold or a probability to read on the page: four significant digits, so that two slider
 * steps (0.23% apart) and a score beside the threshold read differently (four decimals showed
 * 0.09019 and the threshold 0.09018 both as 0.0902, and every step below 0.00012 as 0.0001).
 * Files carry the f32's own digits ([`f32Text`]).
 */
export function formatThreshold(t) {
  return Number.isFinite(t) ? plainNumber(Number(t.toPrecision(4))) : '?';
}

/**
 * {text} of `bytes` read as UTF-8 (a byte-order mark dropped), or {error} naming the line of
 * the first byte that is not UTF-8, as `faultline score` names it: a lenient decoder would
 * quietly turn such bytes into U+FFFD and the page would send what the daemon refuses.
 */
export function decodeUtf8(bytes) {
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    const fix = 'Save it as UTF-8 (in a spreadsheet, "CSV UTF-8") and load it again.';
    const at = firstBadUtf8(bytes);
    if (at < 0) return { error: `it is not UTF-8 text. ${fix}` };
    let line = 1;
    for (let i = bytes.indexOf(10); i >= 0 && i < at; i = bytes.indexOf(10, i + 1)) line += 1;
    return { error: `it is not UTF-8 text: line ${fmtInt(line)} is not valid UTF-8. ${fix}` };
  }
}

/**
 * Where the first sequence of `bytes` that is not UTF-8 starts (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF, a sequence cut off by the end included), or -1.
 */
export function firstBadUtf8(bytes) {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i += 1;
      continue;
    }
    const more = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    if (more === 0 || i + more >= n) return i;
    // The second byte's range is narrower after E0, ED, F0 and F4.
    const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    if (bytes[i + 1] < lo || bytes[i + 1] > hi) return i;
    for (let k = 2; k <= more; k++) {
      if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return i;
    }
    i += more + 1;
  }
  return -1;
}

/** A size in bytes as MiB (or KiB below one MiB), without a trailing ".0". */
export function fmtBytes(n) {
  return n >= 1048576 ? `${Number((n / 1048576).toFixed(1))} MiB` : `${Number((n / 1024).toFixed(1))} KiB`;
}

export function fmtInt(n) {
  return Number(n).toLocaleString('en-US');
}

export function plural(n, one, many) {
  return `${fmtInt(n)} ${n === 1 ? one : (many || `${one}s`)}`;
}

/** Column names listed compactly: runs of 3+ consecutive `Sensor-N` become `Sensor-A..Sensor-B`. */
export function summarizeNames(names) {
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
export function summarizePositions(positions) {
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

/** Decodes a quoted field [s, e) of `text` (s at the opening quote), RFC 4180 style. */
export function unquote(text, s, e) {
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
