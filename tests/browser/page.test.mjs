// The page in a real browser: Debian's Chromium driven by playwright-core against the real
// `faultline serve`. Upload a wafer batch file, make a cell invalid and see the error, fix it,
// score, find a known faulty wafer flagged, move the threshold slider, download the results and
// compare them with `faultline score` on the same edited file. Then stream the wafers through the
// bus, upload their labels on the page and check the live-quality panel against GET /api/quality
// (and the ROC-AUC against one computed here from `faultline score`). Screenshots are kept under
// target/browser/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync, copyFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.FAULTLINE_BIN || join(ROOT, 'target', 'debug', 'faultline');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
    s.on('error', fail);
  });
}

/** A function writing a file named `name` into `dir`; it returns the file's path. */
function writer(dir) {
  return (name, content) => { const p = join(dir, name); writeFileSync(p, content); return p; };
}

/** A tiny RFC 4180 parser for the test's own checks. */
function parseCsv(text) {
  const rows = []; let row = []; let cell = ''; let q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"') { if (text[i + 1] === '"') { cell += '"'; i++; } else q = false; } else cell += c;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell); rows.push(row); row = []; cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

/** The wafer file to upload: a real batch file where this machine has the data, else the sample. */
function inputFile() {
  const data = process.env.FAULTLINE_DATA_DIR || join(ROOT, '..', 'shared', 'data');
  const real = join(data, 'wafer', 'Training_Batch_Files', 'wafer_20012020_090819.csv');
  if (existsSync(real)) return { path: real, real: true };
  if (process.env.FAULTLINE_REQUIRE_DATA === '1') throw new Error(`FAULTLINE_REQUIRE_DATA=1 but ${real} is absent`);
  console.log(`real wafer data absent (${real}): using examples/wafers.csv`);
  return { path: join(ROOT, 'examples', 'wafers.csv'), real: false };
}

/** ROC-AUC as scikit-learn's roc_auc_score: the chance a faulty wafer outscores a good one, ties half. */
function rocAuc(pairs) {
  const pos = pairs.filter(([, y]) => y).map(([p]) => p);
  const neg = pairs.filter(([, y]) => !y).map(([p]) => p);
  let wins = 0;
  for (const p of pos) for (const n of neg) wins += p > n ? 1 : p === n ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

/** Polls `check` (async, truthy when done) every 100 ms for up to `ms`. */
async function until(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitHealthy(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try { if ((await fetch(url + '/healthz')).ok) return; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`faultline did not answer ${url}/healthz within ${ms} ms`);
}

/** Starts `faultline serve` on free ports with `env` added; returns its page URL and process. */
async function startDaemon(work, env = {}) {
  const [brokerPort, webPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${webPort}`;
  const server = spawn(BIN, ['serve'], {
    env: { ...process.env, FAULTLINE_BROKER__LISTEN: `127.0.0.1:${brokerPort}`, FAULTLINE_WEB__LISTEN: `127.0.0.1:${webPort}`, FAULTLINE_DRIFT__INTERVAL_MS: '200', FAULTLINE_STORE__DIR: join(work, 'store'), RUST_LOG: 'warn,rumqttd=off', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return { url, brokerPort, server };
}

/** Debian's Chromium, headless, with the flags this closed network needs. */
function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

test('upload, edit, score, slide, download: the page agrees with faultline score', { timeout: 180_000 }, async () => {
  const { path: input, real } = inputFile();
  const work = mkdtempSync(join(tmpdir(), 'faultline-page-'));
  const { url, brokerPort, server } = await startDaemon(work);
  const shots = join(ROOT, 'target', 'browser');
  mkdirSync(shots, { recursive: true });
  let browser;
  try {
    await waitHealthy(url, 20_000);
    const card = await (await fetch(url + '/api/model')).json();
    browser = await launchChromium();
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction((v) => document.querySelector('#model-card')?.textContent.includes(v), card.version);
    // The suggested alarm budget comes with what it did in validation, from the card.
    const budget = card.validation.alarm_budget;
    assert.ok(budget, 'the committed card measures its alarm budget');
    const cardText = await page.textContent('#model-card');
    assert.ok(cardText.includes(`recall ${budget.recall.toFixed(3)}`), cardText);
    assert.ok(cardText.includes(`${budget.true_positives} of ${budget.faults} faults`), cardText);
    // Unfolded under the figures: whose they are, and what the fixed threshold did with the
    // shipped model on the later validation windows (the card's own windows, summed here).
    // (The committed card's own figures, as its expectation states them: 3 of the 13 faults of
    // the later four windows.)
    const caution = await page.textContent('#model-card .card-caution');
    assert.match(caution, /validation models'/);
    assert.match(card.validation.expectation, /catches 3 of their 13 faults/);
    assert.ok(caution.includes('later 4 windows\' 458 wafers at its threshold and caught 3 of their 13 faults'), caution);
    assert.ok(await page.isVisible('#model-card .card-caution'), 'the caution is not folded away');
    assert.ok(cardText.includes(`${card.validation.rows - card.validation.faults} good wafers) capped by the rule`), cardText);
    // The drift and live-quality panels start folded, so the table fits a laptop's screen (the
    // second test checks that); open them to check what they show.
    assert.equal(await page.$eval('#drift-details', (d) => d.open), false);
    await page.click('#drift-details > summary');
    await page.click('#quality-details > summary');

    // Upload.
    const original = parseCsv(readFileSync(input, 'utf8')).filter((r) => r.length > 1);
    const header = original[0];
    const rows = original.length - 1;
    await page.setInputFiles('#file-input', input);
    await page.waitForFunction((n) => document.querySelector('#table-info')?.textContent.includes(`${n} rows`), rows);

    // An invalid edit is marked at once and blocks scoring.
    // File columns are keyed by position (a file may name one like a result column).
    const cell = `[data-row="0"][data-col="#${header.indexOf('Sensor-1')}"]`;
    await page.dblclick(cell);
    await page.fill('input.cell-editor', 'abc');
    await page.keyboard.press('Enter');
    await page.waitForSelector(`${cell}.invalid`);
    assert.match(await page.textContent('#errors'), /'abc' is not a number/);
    assert.equal(await page.isDisabled('#score-button'), true, 'an invalid cell must block scoring');

    // Fixed, it stays highlighted as edited and scoring is allowed again.
    await page.dblclick(cell);
    await page.fill('input.cell-editor', '3001.5');
    await page.keyboard.press('Enter');
    await page.waitForSelector(`${cell}.edited:not(.invalid)`);
    assert.equal(await page.isDisabled('#score-button'), false);

    // The same edit, made to the file for `faultline score`.
    const edited = original.map((r) => r.slice());
    edited[1][header.indexOf('Sensor-1')] = '3001.5';
    const editedPath = join(work, 'edited.csv');
    writeFileSync(editedPath, edited.map((r) => r.join(',')).join('\n') + '\n');
    const cliOut = join(work, 'cli.csv');
    execFileSync(BIN, ['score', '--input', editedPath, '--output', cliOut]);
    const cli = parseCsv(readFileSync(cliOut, 'utf8'));
    const cliHead = cli[0];
    const cliRows = cli.slice(1).filter((r) => r.length > 1);
    const col = (name) => cliHead.indexOf(name);

    // Score.
    await page.click('#score-button');
    await page.waitForFunction(() => /wafers? flagged/.test(document.querySelector('#summary')?.textContent || ''));
    const flagged = cliRows.filter((r) => r[col('fault')] === 'true');
    assert.match(await page.textContent('#summary'), new RegExp(`${flagged.length} of ${rows} wafers flagged`));

    // A known faulty wafer (labelled +1 in the real file) that the model flags is highlighted.
    const known = (real ? flagged.filter((r) => r[col('Good/Bad')] === '1') : flagged)
      .sort((a, b) => Number(b[col('probability')]) - Number(a[col('probability')]))[0];
    assert.ok(known, 'the model flags at least one wafer of this file');
    await page.check('#filter-faults');
    await page.click('#sort-probability');
    const idCell = page.locator(`[data-col="id"]`, { hasText: new RegExp(`^${known[col('id')]}$`) });
    await idCell.first().waitFor();
    const rowIndex = await idCell.first().getAttribute('data-row');
    assert.equal(await page.locator(`[data-row="${rowIndex}"][data-col="fault"]`).first().textContent(), 'true');

    // Clicking it opens its explanation: one bar per contribution the CLI lists for it, same sensors in
    // the same order, and the chart ends at logit(P(fault)).
    // The grid re-renders on the next animation frame after sorting and filtering; a click that
    // lands while it moves hits the grid rather than the cell (which then focuses its cursor
    // cell, another wafer). So: click, and click again until the clicked wafer's view is open.
    const shows = (id) => page.evaluate((id) => (document.querySelector('#explanation:not([hidden]) strong')?.textContent || '').startsWith(`Wafer ${id}:`), id);
    for (let i = 0; i < 10 && !(await shows(known[col('id')])); i++) {
      await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
      await page.locator(`[data-row="${rowIndex}"][data-col="probability"]`).first().click();
    }
    assert.ok(await shows(known[col('id')]), `clicking ${known[col('id')]} opens its explanation`);
    await page.waitForSelector('#explanation:not([hidden]) svg.explain-chart');
    const cliSensors = known[col('contributions')].split('; ').map((c) => c.split('=')[0]);
    assert.equal(cliSensors.length, 5);
    const bars = await page.$$eval('#explanation .explain-table tr td:first-child', (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(bars, cliSensors);
    const rects = await page.locator('#explanation svg rect').count();
    assert.ok(rects >= cliSensors.length && rects <= cliSensors.length + 1, `${rects} bars`);
    const pk = Number(known[col('probability')]);
    const end = Math.log(pk / (1 - pk)).toFixed(3);
    assert.ok((await page.textContent('#explanation svg')).includes(end), `the chart ends at logit(P) = ${end}`);
    await page.screenshot({ path: join(shots, 'explanation.png') });
    // The open explanation follows the slider: past the wafer's P(fault) it is not flagged, back
    // at the model's threshold it is.
    const headSays = (re) => page.waitForFunction((src) => new RegExp(src).test(document.querySelector('#explanation:not([hidden]) .explain-head')?.textContent || ''), re.source);
    const slideTo = (t) => page.$eval('#threshold', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }, Math.log10(t));
    await slideTo(1);
    await headSays(/— not flagged by the threshold/);
    await slideTo(card.threshold);
    await headSays(/— flagged by the threshold/);
    await page.click('#explanation .explain-close');

    // The histogram of P(fault): one bar segment per bin and class, every wafer counted once; with
    // the file's labels, the faulty ones apart, and the evaluation the CLI's verdicts imply.
    const segments = await page.$$eval('#score-histogram rect.bar', (rs) => rs.map((r) => [r.dataset.kind, Number(r.dataset.count)]));
    assert.equal(segments.reduce((n, [, k]) => n + k, 0), rows, 'the histogram counts every wafer');
    if (real) {
      const faulty = cliRows.filter((r) => r[col('Good/Bad')] === '1');
      const caught = faulty.filter((r) => r[col('fault')] === 'true').length;
      const falseAlarms = cliRows.filter((r) => r[col('Good/Bad')] === '-1' && r[col('fault')] === 'true').length;
      assert.equal(segments.filter(([k]) => k === 'faulty').reduce((n, [, k]) => n + k, 0), faulty.length);
      const evaluation = await page.textContent('#file-evaluation');
      assert.match(evaluation, new RegExp(`\\(${rows} wafers, ${faulty.length} faulty\\)`));
      assert.match(evaluation, new RegExp(`caught ${caught} of ${faulty.length} faulty wafers .* ${falseAlarms} false alarms? among ${rows - faulty.length} good`));
      // The ROC curve: its area is the one computed here from the CLI's probabilities, and its
      // marked point holds the CLI's confusion counts.
      const auc = rocAuc(cliRows.map((r) => [Number(r[col('probability')]), r[col('Good/Bad')] === '1']));
      assert.ok(Math.abs(Number(await page.getAttribute('#roc-curve', 'data-auc')) - auc) < 1e-9, `ROC-AUC ${auc}`);
      assert.equal(Number(await page.getAttribute('#roc-curve', 'data-tp')), caught);
      assert.equal(Number(await page.getAttribute('#roc-curve', 'data-fp')), falseAlarms);
      assert.match(evaluation, new RegExp(`ROC-AUC ${auc.toFixed(2)}`));
    } else {
      assert.ok(segments.every(([k]) => k === 'unlabelled'));
      assert.equal(await page.isHidden('#file-evaluation'), true, 'no labels, no evaluation');
      assert.equal(await page.isHidden('#roc'), true, 'no labels, no ROC curve');
    }
    await page.locator('#file-checks').screenshot({ path: join(shots, 'file-checks.png') });
    assert.equal(Number(await page.getAttribute('#score-histogram line.model-threshold', 'data-threshold')), card.threshold);

    // The slider (a log scale) recounts without re-scoring; off the model's threshold the download says so.
    const slide = (t) => page.$eval('#threshold', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }, t > 0 ? Math.log10(t) : -4);
    const at = 0.5;
    // The slider's step (0.001 on log10) puts 0.5 at 10^-0.301; the page compares as f32, like the scorer.
    const tAt = Math.fround(10 ** (Math.round(Math.log10(at) * 1000) / 1000));
    const expectedAt = cliRows.filter((r) => Math.fround(Number(r[col('probability')])) >= tAt).length;
    await slide(at);
    await page.waitForFunction((n) => document.querySelector('#threshold-count')?.textContent.startsWith(`${n} wafer`), expectedAt);
    assert.match(await page.textContent('#download-note'), /not the model's/);
    // Nothing reaches P = 1: with "Faults only" the page says why the table is empty.
    await slide(1);
    await page.waitForSelector('#file-empty:not([hidden])');
    assert.match(await page.textContent('#file-empty'), /lower the threshold or untick/);
    await slide(card.threshold);
    await page.waitForFunction((n) => document.querySelector('#threshold-count')?.textContent.startsWith(`${n} wafer`), flagged.length);
    assert.equal(await page.isHidden('#download-note'), true, 'at the model\'s threshold there is nothing to say');
    await page.uncheck('#filter-faults');
    await page.screenshot({ path: join(shots, 'page.png') });

    // Download and compare with the CLI, row by row.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-button')]);
    const stem = input.split('/').pop().replace(/\.csv$/, '');
    // The threshold in the CLI's own digits (an f32 as Rust prints it), in the name and each row.
    const cliThreshold = cliRows[0][col('threshold')];
    assert.equal(download.suggestedFilename(), `${stem}-scored-${card.version}-t${cliThreshold}.csv`);
    const downloaded = join(work, 'download.csv');
    await download.saveAs(downloaded);
    const got = parseCsv(readFileSync(downloaded, 'utf8')).filter((r) => r.length > 1);
    const gotHead = got[0];
    assert.deepEqual(gotHead.slice(-5), ['probability', 'fault', 'threshold', 'contributions', 'model_version']);
    assert.ok(got.slice(1).every((r) => r[gotHead.indexOf('threshold')] === cliThreshold), 'each row says its threshold');
    // As a spreadsheet reads the file: probability >= threshold is the fault column, row by row.
    assert.ok(got.slice(1).every((r) => (Number(r[gotHead.indexOf('probability')]) >= Number(cliThreshold)) === (r[gotHead.indexOf('fault')] === 'true')), 'probability >= threshold is the fault column');
    assert.deepEqual(gotHead.slice(1, header.length), header.slice(1));
    assert.equal(got.length - 1, cliRows.length);
    const g = (name) => gotHead.indexOf(name);
    for (let i = 0; i < cliRows.length; i++) {
      const [a, b] = [got[i + 1], cliRows[i]];
      assert.equal(a[0], b[col('id')], `row ${i + 1} id`);
      assert.ok(Math.abs(Number(a[g('probability')]) - Number(b[col('probability')])) <= 1e-6, `row ${i + 1} probability`);
      assert.equal(a[g('fault')], b[col('fault')], `row ${i + 1} fault`);
      assert.equal(a[g('model_version')], card.version);
      // The CLI explains its faults; the page every row: where both do, the same text.
      if (b[col('contributions')]) assert.equal(a[g('contributions')], b[col('contributions')], `row ${i + 1} contributions`);
    }
    assert.equal(got[1][g('Sensor-1')], '3001.5', 'the download carries the edit');

    // Drift: stream the same wafers with Sensor-1 far off its training median through the bus;
    // the page's drift panel names the sensor.
    const drifted = original.map((r) => r.slice());
    for (let i = 1; i < drifted.length; i++) drifted[i][header.indexOf('Sensor-1')] = '99999';
    const driftedPath = join(work, 'drifted.csv');
    writeFileSync(driftedPath, drifted.map((r) => r.join(',')).join('\n') + '\n');
    execFileSync(BIN, ['replay', driftedPath, '--to', `mqtt://127.0.0.1:${brokerPort}/faultline/rows`]);
    await page.waitForSelector('#drift-rows tr[data-sensor="Sensor-1"]', { timeout: 30_000 });
    assert.match(await page.textContent('#drift-summary'), /[1-9]\d* sensors? out of range/);
    await page.screenshot({ path: join(shots, 'drift.png') });

    // Live quality: once the daemon remembers every streamed wafer, upload their labels (the real
    // file's Good/Bad, else alternating) plus one refused line; the panel counts them and shows
    // the ROC-AUC GET /api/quality reports, which is the one the model's probabilities give here.
    const quality = async () => (await fetch(url + '/api/quality')).json();
    await until('the streamed wafers in the ledger', 30_000, async () => (await quality()).rows_remembered >= rows);
    const labelCol = header.indexOf('Good/Bad');
    const labels = original.slice(1).map((r, i) => [r[0], labelCol >= 0 ? r[labelCol] : (i % 3 === 0 ? '1' : '-1')]);
    assert.ok(labels.some(([, y]) => y === '1') && labels.some(([, y]) => y === '-1'), 'both classes are labelled');
    const labelsPath = join(work, 'labels.csv');
    writeFileSync(labelsPath, ['id,Good/Bad', ...labels.map((l) => l.join(',')), 'Wafer-unknown,2'].join('\n') + '\n');
    assert.equal(await page.isHidden('#promote-button'), true, 'no promote button without a shadow model');
    await page.setInputFiles('#labels-input', labelsPath);
    await page.waitForFunction((n) => document.querySelector('#labels-result')?.textContent.includes(`${n} accepted: ${n} joined`), rows);
    assert.match(await page.textContent('#labels-result li'), new RegExp(`^Row ${rows + 1}: .*use 1 \\(faulty\\)`));
    const q = await quality();
    const serving = q.models.find((m) => m.role === 'serving');
    assert.equal(q.models.length, 1, 'no shadow model runs');
    assert.equal(serving.version, card.version);
    assert.equal(serving.quality.labelled, rows);
    assert.equal(typeof serving.quality.roc_auc, 'number');
    const qualityCell = (measure) => `#quality-rows td[data-role="serving"][data-measure="${measure}"]`;
    await page.waitForFunction((sel) => /^\d/.test(document.querySelector(sel)?.textContent || ''), qualityCell('labelled'));
    assert.match(await page.textContent(qualityCell('labelled')), new RegExp(`^${rows} \\(`));
    const ci = serving.quality.roc_auc_ci95;
    assert.equal(await page.textContent(qualityCell('roc_auc')), `${serving.quality.roc_auc.toFixed(3)} (${ci[0].toFixed(2)}–${ci[1].toFixed(2)})`);
    assert.equal(await page.textContent(qualityCell('version')), card.version);
    assert.match(await page.textContent('#quality-labels'), new RegExp(`^Labels: ${rows} received · ${rows} joined · 0 pending`));
    assert.match(await page.textContent('#quality-store'), /rows? written/);
    assert.equal(await page.isHidden('#store-warning'), true, 'the store writes');
    assert.equal(await page.locator('#quality-head th[data-role]').count(), 1, 'one column: the serving model');
    assert.equal(await page.isHidden('#promote-button'), true, 'no promote button without a shadow model');
    const driftedOut = join(work, 'drifted-scored.csv');
    execFileSync(BIN, ['score', '--input', driftedPath, '--output', driftedOut]);
    const scored = parseCsv(readFileSync(driftedOut, 'utf8'));
    const p = scored[0].indexOf('probability');
    const truth = new Map(labels.map(([id, y]) => [id, y === '1']));
    const auc = rocAuc(scored.slice(1).filter((r) => r.length > 1).map((r) => [Number(r[p]), truth.get(r[0])]));
    // The streamed wafers over time: one dot each, the faults the CLI finds on the same rows in red.
    const driftedFaults = scored.slice(1).filter((r) => r.length > 1 && r[scored[0].indexOf('fault')] === 'true').length;
    await page.waitForFunction((n) => Number(document.querySelector('#stream-svg')?.dataset.rows) === n, rows);
    assert.equal(Number(await page.getAttribute('#stream-svg', 'data-faults')), driftedFaults);
    assert.equal(await page.locator('#stream-svg circle.fault').count(), driftedFaults);
    assert.ok(Math.abs(auc - serving.quality.roc_auc) < 1e-9, `ROC-AUC ${serving.quality.roc_auc} from the daemon, ${auc} here`);
    await page.locator('#quality').screenshot({ path: join(shots, 'quality.png') });
    await page.screenshot({ path: join(shots, 'page-quality.png') });

    // Opening another file while the table has edits asks first; declined, the table stays.
    let asked = '';
    page.once('dialog', async (d) => { asked = d.message(); await d.dismiss(); });
    await page.setInputFiles('#file-input', join(ROOT, 'examples', 'wafers.csv'));
    await until('the question about the edits', 10_000, async () => asked);
    assert.match(asked, /edited row .* will be lost/);
    assert.match(await page.textContent('#table-info'), new RegExp(`${rows} rows`));
    page.once('dialog', (d) => d.accept());
    await page.setInputFiles('#file-input', join(ROOT, 'examples', 'wafers.csv'));
    await page.waitForFunction(() => document.querySelector('#table-info')?.textContent.includes('50 rows'));
    assert.equal(await page.isHidden('#file-checks'), true, 'a new file has no scores yet');

    assert.deepEqual(consoleErrors, [], 'no errors in the browser console');
    console.log(`page test: ${rows} rows (${real ? 'real batch file' : 'synthetic sample'}), ${flagged.length} flagged, live ROC-AUC ${serving.quality.roc_auc.toFixed(3)}, screenshots in ${shots}`);
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
  }
});

test('with an alarm budget the page says how the daemon decided', { timeout: 120_000 }, async () => {
  const { path: input } = inputFile();
  const work = mkdtempSync(join(tmpdir(), 'faultline-budget-'));
  const budget = { FAULTLINE_MODEL__ALARM_RATE: '0.1', FAULTLINE_MODEL__ALARM_WARMUP_ROWS: '20' };
  const { url, server } = await startDaemon(work, budget);
  let browser;
  try {
    await waitHealthy(url, 20_000);
    // What faultline score decides on the same file with the same budget, rule by rule.
    const cli = parseCsv(execFileSync(BIN, ['score', '--input', input, '--output', '-'], { env: { ...process.env, ...budget } }).toString());
    const rule = cli[0].indexOf('rule');
    const fault = cli[0].indexOf('fault');
    const flagged = (r) => cli.slice(1).filter((x) => x.length > 1 && x[fault] === 'true' && x[rule] === r).length;
    const [byBudget, inWarmup] = [flagged('alarm_rate'), flagged('warmup')];
    assert.ok(byBudget > 0, 'the budget flags some wafers after its warm-up');
    browser = await launchChromium();
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    await page.setInputFiles('#file-input', input);
    await page.waitForFunction(() => !document.querySelector('#score-button')?.disabled);
    await page.click('#score-button');
    await page.waitForFunction(() => /alarm budget/.test(document.querySelector('#summary')?.textContent || ''));
    const summary = await page.textContent('#summary');
    assert.match(summary, /the top 10\.0% of recent wafers/);
    // The card says the budget decides, and what its fixed threshold still decides.
    const cardText = await page.textContent('#model-card');
    assert.match(cardText, /Decides by\s*alarm budget: the top 10\.0% of the last [\d,]+ wafers \(threshold [\d.]+ until it holds 20, and for ties\)/);
    assert.match(await page.textContent('#model-card .card-caution'), /validation models' pooled figures/);
    assert.doesNotMatch(cardText, /fixed threshold may flag very few/);
    // On a 1280×720 laptop screen, with the scored file's charts shown, the table still shows rows.
    assert.deepEqual(page.viewportSize(), { width: 1280, height: 720 });
    const gridTop = await page.$eval('#grid', (g) => g.getBoundingClientRect().top);
    await page.screenshot({ path: join(ROOT, 'target', 'browser', 'laptop.png') });
    assert.ok(gridTop <= 720 - 4 * 24, `the table starts at ${gridTop} px of 720`);
    assert.match(summary, new RegExp(`it flagged ${byBudget + inWarmup} of these \\(${byBudget} by the budget, ${inWarmup} by the threshold`));
    // The download's fault column is the daemon's verdict on the file, row by row as faultline
    // score's (it used to be the slider's, with nothing beside the button saying so).
    assert.match(await page.textContent('#download-note'), /daemon's verdict on this file by its alarm budget/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-button')]);
    assert.match(download.suggestedFilename(), /-budget0\.1\.csv$/);
    const saved = join(work, 'budget.csv');
    await download.saveAs(saved);
    const got = parseCsv(readFileSync(saved, 'utf8')).filter((r) => r.length > 1);
    const h = (name) => { const i = got[0].indexOf(name); assert.ok(i >= 0, `the download has ${name}`); return i; };
    const threshold = cli[0].indexOf('threshold');
    assert.equal(got.length, cli.filter((r) => r.length > 1).length);
    for (let i = 1; i < got.length; i++) {
      assert.equal(got[i][h('fault')], cli[i][fault], `row ${i} fault`);
      assert.equal(got[i][h('rule')], cli[i][rule], `row ${i} rule`);
      assert.equal(Number(got[i][h('threshold')]), Number(cli[i][threshold]), `row ${i} threshold`);
      const atSlider = Number(got[i][h('probability')]) >= Number(got[i][h('slider_threshold')]);
      assert.equal(got[i][h('fault_at_slider')], String(atSlider), `row ${i} fault_at_slider`);
    }
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
  }
});

