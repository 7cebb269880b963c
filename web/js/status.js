// Status view: model, context, memory, speed, queue, version and uptime from /api/status,
// refreshed every few seconds while the view is open.
import { getJson, formatBytes } from './api.js';
import { $, el } from './ui.js';

let timer = 0;

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

function card(title, value, ...subs) {
  return el('div', { class: 'card' }, el('h2', {}, title), el('div', { class: 'value' }, value),
    ...subs.filter(Boolean).map((s) => el('div', { class: 'sub' }, s)));
}

async function refresh() {
  const box = $('status-cards');
  let s;
  try {
    s = await getJson('/api/status');
  } catch (e) {
    box.replaceChildren(card('Server', 'Unreachable', e.message));
    return;
  }
  const m = s.model;
  const tps = s.tokens_per_second || {};
  box.replaceChildren(
    card('Model', m ? m.id : 'None', m ? m.path : 'start etna serve -m MODEL.gguf', s.loading ? 'loading…' : null),
    card('Context', m ? `${m.n_ctx} tokens` : '—', m ? `${m.parallel} parallel sequences` : null),
    card('Memory', formatBytes(s.memory?.rss), `weights ${formatBytes(s.memory?.weights)}`, `KV cache ${formatBytes(s.memory?.kv)}`),
    card('Speed', tps.decode ? `${tps.decode.toFixed(1)} tokens/s` : '—',
      tps.mean_time_to_first_token_s ? `first token after ${(tps.mean_time_to_first_token_s * 1000).toFixed(0)} ms (mean)` : 'no generation yet'),
    card('Queue', `${s.queue?.active ?? 0} active`, `${s.queue?.waiting ?? 0} waiting of ${s.queue?.capacity ?? 0}`),
    card('Requests', String(s.requests ?? 0), `${s.tokens?.prompt ?? 0} prompt · ${s.tokens?.generated ?? 0} generated tokens`),
    card('Embeddings', s.embedding_model || 'None', s.embedding_model ? null : 'search uses BM25 only'),
    card('Version', s.version, `kernels ${s.kernels}`),
    card('Uptime', duration(s.uptime_s || 0)),
  );
  $('status-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

export function show() {
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 3000);
}

export function hide() {
  clearInterval(timer);
  timer = 0;
}
