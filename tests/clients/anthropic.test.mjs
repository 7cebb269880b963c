// The official Anthropic JS client (@anthropic-ai/sdk) against a real `etna serve -m stories260K.gguf`:
// the Messages API (/v1/messages), including tool use. Run: ETNA_BINARY=build/etna node --test anthropic.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import Ajv from 'ajv';
import { startServer, stopAll, postJson, metric, chatReference, MODEL, skipReason } from './etna-server.mjs';

const clientFor = (s, opts = {}) => new Anthropic({ baseURL: s.url, apiKey: 'unused', maxRetries: 0, timeout: 60000, ...opts });

async function expectError(promise, status, type, pattern) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(err.status, status, `expected ${status}, got ${err.status}: ${err.message}`);
  assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
  assert.equal(err.error.error.type, type);
  if (pattern) assert.match(err.error.error.message, pattern);
  return err;
}

after(stopAll);

describe('etna serve with the Anthropic client', { skip: skipReason }, () => {
  let server;
  let client;
  const system = 'You are a storyteller.';
  const messages = [
    { role: 'user', content: 'Once upon a time' },
    { role: 'assistant', content: 'there was a dog.' },
    { role: 'user', content: [{ type: 'text', text: 'What did ' }, { type: 'text', text: 'the dog do?' }] },
  ];
  const asChat = [
    { role: 'system', content: system },
    { role: 'user', content: 'Once upon a time' },
    { role: 'assistant', content: 'there was a dog.' },
    { role: 'user', content: 'What did the dog do?' },
  ];
  before(async () => {
    server = await startServer(['-m', MODEL, '--parallel', '2']);
    client = clientFor(server);
  });

  test('messages: system + multi-turn reproduce /v1/chat/completions greedily; usage; max_tokens', async () => {
    const ref = await chatReference(server, asChat, 20);
    const r = await client.messages.create({ model: 'stories260K', system, messages, max_tokens: 20, temperature: 0 });
    assert.equal(r.type, 'message');
    assert.equal(r.role, 'assistant');
    assert.match(r.id, /^msg_/);
    assert.equal(r.content.length, 1);
    assert.equal(r.content[0].type, 'text');
    assert.equal(r.content[0].text, ref);
    assert.equal(r.usage.output_tokens, 20);
    assert.ok(r.usage.input_tokens > 10);
    assert.equal(r.stop_reason, 'max_tokens');
    assert.equal(r.stop_sequence, null);
    const sysBlocks = await client.messages.create({ model: 'stories260K', system: [{ type: 'text', text: system }], messages, max_tokens: 20, temperature: 0 });
    assert.equal(sysBlocks.content[0].text, ref);
    const count = await client.messages.countTokens({ model: 'stories260K', system, messages });
    assert.equal(count.input_tokens, r.usage.input_tokens);
  });

  test('stop_sequences: stop_reason stop_sequence names the one that matched', async () => {
    const ref = await chatReference(server, asChat, 40);
    const words = ref.split(/\s+/).filter((w) => w.length > 2);
    const stop = words[3];
    const r = await client.messages.create({ model: 'stories260K', system, messages, max_tokens: 40, temperature: 0, stop_sequences: ['zzzq', stop] });
    assert.equal(r.stop_reason, 'stop_sequence');
    assert.equal(r.stop_sequence, stop);
    assert.equal(r.content[0].text, ref.slice(0, ref.indexOf(stop)));
  });

  test('streaming: the event sequence, and the text equals the non-streamed one', async () => {
    const ref = (await client.messages.create({ model: 'stories260K', system, messages, max_tokens: 30, temperature: 0 })).content[0].text;
    const types = [];
    let text = '';
    let stopReason;
    const stream = await client.messages.create({ model: 'stories260K', system, messages, max_tokens: 30, temperature: 0, stream: true });
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'content_block_delta') { assert.equal(ev.delta.type, 'text_delta'); text += ev.delta.text; }
      if (ev.type === 'message_delta') { stopReason = ev.delta.stop_reason; assert.equal(ev.usage.output_tokens, 30); }
      if (ev.type === 'message_start') { assert.equal(ev.message.role, 'assistant'); assert.ok(ev.message.usage.input_tokens > 10); }
    }
    assert.equal(text, ref);
    assert.equal(stopReason, 'max_tokens');
    const distinct = types.filter((t, i) => t !== types[i - 1]);
    assert.deepEqual(distinct.filter((t) => t !== 'ping'), ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    // The SDK drops pings; the raw stream has one after content_block_start.
    const raw = await fetch(`${server.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', system, messages, max_tokens: 3, temperature: 0, stream: true }),
    });
    assert.match(raw.headers.get('content-type'), /^text\/event-stream/);
    const events = [...(await raw.text()).matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(events.slice(0, 3), ['message_start', 'content_block_start', 'ping']);
    assert.deepEqual(events.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
    // The SDK's stream helper assembles the same message.
    const helper = client.messages.stream({ model: 'stories260K', system, messages, max_tokens: 30, temperature: 0 });
    let deltas = '';
    helper.on('text', (t) => { deltas += t; });
    const final = await helper.finalMessage();
    assert.equal(final.content[0].text, ref);
    assert.equal(deltas, ref);
  });

  test('errors in Anthropic\'s shape', async () => {
    await expectError(client.messages.create({ model: 'stories260K', messages }), 400, 'invalid_request_error', /max_tokens/);
    await expectError(client.messages.create({ model: 'claude-sonnet-4-5', messages, max_tokens: 5 }), 404, 'not_found_error', /claude-sonnet-4-5/);
    await expectError(client.messages.create({ model: 'stories260K', messages: [{ role: 'system', content: 'x' }], max_tokens: 5 }), 400, 'invalid_request_error', /role/);
    await expectError(client.messages.create({ model: 'stories260K', messages, max_tokens: 5, temperature: 1.5 }), 400, 'invalid_request_error', /temperature/);
    await expectError(client.messages.create({
      model: 'stories260K', max_tokens: 5,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'aGVsbG8=' } }] }],
    }), 400, 'invalid_request_error', /image/);
    await expectError(client.messages.create({ model: 'stories260K', max_tokens: 5, messages, tools: TOOLS,
      tool_choice: { type: 'tool', name: 'nope' } }), 400, 'invalid_request_error', /nope/);
    await expectError(client.messages.create({ model: 'stories260K', max_tokens: 5, messages,
      tools: [{ type: 'web_search_20250305', name: 'web_search' }] }), 400, 'invalid_request_error', /server tools/);
    await expectError(client.messages.create({ model: 'stories260K', max_tokens: 5, messages, tools: [{ name: 'x' }] }),
      400, 'invalid_request_error', /input_schema/);
    await expectError(client.messages.create({ model: 'stories260K', max_tokens: 5,
      messages: [{ role: 'assistant', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'x' }] }] }),
      400, 'invalid_request_error', /tool_result/);
    const raw = await postJson(server, '/v1/messages', '{"model":');
    assert.equal(raw.status, 400);
    assert.equal(raw.body.type, 'error');
    assert.equal(raw.body.error.type, 'invalid_request_error');
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/v1/messages",status="400"}')) >= 5);
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/v1/messages",status="200"}')) >= 1);
  });
});

const TOOLS = [
  { name: 'get_weather', description: 'Current weather in a city',
    input_schema: { type: 'object', properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['C', 'F'] } },
      required: ['city', 'unit'], additionalProperties: false } },
  { name: 'get_time', description: 'Local time in a time zone',
    input_schema: { type: 'object', properties: { zone: { type: 'string', maxLength: 12 } }, required: ['zone'], additionalProperties: false } },
];

describe('tool use with the Anthropic client', { skip: skipReason }, () => {
  let server;
  let client;
  const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];
  before(async () => {
    server = await startServer(['-m', MODEL, '--parallel', '2']);
    client = clientFor(server);
  });

  test('tool_choice any / tool: tool_use blocks whose input validates against input_schema; stop_reason tool_use', async () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    const validators = Object.fromEntries(TOOLS.map((t) => [t.name, ajv.compile(t.input_schema)]));
    let calls = 0;
    for (let i = 0; i < 12; ++i) {
      const named = i % 2 === 1;
      const r = await client.messages.create({ model: 'stories260K', max_tokens: 120, temperature: 1, messages: ask, tools: TOOLS,
        tool_choice: named ? { type: 'tool', name: 'get_time' } : { type: 'any', disable_parallel_tool_use: i % 4 === 0 } });
      assert.equal(r.stop_reason, 'tool_use', JSON.stringify(r));
      assert.equal(r.stop_sequence, null);
      const uses = r.content.filter((b) => b.type === 'tool_use');
      assert.ok(uses.length >= 1, JSON.stringify(r.content));
      if (i % 4 === 0) assert.equal(uses.length, 1);
      for (const u of uses) {
        assert.match(u.id, /^toolu_/);
        if (named) assert.equal(u.name, 'get_time');
        assert.equal(typeof u.input, 'object');
        assert.ok(validators[u.name](u.input), `${JSON.stringify(u.input)}: ${ajv.errorsText(validators[u.name].errors)}`);
        ++calls;
      }
    }
    assert.ok(calls >= 12);
  });

  test('streaming tool use: tool_use block start, input_json_delta, stop; the SDK assembles the non-streamed message', async () => {
    const params = { model: 'stories260K', max_tokens: 120, temperature: 0, messages: ask, tools: TOOLS, tool_choice: { type: 'any' } };
    const whole = await client.messages.create(params);
    const types = [];
    const json = {};
    let stopReason;
    for await (const ev of await client.messages.create({ ...params, stream: true })) {
      types.push(ev.type === 'content_block_start' ? `start:${ev.content_block.type}` : ev.type === 'content_block_delta' ? `delta:${ev.delta.type}` : ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') json[ev.index] = (json[ev.index] ?? '') + ev.delta.partial_json;
      if (ev.type === 'message_delta') stopReason = ev.delta.stop_reason;
    }
    assert.equal(stopReason, 'tool_use');
    // (The SDK drops pings.)
    assert.deepEqual(types.slice(0, 3), ['message_start', 'start:tool_use', 'delta:input_json_delta']);
    // The input streams as it is generated: several pieces per call.
    assert.ok(types.filter((t) => t === 'delta:input_json_delta').length > 2 * Object.keys(json).length, types.join(' '));
    assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
    assert.ok(types.includes('content_block_stop'));
    assert.deepEqual(Object.values(json).map((j) => JSON.parse(j)), whole.content.filter((b) => b.type === 'tool_use').map((b) => b.input));
    const final = await client.messages.stream(params).finalMessage();
    assert.deepEqual(final.content.map((b) => [b.type, b.name, b.input]), whole.content.map((b) => [b.type, b.name, b.input]));
    assert.equal(final.stop_reason, 'tool_use');
  });

  test('tool_result round-trips through the chat template; tool_choice none and auto; count_tokens sees the tools', async () => {
    const first = await client.messages.create({ model: 'stories260K', max_tokens: 120, temperature: 0, messages: ask, tools: TOOLS,
      tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true } });
    assert.equal(first.content.length, 1);
    const use = first.content.find((b) => b.type === 'tool_use');
    const history = [...ask, { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: '{"temperature": 3}' }] },
        { type: 'text', text: 'So, warm?' }] }];
    const second = await client.messages.create({ model: 'stories260K', max_tokens: 20, temperature: 0, messages: history, tools: TOOLS });
    assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(second.stop_reason));
    assert.ok(second.usage.input_tokens > first.usage.input_tokens, 'the call and its result are in the prompt');
    // The same conversation through /v1/chat/completions gives the same prompt and the same greedy reply.
    const viaChat = await postJson(server, '/v1/chat/completions', { model: 'stories260K', max_tokens: 20, temperature: 0,
      tools: TOOLS.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.input_schema } })),
      messages: [...ask, { role: 'assistant', content: null, tool_calls: [{ id: use.id, type: 'function', function: { name: use.name, arguments: JSON.stringify(use.input) } }] },
        { role: 'tool', tool_call_id: use.id, content: '{"temperature": 3}' }, { role: 'user', content: 'So, warm?' }] });
    assert.equal(viaChat.status, 200, viaChat.text);
    assert.equal(viaChat.body.usage.prompt_tokens, second.usage.input_tokens);
    if (second.stop_reason !== 'tool_use') assert.equal(second.content[0].text, viaChat.body.choices[0].message.content);
    // tool_choice auto: this model writes text; streamed, the text block opens when text comes.
    const autoParams = { model: 'stories260K', max_tokens: 24, temperature: 0, messages: ask, tools: TOOLS };
    const auto = await client.messages.create(autoParams);
    const autoStreamed = await client.messages.stream(autoParams).finalMessage();
    assert.deepEqual(autoStreamed.content, auto.content);
    assert.equal(autoStreamed.stop_reason, auto.stop_reason);
    const none = await client.messages.create({ model: 'stories260K', max_tokens: 5, messages: ask, tools: TOOLS, tool_choice: { type: 'none' } });
    assert.ok(none.content.every((b) => b.type === 'text'));
    assert.ok(none.usage.input_tokens < first.usage.input_tokens, 'tool_choice none leaves the tools out of the prompt');
    const withTools = await client.messages.countTokens({ model: 'stories260K', messages: ask, tools: TOOLS });
    const without = await client.messages.countTokens({ model: 'stories260K', messages: ask });
    assert.equal(withTools.input_tokens, first.usage.input_tokens);
    assert.ok(withTools.input_tokens > without.input_tokens);
  });
});

describe('x-api-key', { skip: skipReason }, () => {
  test('the server\'s API keys are accepted in x-api-key; a wrong one is authentication_error', async () => {
    const server = await startServer(['-m', MODEL, '--api-key', 'sekret']);
    const ok = await clientFor(server, { apiKey: 'sekret' }).messages.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
    assert.equal(ok.usage.output_tokens, 4);
    await expectError(clientFor(server, { apiKey: 'wrong' }).messages.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }),
      401, 'authentication_error');
  });
});
