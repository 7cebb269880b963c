// The official Qdrant JS client (@qdrant/js-client-rest) against a real `etna serve`.
// Run: ETNA_BINARY=build/etna node --test   (in tests/clients, after scripts/test-clients-setup)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QdrantClient } from '@qdrant/js-client-rest';

const BINARY = process.env.ETNA_BINARY;
const UUID = '0b9f7c5e-8a4a-4f43-9a64-3c1b2ad2c0f1';

// Starts `etna serve --no-model --port 0` and resolves once it prints its address.
async function startServer(extraArgs = []) {
  assert.ok(BINARY, 'set ETNA_BINARY to the built etna binary');
  assert.ok(existsSync(BINARY), `ETNA_BINARY=${BINARY} does not exist`);
  const data = mkdtempSync(path.join(tmpdir(), 'etna-qdrant-'));
  const proc = spawn(BINARY, ['serve', '--no-model', '--port', '0', '--data', data, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`etna serve exited (${code}) before listening; stderr:\n${stderr}`)); });
  });
  proc.removeAllListeners('exit');
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, url, data, exited, stderr: () => stderr };
}

async function stopServer(s) {
  s.proc.kill('SIGTERM');
  const { code } = await s.exited;
  rmSync(s.data, { recursive: true, force: true });
  return code;
}

// Awaits a rejected client call and checks the HTTP status and Qdrant's error body.
async function expectError(promise, status, messageRe) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(err.status, status, `expected HTTP ${status}, got ${err.status}: ${JSON.stringify(err.data)}`);
  assert.equal(typeof err.data?.status?.error, 'string', `Qdrant error body expected, got ${JSON.stringify(err.data)}`);
  assert.equal(typeof err.data.time, 'number');
  if (messageRe) assert.match(err.data.status.error, messageRe);
  return err;
}

const sortIds = (ids) => ids.map(String).sort();
const idsOf = (points) => sortIds(points.map((p) => p.id));

const POINTS = [
  { id: 1, vector: [1, 0, 0, 0], payload: { city: 'London', count: 10, tags: ['a', 'b'], color: 'red', meta: { lang: 'en', score: 0.5 } } },
  { id: 2, vector: [0.9, 0.1, 0, 0], payload: { city: 'Paris', count: 20, tags: ['b'], color: 'blue', meta: { lang: 'fr', score: 0.9 } } },
  { id: 3, vector: [0, 1, 0, 0], payload: { city: 'Berlin', count: 30, tags: [], color: null, meta: { lang: 'de' } } },
  { id: 4, vector: [0, 0, 1, 0], payload: { city: 'London', count: 40, color: 'green', items: [{ name: 'x', qty: 1 }, { name: 'y', qty: 5 }] } },
  { id: UUID, vector: [0, 0, 0, 1], payload: { city: 'Rome', count: 50, tags: ['c'], items: [{ name: 'x', qty: 9 }] } },
  { id: 6, vector: [0.5, 0.5, 0.5, 0.5], payload: {} },
];

const cosine = (a, b) => {
  const dot = a.reduce((s, x, i) => s + x * b[i], 0);
  const na = Math.hypot(...a), nb = Math.hypot(...b);
  return dot / (na * nb);
};

let server;
let client;
const warnings = [];
const originalWarn = console.warn;

before(async () => {
  console.warn = (...args) => { warnings.push(args.join(' ')); originalWarn(...args); };
  server = await startServer();
  client = new QdrantClient({ url: server.url });
});

after(async () => {
  console.warn = originalWarn;
  if (server) {
    const code = await stopServer(server);
    assert.equal(code, 0, `etna serve should exit 0 on SIGTERM; stderr:\n${server.stderr()}`);
  }
});

async function freshCollection(name, vectors = { size: 4, distance: 'Cosine' }, extra = {}) {
  if ((await client.collectionExists(name)).exists) await client.deleteCollection(name);
  assert.equal(await client.createCollection(name, { vectors, ...extra }), true);
}

async function seeded(name) {
  await freshCollection(name);
  const r = await client.upsert(name, { wait: true, points: POINTS });
  assert.equal(r.status, 'completed');
  assert.equal(typeof r.operation_id, 'number');
}

test('GET / answers Qdrant version info and the client compatibility check passes quietly', async () => {
  const info = await client.versionInfo();
  assert.match(info.title, /qdrant/);
  assert.match(info.version, /^\d+\.\d+\.\d+$/);
  // give the constructor's background check time to finish
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(warnings.filter((w) => /version|incompatible/i.test(w)), []);
});

