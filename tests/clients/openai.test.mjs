// The official OpenAI JS client (openai) against a real `etna serve -m stories260K.gguf`.
// Run: ETNA_BINARY=build/etna ETNA_SHARED_DIR=../shared node --test openai.test.mjs   (in tests/clients)
// Skips (saying why) when the shared models are absent.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const here = path.dirname(fileURLToPath(import.meta.url));
const BINARY = process.env.ETNA_BINARY;
const SHARED = process.env.ETNA_SHARED_DIR || path.resolve(here, '../../../shared');
const MODEL = path.join(SHARED, 'models/stories260K.gguf');
const EMB_MODEL = path.join(SHARED, 'models/tiny-bert-bge-f32.gguf');
const haveShared = existsSync(MODEL) && existsSync(EMB_MODEL);
const skip = haveShared ? false : `skipped: ../shared not found (${MODEL})`;
if (skip) console.log(`# openai suite ${skip}`);
const REF = haveShared ? JSON.parse(readFileSync(path.join(SHARED, 'reference/stories260K.json'), 'utf8')) : null;
const EMB_REF = haveShared ? JSON.parse(readFileSync(path.join(SHARED, 'reference/tiny-bert-bge-f32.json'), 'utf8')) : null;

const servers = [];

// Starts `etna serve` and resolves once /health says the models are loaded.
async function startServer(args) {
  assert.ok(BINARY, 'set ETNA_BINARY to the built etna binary');
  assert.ok(existsSync(BINARY), `ETNA_BINARY=${BINARY} does not exist`);
  const data = mkdtempSync(path.join(tmpdir(), 'etna-openai-'));
  const proc = spawn(BINARY, ['serve', '--port', '0', '--data', data, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    let out = '';
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
  for (let i = 0; ; ++i) {
    const r = await fetch(`${url}/health`);
    if (r.status === 200) { assert.deepEqual(await r.json(), { status: 'ok' }); break; }
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { status: 'loading' });
    assert.ok(i < 600, 'the model did not load in 60 s');
    await new Promise((res) => setTimeout(res, 100));
  }
  const s = { proc, url, data, exited, stderr: () => stderr };
  servers.push(s);
  return s;
}

async function stopServer(s) {
  s.proc.kill('SIGTERM');
  const { code } = await s.exited;
  rmSync(s.data, { recursive: true, force: true });
  return code;
}

const clientFor = (s, opts = {}) => new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000, ...opts });

async function expectApiError(promise, status, code) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(err.status, status, `expected ${status}, got ${err.status}: ${err.message}`);
  assert.equal(typeof err.error?.message, 'string', `OpenAI error body expected: ${JSON.stringify(err.error)}`);
  assert.ok('type' in err.error && 'param' in err.error && 'code' in err.error);
  if (code !== undefined) assert.equal(err.code, code);
  return err;
}

