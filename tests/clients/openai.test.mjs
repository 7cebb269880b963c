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
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
const BINARY = process.env.ETNA_BINARY;
const SHARED = process.env.ETNA_SHARED_DIR || path.resolve(here, '../../../shared');
const MODEL = path.join(SHARED, 'models/stories260K.gguf');
const EMB_MODEL = path.join(SHARED, 'models/tiny-bert-bge-f32.gguf');
const RANDOM_MODEL = path.join(SHARED, 'models/tiny-llama-spm-q8_0.gguf');
const haveShared = existsSync(MODEL) && existsSync(EMB_MODEL) && existsSync(RANDOM_MODEL);
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
    await expectApiError(client.chat.completions.create({ messages: msgs, n: 17 }), 400);
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

// ---- Structured output and tools ------------------------------------------------------------

const SCHEMAS = [
  { name: 'person', strict: true, schema: {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 },
      pet: { enum: ['cat', 'dog', 'none'] }, nick: { type: ['string', 'null'], maxLength: 6 } },
    required: ['name', 'age', 'pet', 'nick'], additionalProperties: false } },
  { name: 'list', schema: {
    type: 'object',
    properties: { items: { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, minItems: 1, maxItems: 4 },
      done: { type: 'boolean' } },
    required: ['items', 'done'], additionalProperties: false } },
  { name: 'formats', schema: {
    type: 'object',
    properties: { day: { type: 'string', format: 'date' }, at: { type: 'string', format: 'date-time' },
      id: { type: 'string', format: 'uuid' }, mail: { type: 'string', format: 'email' },
      code: { type: 'string', pattern: '^[A-Z]{2}-[0-9]{3}$' } },
    required: ['day', 'at', 'id', 'mail', 'code'], additionalProperties: false } },
  { name: 'tree', schema: {
    $defs: { node: { type: 'object', properties: { v: { type: 'integer', minimum: 0, maximum: 9 },
      kids: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } }, required: ['v'], additionalProperties: false } },
    anyOf: [{ $ref: '#/$defs/node' }, { type: 'object', properties: { leaf: { const: 'yes' } }, required: ['leaf'], additionalProperties: false }] } },
  { name: 'score', schema: {
    type: 'object', properties: { score: { type: 'number', minimum: 0 }, label: { type: 'string', minLength: 1, maxLength: 5 } },
    required: ['score', 'label'], additionalProperties: false } },
];

const WEATHER_TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['C', 'F'] } },
      required: ['city', 'unit'], additionalProperties: false } } },
  { type: 'function', function: { name: 'get_time', description: 'Local time in a time zone',
    parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 12 } }, required: ['zone'], additionalProperties: false } } },
];

function newAjv() {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  return ajv;
}