test('collections: create, list, exists, info, conflict, delete', async () => {
  await freshCollection('crud', { size: 4, distance: 'Dot' }, {
    hnsw_config: { m: 8, ef_construct: 64 },
    quantization_config: { scalar: { type: 'int8', quantile: 0.95, always_ram: true } },
  });
  const list = await client.getCollections();
  assert.ok(list.collections.some((c) => c.name === 'crud'));
  assert.deepEqual(await client.collectionExists('crud'), { exists: true });
  assert.deepEqual(await client.collectionExists('nope'), { exists: false });
  const info = await client.getCollection('crud');
  assert.equal(info.status, 'green');
  assert.equal(info.points_count, 0);
  assert.equal(info.config.params.vectors.size, 4);
  assert.equal(info.config.params.vectors.distance, 'Dot');
  assert.equal(info.config.hnsw_config.m, 8);
  assert.equal(info.config.hnsw_config.ef_construct, 64);
  assert.equal(info.config.quantization_config.scalar.type, 'int8');
  assert.equal(info.config.quantization_config.scalar.quantile, 0.95);
  await expectError(client.createCollection('crud', { vectors: { size: 4, distance: 'Dot' } }), 409, /already exists/);
  assert.equal(await client.deleteCollection('crud'), true);
  assert.deepEqual(await client.collectionExists('crud'), { exists: false });
  assert.equal(await client.deleteCollection('crud'), false);
  await expectError(client.getCollection('crud'), 404, /doesn't exist/);
});

test('product quantisation: config echo, ADC walk with rescoring and oversampling, bad compression', async () => {
  await freshCollection('pq', { size: 16, distance: 'Euclid' }, {
    quantization_config: { product: { compression: 'x8', always_ram: true } },
  });
  let info = await client.getCollection('pq');
  assert.deepEqual(info.config.quantization_config, { product: { compression: 'x8', always_ram: true } });
  // 2500 points around 40 centres (deterministic LCG), past the 2048 points codebooks train at.
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const centres = Array.from({ length: 40 }, () => Array.from({ length: 16 }, () => rand() * 4));
  const near = (c) => c.map((x) => x + rand());
  for (let b = 0; b < 5; b++) {
    const points = [];
    for (let i = 0; i < 500; i++) points.push({ id: b * 500 + i + 1, vector: near(centres[(b * 500 + i) % 40]), payload: { c: (b * 500 + i) % 40 } });
    const r = await client.upsert('pq', { wait: true, points });
    assert.equal(r.status, 'completed');
  }
  let found = 0, total = 0;
  for (let q = 0; q < 20; q++) {
    const vector = near(centres[q % 40]);
    const exact = await client.search('pq', { vector, limit: 10, params: { exact: true } });
    const approx = await client.search('pq', {
      vector, limit: 10, params: { hnsw_ef: 32, quantization: { rescore: true, oversampling: 3.0 } },
    });
    assert.equal(approx.length, 10);
    // Rescored: the scores are exact Euclidean distances, best first.
    for (let i = 1; i < approx.length; i++) assert.ok(approx[i - 1].score <= approx[i].score);
    const want = new Set(exact.map((p) => p.id));
    found += approx.filter((p) => want.has(p.id)).length;
    total += exact.length;
  }
  assert.ok(found / total >= 0.9, `recall@10 ${found / total}`);
  info = await client.getCollection('pq');
  assert.equal(info.points_count, 2500);
  assert.deepEqual(info.config.quantization_config, { product: { compression: 'x8', always_ram: true } });
  // PATCH to another ratio, then off.
  assert.equal(await client.updateCollection('pq', { quantization_config: { product: { compression: 'x16' } } }), true);
  info = await client.getCollection('pq');
  assert.equal(info.config.quantization_config.product.compression, 'x16');
  const hit = await client.search('pq', { vector: near(centres[3]), limit: 1, params: { quantization: { rescore: true } } });
  assert.equal(hit.length, 1);
  assert.equal(await client.updateCollection('pq', { quantization_config: 'Disabled' }), true);
  info = await client.getCollection('pq');
  assert.equal(info.config.quantization_config ?? null, null);
  await expectError(client.createCollection('pq_bad', {
    vectors: { size: 16, distance: 'Dot' }, quantization_config: { product: { compression: 'x3' } },
  }), 400, /compression.*x4.*x64/);
  await client.deleteCollection('pq');
});

test('IVF (ivf_config extension): config echo, search through the lists, ivf_nprobe, plan, PATCH retrain, bad config', async () => {
  const ivf_config = { nlist: 32, nprobe: 8, training_threshold: 1000 };
  // Inside `vectors`: the client's createCollection drops top-level fields it does not know.
  await freshCollection('ivf', { size: 16, distance: 'Euclid', ivf_config });
  let info = await client.getCollection('ivf');
  assert.deepEqual(info.config.ivf_config, { ...ivf_config, pq: null });
  // 1500 points around 40 centres (deterministic LCG), past the 1000 points the lists train at.
  let seed = 777;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const centres = Array.from({ length: 40 }, () => Array.from({ length: 16 }, () => rand() * 4));
  const near = (c) => c.map((x) => x + rand());
  for (let b = 0; b < 3; b++) {
    const points = [];
    for (let i = 0; i < 500; i++) points.push({ id: b * 500 + i + 1, vector: near(centres[(b * 500 + i) % 40]), payload: { c: (b * 500 + i) % 40 } });
    assert.equal((await client.upsert('ivf', { wait: true, points })).status, 'completed');
  }
  info = await client.getCollection('ivf');
  assert.equal(info.points_count, 1500);
  assert.equal(info.indexed_vectors_count, 1500);
  let found = 0, total = 0;
  for (let q = 0; q < 20; q++) {
    const vector = near(centres[q % 40]);
    const exact = await client.search('ivf', { vector, limit: 10, params: { exact: true } });
    const approx = await client.search('ivf', { vector, limit: 10, params: { ivf_nprobe: 12, debug: true } });
    assert.equal(approx.length, 10);
    const want = new Set(exact.map((p) => p.id));
    found += approx.filter((p) => want.has(p.id)).length;
    total += exact.length;
  }
  assert.ok(found / total >= 0.9, `recall@10 ${found / total}`);
  // A filter is applied during the scan of the lists.
  const filtered = await client.search('ivf', { vector: centres[5], limit: 5, filter: { must: [{ key: 'c', match: { value: 5 } }] }, with_payload: true });
  assert.ok(filtered.length > 0 && filtered.every((p) => p.payload.c === 5));
  // The plan, asked for with params.debug, sits next to result (the client returns result only).
  const plan = async (params) => {
    const r = await fetch(`${server.url}/collections/ivf/points/search`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ vector: centres[1], limit: 3, params: { debug: true, ...params } }),
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.equal(body.result.length, 3);
    return body.plan;
  };
  assert.equal((await plan({})).index, 'ivf_flat');
  assert.match((await plan({ ivf_nprobe: 500 })).reason, /32 lists, scanning 32/);
  assert.equal((await plan({ exact: true })).index, 'flat');
  // PATCH retrains: other nlist, product codes in the lists.
  assert.equal(await client.updateCollection('ivf', { ivf_config: { nlist: 16, nprobe: 16, pq: { compression: 'x4' } } }), true);
  info = await client.getCollection('ivf');
  assert.deepEqual(info.config.ivf_config, { nlist: 16, nprobe: 16, training_threshold: 1000, pq: { compression: 'x4' } });
  assert.equal((await plan({})).index, 'ivf_pq');
  const hit = await client.search('ivf', { vector: centres[3], limit: 1 });
  assert.equal(hit.length, 1);
  await expectError(client.updateCollection('ivf', { ivf_config: { nprobe: 17 } }), 400, /nprobe \(17\) cannot exceed ivf_config.nlist \(16\)/);
  await expectError(client.createCollection('ivf_bad', { vectors: { size: 4, distance: 'Dot', ivf_config: { nlist: 0 } } }), 400, /ivf_config.nlist must be between 1 and 65536/);
  await expectError(client.search('ivf', { vector: centres[1], limit: 3, params: { ivf_nprobe: 0 } }), 422, /ivf_nprobe/);
  await expectError(client.createCollection('ivf_bad', { vectors: { size: 4, distance: 'Dot', ivf_config: { nlist: 64, training_threshold: 32 } } }), 400,
    /training_threshold \(32\) must be at least ivf_config.nlist \(64\)/);
  await client.deleteCollection('ivf');
  // Named vectors have no planner: params.debug adds no (empty) plan.
  assert.equal(await client.createCollection('named_plan', { vectors: { text: { size: 4, distance: 'Dot' } } }), true);
  await client.upsert('named_plan', { wait: true, points: [{ id: 1, vector: { text: [1, 0, 0, 0] } }] });
  const r = await fetch(`${server.url}/collections/named_plan/points/search`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ vector: { name: 'text', vector: [1, 0, 0, 0] }, limit: 1, params: { debug: true } }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.equal(body.result.length, 1);
  assert.equal(body.plan, undefined, JSON.stringify(body));
  await client.deleteCollection('named_plan');
});

