// Shared by the client suites: starts a real `etna serve` (port 0, a fresh data folder) and waits
// until /health says the models are loaded; stops it; reads /metrics; plain JSON requests.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BINARY = process.env.ETNA_BINARY;
export const SHARED = process.env.ETNA_SHARED_DIR || path.resolve(here, '../../../shared');
export const MODEL = path.join(SHARED, 'models/stories260K.gguf');
export const EMB_MODEL = path.join(SHARED, 'models/tiny-bert-bge-f32.gguf');
export const haveShared = existsSync(MODEL) && existsSync(EMB_MODEL);
export const skipReason = haveShared ? false : `skipped: ../shared not found (${MODEL})`;

const servers = [];

export async function startServer(args, { data } = {}) {
  assert.ok(BINARY, 'set ETNA_BINARY to the built etna binary');
  assert.ok(existsSync(BINARY), `ETNA_BINARY=${BINARY} does not exist`);
  const dir = data || mkdtempSync(path.join(tmpdir(), 'etna-clients-'));
  const proc = spawn(BINARY, ['serve', '--port', '0', '--data', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let out = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`etna serve did not start in 60 s; stderr:\n${stderr}`)), 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/etna: listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`etna serve exited (${code}); stderr:\n${stderr}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const headers = {};
  const key = args.indexOf('--api-key');
  if (key >= 0) headers.authorization = `Bearer ${args[key + 1]}`;
  for (let i = 0; ; ++i) {
    const r = await fetch(`${url}/health`, { headers });
    if (r.status === 200) break;
    assert.equal(r.status, 503);
    assert.ok(i < 600, 'the model did not load in 60 s');
    await new Promise((res) => setTimeout(res, 100));
  }
  const s = { proc, url, data: dir, exited, stdout: () => out, stderr: () => stderr };
  servers.push(s);
  return s;
}

export async function stopServer(s) {
  if (s.proc.exitCode === null) s.proc.kill('SIGTERM');
  const { code } = await s.exited;
  rmSync(s.data, { recursive: true, force: true });
  return code;
}

export async function stopAll() {
  for (const s of servers.splice(0)) await stopServer(s);
}

export async function postJson(s, pathname, body, headers = {}) {
  const r = await fetch(`${s.url}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, body: json, text, headers: r.headers };
}

// The value of one Prometheus sample line (`name{labels} value`), or 0 when absent.
export async function metric(s, sample, headers = {}) {
  const text = await (await fetch(`${s.url}/metrics`, { headers })).text();
  for (const line of text.split('\n')) if (line.startsWith(sample + ' ')) return Number(line.slice(sample.length + 1));
  return 0;
}

// Greedy /v1/chat/completions text for `messages` (the reference the other APIs must reproduce).
export async function chatReference(s, messages, maxTokens) {
  const r = await postJson(s, '/v1/chat/completions', { model: 'stories260K', messages, max_tokens: maxTokens, temperature: 0 });
  assert.equal(r.status, 200, r.text);
  return r.body.choices[0].message.content;
}