describe('structured output and tools with the OpenAI client', { skip }, () => {
  let stories;
  let random;
  before(async () => {
    stories = await startServer(['-m', MODEL, '--parallel', '4']);
    random = await startServer(['-m', RANDOM_MODEL, '--parallel', '4']);
  });

  for (const which of ['stories260K', 'random-weight']) {
    test(`json_schema: 50 sampled generations with ${which} all validate with ajv`, async () => {
      const client = clientFor(which === 'stories260K' ? stories : random);
      const ajv = newAjv();
      let failures = [];
      let count = 0;
      for (let round = 0; round < 10; ++round) {
        const jobs = SCHEMAS.map(async (s, i) => {
          const r = await client.chat.completions.create({
            messages: [{ role: 'user', content: `Reply with a ${s.name} as JSON.` }],
            response_format: { type: 'json_schema', json_schema: s },
            temperature: 1, max_tokens: 150, seed: 1000 * round + i,
          });
          const text = r.choices[0].message.content;
          let doc;
          try { doc = JSON.parse(text); } catch (e) { failures.push(`${s.name}: not JSON: ${text}`); return; }
          const validate = ajv.compile(s.schema);
          if (!validate(doc)) failures.push(`${s.name}: ${ajv.errorsText(validate.errors)}: ${text}`);
          ++count;
        });
        await Promise.all(jobs);
      }
      assert.deepEqual(failures, []);
      assert.equal(count, 50);
    });
  }

  test('json_schema streamed equals non-streamed; json_object still works', async () => {
    const client = clientFor(stories);
    const params = { messages: [{ role: 'user', content: 'A list.' }], response_format: { type: 'json_schema', json_schema: SCHEMAS[1] },
      temperature: 0, max_tokens: 80 };
    const whole = (await client.chat.completions.create(params)).choices[0].message.content;
    let streamed = '';
    for await (const c of await client.chat.completions.create({ ...params, stream: true })) streamed += c.choices[0]?.delta?.content ?? '';
    assert.equal(streamed, whole);
    const obj = await client.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' },
      temperature: 1, seed: 3, max_tokens: 40 });
    assert.equal(typeof JSON.parse(obj.choices[0].message.content), 'object');
  });

  test('grammar (GBNF) field, and schema / grammar errors name the problem', async () => {
    const client = clientFor(stories);
    for (let seed = 0; seed < 5; ++seed) {
      const r = await client.chat.completions.create({ messages: [{ role: 'user', content: 'Yes or no?' }], temperature: 1, seed,
        max_tokens: 10, grammar: 'root ::= ("yes" | "no") "!"' });
      assert.match(r.choices[0].message.content, /^(yes|no)!$/);
      assert.equal(r.choices[0].finish_reason, 'stop');
    }
    const msgs = [{ role: 'user', content: 'x' }];
    let e = await expectApiError(client.chat.completions.create({ messages: msgs,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', patternProperties: { a: {} } } } } }), 400);
    assert.match(e.message, /patternProperties/);
    assert.equal(e.param, 'response_format.json_schema.schema');
    e = await expectApiError(client.chat.completions.create({ messages: msgs, grammar: 'root ::= root "a" | "b"' }), 400);
    assert.match(e.message, /left-recursive/);
    const deep = { type: 'string' };
    let d = deep;
    for (let i = 0; i < 100; ++i) d = { type: 'array', items: d };
    e = await expectApiError(client.chat.completions.create({ messages: msgs,
      response_format: { type: 'json_schema', json_schema: { name: 'deep', schema: d } } }), 400);
    assert.match(e.message, /deeper/);
  });

  for (const which of ['stories260K', 'random-weight']) {
    test(`forced tool calls (required and named) with ${which} have schema-valid arguments`, async () => {
      const client = clientFor(which === 'stories260K' ? stories : random);
      const ajv = newAjv();
      const validators = Object.fromEntries(WEATHER_TOOLS.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));
      for (let seed = 0; seed < 6; ++seed) {
        const named = seed % 2 === 1;
        const r = await client.chat.completions.create({
          messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools: WEATHER_TOOLS, temperature: 1, seed, max_tokens: 120,
          tool_choice: named ? { type: 'function', function: { name: 'get_time' } } : 'required', parallel_tool_calls: seed % 3 === 0,
        });
        const choice = r.choices[0];
        assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
        const calls = choice.message.tool_calls;
        assert.ok(calls.length >= 1);
        if (seed % 3 !== 0) assert.equal(calls.length, 1);
        for (const call of calls) {
          assert.equal(call.type, 'function');
          assert.match(call.id, /^call_/);
          if (named) assert.equal(call.function.name, 'get_time');
          const validate = validators[call.function.name];
          assert.ok(validate, call.function.name);
          const args = JSON.parse(call.function.arguments);
          assert.ok(validate(args), `${call.function.arguments}: ${ajv.errorsText(validate.errors)}`);
        }
      }
    });
  }

  test('streamed tool-call deltas assemble into the same calls', async () => {
    const client = clientFor(stories);
    const params = { messages: [{ role: 'user', content: 'Weather?' }], tools: WEATHER_TOOLS, tool_choice: 'required',
      temperature: 0, max_tokens: 120 };
    const whole = (await client.chat.completions.create(params)).choices[0];
    const calls = [];
    let finish = null;
    let deltas = 0;
    for await (const c of await client.chat.completions.create({ ...params, stream: true })) {
      const ch = c.choices[0];
      if (!ch) continue;
      if (ch.finish_reason) finish = ch.finish_reason;
      for (const d of ch.delta?.tool_calls ?? []) {
        ++deltas;
        calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
        if (d.id) calls[d.index].id = d.id;
        if (d.function?.name) calls[d.index].function.name += d.function.name;
        if (d.function?.arguments) calls[d.index].function.arguments += d.function.arguments;
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.ok(deltas > 3 * calls.length, `the arguments stream in pieces (${deltas} deltas for ${calls.length} calls)`);
    assert.deepEqual(calls.map((c) => [c.function.name, c.function.arguments]),
      whole.message.tool_calls.map((c) => [c.function.name, c.function.arguments]));
    for (const c of calls) assert.match(c.id, /^call_/);
    // The SDK's own stream helper assembles the same calls.
    const runner = client.chat.completions.stream(params);
    const final = await runner.finalChatCompletion();
    assert.deepEqual(final.choices[0].message.tool_calls.map((c) => [c.function.name, c.function.arguments]),
      whole.message.tool_calls.map((c) => [c.function.name, c.function.arguments]));
  });

  test('tool results round-trip: assistant tool_calls and role "tool" messages render into the prompt', async () => {
    const client = clientFor(stories);
    const first = await client.chat.completions.create({ messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools: WEATHER_TOOLS,
      tool_choice: { type: 'function', function: { name: 'get_weather' } }, temperature: 0, max_tokens: 120 });
    const call = first.choices[0].message.tool_calls[0];
    const history = [{ role: 'user', content: 'Weather in Oslo?' }, first.choices[0].message,
      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 3, "sky": "snow"}' }];
    const second = await client.chat.completions.create({ messages: history, tools: WEATHER_TOOLS, temperature: 0, max_tokens: 20 });
    assert.ok(['stop', 'length', 'tool_calls'].includes(second.choices[0].finish_reason));
    assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens + 20, JSON.stringify(second.usage));
    const none = await client.chat.completions.create({ messages: history.slice(0, 1), tools: WEATHER_TOOLS, tool_choice: 'none',
      temperature: 0, max_tokens: 10 });
    assert.equal(none.choices[0].message.tool_calls, undefined);
    assert.ok(none.usage.prompt_tokens < first.usage.prompt_tokens, 'tool_choice none leaves the tools out of the prompt');
    await expectApiError(client.chat.completions.create({ messages: history.slice(0, 1), tools: WEATHER_TOOLS,
      tool_choice: { type: 'function', function: { name: 'nope' } } }), 400);
    await expectApiError(client.chat.completions.create({ messages: history.slice(0, 1), tools: [{ type: 'retrieval' }] }), 400);
  });

  test('n = 3: three choices, non-streamed and streamed; usage counts the prompt once', async () => {
    const client = clientFor(stories);
    const params = { messages: [{ role: 'user', content: 'Tell me a story.' }], n: 3, temperature: 1, seed: 11, max_tokens: 12 };
    const r = await client.chat.completions.create(params);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    const texts = r.choices.map((c) => c.message.content);
    assert.ok(new Set(texts).size >= 2, `the choices use different seeds: ${JSON.stringify(texts)}`);
    const one = await client.chat.completions.create({ ...params, n: 1 });
    assert.equal(r.usage.prompt_tokens, one.usage.prompt_tokens);
    assert.ok(r.usage.completion_tokens > one.usage.completion_tokens);
    const streamed = ['', '', ''];
    let usage = null;
    for await (const c of await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } })) {
      for (const ch of c.choices) streamed[ch.index] += ch.delta?.content ?? '';
      if (c.usage) usage = c.usage;
    }
    assert.deepEqual(streamed, texts);
    assert.deepEqual(usage.completion_tokens, r.usage.completion_tokens);
    const js = await client.chat.completions.create({ ...params, response_format: { type: 'json_schema', json_schema: SCHEMAS[0] }, max_tokens: 100 });
    const validate = newAjv().compile(SCHEMAS[0].schema);
    for (const c of js.choices) assert.ok(validate(JSON.parse(c.message.content)), c.message.content);
  });

  test('logit_bias and max_completion_tokens', async () => {
    const client = clientFor(stories);
    const plain = await client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_completion_tokens: 6 });
    assert.ok(plain.usage.completion_tokens <= 6);
    const c = REF.cases[0];
    const base = { prompt: c.prompt, max_tokens: c.greedy.length, temperature: 0 };
    assert.equal((await client.completions.create(base)).choices[0].text, c.greedy_text);
    // Banning the first greedy token changes the text; a +100 bias makes sampling pick one token.
    const banned = await client.completions.create({ ...base, logit_bias: { [c.greedy[0]]: -100 } });
    assert.notEqual(banned.choices[0].text, c.greedy_text);
    const f1 = await client.completions.create({ ...base, temperature: 1, seed: 1, logit_bias: { [c.greedy[2]]: 100 } });
    const f2 = await client.completions.create({ ...base, temperature: 1, seed: 2, logit_bias: { [c.greedy[2]]: 100 } });
    assert.equal(f1.choices[0].text, f2.choices[0].text);
    await expectApiError(client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], logit_bias: { abc: 1 } }), 400);
    await expectApiError(client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], logit_bias: { 5: 1000 } }), 400);
    await expectApiError(client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], logit_bias: { 99999999: 1 } }), 400);
  });
});