test('collections: every distance, including the Hamming/Jaccard extension', async () => {
  for (const distance of ['Cosine', 'Dot', 'Euclid', 'Manhattan', 'Hamming', 'Jaccard']) {
    await freshCollection(`dist_${distance}`, { size: 3, distance });
    const info = await client.getCollection(`dist_${distance}`);
    assert.equal(info.config.params.vectors.distance, distance);
  }
  // Euclid: the closest point (smallest distance) comes first.
  await client.upsert('dist_Euclid', { points: [{ id: 1, vector: [0, 0, 0] }, { id: 2, vector: [3, 4, 0] }, { id: 3, vector: [1, 0, 0] }] });
  const e = await client.search('dist_Euclid', { vector: [0.9, 0, 0], limit: 3 });
  assert.deepEqual(e.map((p) => p.id), [3, 1, 2]);
  // Hamming on 0/1 vectors: the number of differing positions.
  await client.upsert('dist_Hamming', { points: [{ id: 1, vector: [1, 0, 1] }, { id: 2, vector: [0, 1, 0] }] });
  const h = await client.search('dist_Hamming', { vector: [1, 0, 0], limit: 2 });
  assert.deepEqual(h.map((p) => p.id), [1, 2]);
  assert.equal(h[0].score, 1);
  assert.equal(h[1].score, 2);
  await expectError(client.upsert('dist_Hamming', { points: [{ id: 3, vector: [0.5, 0, 0] }] }), 400);
  await expectError(client.createCollection('bad_dist', { vectors: { size: 3, distance: 'Chebyshev' } }), 400, /distance/i);
  await expectError(client.createCollection('bad_size', { vectors: { size: 0, distance: 'Cosine' } }), 400);
  for (const distance of ['Cosine', 'Dot', 'Euclid', 'Manhattan', 'Hamming', 'Jaccard']) await client.deleteCollection(`dist_${distance}`);
});

