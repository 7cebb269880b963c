// The official OpenAI JS client's Responses API (client.responses) against a real
// `etna serve -m stories260K.gguf`. Run: ETNA_BINARY=build/etna node --test responses.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, stopAll, postJson, metric, chatReference, MODEL, skipReason } from './etna-server.mjs';

async function expectApiError(promise, status, param, pattern) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(err.status, status, `expected ${status}, got ${err.status}: ${err.message}`);
  assert.equal(typeof err.error?.message, 'string', JSON.stringify(err.error));
  assert.ok('type' in err.error && 'param' in err.error && 'code' in err.error);
  if (param !== undefined) assert.equal(err.param, param);
  if (pattern) assert.match(err.error.message, pattern);
  return err;
}

after(stopAll);

describe('etna serve with the OpenAI client\'s Responses API', { skip: skipReason }, () => {
  let server;
  let client;
  before(async () => {
    server = await startServer(['-m', MODEL, '--parallel', '2']);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });

  test('input string + instructions reproduce /v1/chat/completions greedily; usage', async () => {
    const ref = await chatReference(server, [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: 'Once upon a time' }], 20);
    const r = await client.responses.create({ model: 'stories260K', instructions: 'Tell a story.', input: 'Once upon a time', max_output_tokens: 20, temperature: 0 });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.equal(r.output_text, ref);
    assert.equal(r.output.length, 1);
    assert.equal(r.output[0].type, 'message');
    assert.equal(r.output[0].role, 'assistant');
    assert.equal(r.output[0].content[0].type, 'output_text');
    assert.equal(r.instructions, 'Tell a story.');
    assert.equal(r.store, false);
    assert.ok(r.usage.input_tokens > 5);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    if (r.usage.output_tokens === 20) {
      assert.equal(r.status, 'incomplete');
      assert.equal(r.incomplete_details.reason, 'max_output_tokens');
    } else {
      assert.equal(r.status, 'completed');
    }
  });

  test('input items: multi-turn with developer role and content parts', async () => {
    const ref = await chatReference(server, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Tell me about a cat.' },
      { role: 'assistant', content: 'The cat was big.' },
      { role: 'user', content: 'And then?' },
    ], 16);
    const r = await client.responses.create({
      model: 'stories260K', max_output_tokens: 16, temperature: 0,
      input: [
        { role: 'developer', content: 'Be brief.' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Tell me about a cat.' }] },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'The cat was big.' }] },
        { role: 'user', content: 'And then?' },
      ],
    });
    assert.equal(r.output_text, ref);
  });

  test('streaming: event order, deltas add up to the non-streamed text; the stream helper', async () => {
    const params = { model: 'stories260K', input: 'Once upon a time', max_output_tokens: 24, temperature: 0 };
    const ref = (await client.responses.create(params)).output_text;
    const types = [];
    let text = '';
    let final;
    let seq = -1;
    for await (const ev of await client.responses.create({ ...params, stream: true })) {
      types.push(ev.type);
      assert.equal(ev.sequence_number, seq + 1);
      seq = ev.sequence_number;
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.output_text.done') assert.equal(ev.text, ref);
      if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
    }
    assert.equal(text, ref);
    assert.equal(final.output[0].content[0].text, ref);
    const distinct = types.filter((t, i) => t !== types[i - 1]);
    assert.deepEqual(distinct.slice(0, 5), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added', 'response.output_text.delta']);
    assert.deepEqual(distinct.slice(-4, -1), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done']);
    assert.ok(['response.completed', 'response.incomplete'].includes(distinct.at(-1)));
    const helper = client.responses.stream(params);
    let deltas = '';
    helper.on('response.output_text.delta', (e) => { deltas += e.delta; });
    const done = await helper.finalResponse();
    assert.equal(done.output_text, ref);
    assert.equal(deltas, ref);
  });

  test('text.format json_object gives parseable JSON', async () => {
    for (let seed = 1; seed <= 5; ++seed) {
      const r = await client.responses.create({ model: 'stories260K', input: 'A cat as JSON', text: { format: { type: 'json_object' } }, max_output_tokens: 60, temperature: 1 });
      assert.doesNotThrow(() => JSON.parse(r.output_text), r.output_text);
    }
  });

  test('stateless and unsupported features are refused clearly', async () => {
    await expectApiError(client.responses.create({ model: 'stories260K', input: 'hi', previous_response_id: 'resp_123' }), 400, 'previous_response_id', /stateless/);
    await expectApiError(client.responses.retrieve('resp_123'), 404, 'response_id', /stateless/);
    await expectApiError(client.responses.create({ model: 'gpt-5', input: 'hi' }), 404, 'model');
    await expectApiError(client.responses.create({ model: 'stories260K', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:image/png;base64,aGVsbG8=' }] }] }), 400, undefined, /text only/);
    await expectApiError(client.responses.create({ model: 'stories260K', input: 'hi', temperature: 3 }), 400, undefined, /temperature/);
    await expectApiError(client.responses.create({ model: 'stories260K' }), 400, 'input');
    const raw = await postJson(server, '/v1/responses', '[1]');
    assert.equal(raw.status, 400);
    assert.equal(typeof raw.body.error.message, 'string');
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/v1/responses",status="200"}')) >= 3);
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/v1/responses",status="400"}')) >= 4);
  });
});