test('the page holds a file to the daemon\'s own limits, refuses bytes that are not UTF-8 and reads 1.0 labels', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'faultline-limits-'));
  // The sample's 50 rows of about 4.9 KB: the whole file is over 200 KB, 35 rows are not but
  // are over 30 rows, 20 rows are within both limits.
  const lines = readFileSync(join(ROOT, 'examples', 'wafers.csv'), 'utf8').split('\n').filter((l) => l.length);
  const write = writer(work);
  const { url, server } = await startDaemon(work, { FAULTLINE_WEB__MAX_BODY_BYTES: '200000', FAULTLINE_WEB__MAX_ROWS: '30' });
  let browser;
  try {
    await waitHealthy(url, 20_000);
    browser = await launchChromium();
    const page = await (await browser.newContext()).newPage();
    const consoleErrors = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(url);
    const refusal = async (path) => {
      await page.setInputFiles('#file-input', path);
      await page.waitForSelector('#errors .error-file');
      return page.textContent('#errors .error-file .error-title');
    };

    // Over [web] max_body_bytes, as this daemon sets it (not the default 64 MiB).
    assert.match(await refusal(join(ROOT, 'examples', 'wafers.csv')), /wafers\.csv was not loaded: it is 244\.7 KiB, over the daemon's limit of 195\.3 KiB \(\[web\] max_body_bytes\)/);
    // Over [web] max_rows.
    assert.match(await refusal(write('rows35.csv', lines.slice(0, 36).join('\n') + '\n')), /rows35\.csv was not loaded: it has 35 rows, and the daemon scores at most 30 at once \(\[web\] max_rows\)/);
    // A byte that is not UTF-8 on the third line (in the second row's id): refused as the CLI refuses it.
    const bytes = Buffer.from(lines.slice(0, 21).join('\n') + '\n', 'utf8');
    const third = bytes.indexOf(10, bytes.indexOf(10) + 1) + 1;
    bytes[third + 1] = 0xff;
    const badPath = write('latin.csv', bytes);
    assert.match(await refusal(badPath), /latin\.csv was not loaded: it is not UTF-8 text: line 3 is not valid UTF-8/);
    assert.throws(() => execFileSync(BIN, ['score', '--input', badPath, '--output', '-'], { stdio: 'pipe' }), /line 3 is not valid UTF-8/);
    // A file saved with ';' (a spreadsheet set to a decimal comma): told as such, as the CLI
    // tells it, not as 590 missing sensor columns.
    const semi = write('semicolons.csv', lines.slice(0, 4).map((l) => l.replaceAll(',', ';')).join('\n') + '\n');
    await refusal(semi);
    assert.match(await page.textContent('#errors .error-file'), /The header is one column holding ';': faultline reads comma-separated files/);
    assert.doesNotMatch(await page.textContent('#errors .error-file'), /lacks/);
    assert.throws(() => execFileSync(BIN, ['score', '--input', semi, '--output', '-'], { stdio: 'pipe' }), /the header is one column holding ';'/);
    // A file cut inside a character: its last line, as the CLI says.
    const cut = Buffer.concat([Buffer.from(lines.slice(0, 4).join('\n') + '\n', 'utf8'), Buffer.from([0xe2, 0x82])]);
    assert.match(await refusal(write('cut.csv', cut)), /cut\.csv was not loaded: it is not UTF-8 text: line 5 is not valid UTF-8/);
    // The page's reader finds where the first bad sequence starts, checked against the browser's
    // strict decoder: random bytes, mostly ASCII and the lead and continuation bytes
    // around the edges of the rules.
    // A wafer whose P(fault) is 1 in float32 (log-odds past about 17): the explanation draws its
    // listed contributions and says why there is no end, instead of bars at NaN.
    const saturated = await page.evaluate(async () => {
      const { show } = await import('/explain.js');
      const box = document.createElement('div');
      show(box, { id: 'W-sat', probability: 1, threshold: 0.5, rule: 'threshold', fault: true, base: -2,
        contributions: [{ sensor: 'Sensor-1', contribution: 9.5, value: 1 }, { sensor: 'Sensor-2', contribution: 8, value: 2 }] }, null);
      return { html: box.innerHTML, text: box.textContent };
    });
    assert.doesNotMatch(saturated.html, /NaN|Infinity/);
    assert.match(saturated.text, /P\(fault\) is 1 to float32 precision/);
    assert.match(saturated.text, /Sensor-1/);
    // Its numbers read as the grid's: a P(fault) one slider step above the threshold reads apart
    // from it, a small reading above its training range does not read as the range's end, and a
    // contribution has the download's four decimals (fixed decimals showed 0.0902 for both,
    // "value 0.0003, training 0.0001 … 0.0003 (above its training range)", and +0.000).
    const small = await page.evaluate(async () => {
      const { show } = await import('/explain.js');
      const box = document.createElement('div');
      show(box, { id: 'W-small', probability: 0.09019, threshold: 0.09018, rule: 'threshold', fault: true, base: -2.5,
        contributions: [{ sensor: 'Sensor-7', contribution: 0.00049, value: 0.000349 }] },
      { sensors: [{ name: 'Sensor-7', median: 0.000201, p01: 0.000123, p99: 0.000312 }] });
      return box.textContent;
    });
    assert.match(small, /P\(fault\) 0\.09019 — flagged by the threshold 0\.09018/);
    assert.match(small, /value 0\.000349, training 0\.000123 … 0\.000312, median 0\.000201 \(above its training range\)/);
    assert.match(small, /\+0\.0005/);
    const disagreements = await page.evaluate(async () => {
      const { firstBadUtf8 } = await import('/cells.js');
      const pool = [0x41, 0x0a, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff];
      const valid = (b) => { try { new TextDecoder('utf-8', { fatal: true }).decode(b); return true; } catch { return false; } };
      let seed = 12345;
      const next = () => { // mulberry32
        seed = (seed + 0x6d2b79f5) >>> 0;
        let z = Math.imul(seed ^ (seed >>> 15), seed | 1);
        z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
        return (z ^ (z >>> 14)) >>> 0;
      };
      const bad = [];
      for (let t = 0; t < 20000; t++) {
        const b = new Uint8Array(1 + (next() % 12));
        for (let i = 0; i < b.length; i++) b[i] = pool[next() % pool.length];
        const at = firstBadUtf8(b);
        // Valid up to `at`, and no character starts there: Rust's valid_up_to, which the CLI uses.
        const ok = at < 0 ? valid(b) : valid(b.subarray(0, at)) && [1, 2, 3, 4].every((k) => !valid(b.subarray(at, at + k)));
        if (!ok && bad.length < 5) bad.push([Array.from(b), at]);
      }
      return bad;
    });
    assert.deepEqual(disagreements, []);

    // White space around a cell is trimmed as the daemon trims it (Rust's char::is_whitespace),
    // not as JavaScript's trim (which strips a byte-order mark and keeps U+0085): each character
    // either side of an id and of a sensor value, the page's reading against the CLI's.
    const spaces = [9, 11, 12, 32, 0x85, 0xa0, 0x1680, 0x180e, 0x2000, 0x2005, 0x200a, 0x200b, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff];
    const cut1 = lines[1].indexOf(',');
    const cut2 = lines[1].indexOf(',', cut1 + 1);
    const trimDisagreements = [];
    for (const code of spaces) {
      const ch = String.fromCharCode(code);
      const id = `${ch}W-1${ch}`;
      const cell = `${ch}1.5${ch}`;
      const seen = await page.evaluate(async ([id, cell]) => {
        const { trim } = await import('/base.js');
        const { classify } = await import('/cells.js');
        return { id: trim(id), sensorOk: classify(1, cell) === 0 };
      }, [id, cell]);
      const cli = (row) => {
        const path = write('space.csv', `${lines[0]}\n${row}\n`);
        try {
          return parseCsv(execFileSync(BIN, ['score', '--input', path, '--output', '-'], { stdio: 'pipe' }).toString('utf8'))[1][0];
        } catch {
          return null;
        }
      };
      const cliId = cli(id + lines[1].slice(cut1));
      const cliSensorOk = cli(lines[1].slice(0, cut1 + 1) + cell + lines[1].slice(cut2)) !== null;
      if (cliId !== seen.id || cliSensorOk !== seen.sensorOk) {
        trimDisagreements.push({ code: code.toString(16), page: seen, cli: { id: cliId, sensorOk: cliSensorOk } });
      }
    }
    assert.deepEqual(trimDisagreements, []);

    // An id longer than the daemon takes (256 bytes) is marked before scoring, not refused after.
    const longId = [lines[0], 'W'.repeat(300) + lines[1].slice(lines[1].indexOf(',')), ...lines.slice(2, 5)];
    await page.setInputFiles('#file-input', write('long-id.csv', longId.join('\n') + '\n'));
    await page.waitForSelector('[data-col="id"].invalid');
    assert.match(await page.getAttribute('[data-col="id"].invalid', 'title'), /longer than 256 bytes/);
    assert.equal(await page.isDisabled('#score-button'), true);

    // Labels written 1.0 and -1.0 (the daemon takes them): the file's evaluation and ROC curve show.
    const labelled = [lines[0] + ',Good/Bad', ...lines.slice(1, 21).map((l, i) => `${l},${i % 4 === 0 ? '1.0' : '-1.0'}`)];
    await page.setInputFiles('#file-input', write('labelled.csv', labelled.join('\n') + '\n'));
    await page.waitForFunction(() => document.querySelector('#table-info')?.textContent.includes('20 rows'));
    assert.equal(await page.isHidden('#errors'), true, 'a file within the limits is loaded without an error');
    await page.waitForFunction(() => !document.querySelector('#score-button')?.disabled);
    // The threshold moved before scoring (to 0.5): once scored, the download says it flags there.
    await page.$eval('#threshold', (el) => { el.value = '-0.301'; el.dispatchEvent(new Event('input', { bubbles: true })); });
    await page.click('#score-button');
    await page.waitForSelector('#file-evaluation:not([hidden])');
    assert.match(await page.textContent('#file-evaluation'), /\(20 wafers, 5 faulty\)/);
    assert.match(await page.textContent('#download-note'), /The download flags wafers at 0\.5, not the model's 0\.09018/);
    assert.equal(await page.isHidden('#roc'), false, 'labels of 1.0 and -1.0 draw the ROC curve');
    // A labels file that is not UTF-8 is not sent with its ids changed.
    await page.click('#quality-details > summary');
    await page.setInputFiles('#labels-input', write('labels.csv', Buffer.from([...Buffer.from('id,Good/Bad\nW'), 0xe9, ...Buffer.from(',1\n')])));
    await page.waitForFunction(() => /not sent/.test(document.querySelector('#labels-result')?.textContent || ''));
    assert.match(await page.textContent('#labels-result'), /The labels were not sent: It is not UTF-8 text: line 2 is not valid UTF-8/);
    assert.deepEqual(consoleErrors, []);
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
  }
});

