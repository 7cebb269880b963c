// The official Qdrant JS client (@qdrant/js-client-rest) against a real `etna serve`: named and
// sparse vectors, the Query API (prefetch, fusion, recommend, discover, order_by), groups,
// aliases, PATCH /collections and the text / datetime payload indexes. Restarts the server with
// kill -9 to check that acknowledged named and sparse writes survive.
// Run: ETNA_BINARY=build/etna node --test qdrant_hybrid.test.mjs   (in tests/clients)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QdrantClient } from '@qdrant/js-client-rest';

const BINARY = process.env.ETNA_BINARY;

async function startServer(data) {
  assert.ok(BINARY && existsSync(BINARY), 'set ETNA_BINARY to the built etna binary');
  const proc = spawn(BINARY, ['serve', '--no-model', '--port', '0', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`etna serve did not start; stderr:\n${stderr}`)), 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/etna: listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`etna serve exited (${code}); stderr:\n${stderr}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, url, exited, stderr: () => stderr };
}

async function expectError(promise, status, messageRe) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(err.status, status, `expected HTTP ${status}, got ${err.status}: ${JSON.stringify(err.data)}`);
  assert.equal(typeof err.data?.status?.error, 'string');
  if (messageRe) assert.match(err.data.status.error, messageRe);
}

const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
const norm = (a) => { const n = Math.hypot(...a); return a.map((x) => x / n); };
const cos = (a, b) => dot(norm(a), norm(b));
const sparseDot = (a, b) => a.indices.reduce((s, ix, i) => { const j = b.indices.indexOf(ix); return j < 0 ? s : s + a.values[i] * b.values[j]; }, 0);
const ids = (pts) => pts.map((p) => p.id);

// 40 points: text (4-d Cosine), image (3-d Euclid, only on even ids), words (sparse, idf).
function textVec(i) { return [Math.sin(i), Math.cos(i), (i % 5) / 5, 1]; }
function imageVec(i) { return [i, i / 2, -i]; }
function wordsVec(i) { return { indices: [i % 4, 10 + (i % 3), 100 + i], values: [1, 0.5 + (i % 2), 2] }; }
const POINTS = Array.from({ length: 40 }, (_, k) => {
  const i = k + 1;
  const vector = { text: textVec(i), words: wordsVec(i) };
  if (i % 2 === 0) vector.image = imageVec(i);
  return {
    id: i, vector,
    payload: { n: i, group: `g${i % 4}`, body: i % 3 === 0 ? 'The quick brown fox' : 'lazy dogs sleep all day',
      when: `2024-01-${String((i % 28) + 1).padStart(2, '0')}T12:00:00Z` },
  };
});

let data, server, client;

before(async () => {
  data = mkdtempSync(path.join(tmpdir(), 'etna-qdrant-hybrid-'));
  server = await startServer(data);
  client = new QdrantClient({ url: server.url, checkCompatibility: false });
  await client.createCollection('hyb', {
    vectors: { text: { size: 4, distance: 'Cosine' }, image: { size: 3, distance: 'Euclid', hnsw_config: { m: 8 } } },
    sparse_vectors: { words: { modifier: 'idf' } },
  });
  const r = await client.upsert('hyb', { wait: true, points: POINTS });
  assert.equal(r.status, 'completed');
});

after(async () => {
  if (server) { server.proc.kill('SIGTERM'); await server.exited; }
  rmSync(data, { recursive: true, force: true });
});

test('named and sparse vectors: config, retrieve, search with `using`, errors naming the vector', async () => {
  const info = await client.getCollection('hyb');
  assert.equal(info.points_count, 40);
  assert.equal(info.config.params.vectors.text.size, 4);
  assert.equal(info.config.params.vectors.image.distance, 'Euclid');
  assert.equal(info.config.params.sparse_vectors.words.modifier, 'idf');

  const [p2] = await client.retrieve('hyb', { ids: [2], with_vector: true });
  assert.deepEqual(p2.vector.image, imageVec(2));
  assert.deepEqual(p2.vector.words.indices, [2, 12, 102]);
  assert.equal(p2.vector.text.length, 4);
  const [p3] = await client.retrieve('hyb', { ids: [3], with_vector: ['words'] });
  assert.deepEqual(Object.keys(p3.vector), ['words']);

  const img = await client.search('hyb', { vector: { name: 'image', vector: [10.2, 5, -10] }, limit: 3 });
  assert.equal(img[0].id, 10);
  for (const h of img) assert.equal(Number(h.id) % 2, 0, 'points without an image vector are never hits');
  const txt = await client.search('hyb', { vector: { name: 'text', vector: textVec(7) }, limit: 40 });
  assert.equal(txt[0].id, 7);
  for (const h of txt) assert.ok(Math.abs(h.score - cos(textVec(7), textVec(Number(h.id)))) < 1e-5);

  const sp = await client.query('hyb', { query: { indices: [1, 11], values: [1, 1] }, using: 'words', limit: 40 });
  assert.ok(sp.points.length > 0);
  // idf-weighted dot products: N = 40 points; n = how many hold each index.
  const df = (ix) => POINTS.filter((p) => p.vector.words.indices.includes(ix)).length;
  const idf = (ix) => Math.log((40 - df(ix) + 0.5) / (df(ix) + 0.5) + 1);
  for (const h of sp.points) {
    const w = POINTS[Number(h.id) - 1].vector.words;
    const want = sparseDot(w, { indices: [1, 11], values: [idf(1), idf(11)] });
    assert.ok(Math.abs(h.score - want) < 1e-4, `point ${h.id}: ${h.score} vs ${want}`);
  }
  for (let i = 1; i < sp.points.length; i++) assert.ok(sp.points[i - 1].score >= sp.points[i].score);

  await expectError(client.search('hyb', { vector: { name: 'audio', vector: [1, 2, 3] } }), 400, /audio|vector name/i);
  await expectError(client.upsert('hyb', { wait: true, points: [{ id: 99, vector: { text: [1, 2] } }] }), 400, /text.*2 dimensions/);
  await expectError(client.upsert('hyb', { wait: true, points: [{ id: 99, vector: { words: { indices: [1, 1], values: [1, 2] } } }] }), 400, /twice|unique/);
  assert.equal((await client.count('hyb')).count, 40);
});

test('query: nearest, prefetch (nested) + rrf and dbsf fusion, rescoring, filter, threshold, offset, batch', async () => {
  const dense = await client.query('hyb', { query: textVec(5), using: 'text', limit: 10 });
  const sparse = await client.query('hyb', { query: wordsVec(5), using: 'words', limit: 10 });
  const fused = await client.query('hyb', {
    prefetch: [{ query: textVec(5), using: 'text', limit: 10 }, { query: wordsVec(5), using: 'words', limit: 10 }],
    query: { fusion: 'rrf' }, limit: 5, with_payload: true,
  });
  // RRF as Qdrant computes it: sum of 1 / (2 + rank), rank from 0.
  const rrf = new Map();
  for (const list of [dense.points, sparse.points]) list.forEach((p, r) => rrf.set(p.id, (rrf.get(p.id) ?? 0) + 1 / (2 + r)));
  const want = [...rrf.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  assert.deepEqual(ids(fused.points), want.map((e) => e[0]));
  fused.points.forEach((p, i) => assert.ok(Math.abs(p.score - want[i][1]) < 1e-6));
  assert.equal(fused.points[0].id, 5);
  assert.equal(fused.points[0].payload.n, 5);

  const dbsf = await client.query('hyb', {
    prefetch: [{ query: textVec(5), using: 'text', limit: 10 }, { query: wordsVec(5), using: 'words', limit: 10 }],
    query: { fusion: 'dbsf' }, limit: 3,
  });
  assert.equal(dbsf.points[0].id, 5);

  // Nested prefetch: sparse candidates, narrowed by image (Euclid), re-ranked by text.
  const nested = await client.query('hyb', {
    prefetch: { prefetch: { query: wordsVec(8), using: 'words', limit: 20 }, query: imageVec(8), using: 'image', limit: 5 },
    query: textVec(8), using: 'text', limit: 5, with_vector: ['text'],
  });
  const inner = await client.query('hyb', {
    prefetch: { query: wordsVec(8), using: 'words', limit: 20 }, query: imageVec(8), using: 'image', limit: 5,
  });
  assert.deepEqual(new Set(ids(nested.points)), new Set(ids(inner.points)), 'the outer query re-ranks only the candidates');
  for (const h of nested.points) assert.ok(Math.abs(h.score - cos(textVec(8), h.vector.text)) < 1e-5);
  for (let i = 1; i < nested.points.length; i++) assert.ok(nested.points[i - 1].score >= nested.points[i].score);

  const filtered = await client.query('hyb', {
    query: textVec(1), using: 'text', limit: 40, score_threshold: 0.5,
    filter: { must: [{ key: 'group', match: { value: 'g1' } }] },
  });
  assert.ok(filtered.points.length > 0);
  for (const h of filtered.points) { assert.equal(Number(h.id) % 4, 1); assert.ok(h.score >= 0.5); }
  const page = await client.query('hyb', { query: textVec(1), using: 'text', limit: 3, offset: 2 });
  const all = await client.query('hyb', { query: textVec(1), using: 'text', limit: 5 });
  assert.deepEqual(ids(page.points), ids(all.points).slice(2, 5));
  const byId = await client.query('hyb', { query: 12, using: 'image', limit: 2 });
  assert.ok(!ids(byId.points).includes(12), 'the query point is not its own neighbour');

  const batch = await client.queryBatch('hyb', { searches: [
    { query: textVec(3), using: 'text', limit: 1 },
    { query: { nearest: wordsVec(4) }, using: 'words', limit: 1 },
  ] });
  assert.deepEqual(batch.map((r) => r.points[0].id), [3, 4]);

  await expectError(client.query('hyb', { query: { fusion: 'rrf' } }), 400, /prefetch/);
  await expectError(client.query('hyb', { query: { sample: 'random' } }), 501, /sample/);
});

test('query: order_by, recommend (average_vector, best_score), discover and context; recommend and discover endpoints', async () => {
  const asc = await client.query('hyb', { query: { order_by: { key: 'n', direction: 'desc' } }, limit: 3 });
  assert.deepEqual(ids(asc.points), [40, 39, 38]);
  const byDate = await client.query('hyb', { query: { order_by: 'when' }, limit: 2, with_payload: true });
  assert.ok(byDate.points[0].payload.when <= byDate.points[1].payload.when);

  const avg = await client.query('hyb', { query: { recommend: { positive: [4, 6], negative: [30] } }, using: 'image', limit: 3 });
  const target = imageVec(4).map((x, k) => { const ap = (x + imageVec(6)[k]) / 2; return ap + ap - imageVec(30)[k]; });
  const plain = await client.query('hyb', { query: target, using: 'image', limit: 6 });
  assert.deepEqual(ids(avg.points), ids(plain.points).filter((i) => ![4, 6, 30].includes(Number(i))).slice(0, 3));

  const best = await client.query('hyb', { query: { recommend: { positive: [7], negative: [20], strategy: 'best_score' } }, using: 'text', limit: 40 });
  for (const h of best.points) {
    const v = textVec(Number(h.id));
    const p = cos(v, textVec(7)), n = cos(v, textVec(20));
    const want = p >= n ? p : -(n * n);
    assert.ok(Math.abs(h.score - want) < 1e-4, `best_score of ${h.id}`);
  }
  assert.ok(!ids(best.points).includes(7) && !ids(best.points).includes(20));

  const rec = await client.recommend('hyb', { positive: [7], negative: [], using: 'text', limit: 2 });
  assert.equal(rec.length, 2);
  assert.ok(rec[0].payload, 'the recommend endpoint returns payloads by default in the client');
  const recBatch = await client.recommendBatch('hyb', { searches: [{ positive: [7], using: 'text', limit: 1 }, { positive: [8], using: 'image', limit: 1 }] });
  assert.equal(recBatch.length, 2);

  const disc = await client.discoverPoints('hyb', { target: 9, context: [{ positive: 10, negative: 11 }], using: 'text', limit: 40 });
  for (const h of disc) {
    const v = textVec(Number(h.id));
    const rank = cos(v, textVec(10)) > cos(v, textVec(11)) ? 1 : -1;
    const s = cos(v, textVec(9));
    const want = rank + 0.5 * (s / (1 + Math.abs(s)) + 1);
    assert.ok(Math.abs(h.score - want) < 1e-4, `discover score of ${h.id}`);
  }
  const ctx = await client.query('hyb', { query: { context: [{ positive: 10, negative: 11 }] }, using: 'text', limit: 40 });
  for (const h of ctx.points) {
    const v = textVec(Number(h.id));
    assert.ok(Math.abs(h.score - Math.min(cos(v, textVec(10)) - cos(v, textVec(11)), 0)) < 1e-4);
  }
});

test('groups: search/groups, query/groups and recommend/groups', async () => {
  const g = await client.searchPointGroups('hyb', { vector: { name: 'text', vector: textVec(2) }, group_by: 'group', group_size: 2, limit: 3, with_payload: ['n'] });
  assert.equal(g.groups.length, 3);
  for (const grp of g.groups) {
    assert.ok(grp.hits.length <= 2 && grp.hits.length > 0);
    for (const h of grp.hits) { assert.equal(`g${h.payload.n % 4}`, grp.id); assert.deepEqual(Object.keys(h.payload), ['n']); }
  }
  assert.equal(g.groups[0].hits[0].id, 2);
  const q = await client.queryGroups('hyb', { query: wordsVec(5), using: 'words', group_by: 'group', group_size: 3, limit: 4 });
  assert.equal(q.groups.length, 4);
  assert.equal(q.groups[0].hits[0].id, 5);
  const r = await client.recommendPointGroups('hyb', { positive: [5], using: 'text', group_by: 'group', group_size: 1, limit: 2 });
  assert.equal(r.groups.length, 2);
  await expectError(client.queryGroups('hyb', { query: textVec(2), using: 'text', group_by: 'group', group_size: 1, limit: 1, with_lookup: 'other' }), 501, /with_lookup/);
});

test('aliases: create, list, use, rename, delete; a collection name cannot be an alias', async () => {
  assert.equal(await client.updateCollectionAliases({ actions: [{ create_alias: { collection_name: 'hyb', alias_name: 'live' } }] }), true);
  assert.deepEqual((await client.getAliases()).aliases, [{ alias_name: 'live', collection_name: 'hyb' }]);
  assert.deepEqual((await client.getCollectionAliases('hyb')).aliases, [{ alias_name: 'live', collection_name: 'hyb' }]);
  assert.equal((await client.count('live')).count, 40);
  const viaAlias = await client.query('live', { query: textVec(3), using: 'text', limit: 1 });
  assert.equal(viaAlias.points[0].id, 3);
  await client.updateCollectionAliases({ actions: [
    { rename_alias: { old_alias_name: 'live', new_alias_name: 'prod' } },
    { create_alias: { collection_name: 'hyb', alias_name: 'tmp' } },
  ] });
  assert.deepEqual((await client.getAliases()).aliases.map((a) => a.alias_name), ['prod', 'tmp']);
  await client.updateCollectionAliases({ actions: [{ delete_alias: { alias_name: 'tmp' } }] });
  await expectError(client.updateCollectionAliases({ actions: [{ delete_alias: { alias_name: 'nope' } }] }), 404, /nope/);
  await expectError(client.updateCollectionAliases({ actions: [{ create_alias: { collection_name: 'missing', alias_name: 'x' } }] }), 404, /missing/);
  // All or nothing: the second action fails, so the first is not applied either.
  await expectError(client.updateCollectionAliases({ actions: [
    { create_alias: { collection_name: 'hyb', alias_name: 'half' } }, { delete_alias: { alias_name: 'nope' } }] }), 404);
  assert.deepEqual((await client.getAliases()).aliases.map((a) => a.alias_name), ['prod']);
  await expectError(client.updateCollectionAliases({ actions: [{ create_alias: { collection_name: 'hyb', alias_name: 'hyb' } }] }), 409);
});

test('PATCH /collections: HNSW and quantisation settings change (and search still agrees), unknown keys are named', async () => {
  await client.createCollection('plain', { vectors: { size: 4, distance: 'Dot' } });
  const pts = Array.from({ length: 300 }, (_, i) => ({ id: i + 1, vector: textVec(i + 1), payload: { n: i + 1 } }));
  await client.upsert('plain', { wait: true, points: pts });
  const before = await client.search('plain', { vector: textVec(9), limit: 5, params: { exact: true } });
  assert.equal(await client.updateCollection('plain', { hnsw_config: { m: 24, ef_construct: 200 }, optimizers_config: { deleted_threshold: 0.2 } }), true);
  let info = await client.getCollection('plain');
  assert.equal(info.config.hnsw_config.m, 24);
  assert.equal(info.config.hnsw_config.ef_construct, 200);
  const after = await client.search('plain', { vector: textVec(9), limit: 5 });
  assert.deepEqual(ids(after), ids(before));
  await client.updateCollection('plain', { quantization_config: { scalar: { type: 'int8', quantile: 0.99 } } });
  info = await client.getCollection('plain');
  assert.equal(info.config.quantization_config.scalar.type, 'int8');
  assert.deepEqual(ids(await client.search('plain', { vector: textVec(9), limit: 5 })), ids(before));
  await client.updateCollection('plain', { quantization_config: 'Disabled' });
  assert.equal((await client.getCollection('plain')).config.quantization_config, null);
  await client.updateCollection('hyb', { vectors: { image: { hnsw_config: { m: 12 } } }, sparse_vectors: { words: { modifier: 'none' } } });
  info = await client.getCollection('hyb');
  assert.equal(info.config.params.vectors.image.hnsw_config.m, 12);
  assert.deepEqual(info.config.params.sparse_vectors.words, {});
  const raw = await client.query('hyb', { query: { indices: [1], values: [1] }, using: 'words', limit: 1 });
  assert.equal(raw.points[0].score, 1, 'without idf the score is the plain dot product');
  await client.updateCollection('hyb', { sparse_vectors: { words: { modifier: 'idf' } } });
  await expectError(client.updateCollection('plain', { strict_mode_config: { enabled: true } }), 501, /strict_mode_config/);
  await expectError(client.updateCollection('plain', { hnsw_config: { m: 1 } }), 400, /m must be/);
});

test('payload indexes: text (word match), datetime ranges, keyword/integer/float/bool with range conditions', async () => {
  const textFilter = { must: [{ key: 'body', match: { text: 'Quick fox' } }] };
  // Without a text index, match text is a substring match: "Quick fox" is in no body.
  assert.equal((await client.count('hyb', { filter: textFilter })).count, 0);
  await client.createPayloadIndex('hyb', { field_name: 'body', field_schema: { type: 'text', tokenizer: 'word', lowercase: true }, wait: true });
  assert.equal((await client.getCollection('hyb')).payload_schema.body.data_type, 'text');
  const withIndex = await client.scroll('hyb', { filter: textFilter, limit: 100 });
  assert.deepEqual(ids(withIndex.points).map(Number).sort((a, b) => a - b), POINTS.filter((p) => p.id % 3 === 0).map((p) => p.id));
  await expectError(client.createPayloadIndex('hyb', { field_name: 'body', field_schema: { type: 'text', tokenizer: 'multilingual' }, wait: true }), 501, /tokenizer/);

  const range = { must: [{ key: 'when', range: { gte: '2024-01-10T00:00:00Z', lt: '2024-01-12' } }] };
  const want = POINTS.filter((p) => p.payload.when >= '2024-01-10' && p.payload.when < '2024-01-12').map((p) => p.id);
  assert.ok(want.length > 0);
  const noIndex = await client.scroll('hyb', { filter: range, limit: 100 });
  await client.createPayloadIndex('hyb', { field_name: 'when', field_schema: 'datetime', wait: true });
  const indexed = await client.scroll('hyb', { filter: range, limit: 100 });
  assert.deepEqual(ids(noIndex.points), want);
  assert.deepEqual(ids(indexed.points), want);
  const hits = await client.query('hyb', { query: textVec(11), using: 'text', filter: range, limit: 10 });
  assert.deepEqual(ids(hits.points).map(Number).sort((a, b) => a - b), want);

  for (const [field, schema] of [['group', 'keyword'], ['n', 'integer'], ['n', 'float']]) {
    await client.createPayloadIndex('hyb', { field_name: field, field_schema: schema, wait: true });
    assert.equal((await client.getCollection('hyb')).payload_schema[field].data_type, schema);
  }
  const mixed = await client.count('hyb', { filter: { must: [{ key: 'group', match: { value: 'g2' } }, { key: 'n', range: { gt: 10, lte: 30 } }] } });
  assert.equal(mixed.count, POINTS.filter((p) => p.id % 4 === 2 && p.id > 10 && p.id <= 30).length);
  await client.setPayload('hyb', { wait: true, payload: { flag: true }, points: [1, 2, 3] });
  await client.createPayloadIndex('hyb', { field_name: 'flag', field_schema: 'bool', wait: true });
  assert.equal((await client.count('hyb', { filter: { must: [{ key: 'flag', match: { value: true } }] } })).count, 3);
  await expectError(client.createPayloadIndex('hyb', { field_name: 'loc', field_schema: 'geo', wait: true }), 501, /geo/);
  await expectError(client.count('hyb', { filter: { must: [{ key: 'when', range: { gt: 'yesterday' } }] } }), 400, /date-time/);
  const ordered = await client.scroll('hyb', { order_by: { key: 'n', direction: 'desc' }, limit: 2 });
  assert.deepEqual(ids(ordered.points), [40, 39]);
});

test('binary quantisation: created, reported, searched with oversampling (rescored float scores); a bad product compression refused', async () => {
  await client.createCollection('bin', { vectors: { size: 64, distance: 'Cosine' }, quantization_config: { binary: { always_ram: true } } });
  assert.deepEqual((await client.getCollection('bin')).config.quantization_config, { binary: { always_ram: true } });
  const vec = (i) => Array.from({ length: 64 }, (_, k) => Math.sin(i * 0.7 + k * 1.3) + ((i * 31 + k * 17) % 7) / 7 - 0.5);
  await client.upsert('bin', { wait: true, points: Array.from({ length: 600 }, (_, i) => ({ id: i + 1, vector: vec(i + 1) })) });
  let found = 0;
  for (let q = 0; q < 20; q++) {
    const v = vec(1000 + q);
    const exact = await client.search('bin', { vector: v, limit: 10, params: { exact: true } });
    const approx = await client.search('bin', { vector: v, limit: 10, params: { quantization: { rescore: true, oversampling: 3 } } });
    const want = new Set(ids(exact));
    found += approx.filter((h) => want.has(h.id)).length;
    for (const h of approx) assert.ok(Math.abs(h.score - cos(v, vec(Number(h.id)))) < 1e-4, 'scores are rescored floats');
  }
  assert.ok(found / 200 >= 0.8, `recall@10 ${found / 200}`);
  await expectError(client.search('bin', { vector: vec(1), params: { quantization: { rescore: false } } }), 501, /rescore/);
  await expectError(client.createCollection('pq', { vectors: { size: 8, distance: 'Dot' }, quantization_config: { product: { compression: 'x12' } } }), 400, /product\.compression/);
});

test('kill -9: every acknowledged named / sparse write is there after restart', async () => {
  await client.upsert('hyb', { wait: true, points: [{ id: 1000, vector: { image: [1, 2, 3], words: { indices: [7], values: [0.25] } }, payload: { late: true } }] });
  await client.setPayload('hyb', { wait: true, payload: { tagged: 1 }, points: [2] });
  await client.delete('hyb', { wait: true, points: [40] });
  await client.upsert('plain', { wait: true, points: [{ id: 5000, vector: [1, 1, 1, 1] }] });
  server.proc.kill('SIGKILL');
  await server.exited;
  server = await startServer(data);
  client = new QdrantClient({ url: server.url, checkCompatibility: false });
  const pts = await client.retrieve('hyb', { ids: [1000, 2, 40, 17], with_vector: true });
  assert.deepEqual(ids(pts), [1000, 2, 17]);
  assert.deepEqual(pts[0].vector.image, [1, 2, 3]);
  assert.deepEqual(pts[0].vector.words, { indices: [7], values: [0.25] });
  assert.equal(pts[1].payload.tagged, 1);
  assert.deepEqual(pts[2].vector.words.indices, wordsVec(17).indices);
  assert.equal((await client.count('hyb')).count, 40);
  const s = await client.query('hyb', { query: { indices: [7], values: [1] }, using: 'words' });
  assert.deepEqual(ids(s.points), [1000]);
  // Aliases, PATCHed settings and payload indexes are durable too.
  assert.deepEqual((await client.getAliases()).aliases, [{ alias_name: 'prod', collection_name: 'hyb' }]);
  const info = await client.getCollection('prod');
  assert.equal(info.config.params.vectors.image.hnsw_config.m, 12);
  assert.equal(info.payload_schema.body.data_type, 'text');
  assert.equal((await client.getCollection('plain')).config.hnsw_config.m, 24);
  assert.equal((await client.count('prod', { filter: { must: [{ key: 'body', match: { text: 'fox QUICK' } }] } })).count, 13);
});