test('upsert (list and batch forms), retrieve, get point', async () => {
  await seeded('pts');
  const batch = await client.upsert('pts', {
    wait: true,
    batch: { ids: [10, 11], vectors: [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], payloads: [{ b: 1 }, { b: 2 }] },
  });
  assert.equal(batch.status, 'completed');
  assert.equal((await client.count('pts', { exact: true })).count, 8);

  const got = await client.retrieve('pts', { ids: [2, UUID, 999, 10], with_payload: true, with_vector: true });
  assert.deepEqual(got.map((p) => String(p.id)), ['2', UUID, '10']);
  assert.deepEqual(got[0].payload, POINTS[1].payload);
  assert.equal(got[0].vector.length, 4);
  // Cosine vectors are stored normalised (as Qdrant does).
  const n = Math.hypot(0.9, 0.1);
  assert.ok(Math.abs(got[0].vector[0] - 0.9 / n) < 1e-5);
  assert.deepEqual(got[2].payload, { b: 1 });

  const noPayload = await client.retrieve('pts', { ids: [1], with_payload: false });
  assert.ok(noPayload[0].payload == null);
  const some = await client.retrieve('pts', { ids: [1], with_payload: ['city', 'meta.lang'] });
  assert.deepEqual(some[0].payload, { city: 'London', meta: { lang: 'en' } });

  const one = await client.api().getPoint({ collection_name: 'pts', id: UUID });
  assert.equal(one.data.result.id, UUID);
  assert.equal(one.data.result.payload.city, 'Rome');
  assert.equal(one.data.result.vector.length, 4);
  await expectError(client.api().getPoint({ collection_name: 'pts', id: 12345 }), 404, /12345/);

  // Upsert replaces a point entirely.
  await client.upsert('pts', { points: [{ id: 10, vector: [1, 1, 1, 1], payload: { replaced: true } }] });
  assert.deepEqual((await client.retrieve('pts', { ids: [10] }))[0].payload, { replaced: true });
});

