// The official Ollama JS client (ollama) against a real `etna serve -m stories260K.gguf
// --embedding-model tiny-bert-bge-f32.gguf`. Run: ETNA_BINARY=build/etna node --test ollama.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ollama } from 'ollama';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { startServer, stopAll, postJson, metric, chatReference, MODEL, EMB_MODEL, SHARED, skipReason } from './etna-server.mjs';

const REF = skipReason ? null : JSON.parse(readFileSync(path.join(SHARED, 'reference/stories260K.json'), 'utf8'));
const greedy = { temperature: 0, repeat_penalty: 1 };

async function expectError(promise, status, pattern) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(err.status_code, status, `expected ${status}, got ${err.status_code}: ${err.message}`);
  if (pattern) assert.match(err.error, pattern);
  return err;
}

after(stopAll);

describe('etna serve with the Ollama client', { skip: skipReason }, () => {
  let server;
  let ollama;
  before(async () => {
    server = await startServer(['-m', MODEL, '--embedding-model', EMB_MODEL, '--parallel', '2']);
    ollama = new Ollama({ host: server.url });
  });

  test('version, tags, show, ps', async () => {
    const v = await ollama.version();
    assert.equal(typeof v.version, 'string');
    assert.ok(v.version.length > 0);
    const tags = await ollama.list();
    assert.deepEqual(tags.models.map((m) => m.name).sort(), ['stories260K:latest', 'tiny-bert-bge-f32:latest']);
    const chat = tags.models.find((m) => m.name === 'stories260K:latest');
    assert.equal(chat.details.format, 'gguf');
    assert.equal(chat.details.family, 'llama');
    assert.ok(chat.size > 100000);
    const show = await ollama.show({ model: 'stories260K' });
    assert.deepEqual(show.capabilities, ['completion', 'tools']);
    assert.equal(show.model_info['general.architecture'], 'llama');
    assert.ok(show.model_info['general.parameter_count'] > 200000);
    assert.match(show.parameters, /num_ctx \d+/);
    const emb = await ollama.show({ model: 'tiny-bert-bge-f32:latest' });
    assert.deepEqual(emb.capabilities, ['embedding']);
    const ps = await ollama.ps();
    assert.equal(ps.models.length, 2);
    await expectError(ollama.show({ model: 'llama3' }), 404, /not found/);
  });

  test('generate (raw) reproduces llama.cpp greedy text, streamed and not; context continues', async () => {
    const c = REF.cases[0];
    const n = c.greedy.length;
    const r = await ollama.generate({ model: 'stories260K', prompt: c.prompt, raw: true, options: { ...greedy, num_predict: n } });
    assert.equal(r.response, c.greedy_text);
    assert.equal(r.done, true);
    assert.equal(r.done_reason, 'length');
    assert.equal(r.eval_count, n);
    assert.equal(r.prompt_eval_count, c.tokens.length);
    assert.deepEqual(r.context.slice(0, c.tokens.length), c.tokens);
    assert.equal(r.context.length, c.tokens.length + n);
    assert.ok(r.total_duration > 0);
    let text = '';
    let last;
    for await (const part of await ollama.generate({ model: 'stories260K', prompt: c.prompt, raw: true, stream: true, options: { ...greedy, num_predict: n } })) {
      text += part.response;
      last = part;
    }
    assert.equal(text, c.greedy_text);
    assert.equal(last.done, true);
    assert.equal(last.eval_count, n);
    // Continuing from the returned context equals generating the longer text in one go.
    const half = await ollama.generate({ model: 'stories260K', prompt: c.prompt, raw: true, options: { ...greedy, num_predict: 20 } });
    const rest = await ollama.generate({ model: 'stories260K', prompt: ' ', raw: true, context: half.context, options: { ...greedy, num_predict: 5 } });
    assert.deepEqual(rest.context.slice(0, half.context.length), half.context);
    assert.ok(rest.prompt_eval_count > half.context.length);
    assert.equal(rest.context.length, rest.prompt_eval_count + 5);
    // An empty prompt only "loads" the model.
    const load = await ollama.generate({ model: 'stories260K', prompt: '' });
    assert.equal(load.done_reason, 'load');
  });

  test('chat: streamed equals non-streamed equals /v1/chat/completions; system and multi-turn', async () => {
    const messages = [
      { role: 'system', content: 'You tell stories.' },
      { role: 'user', content: 'Once upon a time' },
      { role: 'assistant', content: 'there was a cat.' },
      { role: 'user', content: 'What did the cat do?' },
    ];
    const ref = await chatReference(server, messages, 24);
    const r = await ollama.chat({ model: 'stories260K', messages, options: { ...greedy, num_predict: 24 } });
    assert.equal(r.message.role, 'assistant');
    assert.equal(r.message.content, ref);
    assert.equal(r.done, true);
    let text = '';
    let parts = 0;
    for await (const part of await ollama.chat({ model: 'stories260K', messages, stream: true, options: { ...greedy, num_predict: 24 } })) {
      text += part.message.content;
      ++parts;
      if (part.done) assert.ok(['stop', 'length'].includes(part.done_reason));
    }
    assert.equal(text, ref);
    assert.ok(parts > 2, 'streamed in several parts');
    const stop = ref.split(' ').slice(2, 3)[0];
    const stopped = await ollama.chat({ model: 'stories260K', messages, options: { ...greedy, num_predict: 24, stop: [stop] } });
    assert.ok(ref.startsWith(stopped.message.content) && !stopped.message.content.includes(stop), stopped.message.content);
  });

  test('format json gives parseable JSON (chat and generate)', async () => {
    for (let seed = 1; seed <= 5; ++seed) {
      const r = await ollama.chat({ model: 'stories260K', messages: [{ role: 'user', content: 'A cat as JSON' }], format: 'json', options: { seed, num_predict: 60 } });
      assert.doesNotThrow(() => JSON.parse(r.message.content), r.message.content);
      const g = await ollama.generate({ model: 'stories260K', prompt: 'A dog as JSON', format: 'json', options: { seed, num_predict: 60 } });
      assert.doesNotThrow(() => JSON.parse(g.response), g.response);
    }
  });

  test('format as a JSON schema: sampled chat and generate outputs validate with ajv; streamed equals non-streamed', async () => {
    const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 0, maximum: 99 },
      kind: { enum: ['cat', 'dog'] }, friends: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 2 } },
    required: ['name', 'age', 'kind', 'friends'] };
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    const validate = ajv.compile(schema);
    for (let seed = 1; seed <= 8; ++seed) {
      const r = await ollama.chat({ model: 'stories260K', messages: [{ role: 'user', content: 'A pet' }], format: schema, options: { seed, num_predict: 150 } });
      assert.equal(r.done_reason, 'stop', r.message.content);
      assert.ok(validate(JSON.parse(r.message.content)), `${r.message.content}: ${ajv.errorsText(validate.errors)}`);
      const g = await ollama.generate({ model: 'stories260K', prompt: 'A pet', format: schema, options: { seed, num_predict: 150 } });
      assert.ok(validate(JSON.parse(g.response)), `${g.response}: ${ajv.errorsText(validate.errors)}`);
    }
    const params = { model: 'stories260K', messages: [{ role: 'user', content: 'A pet' }], format: schema, options: { ...greedy, num_predict: 150 } };
    const whole = await ollama.chat(params);
    let text = '';
    for await (const part of await ollama.chat({ ...params, stream: true })) text += part.message.content;
    assert.equal(text, whole.message.content);
    await expectError(ollama.generate({ model: 'stories260K', prompt: 'x', format: { type: 'object', patternProperties: { a: {} } } }), 400, /patternProperties/);
  });

  test('tools: message.tool_calls as Ollama returns them (streamed and not); tool results round-trip', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 16 } }, required: ['city'], additionalProperties: false } } }];
    const ask = [{ role: 'user', content: 'Weather in Paris?' }];
    // Ollama has no tool_choice; Etna's extension forces a call, so this tiny model makes one.
    const params = { model: 'stories260K', messages: ask, tools, tool_choice: 'required', options: { ...greedy, num_predict: 120 } };
    const r = await ollama.chat(params);
    assert.equal(r.message.content, '');
    assert.ok(r.message.tool_calls.length >= 1, JSON.stringify(r.message));
    const call = r.message.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof call.function.arguments, 'object');
    assert.equal(typeof call.function.arguments.city, 'string');
    const parts = [];
    for await (const part of await ollama.chat({ ...params, stream: true })) parts.push(part);
    const withCalls = parts.filter((p) => p.message.tool_calls);
    assert.equal(withCalls.length, 1);
    assert.equal(withCalls[0].done, false);
    assert.deepEqual(withCalls[0].message.tool_calls, r.message.tool_calls);
    assert.equal(parts.at(-1).done, true);
    assert.equal(parts.map((p) => p.message.content).join(''), '');
    // The call and its result in the history render as /v1/chat/completions renders them.
    const history = [...ask, { role: 'assistant', content: '', tool_calls: r.message.tool_calls },
      { role: 'tool', content: '{"temperature": 3}', tool_name: 'get_weather' }];
    const second = await ollama.chat({ model: 'stories260K', messages: history, tools, options: { ...greedy, num_predict: 8 } });
    const chat = await postJson(server, '/v1/chat/completions', { model: 'stories260K', max_tokens: 8, temperature: 0, tools,
      messages: [...ask, { role: 'assistant', content: '', tool_calls: r.message.tool_calls.map((c, k) => ({ id: `call_1_${k}`, type: 'function',
        function: { name: c.function.name, arguments: JSON.stringify(c.function.arguments) } })) },
      { role: 'tool', tool_call_id: '', name: 'get_weather', content: '{"temperature": 3}' }] });
    assert.equal(chat.status, 200, chat.text);
    assert.equal(second.prompt_eval_count, chat.body.usage.prompt_tokens);
    const plain = await ollama.chat({ model: 'stories260K', messages: ask, options: { ...greedy, num_predict: 4 } });
    const auto = await ollama.chat({ model: 'stories260K', messages: ask, tools, options: { ...greedy, num_predict: 4 } });
    assert.ok(auto.prompt_eval_count > plain.prompt_eval_count, 'the tools are in the prompt');
    await expectError(ollama.chat({ ...params, tool_choice: { type: 'function', function: { name: 'nope' } } }), 400, /nope/);
  });

  test('embed and embeddings match /v1/embeddings', async () => {
    const texts = ['The quick brown fox', 'jumps over the lazy dog'];
    const ref = await postJson(server, '/v1/embeddings', { model: 'tiny-bert-bge-f32', input: texts });
    const r = await ollama.embed({ model: 'tiny-bert-bge-f32', input: texts });
    assert.equal(r.embeddings.length, 2);
    for (let i = 0; i < 2; ++i) {
      assert.equal(r.embeddings[i].length, ref.body.data[i].embedding.length);
      r.embeddings[i].forEach((x, j) => assert.ok(Math.abs(x - ref.body.data[i].embedding[j]) < 1e-6));
    }
    assert.equal(r.prompt_eval_count, ref.body.usage.prompt_tokens);
    const one = await ollama.embed({ model: 'tiny-bert-bge-f32:latest', input: texts[0] });
    assert.deepEqual(one.embeddings[0], r.embeddings[0]);
    const legacy = await ollama.embeddings({ model: 'tiny-bert-bge-f32', prompt: texts[1] });
    legacy.embedding.forEach((x, j) => assert.ok(Math.abs(x - ref.body.data[1].embedding[j]) < 1e-6));
    await expectError(ollama.embed({ model: 'stories260K', input: 'x' }), 400, /does not support embeddings/);
  });

  test('errors in Ollama\'s shape: unknown model, images, schemas, options, pull/delete', async () => {
    await expectError(ollama.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }), 404, /model 'llama3.2' not found/);
    await expectError(ollama.chat({ model: 'stories260K', messages: [{ role: 'user', content: 'hi', images: ['aGVsbG8='] }] }), 400, /vision/);
    await expectError(ollama.generate({ model: 'stories260K', prompt: 'hi', images: ['aGVsbG8='] }), 400, /vision/);
    await expectError(ollama.generate({ model: 'stories260K', prompt: 'hi', options: { mirostat: 2 } }), 400, /mirostat/);
    await expectError(ollama.generate({ model: 'stories260K', prompt: 'hi', options: { bogus: 1 } }), 400, /options.bogus/);
    await expectError(ollama.generate({ model: 'stories260K', prompt: 'hi', options: { temperature: 'hot' } }), 400, /temperature/);
    await expectError(ollama.pull({ model: 'llama3.2' }), 501, /model library/);
    await expectError(ollama.delete({ model: 'stories260K' }), 501, /model library/);
    const raw = await postJson(server, '/api/chat', '{"model": ');
    assert.equal(raw.status, 400);
    assert.deepEqual(Object.keys(raw.body), ['error']);
    assert.equal(typeof raw.body.error, 'string');
    const nf = await postJson(server, '/api/nothing', {});
    assert.equal(nf.status, 404);
  });

  test('requests are counted in /metrics', async () => {
    const before = await metric(server, 'etna_requests_total{endpoint="/api/tags",status="200"}');
    await ollama.list();
    assert.equal(await metric(server, 'etna_requests_total{endpoint="/api/tags",status="200"}'), before + 1);
    assert.ok(await metric(server, 'etna_requests_total{endpoint="/api/pull",status="501"}') >= 1);
  });
});

describe('--ollama-port', { skip: skipReason }, () => {
  test('a second listener serves the Ollama API with the same keys', async () => {
    const server = await startServer(['-m', MODEL, '--ollama-port', '0', '--api-key', 'sekret']);
    const m = server.stdout().match(/Ollama API also at (http:\/\/\S+)\/api/);
    assert.ok(m, server.stdout());
    const ollama = new Ollama({ host: m[1], headers: { Authorization: 'Bearer sekret' } });
    assert.equal((await ollama.list()).models.length, 1);
    const r = await ollama.generate({ model: 'stories260K', prompt: 'Once upon a time', raw: true, options: { ...greedy, num_predict: 8 } });
    assert.equal(r.eval_count, 8);
    await expectError(new Ollama({ host: m[1] }).list(), 401);
    const root = await fetch(`${m[1]}/`, { headers: { Authorization: 'Bearer sekret' } });
    assert.equal(await root.text(), 'Ollama is running');
  });
});
