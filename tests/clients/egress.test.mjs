// Zero egress (issue 16 item 17), run by tests/clients/run-egress-suite.cmake with the recorder
// preloaded: every etna process below may use loopback only. The recorder logs (and refuses) any
// other connect/send and any host-name lookup to $ETNA_EGRESS_LOG; the suite fails on an entry.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { BINARY, MODEL, EMB_MODEL, skipReason, startServer, stopServer, postJson } from './etna-server.mjs';

const LOG = process.env.ETNA_EGRESS_LOG;
const preloaded = Boolean(process.env.LD_PRELOAD && process.env.ETNA_EGRESS_RECORDER);
const skip = skipReason || (preloaded ? false : 'skipped: run through run-egress-suite.cmake (needs the recorder preloaded)');

const entries = (file) => (existsSync(file) ? readFileSync(file, 'utf8').trim() : '');
const tmp = mkdtempSync(path.join(tmpdir(), 'etna-egress-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function etna(args, env = {}) {
  const r = spawnSync(BINARY, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('zero egress', { skip }, () => {
  test('the recorder sees etna reaching for the network (pull without --offline), and blocks it', () => {
    const control = path.join(tmp, 'control.log');
    const r = etna(['pull', 'example/Tiny-GGUF:Q4_0', '--data', path.join(tmp, 'pull-data')], { ETNA_EGRESS_LOG: control });
    assert.notEqual(r.code, 0, 'pull cannot succeed with the network refused');
    assert.match(entries(control), /lookup|connect/, `the recorder saw nothing; pull said: ${r.err}`);
  });

  test('pull --offline refuses without touching the network', () => {
    const control = path.join(tmp, 'offline.log');
    const r = etna(['pull', 'example/Tiny-GGUF:Q4_0', '--offline', '--data', path.join(tmp, 'pull-data')], { ETNA_EGRESS_LOG: control });
    assert.notEqual(r.code, 0);
    assert.match(r.err, /offline/);
    assert.equal(entries(control), '');
  });

  test('serve: chat, streamed chat, embeddings, documents ingest, search and ask, the web app files', async () => {
    const s = await startServer(['-m', MODEL, '--embedding-model', EMB_MODEL]);
    const chat = await postJson(s, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 8 });
    assert.equal(chat.status, 200, chat.text);
    const streamed = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, stream: true }),
    });
    assert.match(await streamed.text(), /\[DONE\]/);
    const emb = await postJson(s, '/v1/embeddings', { input: ['zebra crossings', 'boilers'] });
    assert.equal(emb.status, 200, emb.text);
    assert.equal((await fetch(`${s.url}/api/collections/notes`, { method: 'PUT' })).status, 201);
    const form = new FormData();
    form.append('file', new Blob(['Zebra crossings were introduced in 1951.\n\nPelican crossings use lights.\n']), 'notes.txt');
    const up = await fetch(`${s.url}/api/collections/notes/files?wait=true`, { method: 'POST', body: form });
    assert.equal(up.status, 200, await up.text());
    const search = await postJson(s, '/api/collections/notes/search', { query: 'zebra crossings', k: 2 });
    assert.equal(search.status, 200, search.text);
    const ask = await postJson(s, '/api/collections/notes/ask', { question: 'When were zebra crossings introduced?', max_tokens: 16 });
    assert.equal(ask.status, 200, ask.text);
    const page = await fetch(`${s.url}/`, { headers: { accept: 'text/html' } });
    assert.equal(page.status, 200);
    const html = await page.text();
    for (const m of html.matchAll(/(?:src|href)="(\/[^"]+)"/g)) assert.equal((await fetch(`${s.url}${m[1]}`)).status, 200, m[1]);
    await stopServer(s);
    assert.equal(entries(LOG), '', 'serve reached for the network');
  });

  test('the CLI commands: info, tokenize, run, embed, ingest, search, ask, list', () => {
    const data = path.join(tmp, 'cli-data');
    const docs = path.join(tmp, 'docs');
    spawnSync('mkdir', ['-p', docs]);
    writeFileSync(path.join(docs, 'a.md'), '# Zebra\n\nZebra crossings were introduced in 1951.\n');
    const runs = [
      ['info', MODEL],
      ['tokenize', '-m', MODEL, 'Once upon a time'],
      ['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '8'],
      ['embed', '-m', EMB_MODEL, 'zebra crossings'],
      ['ingest', '--collection', 'c', '--data', data, docs],
      ['search', 'zebra', '--collection', 'c', '--data', data],
      ['ask', 'When were zebra crossings introduced?', '-m', MODEL, '--collection', 'c', '--data', data, '-n', '8'],
      ['list', '--data', data],
    ];
    for (const args of runs) {
      const r = etna(args);
      assert.equal(r.code, 0, `etna ${args.join(' ')}: ${r.err}`);
    }
    assert.equal(entries(LOG), '', 'a CLI command reached for the network');
  });
});