const FILTER_CASES = [
  ['must match value', { must: [{ key: 'city', match: { value: 'London' } }] }, [1, 4]],
  ['should', { should: [{ key: 'city', match: { value: 'London' } }, { key: 'city', match: { value: 'Paris' } }] }, [1, 2, 4]],
  ['must_not', { must_not: [{ key: 'city', match: { value: 'London' } }] }, [2, 3, UUID, 6]],
  ['match any', { must: [{ key: 'city', match: { any: ['Paris', 'Rome'] } }] }, [2, UUID]],
  ['match except', { must: [{ key: 'count', range: { gte: 0 } }, { key: 'city', match: { except: ['London', 'Berlin'] } }] }, [2, UUID]],
  ['array contains value', { must: [{ key: 'tags', match: { value: 'b' } }] }, [1, 2]],
  ['range', { must: [{ key: 'count', range: { gt: 15, lte: 40 } }] }, [2, 3, 4]],
  ['float range on a nested key', { must: [{ key: 'meta.score', range: { gte: 0.6 } }] }, [2]],
  ['is_empty', { must: [{ is_empty: { key: 'tags' } }] }, [3, 4, 6]],
  ['is_null', { must: [{ is_null: { key: 'color' } }] }, [3]],
  ['has_id', { must: [{ has_id: [1, UUID, 77] }] }, [1, UUID]],
  ['nested key (dotted path)', { must: [{ key: 'meta.lang', match: { value: 'fr' } }] }, [2]],
  ['array of objects key', { must: [{ key: 'items[].name', match: { value: 'y' } }] }, [4]],
  ['nested condition (same element)', {
    must: [{ nested: { key: 'items', filter: { must: [{ key: 'name', match: { value: 'x' } }, { key: 'qty', range: { gt: 3 } }] } } }],
  }, [UUID]],
  ['must + should + must_not', {
    must: [{ key: 'count', range: { gte: 10 } }],
    should: [{ key: 'city', match: { value: 'London' } }, { key: 'tags', match: { value: 'c' } }],
    must_not: [{ has_id: [4] }],
  }, [1, UUID]],
  ['filter as a condition', { must: [{ should: [{ has_id: [3] }, { has_id: [6] }] }] }, [3, 6]],
  ['min_should', {
    min_should: {
      conditions: [{ key: 'city', match: { value: 'London' } }, { key: 'tags', match: { value: 'b' } }, { key: 'count', range: { gte: 20 } }],
      min_count: 2,
    },
  }, [1, 2, 4]],
  ['match text', { must: [{ key: 'city', match: { text: 'ond' } }] }, [1, 4]],
  ['values_count', { must: [{ key: 'tags', values_count: { gte: 1 } }] }, [1, 2, UUID]],
];

test('search with filters (must/should/must_not, match value/any/except, range, is_empty, is_null, has_id, nested)', async () => {
  await seeded('flt');
  for (const [name, filter, expected] of FILTER_CASES) {
    const hits = await client.search('flt', { vector: [0.5, 0.5, 0.5, 0.5], filter, limit: 100 });
    assert.deepEqual(idsOf(hits), sortIds(expected), `search: ${name}`);
    const n = await client.count('flt', { filter, exact: true });
    assert.equal(n.count, expected.length, `count: ${name}`);
    const page = await client.scroll('flt', { filter, limit: 100 });
    assert.deepEqual(idsOf(page.points), sortIds(expected), `scroll: ${name}`);
  }
});

test('search ranks by similarity with scores, limit, offset, threshold and payload selection', async () => {
  await seeded('rank');
  const q = [1, 0, 0, 0];
  const expected = POINTS.map((p) => ({ id: String(p.id), score: cosine(q, p.vector) }))
    .sort((a, b) => b.score - a.score);
  const hits = await client.search('rank', { vector: q, limit: 3, with_payload: true });
  assert.deepEqual(hits.map((h) => String(h.id)), expected.slice(0, 3).map((e) => e.id));
  hits.forEach((h, i) => assert.ok(Math.abs(h.score - expected[i].score) < 1e-4, `score ${h.score} vs ${expected[i].score}`));
  assert.equal(hits[0].payload.city, 'London');
  assert.equal(typeof hits[0].version, 'number');

  const off = await client.search('rank', { vector: q, limit: 2, offset: 1, with_payload: false });
  assert.deepEqual(off.map((h) => String(h.id)), expected.slice(1, 3).map((e) => e.id));
  assert.ok(off[0].payload == null);

  const thr = await client.search('rank', { vector: q, limit: 10, score_threshold: 0.6 });
  assert.deepEqual(thr.map((h) => String(h.id)), expected.filter((e) => e.score >= 0.6).map((e) => e.id));

  const exact = await client.search('rank', { vector: q, limit: 3, params: { exact: true, hnsw_ef: 64 }, with_vector: true });
  assert.deepEqual(exact.map((h) => String(h.id)), expected.slice(0, 3).map((e) => e.id));
  assert.equal(exact[0].vector.length, 4);

  const exclude = await client.search('rank', { vector: q, limit: 1, with_payload: { exclude: ['meta', 'tags'] } });
  assert.deepEqual(Object.keys(exclude[0].payload).sort(), ['city', 'color', 'count']);
});

test('search batch', async () => {
  await seeded('sb');
  const res = await client.searchBatch('sb', {
    searches: [
      { vector: [1, 0, 0, 0], limit: 1 },
      { vector: [0, 1, 0, 0], limit: 2, filter: { must: [{ key: 'city', match: { value: 'London' } }] } },
    ],
  });
  assert.equal(res.length, 2);
  assert.deepEqual(res[0].map((p) => p.id), [1]);
  assert.equal(res[1].length, 2);
  assert.deepEqual(idsOf(res[1]), ['1', '4']);
  await expectError(client.searchBatch('sb', { searches: [{ vector: [1, 0, 0, 0], limit: 1 }, { vector: [1, 0], limit: 1 }] }), 400, /searches\[1\]/);
});

