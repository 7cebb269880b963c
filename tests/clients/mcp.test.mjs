// The official MCP SDK client (@modelcontextprotocol/sdk) against Etna's documents: over
// Streamable HTTP (POST /mcp of a real `etna serve`) and over stdio (`etna mcp` as a child
// process). Run: ETNA_BINARY=build/etna node --test mcp.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startServer, stopAll, postJson, metric, BINARY, MODEL, EMB_MODEL, skipReason } from './etna-server.mjs';

const DOCS = {
  'volcanoes.md': '# Volcanoes\n\nMount Etna is an active stratovolcano on the east coast of Sicily. It erupts often, and its lava flows reach the villages on its slopes.\n\n## Ash\n\nVolcanic ash grounds aircraft at Catania airport.\n',
  'gardening.txt': 'Tomatoes need full sun and regular watering. Basil grows well next to tomatoes.\nPrune the side shoots every week.\n',
};

async function ingest(server, name, headers = {}) {
  const put = await fetch(`${server.url}/api/collections/${name}`, { method: 'PUT', headers });
  assert.equal(put.status, 201, await put.text());
  const form = new FormData();
  for (const [file, text] of Object.entries(DOCS)) form.append('file', new Blob([text], { type: 'text/plain' }), file);
  const r = await fetch(`${server.url}/api/collections/${name}/files?wait=true`, { method: 'POST', body: form, headers });
  const job = await r.json();
  assert.equal(job.state, 'done', JSON.stringify(job));
}

const parse = (result) => JSON.parse(result.content[0].text);

// The same checks over either transport.
async function exercise(client, { canAsk }) {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['ask', 'get_passage', 'list_collections', 'search']);
  for (const t of tools) assert.equal(t.inputSchema.type, 'object');

  const list = await client.callTool({ name: 'list_collections', arguments: {} });
  assert.equal(list.isError, false);
  const cols = parse(list).collections;
  assert.deepEqual(cols.map((c) => c.name), ['notes']);
  assert.equal(cols[0].files, 2);

  const found = await client.callTool({ name: 'search', arguments: { collection: 'notes', query: 'stratovolcano Sicily lava', k: 3 } });
  assert.equal(found.isError, false);
  const hits = parse(found).hits;
  assert.ok(hits.length >= 1);
  assert.match(hits[0].file, /volcanoes\.md$/);
  assert.match(hits[0].text, /stratovolcano/);
  assert.deepEqual(found.structuredContent.hits, hits);

  const passage = await client.callTool({ name: 'get_passage', arguments: { collection: 'notes', id: hits[0].id } });
  assert.equal(parse(passage).text, hits[0].text);

  const missing = await client.callTool({ name: 'search', arguments: { collection: 'nope', query: 'x' } });
  assert.equal(missing.isError, true);
  assert.match(missing.content[0].text, /not found/);
  const noQuery = await client.callTool({ name: 'search', arguments: { collection: 'notes' } });
  assert.equal(noQuery.isError, true);
  assert.match(noQuery.content[0].text, /query/);
  await assert.rejects(client.callTool({ name: 'delete_everything', arguments: {} }), /unknown tool/);

  const answer = await client.callTool({ name: 'ask', arguments: { collection: 'notes', question: 'Where is Mount Etna?', max_tokens: 16 } });
  if (canAsk) {
    assert.equal(answer.isError, false, answer.content[0].text);
    const a = parse(answer);
    assert.equal(typeof a.answer, 'string');
    assert.ok(a.retrieved.length >= 1);
    assert.ok(a.usage.completion_tokens >= 1 && a.usage.completion_tokens <= 16);
  } else {
    assert.equal(answer.isError, true);
    assert.match(answer.content[0].text, /chat model/);
  }

  const { resources } = await client.listResources();
  const uris = resources.map((r) => r.uri);
  assert.ok(uris.includes('etna://collections'));
  assert.ok(uris.includes('etna://collections/notes'));
  const file = resources.find((r) => r.name === 'gardening.txt');
  assert.ok(file, JSON.stringify(uris));
  const read = await client.readResource({ uri: file.uri });
  assert.equal(read.contents[0].mimeType, 'text/plain');
  assert.match(read.contents[0].text, /Basil grows well next to tomatoes/);
  const col = JSON.parse((await client.readResource({ uri: 'etna://collections/notes' })).contents[0].text);
  assert.equal(col.files.length, 2);
  await assert.rejects(client.readResource({ uri: 'etna://collections/notes/files/nothing' }), /not found/i);
  const { resourceTemplates } = await client.listResourceTemplates();
  assert.ok(resourceTemplates.length >= 2);
  await client.ping();
}

after(stopAll);

describe('MCP over Streamable HTTP (/mcp)', { skip: skipReason }, () => {
  let server;
  before(async () => {
    server = await startServer(['-m', MODEL, '--embedding-model', EMB_MODEL, '--api-key', 'sekret']);
    await ingest(server, 'notes', { authorization: 'Bearer sekret' });
  });

  test('lists and calls the document tools and resources', async () => {
    const client = new Client({ name: 'etna-test', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), { requestInit: { headers: { Authorization: 'Bearer sekret' } } });
    await client.connect(transport);
    assert.equal(client.getServerVersion().name, 'etna');
    assert.ok(client.getServerCapabilities().tools);
    await exercise(client, { canAsk: true });
    await client.close();
    assert.ok((await metric(server, 'etna_requests_total{endpoint="/mcp",status="200"}', { authorization: 'Bearer sekret' })) >= 10);
  });

  test('needs the API key; malformed JSON-RPC gets JSON-RPC errors', async () => {
    const client = new Client({ name: 'etna-test', version: '1.0.0' });
    await assert.rejects(client.connect(new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`))), /API key/);
    const auth = { authorization: 'Bearer sekret' };
    const bad = await postJson(server, '/mcp', '{"jsonrpc":', auth);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, -32700);
    const unknown = await postJson(server, '/mcp', { jsonrpc: '2.0', id: 7, method: 'sampling/createMessage', params: {} }, auth);
    assert.equal(unknown.body.id, 7);
    assert.equal(unknown.body.error.code, -32601);
    const note = await postJson(server, '/mcp', { jsonrpc: '2.0', method: 'notifications/initialized' }, auth);
    assert.equal(note.status, 202);
  });
});

describe('MCP over stdio (etna mcp)', { skip: skipReason }, () => {
  test('the same tools over a child process; ask refused without a chat model', async () => {
    const server = await startServer(['--embedding-model', EMB_MODEL]);
    await ingest(server, 'notes');
    const client = new Client({ name: 'etna-test', version: '1.0.0' });
    const transport = new StdioClientTransport({ command: BINARY, args: ['mcp', '--data', server.data, '--embedding-model', EMB_MODEL], stderr: 'pipe' });
    await client.connect(transport);
    try {
      await exercise(client, { canAsk: false });
    } finally {
      await client.close();  // a failure must not leave the child (and the suite) running
    }
  });
});