test('with extra columns allowed the page loads, shows and sends them as the daemon takes them', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'faultline-extra-'));
  const lines = readFileSync(join(ROOT, 'examples', 'wafers.csv'), 'utf8').split('\n').filter((l) => l.length);
  // A Lot column the model does not use, one of its cells "NA" (kept as it is: not a sensor), and
  // a column named like a result column (a re-opened download has one).
  // The first wafer's id is "-inf": a spreadsheet would read it as a formula, so the download
  // escapes it, as faultline score does.
  const withLot = [`${lines[0]},Lot,fault`, ...lines.slice(1, 11).map((l, i) => `${i === 0 ? `-inf${l.slice(l.indexOf(','))}` : l},${i === 3 ? 'NA' : `L-${i}`},F-${i}`)];
  const path = join(work, 'lots.csv');
  writeFileSync(path, withLot.join('\n') + '\n');
  const { url, server } = await startDaemon(work, { FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS: 'true' });
  let browser;
  try {
    await waitHealthy(url, 20_000);
    browser = await launchChromium();
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    await page.setInputFiles('#file-input', path);
    await page.waitForFunction(() => document.querySelector('#table-info')?.textContent.includes('10 rows'));
    assert.equal(await page.isHidden('#errors'), true, 'a file with an extra column loads without an error');
    await page.waitForFunction(() => !document.querySelector('#score-button')?.disabled);
    await page.click('#score-button');
    await page.waitForFunction(() => /wafers? flagged/.test(document.querySelector('#summary')?.textContent || ''));
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-button')]);
    const saved = join(work, 'download.csv');
    await download.saveAs(saved);
    const got = parseCsv(readFileSync(saved, 'utf8')).filter((r) => r.length > 1);
    const lot = got[0].indexOf('Lot');
    assert.ok(lot > 0, 'the download keeps the Lot column');
    assert.equal(got[1][0], "'-inf", 'an id a spreadsheet would run is escaped');
    const cli = parseCsv(execFileSync(BIN, ['score', '--input', path, '--output', '-'], { env: { ...process.env, FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS: 'true' } }).toString());
    assert.equal(cli[1][0], "'-inf", 'as faultline score escapes it');
    assert.deepEqual(got.slice(1).map((r) => r[lot]), withLot.slice(1).map((l) => l.split(',').at(-2)));
    // The file's `fault` column is a column of its own: Delete on the result's fault cell edits
    // nothing. (Keyed by name, the grid took the file's column for it: Delete blanked the file's
    // cell, and the results went stale.)
    await page.click('[data-row="0"][data-col="fault"]');
    await page.keyboard.press('Delete');
    await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
    assert.equal(await page.locator('.cell.stale').count(), 0, 'a file cell was edited: the results went stale');
    assert.equal(await page.locator('.cell.edited').count(), 0, 'a cell was edited');
    // The keyboard gets out of the table both ways: Shift+Tab from a cell reaches the control
    // before it (the grid used to hand focus straight back to the cell), and Tab comes back in.
    const inGrid = () => page.evaluate(() => document.querySelector('#grid').contains(document.activeElement));
    assert.ok(await inGrid(), 'the clicked cell has focus');
    await page.keyboard.press('Shift+Tab');
    assert.equal(await inGrid(), false, 'Shift+Tab leaves the table');
    assert.notEqual(await page.evaluate(() => document.activeElement?.tagName), 'BODY', 'focus is on a control');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.col), 'fault', 'Tab returns to the cursor\'s cell');
    // An open explanation is of the scoring it came with: an edit closes it, and so does another
    // file. (Data row 5 of the sample, Synthetic-5, grid row 4, is flagged.)
    const open = () => page.evaluate(() => !document.querySelector('#explanation').hidden);
    for (let i = 0; i < 10 && !(await open()); i++) {
      await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
      await page.locator('[data-row="4"][data-col="probability"]').first().click();
    }
    assert.ok(await open(), 'clicking the flagged wafer opens its explanation');
    // An edit of the same wafer's cell. (Enter then moves the cursor to the next wafer, which
    // closes the explanation too: this checks what the user sees, not which of the two closed it.)
    await page.click('[data-row="4"][data-col="#1"]');
    assert.ok(await open(), 'focus on the same wafer keeps its explanation open');
    await page.keyboard.type('1');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#explanation', { state: 'hidden' });
    assert.ok((await page.locator('.cell.stale').count()) > 0, 'the edit made the results stale');
    await page.click('#score-button');
    await page.waitForFunction(() => !document.querySelector('.cell.stale'));
    for (let i = 0; i < 10 && !(await open()); i++) {
      await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
      await page.locator('[data-row="4"][data-col="probability"]').first().click();
    }
    assert.ok(await open(), 'the explanation opens again after scoring');
    // Another file closes it too (the cursor going back to its first row would as well). The
    // page asks before another file replaces the edited one.
    page.once('dialog', (dialog) => dialog.accept());
    await page.setInputFiles('#file-input', path);
    await page.waitForSelector('#explanation', { state: 'hidden' });

    // Invalid cells: the button that blanks them counts only what it changes (not ids, which it
    // leaves), and a file with too many to show names its commonest spellings and what to do.
    const write = writer(work);
    const [head, ...body] = lines.slice(0, 4);
    const cellsOf = (l) => l.split(',');
    const rowsWith = body.map(cellsOf);
    rowsWith[0][0] = '';
    rowsWith[1][1] = 'abc';
    rowsWith[2][2] = 'xyz';
    await page.setInputFiles('#file-input', write('invalid.csv', [head, ...rowsWith.map((r) => r.join(','))].join('\n') + '\n'));
    await page.waitForSelector('#blank-invalid');
    assert.equal(await page.textContent('#blank-invalid'), 'Mark the 2 that are not ids as missing (undoable)');
    const width = cellsOf(head).length;
    const na = Array.from({ length: 400 }, (_, i) => [`W-${i}`, ...Array(width - 1).fill(i % 5 ? 'N/A' : '-')].join(','));
    page.once('dialog', (dialog) => dialog.accept());
    await page.setInputFiles('#file-input', write('na.csv', [head, ...na].join('\n') + '\n'));
    await page.waitForSelector('#errors .error-file');
    const title = await page.textContent('#errors .error-file');
    assert.match(title, /most often 'N\/A' [\d,]+ times, '-' [\d,]+ times/);
    assert.match(title, /write it as an empty cell, NA or null/);
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
  }
});