test('query: nearest vector, by point id, with filter/limit/offset/with_payload, and without a query', async () => {
  await seeded('qry');
  const r = await client.query('qry', { query: [1, 0, 0, 0], limit: 2, with_payload: true });
  assert.deepEqual(r.points.map((p) => p.id), [1, 2]);
  assert.equal(r.points[0].payload.city, 'London');
  assert.ok(r.points[0].score > r.points[1].score);

  const nearest = await client.query('qry', {
    query: { nearest: [1, 0, 0, 0] }, limit: 2, offset: 1,
    filter: { must_not: [{ key: 'city', match: { value: 'Paris' } }] },
  });
  // Without Paris the ranking is 1 (score 1), 6 (0.5), then 3, 4 and the UUID at 0: offset 1 starts at 6.
  assert.equal(nearest.points.length, 2);
  assert.equal(nearest.points[0].id, 6);
  assert.ok(Math.abs(nearest.points[1].score) < 1e-6);
  assert.ok(!nearest.points.some((p) => p.id === 2 || p.id === 1));
  assert.ok(nearest.points[0].payload == null, 'query returns no payload unless asked');

  const byId = await client.query('qry', { query: 1, limit: 1 });
  assert.deepEqual(byId.points.map((p) => p.id), [2], 'the query point itself is excluded');

  const all = await client.query('qry', { limit: 3, offset: 1 });
  assert.deepEqual(all.points.map((p) => p.id), [2, 3, 4]);

  const batch = await client.queryBatch('qry', { searches: [{ query: [0, 1, 0, 0], limit: 1 }, { query: { nearest: UUID }, limit: 1 }] });
  assert.equal(batch.length, 2);
  assert.deepEqual(batch[0].points.map((p) => p.id), [3]);
  assert.deepEqual(batch[1].points.map((p) => p.id), [6]);

  await expectError(client.query('qry', { query: { fusion: 'rrf' }, limit: 2 }), 400, /prefetch/);
  const fused = await client.query('qry', { prefetch: [{ query: [1, 0, 0, 0] }], query: { fusion: 'rrf' }, limit: 2 });
  assert.deepEqual(fused.points.map((p) => p.id), [1, 2], 'one list fused is that list (hybrid forms: qdrant_hybrid.test.mjs)');
  await expectError(client.query('qry', { query: 424242, limit: 1 }), 404, /424242/);
  await expectError(client.query('qry', { query: [1, 0], limit: 2 }), 400, /dim/i);
});

test('scroll pages through every point in id order', async () => {
  await freshCollection('scr');
  const points = [];
  for (let i = 1; i <= 23; i++) points.push({ id: i, vector: [i, 1, 0, 0], payload: { i, even: i % 2 === 0 } });
  await client.upsert('scr', { points });
  const seen = [];
  let offset;
  let pages = 0;
  do {
    const page = await client.scroll('scr', { limit: 5, offset, with_payload: true });
    pages++;
    for (const p of page.points) {
      seen.push(p.id);
      assert.equal(p.payload.i, p.id);
    }
    offset = page.next_page_offset;
  } while (offset !== null && offset !== undefined && pages < 100);
  assert.equal(pages, 5);
  assert.deepEqual(seen, points.map((p) => p.id));
  const evens = await client.scroll('scr', { limit: 100, filter: { must: [{ key: 'even', match: { value: true } }] }, with_payload: false });
  assert.equal(evens.points.length, 11);
  assert.equal(evens.next_page_offset, null);
  assert.ok(evens.points[0].payload == null);
});

test('count', async () => {
  await seeded('cnt');
  assert.equal((await client.count('cnt')).count, 6);
  assert.equal((await client.count('cnt', { filter: { must: [{ key: 'city', match: { value: 'London' } }] } })).count, 2);
});

test('payload: set, overwrite, delete keys, clear (by ids and by filter)', async () => {
  await seeded('pay');
  await client.setPayload('pay', { payload: { added: 1, city: 'Londres' }, points: [1] });
  let p = (await client.retrieve('pay', { ids: [1] }))[0].payload;
  assert.equal(p.added, 1);
  assert.equal(p.city, 'Londres');
  assert.equal(p.count, 10);

  await client.setPayload('pay', { payload: { flagged: true }, filter: { must: [{ key: 'city', match: { value: 'London' } }] } });
  assert.deepEqual(idsOf(await client.scroll('pay', { filter: { must: [{ key: 'flagged', match: { value: true } }] } }).then((r) => r.points)), ['4']);

  await client.overwritePayload('pay', { payload: { only: 'this' }, points: [2] });
  assert.deepEqual((await client.retrieve('pay', { ids: [2] }))[0].payload, { only: 'this' });

  await client.deletePayload('pay', { keys: ['count', 'meta.lang'], points: [1, 3] });
  p = (await client.retrieve('pay', { ids: [1] }))[0].payload;
  assert.equal(p.count, undefined);
  assert.equal(p.meta.lang, undefined);
  assert.equal(p.meta.score, 0.5);
  assert.equal((await client.retrieve('pay', { ids: [3] }))[0].payload.count, undefined);

  await client.clearPayload('pay', { points: [4] });
  assert.deepEqual((await client.retrieve('pay', { ids: [4] }))[0].payload, {});
  await client.clearPayload('pay', { filter: { must: [{ key: 'city', match: { value: 'Rome' } }] } });
  assert.deepEqual((await client.retrieve('pay', { ids: [UUID] }))[0].payload, {});

  await expectError(client.setPayload('pay', { payload: 'x', points: [1] }), 400);
  await expectError(client.setPayload('nope_coll', { payload: { a: 1 }, points: [1] }), 404);
});

