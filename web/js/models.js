// Models view: the server's model library with licence badges (what each licence allows), pulls
// from a model hub as jobs with live progress (/api/models/pull, /api/pulls/{job}), and deleting.
import { getJson, sendJson, enc, formatBytes } from './api.js';
import { $, el, setMessage, toast } from './ui.js';

function badgeClass(commercial) {
  return { yes: 'ok', no: 'no', conditional: 'cond' }[commercial] || 'unknown';
}

function licenceBadge(l) {
  if (!l || !l.known) return el('span', { class: 'badge unknown', title: 'unknown: read the model card' }, 'licence unknown');
  const label = { yes: 'commercial use ok', no: 'non-commercial', conditional: 'commercial: conditional' }[l.commercial];
  return el('span', { class: `badge ${badgeClass(l.commercial)}`, title: l.clause || l.name }, `${l.id} · ${label}`);
}

function terms(l) {
  const row = (k, v) => [el('dt', {}, k), el('dd', {}, v)];
  return el('dl', { class: 'model-terms' },
    row('Weights', l.weights), row('Training data', l.training_data), row('Outputs', l.outputs),
    row('Commercial', l.commercial + (l.clause ? ` (${l.clause})` : '')),
    l.attribution ? row('Duties', l.attribution) : null);
}

export async function refresh() {
  let r;
  try {
    r = await getJson('/api/models');
  } catch (e) {
    setMessage($('pull-msg'), e.message, true);
    return;
  }
  $('models-served').textContent = r.served ? `This server runs ${r.served}` : 'This server runs no chat model';
  const list = $('model-list');
  if (!r.models.length) {
    list.replaceChildren(el('li', { class: 'hint' }, 'No models yet: pull one.'));
    return;
  }
  list.replaceChildren(...r.models.map((m) => {
    const l = m.licence || {};
    const del = el('button', {
      type: 'button', 'aria-label': `Delete ${m.name}`, disabled: m.served,
      title: m.served ? 'the server is running this model' : undefined,
      onclick: async () => {
        if (!window.confirm(`Delete ${m.name}${m.owns_files ? ' and its files' : ''}?`)) return;
        try {
          await sendJson('DELETE', `/api/models/${enc(m.name)}`);
          toast(`Deleted ${m.name}`);
        } catch (e) {
          toast(e.message);
        }
        refresh();
      },
    }, 'Delete');
    return el('li', { 'data-model': m.name },
      el('div', { class: 'row' }, el('strong', {}, m.name), m.served ? el('span', { class: 'badge ok' }, 'serving') : null),
      el('div', {}, licenceBadge(l),
        el('span', { class: 'hint' }, `${formatBytes(m.size)} · ${m.quantisation || '?'} · ${m.architecture || '?'} · ${m.source?.ref || ''}`)),
      l.known ? terms(l) : el('p', { class: 'hint' }, 'Licence: unknown: read the model card'),
      del);
  }));
}

async function followPull(jobId, label) {
  const bar = el('progress', { max: 1, value: 0, 'aria-label': `Progress of ${label}` });
  const text = el('span', { class: 'hint' }, 'Starting…');
  const item = el('li', { 'data-pull': jobId }, el('div', {}, el('strong', {}, label)), bar, text);
  $('pulls').prepend(item);
  for (;;) {
    let j;
    try {
      j = await getJson(`/api/pulls/${enc(jobId)}`);
    } catch (e) {
      text.textContent = `Lost track of the pull: ${e.message}`;
      return;
    }
    if (j.total) { bar.max = j.total; bar.value = j.done || 0; }
    if (j.state === 'running') {
      const pct = j.total ? Math.floor((100 * j.done) / j.total) : 0;
      item.dataset.state = 'running';
      text.textContent = `${pct}% · ${formatBytes(j.done)} of ${formatBytes(j.total)} · ${formatBytes(j.bytes_per_second)}/s${j.file ? ` · ${j.file}` : ''}`;
      await new Promise((r) => setTimeout(r, 300));
      continue;
    }
    item.dataset.state = j.state;
    if (j.state === 'done') {
      bar.max = 1; bar.value = 1;
      text.textContent = `Done: ${j.model} is in the library`;
    } else {
      text.textContent = `${j.state === 'cancelled' ? 'Cancelled' : 'Failed'}: ${j.error || 'unknown error'}`;
      text.classList.add('error');
    }
    refresh();
    return;
  }
}

export function init() {
  $('pull-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const ref = $('pull-ref').value.trim();
    if (!ref) return;
    setMessage($('pull-msg'), '');
    try {
      const r = await sendJson('POST', '/api/models/pull', { model: ref });
      $('pull-ref').value = '';
      followPull(r.job, ref);
    } catch (err) {
      setMessage($('pull-msg'), err.message, true);
    }
  });
}

export function show() {
  refresh();
}

