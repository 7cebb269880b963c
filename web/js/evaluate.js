// Evaluate view: runs `etna eval` on the server's chat model (POST /api/eval/runs, progress by
// polling), the leaderboard of stored results (GET /api/eval/results) as a sortable table, and two
// plots drawn here as SVG: perplexity against file size per quantisation, hit@k per retrieval mode.
import { getJson, sendJson, formatBytes } from './api.js';
import { $, el, setMessage } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';
let rows = [];
let sortKey = 'date', sortDir = -1;
let polling = 0;

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function formatValue(r) {
  const v = Math.abs(r.value) >= 100 ? r.value.toFixed(2) : r.value.toFixed(4);
  return r.error > 0 ? `${v} ± ${r.error.toFixed(4)}` : v;
}

function renderTable() {
  const sorted = [...rows].sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
  });
  $('eval-rows').replaceChildren(...sorted.map((r) => el('tr', {},
    el('td', {}, r.date.replace('T', ' ').replace('Z', '')), el('td', {}, r.model), el('td', {}, r.quantisation),
    el('td', {}, r.file_bytes ? formatBytes(r.file_bytes) : '—'), el('td', {}, r.task), el('td', {}, r.dataset),
    el('td', {}, r.metric), el('td', { class: 'num' }, formatValue(r)))));
  $('eval-empty').hidden = rows.length > 0;
  for (const b of document.querySelectorAll('#eval-table th button')) {
    const th = b.parentElement;
    if (b.dataset.sort === sortKey) th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}

// A scatter plot of points {x, y, label} with axes, inside a fixed viewBox.
function scatter(points, xLabel, yLabel) {
  const W = 420, H = 240, L = 56, B = 36, T = 12, R = 12;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'plot', 'aria-label': `${yLabel} against ${xLabel}` });
  if (!points.length) {
    root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'plot-empty' }, 'no data yet'));
    return root;
  }
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 * 0.9, x1 * 1.1 + 1];
  if (y0 === y1) [y0, y1] = [y0 * 0.9, y1 * 1.1 + 1];
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), py = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - B - T);
  root.append(svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }),
    svg('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }),
    svg('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', class: 'plot-label' }, xLabel),
    svg('text', { x: 12, y: (T + H - B) / 2, 'text-anchor': 'middle', class: 'plot-label', transform: `rotate(-90 12 ${(T + H - B) / 2})` }, yLabel),
    svg('text', { x: L - 4, y: py(y1) + 4, 'text-anchor': 'end', class: 'tick' }, y1.toFixed(1)),
    svg('text', { x: L - 4, y: py(y0) + 4, 'text-anchor': 'end', class: 'tick' }, y0.toFixed(1)),
    svg('text', { x: px(x0), y: H - B + 14, 'text-anchor': 'start', class: 'tick' }, formatBytes(x0)),
    svg('text', { x: px(x1), y: H - B + 14, 'text-anchor': 'end', class: 'tick' }, formatBytes(x1)));
  for (const p of points) {
    const g = svg('g', { class: 'point' });
    g.append(svg('circle', { cx: px(p.x), cy: py(p.y), r: 4 }), svg('title', {}, `${p.label}: ${p.y.toFixed(3)}`),
      svg('text', { x: px(p.x) + 6, y: py(p.y) - 6, class: 'point-label' }, p.label));
    root.append(g);
  }
  return root;
}

// Grouped bars: one group per mode, one bar per k.
function bars(groups, ks) {
  const W = 420, H = 240, L = 36, B = 36, T = 12, R = 12;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'plot', 'aria-label': 'hit@k per retrieval mode' });
  if (!groups.length) {
    root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'plot-empty' }, 'no data yet'));
    return root;
  }
  const gw = (W - L - R) / groups.length, bw = (gw - 10) / ks.length;
  root.append(svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }),
    svg('text', { x: L - 4, y: T + 4, 'text-anchor': 'end', class: 'tick' }, '1.0'),
    svg('text', { x: L - 4, y: H - B + 4, 'text-anchor': 'end', class: 'tick' }, '0'));
  groups.forEach((g, i) => {
    ks.forEach((k, j) => {
      const v = g.values[k] ?? 0, h = v * (H - B - T);
      const bar = svg('rect', { x: L + i * gw + 5 + j * bw, y: H - B - h, width: Math.max(1, bw - 2), height: h, class: `bar bar-${j}` });
      bar.append(svg('title', {}, `${g.mode} ${k}: ${v.toFixed(3)}`));
      root.append(bar);
    });
    root.append(svg('text', { x: L + i * gw + gw / 2, y: H - B + 14, 'text-anchor': 'middle', class: 'tick' }, g.mode));
  });
  ks.forEach((k, j) => root.append(svg('text', { x: W - R - 4, y: T + 12 + j * 12, 'text-anchor': 'end', class: `legend bar-${j}` }, k)));
  return root;
}