test('payload index: create, shows in info, filters still agree, delete', async () => {
  await seeded('idx');
  await client.createPayloadIndex('idx', { field_name: 'city', field_schema: 'keyword', wait: true });
  await client.createPayloadIndex('idx', { field_name: 'count', field_schema: { type: 'integer' }, wait: true });
  const info = await client.getCollection('idx');
  assert.equal(info.payload_schema.city.data_type, 'keyword');
  assert.equal(info.payload_schema.count.data_type, 'integer');
  for (const [name, filter, expected] of FILTER_CASES) {
    const hits = await client.search('idx', { vector: [0.5, 0.5, 0.5, 0.5], filter, limit: 100 });
    assert.deepEqual(idsOf(hits), sortIds(expected), `indexed search: ${name}`);
  }
  await client.deletePayloadIndex('idx', 'city');
  const after = await client.getCollection('idx');
  assert.equal(after.payload_schema.city, undefined);
  await expectError(client.createPayloadIndex('idx', { field_name: 'x', field_schema: 'geo-shape-thing' }), 400);
});

test('delete points by ids and by filter', async () => {
  await seeded('del');
  await client.delete('del', { points: [1, UUID, 12345] });
  assert.equal((await client.count('del')).count, 4);
  assert.deepEqual(await client.retrieve('del', { ids: [1, UUID] }), []);
  await client.delete('del', { filter: { must: [{ key: 'count', range: { gte: 30 } }] } });
  assert.deepEqual(idsOf((await client.scroll('del', { limit: 10 })).points), ['2', '6']);
  const hits = await client.search('del', { vector: [0, 0, 1, 0], limit: 10 });
  assert.deepEqual(idsOf(hits), ['2', '6']);
});

