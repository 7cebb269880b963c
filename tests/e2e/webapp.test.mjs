// End-to-end: the web app served by a real `etna serve -m stories260K.gguf`, driven in Debian's
// Chromium through playwright-core. Chat (streamed reply, stop, kept across reload), documents
// (collection, upload of Markdown and PDF), ask with an opened source, status, keyboard-only
// navigation, a 375 px wide window, and no request leaving the server's origin.
// Run: ETNA_BINARY=build/etna node --test tests/e2e/webapp.test.mjs   (playwright-core comes from
// tests/clients/node_modules: scripts/test-clients-setup). Screenshots go to $ETNA_E2E_ARTIFACTS
// (default: e2e-artifacts/ next to the etna binary). Skips, saying why, without ../shared or chromium.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
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
if (skip) console.log(`# web app e2e suite ${skip}`);

// playwright-core is installed with the client suites (tests/clients/package.json).
function loadPlaywright() {
  const require = createRequire(path.join(CLIENTS, 'package.json'));
  try {
    return require('playwright-core');
  } catch {
    throw new Error(`playwright-core is missing in ${CLIENTS}/node_modules: run scripts/test-clients-setup`);
  }
}

// A tiny valid PDF (one page, Helvetica text) with a correct cross-reference table.
function makePdf(lines) {
  const text = lines.map((l, i) => `BT /F1 12 Tf 72 ${720 - 18 * i} Td (${l.replace(/[()\\]/g, '\\$&')}) Tj ET`).join('\n');
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
    `<< /Length ${Buffer.byteLength(text)} >>\nstream\n${text}\nendstream`,
  ];
  let out = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((o, i) => { offsets.push(Buffer.byteLength(out)); out += `${i + 1} 0 obj\n${o}\nendobj\n`; });
  const xref = Buffer.byteLength(out);
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

