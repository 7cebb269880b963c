// The official Anthropic JS client (@anthropic-ai/sdk) against a real `etna serve -m stories260K.gguf`:
// the Messages API (/v1/messages). Run: ETNA_BINARY=build/etna node --test anthropic.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
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
    await expectError(client.messages.create({
      model: 'stories260K', max_tokens: 5, messages,
      tools: [{ name: 'get_weather', description: 'w', input_schema: { type: 'object', properties: {} } }],
    }), 400, 'invalid_request_error', /tool/);
    const raw = await postJson(server, '/v1/messages', '{"model":');
    assert.equal(raw.status, 400);
    assert.equal(raw.body.type, 'error');
    assert.equal(raw.body.error.type, 'invalid_request_error');
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/v1/messages",status="400"}')) >= 5);
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/v1/messages",status="200"}')) >= 1);
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