async function rawJson(s, pathname, body, headers = {}) {
  const r = await fetch(`${s.url}${pathname}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: r.status, body: await r.json(), headers: r.headers };
}

async function metric(s, name) {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
}

const cosine = (a, b) => {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; ++i) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
};

async function streamText(client, params, onChunk) {
  const stream = await client.completions.create({ ...params, stream: true });
  let text = '';
  let finish = null;
  for await (const c of stream) {
    if (onChunk) onChunk(c);
    for (const ch of c.choices) { text += ch.text; if (ch.finish_reason) finish = ch.finish_reason; }
  }
  return { text, finish };
}

after(async () => { for (const s of servers) if (s.proc.exitCode === null) await stopServer(s); });

describe('etna serve with the OpenAI client', { skip }, () => {
  let server;
  let client;
  before(async () => {
    server = await startServer(['-m', MODEL, '--embedding-model', EMB_MODEL, '--parallel', '4', '--max-body-mb', '1']);
    client = clientFor(server);
  });

  test('models', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id).sort();
    assert.deepEqual(ids, ['stories260K', 'tiny-bert-bge-f32']);
    for (const m of list.data) { assert.equal(m.object, 'model'); assert.equal(typeof m.created, 'number'); }
    const one = await client.models.retrieve('stories260K');
    assert.equal(one.id, 'stories260K');
    await expectApiError(client.models.retrieve('gpt-4o'), 404, 'model_not_found');
  });

  test('completions reproduce llama.cpp greedy text, usage numbers, token-id prompts', async () => {
    const c = REF.cases[0];
    const r = await client.completions.create({ model: 'stories260K', prompt: c.prompt, max_tokens: c.greedy.length, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices[0].text, c.greedy_text);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.deepEqual(r.usage.prompt_tokens, c.tokens.length);
    assert.equal(r.usage.completion_tokens, c.greedy.length);
    assert.equal(r.usage.total_tokens, c.tokens.length + c.greedy.length);
    const ids = await client.completions.create({ model: 'stories260K', prompt: c.tokens, max_tokens: 10, temperature: 0 });
    assert.ok(c.greedy_text.startsWith(ids.choices[0].text), ids.choices[0].text);
    const streamed = await streamText(client, { prompt: c.prompt, max_tokens: c.greedy.length, temperature: 0 });
    assert.equal(streamed.text, c.greedy_text);
    assert.equal(streamed.finish, 'length');
  });

  test('chat completion, non-streamed and streamed agree; stop strings', async () => {
    const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: [{ type: 'text', text: 'Once upon a time' }] }];
    const r = await client.chat.completions.create({ model: 'stories260K', messages, max_tokens: 30, temperature: 0 });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    const msg = r.choices[0].message;
    assert.equal(msg.role, 'assistant');
    assert.equal(typeof msg.content, 'string');
    assert.ok(msg.content.length > 0);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 10);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 30);

    const stream = await client.chat.completions.create({ messages, max_completion_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(chunks[0].object, 'chat.completion.chunk');
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, msg.content);
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    const last = withChoices[withChoices.length - 1];
    assert.equal(last.choices[0].finish_reason, r.choices[0].finish_reason);
    assert.deepEqual(last.choices[0].delta, {});
    const usage = chunks[chunks.length - 1];
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, r.usage.completion_tokens);
    assert.equal(usage.usage.prompt_tokens, r.usage.prompt_tokens);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);

    const words = msg.content.trim().split(/\s+/);
    if (words.length > 3) {
      const stop = ' ' + words[2];
      const s = await client.chat.completions.create({ messages, max_tokens: 30, temperature: 0, stop: [stop] });
      assert.equal(s.choices[0].finish_reason, 'stop');
      assert.equal(s.choices[0].message.content, msg.content.slice(0, msg.content.indexOf(stop)));
    }
  });

  test('response_format json_object gives parseable JSON', async () => {
    for (const [temperature, max_tokens, seed] of [[0, 60, 1], [1, 40, 2], [1.5, 8, 3], [0.8, 200, 4]]) {
      const r = await client.chat.completions.create({
        messages: [{ role: 'user', content: 'Describe Lily as JSON.' }], response_format: { type: 'json_object' }, temperature, max_tokens, seed,
      });
      const content = r.choices[0].message.content;
      let parsed;
      assert.doesNotThrow(() => { parsed = JSON.parse(content); }, `not JSON: ${content}`);
      assert.equal(typeof parsed, 'object');
      assert.ok(!Array.isArray(parsed) && parsed !== null);
    }
  });

  test('logprobs shape (chat and completions)', async () => {
    const r = await client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs.content;
    assert.ok(content.length >= 1 && content.length <= 8);
    for (const t of content) {
      assert.equal(typeof t.token, 'string');
      assert.ok(t.logprob <= 0);
      assert.ok(Array.isArray(t.bytes));
      assert.equal(t.top_logprobs.length, 3);
      assert.equal(t.top_logprobs[0].token, t.token);  // greedy takes the most likely token
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
    }
    const c = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logprobs: 2 });
    const lp = c.choices[0].logprobs;
    assert.equal(lp.tokens.length, 5);
    assert.equal(lp.token_logprobs.length, 5);
    assert.equal(lp.top_logprobs.length, 5);
    assert.equal(Object.keys(lp.top_logprobs[0]).length, 2);
    assert.equal(lp.tokens.join(''), c.choices[0].text);
  });

  test('embeddings (float and base64) match llama.cpp', async () => {
    const inputs = EMB_REF.cases.map((c) => c.prompt);
    const r = await client.embeddings.create({ model: 'tiny-bert-bge-f32', input: inputs, encoding_format: 'float' });
    assert.equal(r.data.length, inputs.length);
    assert.equal(r.usage.prompt_tokens, EMB_REF.cases.reduce((s, c) => s + c.tokens.length, 0));
    r.data.forEach((d, i) => {
      assert.equal(d.index, i);
      assert.ok(cosine(d.embedding, EMB_REF.cases[i].embedding) >= 0.9999);
    });
    // The JS client asks for base64 by default and decodes it.
    const b = await client.embeddings.create({ input: inputs[0] });
    assert.ok(cosine(b.data[0].embedding, EMB_REF.cases[0].embedding) >= 0.9999);
    const raw = await rawJson(server, '/v1/embeddings', JSON.stringify({ input: inputs[1], encoding_format: 'base64' }));
    assert.equal(typeof raw.body.data[0].embedding, 'string');
    const buf = Buffer.from(raw.body.data[0].embedding, 'base64');
    const floats = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    assert.ok(cosine(floats, EMB_REF.cases[1].embedding) >= 0.9999);
    await expectApiError(client.embeddings.create({ model: 'stories260K', input: 'x' }), 404, 'model_not_found');
  });

  test('errors: bad JSON, wrong types, bad values, unknown model, too long, too big', async () => {
    let r = await rawJson(server, '/v1/chat/completions', '{"messages": [');
    assert.equal(r.status, 400);
    assert.equal(typeof r.body.error.message, 'string');
    r = await rawJson(server, '/v1/chat/completions', '[1,2]');
    assert.equal(r.status, 400);
    const msgs = [{ role: 'user', content: 'Hi' }];
    let e = await expectApiError(client.chat.completions.create({ messages: msgs, temperature: 'hot' }), 400, 'invalid_type');
    assert.equal(e.param, 'temperature');
    await expectApiError(client.chat.completions.create({ messages: 'Hi' }), 400);
    await expectApiError(client.chat.completions.create({ messages: [{ role: 'user', content: 5 }] }), 400);
    await expectApiError(client.chat.completions.create({ messages: [{ role: 'wizard', content: 'x' }] }), 400);
    await expectApiError(client.chat.completions.create({ messages: msgs, n: 2 }), 400);
    await expectApiError(client.chat.completions.create({ messages: msgs, temperature: -1 }), 400);
    await expectApiError(client.chat.completions.create({ messages: msgs, max_tokens: -5 }), 400);
    await expectApiError(client.chat.completions.create({ messages: msgs, response_format: { type: 'xml' } }), 400);
    await expectApiError(client.chat.completions.create({ messages: msgs, stop: [1, 2] }), 400);
    await expectApiError(client.chat.completions.create({ model: 'gpt-4o', messages: msgs }), 404, 'model_not_found');
    await expectApiError(client.completions.create({ model: 'gpt-4o', prompt: 'x' }), 404, 'model_not_found');
    const long = 'Once upon a time there was a cat. '.repeat(800);
    e = await expectApiError(client.chat.completions.create({ messages: [{ role: 'user', content: long }] }), 400, 'context_length_exceeded');
    await expectApiError(client.completions.create({ prompt: long }), 400, 'context_length_exceeded');
    const huge = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] });
    r = await rawJson(server, '/v1/chat/completions', huge).catch((err) => ({ status: 'connection closed: ' + err.message }));
    assert.equal(r.status, 413);
    assert.equal(typeof r.body.error.message, 'string');
    // Still serving.
    const ok = await client.completions.create({ prompt: 'Once', max_tokens: 3, temperature: 0 });
    assert.equal(ok.choices.length, 1);
  });

  test('batching: 8 concurrent greedy streams equal each alone', async () => {
    const prompts = ['Once upon a time', 'Lily and Tom went to the park.', 'One day, a little bird', 'The sun was hot.',
      'Max had a red ball.', 'Sue liked to sing', 'There was a big tree', 'Tim and his mom'];
    const alone = [];
    for (const p of prompts) alone.push((await client.completions.create({ prompt: p, max_tokens: 48, temperature: 0 })).choices[0].text);
    const together = await Promise.all(prompts.map((p) => streamText(client, { prompt: p, max_tokens: 48, temperature: 0 })));
    together.forEach((t, i) => assert.equal(t.text, alone[i], `prompt ${i}: ${prompts[i]}`));
    const chatAlone = [];
    for (const p of prompts) chatAlone.push((await client.chat.completions.create({ messages: [{ role: 'user', content: p }], max_tokens: 24, temperature: 0 })).choices[0].message.content);
    const chatTogether = await Promise.all(prompts.map((p) => client.chat.completions.create({ messages: [{ role: 'user', content: p }], max_tokens: 24, temperature: 0 })));
    chatTogether.forEach((r, i) => assert.equal(r.choices[0].message.content, chatAlone[i]));
  });

  test('metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /^etna_requests_total\{endpoint="\/v1\/completions",status="200"\} \d+$/m);
    assert.match(text, /^etna_requests_total\{endpoint="\/v1\/chat\/completions",status="400"\} \d+$/m);
    assert.ok((await metric(server, 'etna_generated_tokens_total')) > 100);
    assert.ok((await metric(server, 'etna_prompt_tokens_total')) > 10);
    assert.equal(await metric(server, 'etna_queue_depth'), 0);
    assert.match(text, /^etna_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+$/m);
    assert.match(text, /^etna_token_latency_seconds_count \d+$/m);
  });

  test('malformed requests on raw sockets get clean 4xx; slow bodies are dropped', async () => {
    const port = Number(new URL(server.url).port);
    const send = (payload) => new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      let data = '';
      sock.on('data', (d) => { data += d; });
      sock.on('close', () => resolve(data));
      sock.on('error', () => resolve(data));
      sock.write(payload);
    });
    const req = (body, extra = '') => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    for (const body of ['{', 'null', '{"messages": {}}', '{"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', '\u0000\u0001garbage']) {
      const res = await send(req(body));
      assert.match(res, /^HTTP\/1\.1 4\d\d /, `for ${JSON.stringify(body)}: ${res.slice(0, 200)}`);
    }
    assert.match(await send('GARBAGE\r\n\r\n'), /^HTTP\/1\.1 4\d\d |^$/);
    assert.match(await send('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 4\d\d /);
    // Slowloris: a body that trickles in. The server keeps answering others meanwhile.
    const slow = net.connect(port, '127.0.0.1');
    slow.on('error', () => {});
    slow.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt":');
    const trickle = setInterval(() => slow.write(' '), 500);
    const r = await client.completions.create({ prompt: 'Once', max_tokens: 4, temperature: 0 });
    assert.equal(r.choices.length, 1);
    clearInterval(trickle);
    slow.destroy();
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  });
});

describe('limits: cancellation, queue, API keys', { skip }, () => {
  test('an aborted stream frees its slot (--parallel 1)', async () => {
    const s = await startServer(['-m', MODEL, '--parallel', '1', '--queue', '0', '--ctx', '4096']);
    const client = clientFor(s);
    const controller = new AbortController();
    const stream = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 4000, temperature: 0, stream: true }, { signal: controller.signal });
    let n = 0;
    // The client ends the iteration quietly (or with an AbortError) once aborted.
    try { for await (const c of stream) { if (++n === 5) controller.abort(); } } catch (e) { assert.equal(e.name, 'AbortError'); }
    assert.ok(n >= 5 && n < 100, `the stream gave ${n} chunks`);
    // The server notices at its next write and frees the only slot long before 4000 tokens.
    let active = 1;
    for (let i = 0; i < 200 && active !== 0; ++i) {
      await new Promise((res) => setTimeout(res, 50));
      active = await metric(s, 'etna_active_sequences');
    }
    assert.equal(active, 0);
    assert.ok((await metric(s, 'etna_forward_steps_total')) < 1000, 'the aborted request kept generating');
    const r = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    assert.equal(r.usage.completion_tokens, 5);
    await stopServer(s);
  });

  test('a full queue answers 429 with Retry-After', async () => {
    const s = await startServer(['-m', MODEL, '--parallel', '1', '--queue', '1', '--ctx', '4096']);
    const client = clientFor(s);
    const controllers = [];
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => {
      const c = new AbortController();
      controllers.push(c);
      return client.completions.create({ prompt: 'Once upon a time', max_tokens: 3000, temperature: 0, stream: true }, { signal: c.signal });
    }));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.ok(refused.length >= 3, `expected at least 3 refusals, got ${refused.length}`);
    for (const r of refused) {
      assert.equal(r.reason.status, 429);
      assert.equal(r.reason.code, 'rate_limit_exceeded');
      assert.equal(r.reason.headers.get('retry-after'), '1');
    }
    for (const c of controllers) c.abort();
    let active = 1;
    for (let i = 0; i < 200 && active !== 0; ++i) {
      await new Promise((res) => setTimeout(res, 50));
      active = await metric(s, 'etna_active_sequences');
    }
    const r = await client.completions.create({ prompt: 'Once', max_tokens: 3, temperature: 0 });
    assert.equal(r.choices.length, 1);
    await stopServer(s);
  });

  test('--api-key: wrong or missing keys get 401, the right key works, /health is public', async () => {
    const s = await startServer(['-m', MODEL, '--api-key', 'sekrit']);
    await expectApiError(clientFor(s, { apiKey: 'wrong' }).models.list(), 401, 'invalid_api_key');
    await expectApiError(clientFor(s, { apiKey: 'sekri' }).completions.create({ prompt: 'x', max_tokens: 1 }), 401, 'invalid_api_key');
    const noKey = await fetch(`${s.url}/v1/models`);
    assert.equal(noKey.status, 401);
    const good = await clientFor(s, { apiKey: 'sekrit' }).completions.create({ prompt: 'Once', max_tokens: 2, temperature: 0 });
    assert.equal(good.choices.length, 1);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
    await stopServer(s);
  });

  test('--cache-type f16 / q8_0 serve the same greedy start as f32; a bad type stops serve with one clear line', async () => {
    const texts = {};
    for (const type of ['f32', 'f16', 'q8_0']) {
      const s = await startServer(['-m', MODEL, '--cache-type', type]);
      const r = await clientFor(s).completions.create({ prompt: 'Once upon a time', max_tokens: 12, temperature: 0 });
      texts[type] = r.choices[0].text;
      await stopServer(s);
    }
    assert.ok(texts.f32.length > 0);
    // A lossy cache may drift late in a long text; the first few tokens of a short one agree.
    for (const type of ['f16', 'q8_0']) assert.equal(texts[type].slice(0, 20), texts.f32.slice(0, 20), type);
    const data = mkdtempSync(path.join(tmpdir(), 'etna-cache-type-'));
    const bad = spawnSync(BINARY, ['serve', '-m', MODEL, '--port', '0', '--data', data, '--cache-type', 'q3'],
      { encoding: 'utf8', timeout: 30000 });
    rmSync(data, { recursive: true, force: true });
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /q3/);
  });
});