async function startServer() {
  assert.ok(BINARY, 'set ETNA_BINARY to the built etna binary');
  assert.ok(existsSync(BINARY), `ETNA_BINARY=${BINARY} does not exist`);
  const data = mkdtempSync(path.join(tmpdir(), 'etna-e2e-'));
  const proc = spawn(BINARY, ['serve', '-m', MODEL, '--port', '0', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`etna serve did not start in 60 s; stderr:\n${stderr}`)), 60000);
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = stdout.match(/etna: web app at (http:\/\/\S+?)\/?\n/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`etna serve exited (${code}); stderr:\n${stderr}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  for (let i = 0; ; ++i) {
    const r = await fetch(`${url}/health`);
    if (r.status === 200) break;
    assert.ok(i < 600, 'the model did not load in 60 s');
    await new Promise((res) => setTimeout(res, 100));
  }
  return { proc, url, data, exited };
}

describe('the web app in Chromium', { skip }, () => {
  let server, browser, context, page, origin;
  const requests = [];
  const pageErrors = [];
  const docs = mkdtempSync(path.join(tmpdir(), 'etna-e2e-docs-'));

  const shot = async (name, p = page) => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  };
  const go = async (view) => {
    await page.click(`nav a[data-view="${view}"]`);
    await page.waitForSelector(`#view-${view}:not([hidden])`);
  };

  before(async () => {
    const { chromium } = loadPlaywright();
    server = await startServer();
    origin = new URL(server.url).origin;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
             '--disable-component-update', '--no-first-run', '--disable-sync'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    context.on('request', (r) => requests.push(r.url()));
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
    page.on('dialog', (d) => d.accept());
    page.setDefaultTimeout(30000);
    await page.goto(`${server.url}/`);
    await page.waitForSelector('#view-chat:not([hidden])');
  });

  after(async () => {
    await browser?.close();
    if (server) {
      server.proc.kill('SIGTERM');
      await server.exited;
      rmSync(server.data, { recursive: true, force: true });
    }
    rmSync(docs, { recursive: true, force: true });
  });

  test('chat: a streamed reply appears and completes', async () => {
    await page.fill('#chat-input', 'Once upon a time');
    const response = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
    await page.press('#chat-input', 'Enter');
    const r = await response;
    // The stream names its charset, so any client (Playwright's text() included) decodes it as UTF-8.
    assert.match(r.headers()['content-type'], /^text\/event-stream; charset=utf-8$/);
    const reply = page.locator('.msg-bubble.assistant[data-done="true"]');
    await reply.waitFor();
    const text = (await reply.locator('.body').innerText()).trim();
    assert.ok(text.length > 0, 'the reply is empty');
    assert.equal(await page.locator('.msg-bubble.user').innerText().then((t) => t.includes('Once upon a time')), true);
    assert.equal(await page.isHidden('#chat-stop'), true);
    assert.equal(await page.isEnabled('#chat-regen'), true);
    // The conversation was saved on the server with both messages.
    const list = await (await fetch(`${server.url}/api/conversations`)).json();
    assert.equal(list.conversations.length, 1);
    const conv = await (await fetch(`${server.url}/api/conversations/${list.conversations[0].id}`)).json();
    assert.deepEqual(conv.messages.map((m) => m.role), ['user', 'assistant']);
    // The server sent the reply as several OpenAI-format deltas; the page kept exactly their text.
    const deltas = (await r.text()).split('\n').filter((l) => l.startsWith('data: ') && l !== 'data: [DONE]')
      .map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.content ?? '');
    assert.ok(deltas.filter(Boolean).length >= 2, `only ${deltas.length} deltas streamed`);
    assert.equal(conv.messages[1].content, deltas.join(''));
    assert.equal(conv.messages[0].content, 'Once upon a time');
    await shot('chat');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('chat-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  test('chat: the stop button ends a generation and the next one works', async () => {
    const before = await page.locator('.msg-bubble.assistant').count();
    // Submit and stop in the same task: the request is in flight, so Stop must abort it.
    await page.fill('#chat-input', 'Tell me a long story');
    await page.evaluate(() => {
      document.getElementById('chat-form').requestSubmit();
      if (document.getElementById('chat-stop').hidden) throw new Error('the stop button is not shown while generating');
      document.getElementById('chat-stop').click();
    });
    const stopped = page.locator('.msg-bubble.assistant[data-done="true"]').nth(before);
    await stopped.waitFor();
    assert.match(await stopped.locator('.note').innerText(), /Stopped/);
    assert.equal(await page.isVisible('#chat-send'), true);
    // Regenerate answers the last question again.
    await page.click('#chat-regen');
    await page.locator('.msg-bubble.assistant[data-done="true"]').nth(before).waitFor();
    await page.waitForSelector('#chat-send:not([hidden])');
    const last = page.locator('.msg-bubble.assistant').last();
    assert.ok((await last.locator('.body').innerText()).trim().length > 0);
  });

  test('chat: a reload shows the conversation kept on the server', async () => {
    const title = await page.locator('#chat-title').innerText();
    await page.reload();
    await page.waitForSelector('#conv-list .conv-open');
    await page.waitForFunction(() => document.querySelectorAll('#messages .msg-bubble.user').length >= 2);
    assert.equal(await page.locator('#chat-title').innerText(), title);
    assert.match(await page.locator('#messages .msg-bubble.user').first().innerText(), /Once upon a time/);
    assert.ok(await page.locator('#messages .msg-bubble.assistant').count() >= 1);
  });

  test('chat: settings and a new title are saved with the conversation', async () => {
    await page.click('#settings-toggle');
    await page.waitForSelector('#settings:not([hidden])');
    await page.fill('#set-max-tokens', '48');
    await page.fill('#set-system', 'You tell short stories.');
    await page.press('#set-system', 'Tab');  // commits the change
    await page.keyboard.press('Escape');
    await page.waitForSelector('#settings', { state: 'hidden' });
    const id = await page.evaluate(() => localStorage.getItem('etna.conversation'));
    const saved = async () => (await fetch(`${server.url}/api/conversations/${id}`)).json();
    for (let i = 0; i < 50 && (await saved()).settings.max_tokens !== 48; ++i) await page.waitForTimeout(100);
    const conv = await saved();
    assert.equal(conv.settings.max_tokens, 48);
    assert.equal(conv.settings.system, 'You tell short stories.');
    // Rename from the list with the keyboard.
    await page.click('#conv-list li.current button[aria-label^="Rename"]');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('Stories');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#conv-list .conv-open >> text=Stories');
    assert.equal((await saved()).title, 'Stories');
    await page.reload();
    await page.waitForFunction(() => document.getElementById('chat-title').textContent === 'Stories');
    assert.equal(await page.inputValue('#set-max-tokens'), '48');
  });

  // A list refresh that lands while a title is being typed (a save finishing in the background,
  // as on a loaded machine) must not replace the input and drop the typing: the refresh is held
  // here until the typing is done.
  test('chat: a background list refresh does not drop a title being typed', async () => {
    let release;
    const held = new Promise((r) => { release = r; });
    let holding = true;
    await page.route('**/api/conversations', async (route) => {
      if (holding && route.request().method() === 'GET') { holding = false; await held; }
      await route.continue();
    });
    const refreshed = page.waitForResponse((r) => r.url().endsWith('/api/conversations') && r.request().method() === 'GET');
    await page.click('#settings-toggle');
    await page.waitForSelector('#settings:not([hidden])');
    await page.fill('#set-max-tokens', '40');
    await page.press('#set-max-tokens', 'Tab');  // commits: a save, then a list refresh (held)
    await page.keyboard.press('Escape');
    await page.waitForSelector('#settings', { state: 'hidden' });
    await page.click('#conv-list li.current button[aria-label^="Rename"]');
    await page.waitForSelector('#conv-list input[aria-label="New title"]');
    await page.fill('#conv-list input[aria-label="New title"]', 'Tales');
    release();
    await refreshed;
    await page.waitForTimeout(100);  // the refresh's rendering, if it were to replace the input
    await page.press('#conv-list input[aria-label="New title"]', 'Enter');
    await page.waitForSelector('#conv-list .conv-open >> text=Tales');
    await page.unroute('**/api/conversations');
  });

  test('documents: create a collection, upload Markdown and PDF, see them listed', async () => {
    await go('documents');
    await page.fill('#coll-name', 'notes');
    await page.press('#coll-name', 'Enter');
    await page.waitForSelector('#coll-list button.open >> text=notes');
    await page.waitForSelector('#coll-detail:not([hidden])');
    const md = path.join(docs, 'volcano.md');
    writeFileSync(md, '# Mount Etna\n\nMount Etna is an active volcano on the east coast of Sicily.\n\n' +
      '## Eruptions\n\nEtna erupts often; lava flows reached Catania in 1669.\n');
    const pdf = path.join(docs, 'harbour.pdf');
    writeFileSync(pdf, makePdf(['The harbour of Catania lies south of Etna.', 'Fishing boats leave at dawn.']));
    await page.setInputFiles('#file-input', [md, pdf]);
    await page.waitForSelector('#jobs li[data-state]');
    assert.equal(await page.getAttribute('#jobs li', 'data-state'), 'done', await page.locator('#jobs li').innerText());
    await page.waitForSelector('#file-rows td.name >> text=volcano.md');
    await page.waitForSelector('#file-rows td.name >> text=harbour.pdf');
    // Drag and drop a file onto the drop zone, then delete it again from the list.
    const dropped = await page.evaluateHandle(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['Dropped notes about ash clouds over Etna.\n'], 'dropped.txt', { type: 'text/plain' }));
      return dt;
    });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: dropped });
    await page.waitForSelector('#file-rows td.name >> text=dropped.txt');
    await page.click('#file-rows button[aria-label="Delete dropped.txt"]');
    await page.waitForSelector('#file-rows td.name >> text=dropped.txt', { state: 'detached' });
    assert.equal(await page.locator('#file-rows tr').count(), 2);
    // A folder the operator did not allow: a clear message, not a crash.
    await page.fill('#ingest-path', '/etc');
    await page.press('#ingest-path', 'Enter');
    await page.waitForFunction(() => /allow/i.test(document.getElementById('ingest-msg').textContent));
    assert.match(await page.locator('#ingest-msg').innerText(), /--allow-ingest/);
    await page.fill('#search-q', 'Catania lava');
    await page.press('#search-q', 'Enter');
    await page.waitForSelector('#search-hits li strong');
    assert.match(await page.locator('#search-hits').innerText(), /volcano\.md|harbour\.pdf/);
    await shot('documents');
  });

  test('ask: a streamed answer over the documents opens a cited source', async () => {
    await go('ask');
    await page.waitForSelector('#ask-coll option[value="notes"]', { state: 'attached' });
    await page.selectOption('#ask-coll', 'notes');
    await page.fill('#ask-q', 'When did lava reach Catania?');
    await page.press('#ask-q', 'Enter');
    await page.waitForSelector('#ask-answer[data-done="true"]');
    await page.waitForSelector('#ask-send:not([hidden])');
    const sources = page.locator('#ask-sources button[data-source]');
    assert.ok(await sources.count() >= 1, 'no retrieved sources listed');
    // stories260K writes nonsense: open a cited source when there is a matching [n], else a retrieved one.
    const cite = page.locator('#ask-answer button.cite:not(.unmatched)');
    const opener = (await cite.count()) ? cite.first() : sources.first();
    await opener.focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#source-panel:not([hidden])');
    assert.match(await page.locator('#sp-title').innerText(), /\[\d+\] (volcano\.md|harbour\.pdf)/);
    assert.ok((await page.locator('#sp-text mark').innerText()).trim().length > 0, 'no highlighted span');
    assert.match(await page.locator('#sp-meta').innerText(), /Lines/);
    await shot('ask');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#source-panel', { state: 'hidden' });
    assert.equal(await opener.evaluate((e) => e === document.activeElement), true, 'focus did not return to the opener');
  });

  test('status: shows the model', async () => {
    await go('status');
    await page.waitForSelector('#status-cards .card');
    const text = await page.locator('#status-cards').innerText();
    assert.match(text, /stories260K/);
    assert.match(text, /tokens\/s/);
    await shot('status');
  });

  test('evaluate: a perplexity run shows progress, lands in the sortable leaderboard and the plot', async () => {
    await go('evaluate');
    const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. '
      + 'One day, she saw a big red ball under a tree. She ran to get it and laughed with her friend Tom. ';
    await page.selectOption('#eval-task', 'perplexity');
    await page.fill('#eval-ctx', '32');
    await page.fill('#eval-text', story.repeat(4));
    await page.click('#eval-run');
    await page.waitForSelector('#eval-progress:not([hidden])');
    await page.waitForFunction(() => /^Done: PPL \d/.test(document.getElementById('eval-msg').textContent), null, { timeout: 60000 });
    assert.equal(await page.getAttribute('#eval-bar', 'value'), await page.getAttribute('#eval-bar', 'max'));
    // The leaderboard holds the run (the same figure the command line stores), sortable by column.
    await page.waitForSelector('#eval-rows tr');
    const row = await page.locator('#eval-rows tr').first().innerText();
    assert.match(row, /stories260K/);
    assert.match(row, /perplexity/);
    assert.match(row, /ppl/);
    await page.click('#eval-table th button[data-sort="value"]');
    assert.equal(await page.getAttribute('#eval-table th:has(button[data-sort="value"])', 'aria-sort'), 'ascending');
    // The plot is drawn here as SVG: one point for this model.
    assert.equal(await page.locator('#eval-plot-ppl svg .point circle').count(), 1);
    assert.equal(await page.locator('#eval-plot-rag svg').count(), 1);
    // A bad request is one clear message, not a broken page.
    await page.fill('#eval-ctx', '512');
    await page.click('#eval-run');
    await page.waitForFunction(() => /^Failed: .*needs at least/.test(document.getElementById('eval-msg').textContent), null, { timeout: 60000 });
    await shot('evaluate');
  });

  test('keyboard only: move between views with Tab and Enter', async () => {
    const p = await context.newPage();
    await p.goto(`${server.url}/#/chat`);
    await p.waitForSelector('#view-chat:not([hidden])');
    const tabTo = async (selector, key = 'Tab') => {
      for (let i = 0; i < 60; ++i) {
        await p.keyboard.press(key);
        if (await p.evaluate((s) => document.activeElement?.matches(s), selector)) return;
      }
      assert.fail(`Tab never reached ${selector}`);
    };
    // From the page start forwards; then from each view's heading backwards (the menu precedes it).
    let key = 'Tab';
    for (const view of ['documents', 'ask', 'status', 'chat']) {
      await tabTo(`nav a[data-view="${view}"]`, key);
      key = 'Shift+Tab';
      const outline = await p.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      assert.notEqual(outline, 'none', 'the focused link shows no focus ring');
      await p.keyboard.press('Enter');
      await p.waitForSelector(`#view-${view}:not([hidden])`);
      assert.equal(await p.evaluate(() => document.activeElement?.tagName), 'H1');
    }
    // Enter sends from the keyboard, Shift+Enter makes a new line.
    await tabTo('#chat-input');
    await p.keyboard.type('first line');
    await p.keyboard.press('Shift+Enter');
    await p.keyboard.type('second');
    assert.equal(await p.inputValue('#chat-input'), 'first line\nsecond');
    await p.close();
  });

  test('narrow window (375 px): navigation collapses and nothing scrolls sideways', async () => {
    const narrow = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    narrow.on('request', (r) => requests.push(r.url()));
    const p = await narrow.newPage();
    for (const view of ['chat', 'documents', 'ask', 'status']) {
      await p.goto(`${server.url}/#/${view}`);
      await p.waitForSelector(`#view-${view}:not([hidden])`);
      if (view === 'documents') await p.waitForSelector('#coll-detail:not([hidden])');
      await p.waitForTimeout(300);
      const { scroll, width } = await p.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
      assert.ok(scroll <= width, `${view}: page is ${scroll}px wide in a ${width}px window`);
      assert.equal(await p.isVisible('nav a[data-view="status"]'), false, 'the navigation is not collapsed');
      await p.screenshot({ path: path.join(ARTIFACTS, `narrow-${view}.png`), fullPage: true });
    }
    await p.click('#nav-toggle');
    assert.equal(await p.isVisible('nav a[data-view="status"]'), true);
    await p.keyboard.press('Escape');
    assert.equal(await p.isVisible('nav a[data-view="status"]'), false);
    await narrow.close();
  });

  test('every request stayed on the server origin; no page errors', () => {
    assert.ok(requests.length > 10, `only ${requests.length} requests recorded`);
    const foreign = requests.filter((u) => new URL(u).origin !== origin);
    assert.deepEqual(foreign, [], 'requests outside the server origin');
    // The refused folder ingestion (403) is the only failed load the browser may report.
    assert.deepEqual(pageErrors.filter((e) => !/status of 403/.test(e)), []);
  });
});

