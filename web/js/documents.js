// Documents view: collections (list, create, delete), uploads (file picker and drag and drop)
// and server-side folder ingestion with job progress, the files of a collection, and search.
import { getJson, sendJson, request, enc, formatBytes } from './api.js';
import { $, el, toast, setMessage, where, fileName } from './ui.js';
import { openSource, closeSource, initSourcePanel } from './source_panel.js';

let collections = [];
let selected = null;

export async function loadCollections() {
  collections = (await getJson('/api/collections')).collections || [];
  return collections;
}

async function refreshCollections() {
  try {
    await loadCollections();
    setMessage($('coll-msg'), '');
  } catch (e) {
    collections = [];
    setMessage($('coll-msg'), e.status === 404 ? 'This server has no documents API.' : `Could not list collections: ${e.message}`, true);
  }
  renderCollections();
}

function renderCollections() {
  const list = $('coll-list');
  list.replaceChildren();
  if (!collections.length) list.append(el('li', { class: 'hint' }, 'No collections yet: create one above.'));
  for (const c of collections) {
    list.append(el('li', { class: c.name === selected ? 'current' : '' },
      el('button', { type: 'button', class: 'open', 'aria-current': c.name === selected ? 'true' : null, onclick: () => select(c.name) },
        el('span', { class: 'name', title: c.name }, c.name),
        el('span', { class: 'count' }, `${c.files ?? 0} files · ${c.chunks ?? 0} chunks`)),
      el('button', { type: 'button', class: 'danger', 'aria-label': `Delete collection ${c.name}`, onclick: () => removeCollection(c.name) }, 'Delete')));
  }
}

async function select(name, focus = true) {
  selected = name;
  renderCollections();
  $('coll-detail').hidden = false;
  $('coll-title').textContent = name;
  $('search-hits').replaceChildren();
  $('jobs').replaceChildren();
  setMessage($('ingest-msg'), '');
  await refreshFiles();
  if (focus) $('coll-title').focus();
}

