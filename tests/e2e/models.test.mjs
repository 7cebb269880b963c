// End-to-end: the web app's Models page in Chromium against a real `etna serve`, pulling from a
// local hub server started here (it speaks the Hugging Face API: tree listing with LFS sha256,
// resolve with a redirect, Range). The hub holds the download half-way until the page has shown
// live progress, so the progress check does not depend on timing. Then the library shows the
// model with its licence badge (from the model card), and Delete removes it.
// Run: ETNA_BINARY=build/etna node --test tests/e2e/models.test.mjs (after scripts/test-clients-setup).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync, readFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENTS = path.resolve(here, '../clients');
const BINARY = process.env.ETNA_BINARY;
const SHARED = process.env.ETNA_SHARED_DIR || path.resolve(here, '../../../shared');
const MODEL = path.join(SHARED, 'models/stories260K.gguf');
const CHROMIUM = process.env.ETNA_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ETNA_E2E_ARTIFACTS || (BINARY ? path.join(path.dirname(BINARY), 'e2e-artifacts') : path.join(tmpdir(), 'etna-e2e-artifacts'));

let skip = false;
if (!existsSync(MODEL)) skip = `skipped: ../shared not found (${MODEL})`;
else if (!existsSync(CHROMIUM)) skip = `skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`;
if (skip) console.log(`# models e2e suite ${skip}`);

function loadPlaywright() {
  const require = createRequire(path.join(CLIENTS, 'package.json'));
  return require('playwright-core');
}

// The hub: one repository, org/stories-GGUF, with stories260K as a Q8_0 file and a model card
// declaring CC-BY-NC-4.0. The file is served in two halves; the second waits for release().
function startHub() {
  const gguf = readFileSync(MODEL);
  const card = Buffer.from('---\nlicense: cc-by-nc-4.0\nbase_model: karpathy/tinyllamas\n---\n# stories\n');
  const files = { 'stories-Q8_0.gguf': gguf, 'README.md': card };
  let release;
  const released = new Promise((r) => { release = r; });
  let halfSent = false;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/api/models/org/stories-GGUF/tree/main') {
      const list = Object.entries(files).map(([p, b]) => ({
        type: 'file', path: p, size: b.length, oid: 'x',
        ...(p.endsWith('.gguf') ? { lfs: { oid: createHash('sha256').update(b).digest('hex'), size: b.length } } : {}),
      }));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(list));
      return;
    }
    let m = url.pathname.match(/^\/org\/stories-GGUF\/resolve\/main\/(.+)$/);
    if (m && files[m[1]]) {
      res.writeHead(302, { Location: `/cdn/${m[1]}` });
      res.end();
      return;
    }
    m = url.pathname.match(/^\/cdn\/(.+)$/);
    if (m && files[m[1]]) {
      const body = files[m[1]];
      const range = /^bytes=(\d+)-$/.exec(req.headers.range || '');
      const from = range ? Number(range[1]) : 0;
      res.writeHead(range ? 206 : 200, {
        'Content-Length': body.length - from,
        ...(range ? { 'Content-Range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}),
      });
      if (m[1].endsWith('.gguf') && from === 0) {
        const half = Math.floor(body.length / 2);
        res.write(body.subarray(0, half));
        halfSent = true;
        await released;
        res.end(body.subarray(half));
      } else {
        res.end(body.subarray(from));
      }
      return;
    }
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end('{"error":"Repository not found"}');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    server, release, url: `http://127.0.0.1:${server.address().port}`, halfSent: () => halfSent,
  })));
}

async function startEtna(hubUrl) {
  const data = mkdtempSync(path.join(tmpdir(), 'etna-e2e-models-'));
  const proc = spawn(BINARY, ['serve', '-m', MODEL, '--port', '0', '--data', data],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HF_ENDPOINT: hubUrl, ETNA_PULL_RETRY_MS: '50' } });
  let stdout = '', stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`etna serve did not start; stderr:\n${stderr}`)), 60000);
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = stdout.match(/etna: web app at (http:\/\/\S+?)\/?\n/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`etna serve exited (${code}); stderr:\n${stderr}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, url, data, exited };
}

describe('the Models page in Chromium', { skip }, () => {
  let hub, etna, browser, page;
  const pageErrors = [];
  const requests = [];

  before(async () => {
    assert.ok(BINARY && existsSync(BINARY), 'set ETNA_BINARY to the built etna binary');
    hub = await startHub();
    etna = await startEtna(hub.url);
    const { chromium } = loadPlaywright();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
             '--disable-component-update', '--no-first-run', '--disable-sync'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    context.on('request', (r) => requests.push(r.url()));
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
    page.on('dialog', (d) => d.accept());
    page.setDefaultTimeout(30000);
    await page.goto(`${etna.url}/#/models`);
    await page.waitForSelector('#view-models:not([hidden])');
  });

  after(async () => {
    hub?.release();
    await browser?.close();
    if (etna) {
      etna.proc.kill('SIGTERM');
      await etna.exited;
      rmSync(etna.data, { recursive: true, force: true });
    }
    hub?.server.close();
    hub?.server.closeAllConnections?.();
  });

  test('pull by name shows live progress, then the model is listed with its licence badge', async () => {
    await page.waitForSelector('#model-list li');
    assert.match(await page.locator('#models-served').innerText(), /stories260K/);
    assert.match(await page.locator('#model-list').innerText(), /No models yet/);
    await page.fill('#pull-ref', 'org/stories-GGUF:q8_0');
    await page.click('#pull-start');
    const job = page.locator('#pulls li').first();
    await job.waitFor();
    // Half of the file has arrived and the hub holds the rest: the page must show that progress.
    await page.waitForFunction(() => {
      const t = document.querySelector('#pulls li .hint')?.textContent || '';
      const m = t.match(/^(\d+)%/);
      return m && Number(m[1]) >= 40 && Number(m[1]) < 100;
    });
    assert.ok(hub.halfSent());
    assert.equal(await job.getAttribute('data-state'), 'running');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'models-pulling.png'), fullPage: true });
    hub.release();
    await page.waitForSelector('#pulls li[data-state="done"]');
    assert.match(await job.innerText(), /stories-Q8_0 is in the library/);
    const item = page.locator('#model-list li[data-model="stories-Q8_0"]');
    await item.waitFor();
    const badge = item.locator('.badge.no');
    assert.match(await badge.innerText(), /cc-by-nc-4\.0 · non-commercial/);
    assert.match(await item.innerText(), /Outputs/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'models-library.png'), fullPage: true });
    // The server's own record agrees.
    const lib = await (await fetch(`${etna.url}/api/models`)).json();
    assert.equal(lib.models.length, 1);
    assert.equal(lib.models[0].licence.commercial, 'no');
    assert.equal(lib.models[0].files[0].size, readFileSync(MODEL).length);
  });

  test('a failing pull says why', async () => {
    await page.fill('#pull-ref', 'org/missing');
    await page.click('#pull-start');
    await page.waitForSelector('#pulls li[data-state="failed"]');
    assert.match(await page.locator('#pulls li[data-state="failed"]').innerText(), /404/);
  });

  test('delete removes the model from the library', async () => {
    await page.click('#model-list li[data-model="stories-Q8_0"] button:has-text("Delete")');
    await page.waitForFunction(() => !document.querySelector('#model-list li[data-model="stories-Q8_0"]'));
    const lib = await (await fetch(`${etna.url}/api/models`)).json();
    assert.equal(lib.models.length, 0);
    assert.deepEqual(pageErrors, []);
    const origin = new URL(etna.url).origin;
    assert.deepEqual(requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:')), []);
  });
});