test('snapshots: create, list, recover', async () => {
  await seeded('snap');
  const snap = await client.createSnapshot('snap');
  assert.equal(typeof snap.name, 'string');
  assert.ok(snap.size > 0);
  assert.match(snap.creation_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
  const list = await client.listSnapshots('snap');
  assert.ok(list.some((s) => s.name === snap.name && s.size === snap.size));

  // Change the collection, then recover: the snapshot's state comes back.
  await client.delete('snap', { points: [1, 2] });
  await client.upsert('snap', { points: [{ id: 100, vector: [1, 1, 1, 1] }] });
  assert.equal((await client.count('snap')).count, 5);
  const file = path.join(server.data, 'vectors', 'snapshots', 'snap', snap.name);
  assert.ok(existsSync(file), `snapshot file expected at ${file}`);
  assert.equal(await client.recoverSnapshot('snap', { location: `file://${file}` }), true);
  assert.equal((await client.count('snap')).count, 6);
  assert.deepEqual(idsOf((await client.scroll('snap', { limit: 10 })).points), sortIds(POINTS.map((p) => p.id)));
  const hits = await client.search('snap', { vector: [1, 0, 0, 0], limit: 1 });
  assert.equal(hits[0].id, 1);

  // Recover into a new collection, by plain path.
  assert.equal(await client.recoverSnapshot('snap_copy', { location: file }), true);
  assert.equal((await client.count('snap_copy')).count, 6);

  // Download and delete.
  const dl = await fetch(`${server.url}/collections/snap/snapshots/${encodeURIComponent(snap.name)}`);
  assert.equal(dl.status, 200);
  assert.equal((await dl.arrayBuffer()).byteLength, snap.size);
  const extra = await client.createSnapshot('snap');
  assert.equal(await client.deleteSnapshot('snap', extra.name), true);
  assert.ok(!(await client.listSnapshots('snap')).some((s) => s.name === extra.name));
  await expectError(client.deleteSnapshot('snap', 'no-such.snapshot'), 404);

  // Only files inside the snapshot directory may be used.
  const outside = path.join(server.data, 'evil.snapshot');
  writeFileSync(outside, 'not a snapshot');
  await expectError(client.recoverSnapshot('snap', { location: `file://${outside}` }), 400, /outside the snapshot directory/);
  await expectError(client.recoverSnapshot('snap', { location: `file://${path.join(server.data, 'vectors', 'snapshots', 'snap', '..', '..', '..', 'evil.snapshot')}` }), 400, /outside/);
  await expectError(client.recoverSnapshot('snap', { location: 'https://example.com/x.snapshot' }), 501);
  // A corrupt snapshot is refused and the collection is untouched.
  const corrupt = path.join(server.data, 'vectors', 'snapshots', 'snap', 'corrupt.snapshot');
  writeFileSync(corrupt, 'garbage');
  let err;
  try { await client.recoverSnapshot('snap', { location: corrupt }); } catch (e) { err = e; }
  assert.ok(err && err.status >= 400, 'a corrupt snapshot must be rejected');
  assert.equal((await client.count('snap')).count, 6);
  await expectError(client.listSnapshots('nope_coll'), 404);
});

test('errors: wrong dimension, unknown collection, malformed filter, NaN, limit 0 -- and nothing is written', async () => {
  await seeded('err');
  const before = (await client.count('err')).count;

  const dim = await expectError(client.upsert('err', {
    points: [{ id: 50, vector: [1, 0, 0, 0] }, { id: 51, vector: [1, 0, 0] }],
  }), 400, /dim/i);
  assert.match(dim.data.status.error, /3/);
  await expectError(client.search('err', { vector: [1, 0, 0], limit: 1 }), 400, /dim/i);
  await expectError(client.upsert('err', { batch: { ids: [52, 53], vectors: [[1, 0, 0, 0]] } }), 400);

  // NaN cannot travel in JSON: the client sends null, a raw body sends a bare NaN token.
  await expectError(client.upsert('err', { points: [{ id: 54, vector: [NaN, 0, 0, 0] }] }), 400, /number/);
  const raw = await fetch(`${server.url}/collections/err/points?wait=true`, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: '{"points":[{"id":55,"vector":[NaN,0,0,0]}]}',
  });
  assert.equal(raw.status, 400);
  const rawBody = await raw.json();
  assert.match(rawBody.status.error, /JSON/);
  await expectError(client.search('err', { vector: [Infinity, 0, 0, 0], limit: 1 }), 400);

  await expectError(client.search('err', { vector: [1, 0, 0, 0], filter: { must: [{ key: 'city', match: { valeu: 'x' } }] } }), 400);
  await expectError(client.search('err', { vector: [1, 0, 0, 0], filter: { must: [{ bogus: {} }] } }), 400);
  await expectError(client.search('err', { vector: [1, 0, 0, 0], filter: { must: [{ key: 'count', range: { gt: 'ten' } }] } }), 400);
  await expectError(client.delete('err', { filter: { must: 'not a list' } }), 400);
  await expectError(client.search('err', { vector: [1, 0, 0, 0], limit: 0 }), 422);
  await expectError(client.upsert('err', { points: [{ id: -5, vector: [1, 0, 0, 0] }] }), 400, /id/);
  await expectError(client.upsert('err', { points: [{ id: 'not-a-uuid', vector: [1, 0, 0, 0] }] }), 400);

  await expectError(client.search('no_such_collection', { vector: [1, 0, 0, 0] }), 404, /no_such_collection/);
  await expectError(client.upsert('no_such_collection', { points: POINTS }), 404);
  await expectError(client.count('no_such_collection'), 404);

  const malformed = await fetch(`${server.url}/collections/err/points/search`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"vector": [1, 0, 0, 0], ',
  });
  assert.equal(malformed.status, 400);
  assert.match((await malformed.json()).status.error, /malformed JSON/);

  assert.equal((await client.count('err')).count, before, 'a failed request must not write anything');
  assert.deepEqual(await client.retrieve('err', { ids: [50, 51, 52, 53, 54, 55] }), []);
});

test('API keys: the client authenticates with apiKey, requests without it get 401', async () => {
  const secured = await startServer(['--api-key', 'test-key-123']);
  try {
    const anon = new QdrantClient({ url: secured.url, checkCompatibility: false });
    await assert.rejects(anon.getCollections(), (e) => e.status === 401);
    const warn = console.warn;
    console.warn = () => {}; // the client warns about keys over plain http
    const authed = new QdrantClient({ url: secured.url, apiKey: 'test-key-123', checkCompatibility: false });
    console.warn = warn;
    assert.deepEqual((await authed.getCollections()).collections, []);
    const bearer = await fetch(`${secured.url}/collections`, { headers: { authorization: 'Bearer test-key-123' } });
    assert.equal(bearer.status, 200);
  } finally {
    assert.equal(await stopServer(secured), 0);
  }
});