function renderPlots() {
  // Perplexity: the latest figure per (model, quantisation), against file size.
  const ppl = new Map();
  for (const r of rows) {
    if (r.task !== 'perplexity' || r.metric !== 'ppl' || !r.file_bytes) continue;
    const key = `${r.model} ${r.quantisation}`;
    if (!ppl.has(key)) ppl.set(key, { x: r.file_bytes, y: r.value, label: r.quantisation || r.model });
  }
  $('eval-plot-ppl').replaceChildren(scatter([...ppl.values()], 'file size', 'perplexity'));
  // Retrieval: the newest rag run.
  const rag = rows.filter((r) => r.task === 'rag');
  const run = rag.length ? Math.max(...rag.map((r) => r.run)) : 0;
  const modes = new Map();
  const ks = ['hit@1', 'hit@3', 'hit@5', 'hit@10'];
  for (const r of rag.filter((x) => x.run === run)) {
    const [mode, metric] = r.metric.split(' ');
    if (!ks.includes(metric)) continue;
    if (!modes.has(mode)) modes.set(mode, { mode, values: {} });
    modes.get(mode).values[metric] = r.value;
  }
  $('eval-plot-rag').replaceChildren(bars([...modes.values()], ks));
}

async function refresh() {
  try {
    rows = (await getJson('/api/eval/results')).results;
  } catch (e) {
    setMessage($('eval-msg'), e.message, true);
    return;
  }
  renderTable();
  renderPlots();
}

function stopPolling() {
  clearInterval(polling);
  polling = 0;
}

async function poll(id) {
  let run;
  try {
    run = await getJson(`/api/eval/runs/${encodeURIComponent(id)}`);
  } catch (e) {
    stopPolling();
    setMessage($('eval-msg'), e.message, true);
    return;
  }
  const bar = $('eval-bar');
  bar.max = Math.max(1, run.total);
  bar.value = run.done;
  const est = run.ppl ? ` · PPL ${run.ppl.toFixed(4)}` : '';
  $('eval-progress-text').textContent = run.total ? `${run.done} of ${run.total}${est}` : 'starting…';
  if (run.status === 'running') return;
  stopPolling();
  $('eval-run').disabled = false;
  if (run.status === 'done') {
    const r = run.result;
    const summary = r.ppl !== undefined ? `PPL ${r.ppl.toFixed(4)} ± ${r.ppl_stderr.toFixed(5)} over ${r.chunks} chunks`
      : `acc_norm ${(100 * r.acc_norm.value).toFixed(1)} % (${r.acc_norm.correct} of ${r.acc_norm.total})`;
    setMessage($('eval-msg'), `Done: ${summary}`);
    $('eval-progress-text').textContent = 'Done';
    refresh();
  } else {
    setMessage($('eval-msg'), `Failed: ${run.error}`, true);
    $('eval-progress-text').textContent = 'Failed';
  }
}

async function run(e) {
  e.preventDefault();
  let text = $('eval-text').value;
  const file = $('eval-file').files[0];
  if (file) text = await file.text();
  if (!text.trim()) {
    setMessage($('eval-msg'), 'Paste a text or choose a file first.', true);
    return;
  }
  const task = $('eval-task').value;
  const limit = Number($('eval-limit').value) || 0;
  const body = { task, text, name: file ? file.name : 'pasted-text.txt', ctx: Number($('eval-ctx').value) || undefined };
  if (task === 'perplexity') body.chunks = limit;
  else body.limit = limit;
  setMessage($('eval-msg'), '');
  $('eval-run').disabled = true;
  $('eval-progress').hidden = false;
  $('eval-bar').value = 0;
  $('eval-progress-text').textContent = 'starting…';
  try {
    const { id } = await sendJson('POST', '/api/eval/runs', body);
    stopPolling();
    polling = setInterval(() => poll(id), 500);
  } catch (err) {
    $('eval-run').disabled = false;
    $('eval-progress').hidden = true;
    setMessage($('eval-msg'), err.message, true);
  }
}

export function init() {
  $('eval-form').addEventListener('submit', run);
  for (const b of document.querySelectorAll('#eval-table th button')) {
    b.addEventListener('click', () => {
      if (sortKey === b.dataset.sort) sortDir = -sortDir;
      else [sortKey, sortDir] = [b.dataset.sort, b.dataset.sort === 'date' ? -1 : 1];
      renderTable();
    });
  }
}

export function show() {
  refresh();
}
