// Ask view: a question over one collection, the streamed answer (events sources/delta/done),
// citation markers [n] that open the quoted source span, and the retrieved sources as a list.
import { request, readEvents, enc } from './api.js';
import { loadCollections } from './documents.js';
import { renderMarkdown, enableCopyButtons } from './markdown.js';
import { openSource, closeSource, initSourcePanel } from './source_panel.js';
import { $, el, toast, setMessage, enterToSubmit, where, fileName } from './ui.js';

let retrieved = [];        // SOURCE objects with n
let citations = new Map(); // n -> citation {n, file, name, page, lines, text}
let unmatched = new Set();
let controller = null;

async function refreshCollections() {
  const select = $('ask-coll');
  const previous = select.value;
  let list = [];
  try { list = await loadCollections(); } catch (e) {
    setMessage($('ask-msg'), e.status === 404 ? 'This server has no documents API.' : e.message, true);
  }
  select.replaceChildren(...list.map((c) => el('option', { value: c.name }, `${c.name} (${c.files ?? 0} files)`)));
  if (!list.length) select.append(el('option', { value: '' }, 'No collections: add documents first'));
  if (list.some((c) => c.name === previous)) select.value = previous;
}

function renderAnswer(text) {
  const box = $('ask-answer');
  // While streaming, a marker whose number was not retrieved is already flagged.
  const flagged = new Set(unmatched);
  for (const m of text.matchAll(/\[(\d{1,3})\]/g)) if (!retrieved.some((s) => s.n === Number(m[1]))) flagged.add(Number(m[1]));
  box.innerHTML = renderMarkdown(text, { citations: true, unmatched: flagged });
}

function renderSources() {
  const list = $('ask-sources');
  list.replaceChildren();
  if (!retrieved.length) { list.append(el('li', { class: 'hint' }, 'No sources retrieved.')); return; }
  for (const s of retrieved) {
    const snippet = s.text && s.text.length > 160 ? `${s.text.slice(0, 160)}…` : (s.text || '');
    list.append(el('li', { class: citations.has(s.n) ? 'cited' : '' },
      el('button', { type: 'button', 'data-source': s.n, onclick: (e) => openSourceN(s.n, e.currentTarget) },
        el('span', {}, el('strong', {}, `[${s.n}] ${fileName(s)}`), ' ', el('span', { class: 'where' }, where(s))),
        el('span', { class: 'snippet' }, snippet))));
  }
}

function openSourceN(n, from) {
  const src = retrieved.find((s) => s.n === n);
  const cite = citations.get(n);
  openSource({
    src, label: `[${n}]`, from, span: cite?.text || '',
    facts: [['Cited', cite ? 'yes, in the answer' : 'retrieved, not cited']],
    problem: `The answer cites [${n}], but only ${retrieved.length} sources were retrieved: this citation is unsupported.`,
  });
}

async function ask(collection, question) {
  retrieved = [];
  citations = new Map();
  unmatched = new Set();
  renderSources();
  $('ask-unmatched').hidden = true;
  $('ask-nocite').hidden = true;
  const box = $('ask-answer');
  box.replaceChildren(el('p', { class: 'hint' }, 'Retrieving…'));
  box.setAttribute('aria-busy', 'true');
  setMessage($('ask-msg'), '');
  controller = new AbortController();
  $('ask-send').hidden = true;
  $('ask-stop').hidden = false;
  let text = '';
  let pending = false;
  const paint = () => { pending = false; renderAnswer(text); };
  try {
    const res = await request(`/api/collections/${enc(collection)}/ask`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify({ question, k: 5, max_tokens: 256, temperature: 0, stream: true }),
      signal: controller.signal,
    });
    await readEvents(res, (event, data) => {
      let d;
      try { d = JSON.parse(data); } catch { return; }
      if (event === 'sources') {
        retrieved = d.retrieved || [];
        renderSources();
        box.replaceChildren(el('p', { class: 'hint' }, 'Generating…'));
      } else if (event === 'delta') {
        text += d.text || '';
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      } else if (event === 'done') {
        text = d.answer ?? text;
        for (const c of d.citations || []) citations.set(c.n, c);
        unmatched = new Set(d.unmatched || []);
        box.dataset.done = 'true';
      } else if (event === 'error') {
        setMessage($('ask-msg'), d.message || 'the answer failed', true);
      }
    });
  } catch (e) {
    if (e.name === 'AbortError') setMessage($('ask-msg'), 'Stopped.');
    else setMessage($('ask-msg'), e.status === 503 ? `No chat model loaded: ${e.message}` : e.message, true);
  }
  controller = null;
  $('ask-send').hidden = false;
  $('ask-stop').hidden = true;
  box.setAttribute('aria-busy', 'false');
  if (text) renderAnswer(text);
  else if (!box.dataset.done) box.replaceChildren();
  else box.replaceChildren(el('p', { class: 'hint' }, '(empty answer)'));
  renderSources();
  // As `etna ask` does: an answer without a single [n] is not backed by the documents.
  if (box.dataset.done && text.trim() && !citations.size && retrieved.length) {
    $('ask-nocite').hidden = false;
    $('ask-nocite').textContent = `The answer cites no source: it may not come from your documents. ` +
      `The ${retrieved.length === 1 ? 'passage' : `${retrieved.length} passages`} retrieved for it ${retrieved.length === 1 ? 'is' : 'are'} listed under Sources.`;
  }
  if (unmatched.size) {
    $('ask-unmatched').hidden = false;
    $('ask-unmatched').textContent = `Unsupported citations: ${[...unmatched].map((n) => `[${n}]`).join(', ')} match no retrieved source.`;
  }
}

export function init() {
  enterToSubmit($('ask-q'), $('ask-form'));
  enableCopyButtons($('ask-answer'));
  $('ask-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const collection = $('ask-coll').value;
    const q = $('ask-q').value.trim();
    if (!collection) { toast('Create a collection and add documents first.'); return; }
    if (q && !controller) { delete $('ask-answer').dataset.done; ask(collection, q); }
  });
  $('ask-stop').addEventListener('click', () => controller?.abort());
  $('ask-answer').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-cite]');
    if (b) openSourceN(Number(b.dataset.cite), b);
  });
  initSourcePanel();
}

export function show() {
  refreshCollections();
  if (!retrieved.length && !controller) $('ask-sources').replaceChildren(el('li', { class: 'hint' }, 'The passages retrieved for your question appear here.'));
}
export function hide() { closeSource(); }