async function refreshFiles() {
  if (!selected) return;
  const rows = $('file-rows');
  let files = [];
  try {
    files = (await getJson(`/api/collections/${enc(selected)}/files`)).files || [];
  } catch (e) {
    toast(`Could not list files: ${e.message}`);
  }
  rows.replaceChildren();
  for (const f of files) {
    rows.append(el('tr', {},
      el('td', { class: 'name', title: f.path }, f.name || f.path),
      el('td', {}, f.format || ''),
      el('td', {}, formatBytes(f.size)),
      el('td', {}, String(f.chunks ?? '')),
      el('td', {}, el('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${f.name || f.path}`, onclick: () => removeFile(f) }, 'Delete'))));
  }
  $('files-empty').hidden = files.length > 0;
}

async function removeCollection(name) {
  if (!window.confirm(`Delete the collection “${name}” and all its chunks?`)) return;
  try {
    await sendJson('DELETE', `/api/collections/${enc(name)}`);
    toast(`Deleted ${name}`);
    if (selected === name) { selected = null; $('coll-detail').hidden = true; }
  } catch (e) { setMessage($('coll-msg'), e.message, true); }
  await refreshCollections();
}

async function removeFile(f) {
  if (!window.confirm(`Remove “${f.name || f.path}” from ${selected}?`)) return;
  try {
    const r = await sendJson('DELETE', `/api/collections/${enc(selected)}/files?path=${enc(f.path)}`);
    toast(`Removed ${f.name || f.path} (${r.chunks_removed ?? 0} chunks)`);
  } catch (e) { toast(`Delete failed: ${e.message}`); }
  await refreshFiles();
  await refreshCollections();
}

// Shows a job's progress until it ends; resolves to its final state. labels: {running, done, failed}.
async function followJob(jobId, labels) {
  const bar = el('progress', { max: 1, value: 0, 'aria-label': `Progress of ${labels.running}` });
  const text = el('span', { class: 'hint' }, 'Starting…');
  const heading = el('strong', {}, labels.running);
  const item = el('li', { 'data-job': jobId }, el('div', {}, heading), bar, text);
  $('jobs').prepend(item);
  for (;;) {
    let j;
    try {
      j = await getJson(`/api/jobs/${enc(jobId)}`);
    } catch (e) {
      text.textContent = `Lost track of the job: ${e.message}`;
      bar.remove();
      return null;
    }
    if (j.files_total) { bar.max = j.files_total; bar.value = j.files_done || 0; }
    if (j.state === 'running') {
      text.textContent = `${j.files_done ?? 0} of ${j.files_total ?? '?'} files · ${j.chunks ?? 0} chunks${j.current ? ` · ${j.current}` : ''}`;
      await new Promise((r) => setTimeout(r, 400));
      continue;
    }
    if (j.state === 'done') {
      bar.max = 1; bar.value = 1;
      const r = j.report || {};
      const skipped = r.skipped || [];
      heading.textContent = labels.done;
      text.textContent = `Done: ${r.chunks_added ?? j.chunks ?? 0} chunks added in ${Number(r.seconds ?? j.seconds ?? 0).toFixed(1)} s` +
        (skipped.length ? `; ${skipped.length === 1 ? '1 file' : `${skipped.length} files`} skipped:` : '');
      if (skipped.length) {
        item.append(el('ul', { class: 'skipped', 'aria-label': 'Skipped files' },
          skipped.map((f) => el('li', { title: f.path },
            el('span', { class: 'file' }, f.path.split('/').pop()), ' — ', el('span', { class: 'reason' }, f.reason)))));
      }
      item.dataset.state = 'done';
    } else {
      heading.textContent = labels.failed;
      text.textContent = `Failed: ${j.error || 'unknown error'}`;
      text.classList.add('error');
      item.dataset.state = 'failed';
    }
    return j;
  }
}

async function upload(fileList) {
  const files = [...fileList];
  if (!selected || !files.length) return;
  const form = new FormData();
  for (const f of files) form.append('file', f, f.name);
  const label = files.length === 1 ? files[0].name : `${files.length} files`;
  try {
    const res = await request(`/api/collections/${enc(selected)}/files`, { method: 'POST', body: form });
    const { job } = await res.json();
    await followJob(job, { running: `Uploading ${label}`, done: `Uploaded ${label}`, failed: `Upload of ${label} failed` });
  } catch (e) {
    toast(`Upload failed: ${e.message}`);
  }
  await refreshFiles();
  await refreshCollections();
}

async function ingest(path) {
  const msg = $('ingest-msg');
  setMessage(msg, '');
  try {
    const r = await sendJson('POST', `/api/collections/${enc(selected)}/ingest`, { path });
    await followJob(r.job, { running: `Ingesting ${path}`, done: `Ingested ${path}`, failed: `Ingesting ${path} failed` });
  } catch (e) {
    if (e.status === 403) {
      // The server's message already says how the operator allows a folder.
      setMessage(msg, `Not allowed: ${e.message}`, true);
    } else {
      setMessage(msg, `Ingest failed: ${e.message}`, true);
    }
  }
  await refreshFiles();
  await refreshCollections();
}

async function search(query) {
  const list = $('search-hits');
  list.replaceChildren(el('li', { class: 'hint' }, 'Searching…'));
  try {
    const r = await sendJson('POST', `/api/collections/${enc(selected)}/search`, { query, k: 8 });
    list.replaceChildren();
    if (!r.hits?.length) list.append(el('li', { class: 'hint' }, 'No matches.'));
    (r.hits || []).forEach((h, i) => {
      const snippet = h.text && h.text.length > 320 ? `${h.text.slice(0, 320)}…` : h.text;
      // Each hit opens the passage in the source panel, as Ask's sources do.
      list.append(el('li', {},
        el('button', { type: 'button', class: 'hit', 'data-hit': i,
                       onclick: (e) => openSource({ src: h, from: e.currentTarget, facts: [['Query', query]] }) },
          el('span', {}, el('strong', {}, fileName(h)), ' ', el('span', { class: 'where' }, where(h)),
            el('span', { class: 'where' }, ` · score ${Number(h.score).toFixed(3)}`)),
          h.heading ? el('span', { class: 'where' }, h.heading) : null,
          el('span', { class: 'snippet' }, snippet || ''))));
    });
  } catch (e) {
    list.replaceChildren(el('li', { class: 'error' }, `Search failed: ${e.message}`));
  }
}

export function init() {
  initSourcePanel();
  $('coll-create').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('coll-name').value.trim();
    if (!name) return;
    try {
      await sendJson('PUT', `/api/collections/${enc(name)}`);
      $('coll-name').value = '';
      setMessage($('coll-msg'), `Created ${name}.`);
      await refreshCollections();
      await select(name);
    } catch (err) {
      setMessage($('coll-msg'), err.message, true);
    }
  });
  const input = $('file-input');
  input.addEventListener('change', () => { upload(input.files); input.value = ''; });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer?.files?.length) upload(e.dataTransfer.files);
  });
  $('ingest-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const path = $('ingest-path').value.trim();
    if (path && selected) ingest(path);
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = $('search-q').value.trim();
    if (q && selected) search(q);
  });
}

export function hide() { closeSource(); }

export function show() {
  refreshCollections().then(() => {
    if (selected && !collections.some((c) => c.name === selected)) { selected = null; $('coll-detail').hidden = true; }
    if (!selected && collections.length === 1) select(collections[0].name, false);
  });
}