// The Markdown renderer on its own (no browser needed): it must never let HTML through.
describe('markdown renderer', () => {
  let render;
  before(async () => { ({ renderMarkdown: render } = await import(new URL('../../web/js/markdown.js', import.meta.url))); });

  test('escapes HTML everywhere', () => {
    const html = render('<img src=x onerror=alert(1)>\n\n# <b>h</b>\n\n- <i>x</i>\n\n> <script>\n\n`<a>`\n\n```\n<svg onload=1>\n```');
    assert.ok(!/<(img|b|i|script|svg|a)[\s>]/.test(html), html);
    assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/);
  });

  test('links only for http(s), with rel=noopener and quoted safely', () => {
    assert.match(render('[ok](https://example.org/a?b=1&c=2)'), /<a href="https:\/\/example.org\/a\?b=1&amp;c=2" rel="noopener noreferrer" target="_blank">ok<\/a>/);
    for (const bad of ['[x](javascript:alert(1))', '[x](data:text/html,hi)', '[x](//evil.example)']) assert.ok(!render(bad).includes('<a '), bad);
    assert.ok(!render('[x](https://a.example/"onmouseover="1)').includes('"onmouseover'));
  });

  test('blocks and inline formatting', () => {
    assert.equal(render('## Title'), '<h4>Title</h4>');
    assert.equal(render('- a\n- **b**'), '<ul><li>a</li><li><strong>b</strong></li></ul>');
    assert.equal(render('1. one\n2. two'), '<ol><li>one</li><li>two</li></ol>');
    assert.equal(render('*it* and `co*de*`'), '<p><em>it</em> and <code>co*de*</code></p>');
    assert.match(render('```py\nprint(1)\n```'), /<span class="lang">py<\/span><button type="button" class="copy" data-copy>Copy<\/button><pre><code>print\(1\)<\/code><\/pre>/);
  });

  test('citation markers become buttons, unmatched ones flagged, none inside code', () => {
    const html = render('Etna [1] and [9] but `[2]`', { citations: true, unmatched: new Set([9]) });
    assert.match(html, /<button type="button" class="cite" data-cite="1"/);
    assert.match(html, /class="cite unmatched" data-cite="9"/);
    assert.match(html, /<code>\[2\]<\/code>/);
    assert.ok(!render('see [1]').includes('<button'), 'citations only when asked for');
  });
});
