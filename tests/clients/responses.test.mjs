// The official OpenAI JS client's Responses API (client.responses) against a real
// `etna serve -m stories260K.gguf`, including function tools and text.format json_schema. Run: ETNA_BINARY=build/etna node --test responses.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
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

const TOOLS = [
  { type: 'function', name: 'get_weather', description: 'Current weather in a city', strict: true,
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['C', 'F'] } },
      required: ['city', 'unit'], additionalProperties: false } },
  { type: 'function', name: 'get_time', description: 'Local time in a time zone', strict: false,
    parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 12 } }, required: ['zone'], additionalProperties: false } },
];

const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 },
    pet: { enum: ['cat', 'dog', 'none'] }, born: { type: 'string', format: 'date' },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 } },
  required: ['name', 'age', 'pet', 'born', 'tags'], additionalProperties: false,
};

describe('function tools and json_schema with the Responses API', { skip: skipReason }, () => {
  let server;
  let client;
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  before(async () => {
    server = await startServer(['-m', MODEL, '--parallel', '2']);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });

  test('tool_choice required / named: function_call items with schema-valid arguments', async () => {
    const validators = Object.fromEntries(TOOLS.map((t) => [t.name, ajv.compile(t.parameters)]));
    for (let i = 0; i < 10; ++i) {
      const named = i % 2 === 1;
      const r = await client.responses.create({ model: 'stories260K', input: 'What is the weather in Paris?', tools: TOOLS, temperature: 1,
        max_output_tokens: 120, tool_choice: named ? { type: 'function', name: 'get_time' } : 'required', parallel_tool_calls: i % 3 === 0 });
      const calls = r.output.filter((o) => o.type === 'function_call');
      assert.ok(calls.length >= 1, JSON.stringify(r.output));
      if (i % 3 !== 0) assert.equal(calls.length, 1);
      assert.equal(r.output_text, '');
      assert.equal(r.parallel_tool_calls, i % 3 === 0);
      assert.deepEqual(r.tool_choice, named ? { type: 'function', name: 'get_time' } : 'required');
      for (const c of calls) {
        assert.match(c.id, /^fc_/);
        assert.match(c.call_id, /^call_/);
        assert.equal(c.status, 'completed');
        if (named) assert.equal(c.name, 'get_time');
        const args = JSON.parse(c.arguments);
        assert.ok(validators[c.name](args), `${c.arguments}: ${ajv.errorsText(validators[c.name].errors)}`);
      }
    }
  });

  test('streamed function calls: output_item.added, function_call_arguments.delta / done; same output as non-streamed', async () => {
    const params = { model: 'stories260K', input: 'Weather?', tools: TOOLS, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_output_tokens: 200 };
    const whole = await client.responses.create(params);
    const args = {};
    const types = [];
    let final;
    for await (const ev of await client.responses.create({ ...params, stream: true })) {
      types.push(ev.type);
      if (ev.type === 'response.output_item.added') assert.equal(ev.item.type, 'function_call');
      if (ev.type === 'response.function_call_arguments.delta') args[ev.item_id] = (args[ev.item_id] ?? '') + ev.delta;
      if (ev.type === 'response.function_call_arguments.done') assert.equal(ev.arguments, args[ev.item_id]);
      if (ev.type === 'response.completed') final = ev.response;
    }
    assert.ok(final, `no response.completed: ${types.at(-1)}`);
    const strip = (out) => out.map((o) => [o.type, o.name, o.arguments]);
    assert.deepEqual(strip(final.output), strip(whole.output));
    assert.deepEqual(Object.values(args), whole.output.map((o) => o.arguments));
    const distinct = types.filter((t, i) => t !== types[i - 1]);
    assert.deepEqual(distinct.slice(0, 5), ['response.created', 'response.in_progress', 'response.output_item.added',
      'response.function_call_arguments.delta', 'response.function_call_arguments.done']);
    assert.ok(!types.includes('response.output_text.delta'));
    // The arguments stream as they are generated: several pieces per call.
    assert.ok(types.filter((t) => t === 'response.function_call_arguments.delta').length > 2 * whole.output.length, types.join(' '));
    const helper = await client.responses.stream(params).finalResponse();
    assert.deepEqual(strip(helper.output), strip(whole.output));
  });

  test('function_call and function_call_output input items round-trip as /v1/chat/completions renders them', async () => {
    const first = await client.responses.create({ model: 'stories260K', input: 'Weather in Oslo?', tools: TOOLS, temperature: 0,
      max_output_tokens: 120, tool_choice: { type: 'function', name: 'get_weather' }, parallel_tool_calls: false });
    const call = first.output.find((o) => o.type === 'function_call');
    const input = [{ role: 'user', content: 'Weather in Oslo?' }, call,
      { type: 'function_call_output', call_id: call.call_id, output: '{"temperature": 3}' }];
    const second = await client.responses.create({ model: 'stories260K', input, tools: TOOLS, temperature: 0, max_output_tokens: 16 });
    assert.ok(second.usage.input_tokens > first.usage.input_tokens);
    const chat = await postJson(server, '/v1/chat/completions', { model: 'stories260K', max_tokens: 16, temperature: 0,
      tools: TOOLS.map(({ name, description, parameters }) => ({ type: 'function', function: { name, description, parameters } })),
      messages: [{ role: 'user', content: 'Weather in Oslo?' },
        { role: 'assistant', content: null, tool_calls: [{ id: call.call_id, type: 'function', function: { name: call.name, arguments: call.arguments } }] },
        { role: 'tool', tool_call_id: call.call_id, content: '{"temperature": 3}' }] });
    assert.equal(chat.status, 200, chat.text);
    assert.equal(chat.body.usage.prompt_tokens, second.usage.input_tokens);
    if (!chat.body.choices[0].message.tool_calls) assert.equal(second.output_text, chat.body.choices[0].message.content);
    const autoParams = { model: 'stories260K', input: 'Weather in Oslo?', tools: TOOLS, temperature: 0, max_output_tokens: 24 };
    const auto = await client.responses.create(autoParams);
    const autoStreamed = await client.responses.stream(autoParams).finalResponse();
    assert.deepEqual(autoStreamed.output.map((o) => [o.type, o.content?.[0]?.text, o.name, o.arguments]),
      auto.output.map((o) => [o.type, o.content?.[0]?.text, o.name, o.arguments]));
    const none = await client.responses.create({ model: 'stories260K', input: 'Weather in Oslo?', tools: TOOLS, tool_choice: 'none', max_output_tokens: 4 });
    assert.ok(none.output.every((o) => o.type === 'message'));
    assert.ok(none.usage.input_tokens < first.usage.input_tokens, 'tool_choice none leaves the tools out of the prompt');
  });

  test('text.format json_schema: 20 sampled outputs validate with ajv; streamed equals non-streamed', async () => {
    const validate = ajv.compile(PERSON);
    const format = { type: 'json_schema', name: 'person', schema: PERSON, strict: true };
    for (let seed = 0; seed < 20; ++seed) {
      const r = await client.responses.create({ model: 'stories260K', input: 'A person as JSON', text: { format }, temperature: 1, max_output_tokens: 200 });
      assert.equal(r.status, 'completed', r.output_text);
      const doc = JSON.parse(r.output_text);
      assert.ok(validate(doc), `${r.output_text}: ${ajv.errorsText(validate.errors)}`);
      assert.deepEqual(r.text.format, format);
    }
    const params = { model: 'stories260K', input: 'A person', text: { format }, temperature: 0, max_output_tokens: 200 };
    const whole = await client.responses.create(params);
    const streamed = await client.responses.stream(params).finalResponse();
    assert.equal(streamed.output_text, whole.output_text);
  });

  test('unsupported tools and bad schemas are refused naming the parameter', async () => {
    await expectApiError(client.responses.create({ model: 'stories260K', input: 'hi', tools: [{ type: 'web_search' }] }), 400, 'tools[0].type', /function tools/);
    await expectApiError(client.responses.create({ model: 'stories260K', input: 'hi', tools: TOOLS, tool_choice: { type: 'function', name: 'nope' } }), 400, 'tools', /nope/);
    await expectApiError(client.responses.create({ model: 'stories260K', input: 'hi', tool_choice: 'required' }), 400, 'tool_choice');
    await expectApiError(client.responses.create({ model: 'stories260K', input: 'hi',
      text: { format: { type: 'json_schema', name: 'x', schema: { type: 'object', patternProperties: { a: {} } } } } }), 400, 'text.format.schema', /patternProperties/);
    await expectApiError(client.responses.create({ model: 'stories260K', input: [{ type: 'function_call_output', output: 'x' }] }), 400, 'input[0].call_id');
  });
});