/**
 * A copy of the shipped model under another version: the same graph with its producer version
 * changed in place (same length, so the protobuf stays valid), the card's sha256 and version to
 * match. It scores exactly as the shipped one.
 */
function modelCopy(dir, producerVersion) {
  const from = join(ROOT, 'models', 'wafer-fault');
  mkdirSync(dir, { recursive: true });
  const onnx = readFileSync(join(from, 'model.onnx'));
  const [name, old] = [Buffer.from('faultline-training'), Buffer.from('1.0.0')];
  const at = onnx.indexOf(old, onnx.indexOf(name) + name.length);
  assert.ok(at > 0 && at < 64 && producerVersion.length === old.length, 'the graph names its producer near its start');
  onnx.write(producerVersion, at);
  const sha = createHash('sha256').update(onnx).digest('hex');
  const card = JSON.parse(readFileSync(join(from, 'model.json'), 'utf8'));
  Object.assign(card, { onnx_sha256: sha, version: `wf-${sha.slice(0, 12)}` });
  writeFileSync(join(dir, 'model.onnx'), onnx);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(card, null, 2));
  copyFileSync(join(from, 'golden.csv'), join(dir, 'golden.csv'));
  return card.version;
}

test('the page promotes the shadow it shows, and only that one', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'faultline-promote-'));
  const [v1, v2] = [modelCopy(join(work, 'serving'), '1.0.1'), modelCopy(join(work, 'shadow'), '1.0.2')];
  const { url, brokerPort, server } = await startDaemon(work, {
    FAULTLINE_MODEL__DIR: join(work, 'serving'), FAULTLINE_SHADOW__MODEL: join(work, 'shadow'),
  });
  let browser;
  try {
    await waitHealthy(url, 20_000);
    // Wafers scored by v1 before any promotion, for the stream's chart.
    const sample = join(ROOT, 'examples', 'wafers.csv');
    const streamed = readFileSync(sample, 'utf8').split('\n').filter((l) => l.length).length - 1;
    execFileSync(BIN, ['replay', sample, '--to', `mqtt://127.0.0.1:${brokerPort}/faultline/rows`]);
    await until('the streamed wafers in /api/recent', 30_000, async () =>
      (await (await fetch(url + '/api/recent')).json()).rows.length === streamed);
    browser = await launchChromium();
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    await page.click('#quality-details summary');
    const shows = (serving, shadow) => page.waitForFunction(([a, b]) => {
      const button = document.querySelector('#promote-button');
      return !button.hidden && button.dataset.serving === a && button.dataset.shadow === b;
    }, [serving, shadow], { timeout: 15_000 });
    await shows(v1, v2);
    // Labels for the streamed wafers: the panel weighs the shadow against the serving model on
    // the wafers both scored, with the interval of the difference (the same graph here: none).
    const ids = readFileSync(sample, 'utf8').split('\n').slice(1).filter((l) => l.length).map((l) => l.split(',')[0]);
    const labels = ['id,Good/Bad', ...ids.map((id, i) => `${id},${i % 5 === 0 ? 1 : -1}`)].join('\n') + '\n';
    const posted = await fetch(url + '/api/labels', { method: 'POST', headers: { 'Content-Type': 'text/csv' }, body: labels });
    assert.equal(posted.status, 200, await posted.text());
    await page.waitForFunction((n) => (document.querySelector('#quality-summary')?.textContent || '').includes(`on the ${n} wafers both scored: no clear difference`), streamed, { timeout: 15_000 });
    assert.match(await page.textContent('#quality-summary'), /shadow − serving ROC-AUC \+0\.000 \(95% CI \+0\.000 to \+0\.000\)/);
    // Another operator promotes while this page's confirmation is open: the page still shows v1
    // serving, and its click must not swap the models back.
    let other;
    page.once('dialog', async (d) => {
      other = await fetch(url + '/api/model/promote', { method: 'POST' });
      await d.accept();
    });
    await page.click('#promote-button');
    await page.waitForFunction(() => /^Not promoted/.test(document.querySelector('#promote-result')?.textContent || ''));
    assert.equal(other.status, 200);
    const refused = await page.textContent('#promote-result');
    assert.match(refused, new RegExp(`${v2} serves, not ${v1}`));
    const served = async () => (await (await fetch(url + '/api/model')).json()).version;
    assert.equal(await served(), v2, 'the other operator\'s promotion stands');
    // The stream's chart no longer judges v1's wafers at v2's threshold: hollow, not counted.
    await page.waitForFunction((n) => document.querySelector('#stream-svg')?.dataset.others === String(n), streamed, { timeout: 30_000 });
    assert.equal(await page.getAttribute('#stream-svg', 'data-faults'), '0');
    assert.match(await page.textContent('#stream-chart'), new RegExp(`${streamed} of them were scored by an earlier model`));
    // Once the page shows the models in place, its promotion goes through (a roll-back here).
    await shows(v2, v1);
    page.once('dialog', (d) => d.accept());
    await page.click('#promote-button');
    await page.waitForFunction(() => /^Promoted/.test(document.querySelector('#promote-result')?.textContent || ''));
    assert.equal(await page.textContent('#promote-result'), `Promoted: ${v1} serves now; ${v2} runs as the shadow.`);
    assert.equal(await served(), v1);
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
  }
});

test('labels the daemon applied but could not store are said to be applied, not refused', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'faultline-unstored-'));
  // A regular file where the store's directory should be: the daemon runs, and nothing is stored.
  writeFileSync(join(work, 'not-a-directory'), '');
  const { url, server } = await startDaemon(work, { FAULTLINE_STORE__DIR: join(work, 'not-a-directory', 'store') });
  let browser;
  try {
    await waitHealthy(url, 20_000);
    browser = await launchChromium();
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    const labels = join(work, 'labels.csv');
    writeFileSync(labels, 'id,Good/Bad\nW-1,1\nW-2,-1\n');
    await page.setInputFiles('#labels-input', labels);
    // The daemon waits 5 s for the disk before it answers 503 with "applied": true.
    await page.waitForFunction(() => /accepted and applied, but not stored/.test(document.querySelector('#labels-result')?.textContent || ''), null, { timeout: 30_000 });
    const said = await page.textContent('#labels-result');
    assert.match(said, /^labels\.csv: 2 accepted and applied, but not stored: The labels were applied but are not on disk/);
    assert.doesNotMatch(said, /was refused/);
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
  }
});
