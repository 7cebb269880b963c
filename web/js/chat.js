// Chat view: streamed answers from /v1/chat/completions, Markdown rendering, stop, regenerate,
// conversations kept on the server (/api/conversations) with their sampling settings.
import { getJson, sendJson, streamChat, enc } from './api.js';
import { renderMarkdown, enableCopyButtons } from './markdown.js';
import { $, el, toast, enterToSubmit } from './ui.js';

const DEFAULTS = { temperature: 0.7, top_p: 0.95, max_tokens: 512, system: '' };
let modelId = null;
let conversations = [];
let current = null;        // {id, title, messages: [{role, content}], settings}
let controller = null;     // AbortController of the answer being streamed
let renaming = null;       // id being renamed in the list
let scrollPending = false; // the conversation was shown while the view was hidden: scroll when shown

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function fresh() {
  return { id: newId(), title: 'New conversation', messages: [], settings: { ...DEFAULTS }, unsaved: true };
}

async function loadModel() {
  try {
    const s = await getJson('/api/status');
    modelId = s.model?.id || null;
  } catch { modelId = null; }
  if (!modelId) {
    try {
      const list = await getJson('/v1/models');
      modelId = list.data?.[0]?.id || null;
    } catch { /* no inference API */ }
  }
  $('set-model').textContent = modelId || 'none loaded (start etna serve -m MODEL.gguf)';
}

async function refreshList() {
  try {
    conversations = (await getJson('/api/conversations')).conversations || [];
  } catch (e) {
    toast(`Could not load conversations: ${e.message}`);
    conversations = [];
  }
  renderList();
}

function renderList() {
  const list = $('conv-list');
  list.replaceChildren();
  const items = [...conversations];
  if (current?.unsaved) items.unshift({ id: current.id, title: current.title });
  for (const c of items) {
    const isCurrent = current && c.id === current.id;
    const li = el('li', { class: isCurrent ? 'current' : '' });
    if (renaming === c.id) {
      const input = el('input', { value: c.title, 'aria-label': 'New title', maxlength: 200 });
      const finish = async (save) => {
        renaming = null;
        if (save && input.value.trim()) await rename(c.id, input.value.trim());
        renderList();
        list.querySelector(`[data-open="${CSS.escape(c.id)}"]`)?.focus();
      };
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') { e.preventDefault(); finish(true); }
        if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finish(false); }
      });
      li.append(input, el('button', { type: 'button', onclick: () => finish(true) }, 'Save'));
      list.append(li);
      setTimeout(() => { input.focus(); input.select(); });
      continue;
    }
    li.append(
      el('button', { type: 'button', class: 'conv-open', 'data-open': c.id, 'aria-current': isCurrent ? 'true' : null,
                     onclick: () => open(c.id) }, el('span', {}, c.title || 'Untitled')),
      el('button', { type: 'button', class: 'icon', 'aria-label': `Rename “${c.title}”`, title: 'Rename',
                     onclick: () => { renaming = c.id; renderList(); } }, '✎'),
      el('button', { type: 'button', class: 'icon danger', 'aria-label': `Delete “${c.title}”`, title: 'Delete',
                     onclick: () => remove(c.id) }, '✕'),
    );
    list.append(li);
  }
  if (!items.length) list.append(el('li', { class: 'hint' }, 'No conversations yet.'));
}

async function save() {
  if (!current || !current.messages.length) return;
  const body = { id: current.id, title: current.title, messages: current.messages, settings: current.settings };
  try {
    await sendJson('PUT', `/api/conversations/${enc(current.id)}`, body);
    current.unsaved = false;
  } catch (e) {
    toast(`Could not save the conversation: ${e.message}`);
  }
  await refreshList();
}

async function rename(id, title) {
  if (current && current.id === id) {
    current.title = title;
    $('chat-title').textContent = title;
    if (current.unsaved) { renderList(); return; }
    return save();
  }
  try {
    const c = await getJson(`/api/conversations/${enc(id)}`);
    c.title = title;
    await sendJson('PUT', `/api/conversations/${enc(id)}`, c);
  } catch (e) { toast(`Rename failed: ${e.message}`); }
  await refreshList();
}

async function remove(id) {
  const c = conversations.find((x) => x.id === id) || current;
  if (!window.confirm(`Delete “${c?.title || 'this conversation'}”?`)) return;
  if (!(current?.unsaved && current.id === id)) {
    try { await sendJson('DELETE', `/api/conversations/${enc(id)}`); } catch (e) { toast(`Delete failed: ${e.message}`); }
  }
  if (current && current.id === id) { stop(); current = fresh(); showCurrent(); }
  await refreshList();
}

async function open(id) {
  if (controller) stop();
  try {
    const c = await getJson(`/api/conversations/${enc(id)}`);
    current = { id: c.id, title: c.title, messages: c.messages || [], settings: { ...DEFAULTS, ...(c.settings || {}) } };
  } catch (e) {
    toast(`Could not open the conversation: ${e.message}`);
    return;
  }
  localStorage.setItem('etna.conversation', id);
  showError('');
  showCurrent();
  renderList();
  closePanelOnNarrow();
  $('chat-input').focus();
}

function closePanelOnNarrow() {
  $('conv-panel').classList.remove('open');
  $('conv-toggle').setAttribute('aria-expanded', 'false');
}

function bubble(role, content) {
  const body = el('div', { class: 'body' });
  if (role === 'assistant') body.innerHTML = renderMarkdown(content);
  else body.textContent = content;
  return el('div', { class: `msg-bubble ${role}`, 'data-done': content ? 'true' : null }, el('div', { class: 'who' }, role === 'user' ? 'You' : role === 'assistant' ? 'Etna' : 'System'), body);
}

function showCurrent() {
  $('chat-title').textContent = current.title;
  const box = $('messages');
  box.replaceChildren();
  for (const m of current.messages) box.append(bubble(m.role, m.content));
  if (!current.messages.length) box.append(el('p', { class: 'empty' }, 'Ask anything. Answers are generated on this machine.'));
  const s = current.settings;
  $('set-temperature').value = s.temperature;
  $('set-top-p').value = s.top_p;
  $('set-max-tokens').value = s.max_tokens;
  $('set-system').value = s.system || '';
  updateButtons();
  scrollToEnd();
}

// A conversation opens at its end, where it continues (also when it was loaded while another
// view was showing: the scroll waits until the messages are laid out).
function scrollToEnd() {
  const box = $('messages');
  if (!box.clientHeight) { scrollPending = true; return; }
  scrollPending = false;
  box.scrollTop = box.scrollHeight;
}

// A failed request is shown above the composer; it never becomes a message of the conversation.
function showError(text) {
  const p = $('chat-error');
  p.textContent = text;
  p.hidden = !text;
}

function updateButtons() {
  const busy = !!controller;
  $('chat-send').hidden = busy;
  $('chat-stop').hidden = !busy;
  $('chat-regen').disabled = busy || !current.messages.some((m) => m.role === 'user');
}

function readSettings() {
  const num = (id, def, lo, hi) => {
    const v = Number($(id).value);
    return Number.isFinite(v) && v >= lo && v <= hi ? v : def;
  };
  current.settings = {
    temperature: num('set-temperature', DEFAULTS.temperature, 0, 2),
    top_p: num('set-top-p', DEFAULTS.top_p, 0, 1),
    max_tokens: Math.round(num('set-max-tokens', DEFAULTS.max_tokens, 1, 32768)),
    system: $('set-system').value,
  };
}

async function generate() {
  readSettings();
  const s = current.settings;
  const messages = [];
  if (s.system.trim()) messages.push({ role: 'system', content: s.system });
  for (const m of current.messages) messages.push({ role: m.role, content: m.content });
  const box = $('messages');
  box.querySelector('.empty')?.remove();
  const b = bubble('assistant', '');
  b.classList.add('streaming');
  box.append(b);
  box.setAttribute('aria-busy', 'true');
  const body = b.querySelector('.body');
  controller = new AbortController();
  updateButtons();
  let text = '';
  let pending = false;
  const paint = () => {
    pending = false;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    body.innerHTML = renderMarkdown(text);
    if (nearBottom) box.scrollTop = box.scrollHeight;
  };
  let note = '';
  let failure = '';
  try {
    const r = await streamChat({ model: modelId || undefined, messages, temperature: s.temperature, top_p: s.top_p,
                                 max_tokens: s.max_tokens }, (_piece, all) => {
      text = all;
      if (!pending) { pending = true; requestAnimationFrame(paint); }
    }, controller.signal);
    text = r.text;
    if (r.finish === 'length') note = 'Stopped at the token limit (Settings → Max tokens).';
  } catch (e) {
    if (e.name === 'AbortError') note = 'Stopped.';
    else failure = e.status === 404 ? 'No chat model is loaded: start the server with etna serve -m MODEL.gguf.' : `The reply failed: ${e.message}`;
  }
  controller = null;
  if (failure) {
    // Neither the error nor a partial reply is kept; the caller restores the conversation.
    b.remove();
    box.setAttribute('aria-busy', 'false');
    showError(failure);
    updateButtons();
    return false;
  }
  paint();
  b.classList.remove('streaming');
  b.dataset.done = 'true';
  box.setAttribute('aria-busy', 'false');
  if (note) b.append(el('p', { class: 'note' }, note));
  if (text) current.messages.push({ role: 'assistant', content: text });
  updateButtons();
  await save();
  return true;
}

function stop() {
  if (controller) controller.abort();
}

async function send(text) {
  if (controller) return;
  if (!current) current = fresh();
  showError('');
  const title = current.title;
  if (current.title === 'New conversation' && !current.messages.length) current.title = text.replace(/\s+/g, ' ').slice(0, 60);
  current.messages.push({ role: 'user', content: text });
  $('chat-title').textContent = current.title;
  $('messages').querySelector('.empty')?.remove();
  $('messages').append(bubble('user', text));
  $('messages').scrollTop = $('messages').scrollHeight;
  localStorage.setItem('etna.conversation', current.id);
  if (await generate()) return;
  // The turn failed: take the question back out of the conversation and into the box.
  current.messages.pop();
  current.title = title;
  showCurrent();
  renderList();
  if (!$('chat-input').value) $('chat-input').value = text;
}

async function regenerate() {
  if (controller || !current) return;
  const before = current.messages.slice();
  while (current.messages.length && current.messages[current.messages.length - 1].role === 'assistant') current.messages.pop();
  if (!current.messages.length) return;
  showError('');
  showCurrent();
  if (!(await generate())) {
    current.messages = before;  // the earlier reply stays when the new one fails
    showCurrent();
  }
}

function toggleSettings(open) {
  const panel = $('settings');
  panel.hidden = !open;
  $('settings-toggle').setAttribute('aria-expanded', String(open));
  if (open) $('set-temperature').focus();
}

export function init() {
  enableCopyButtons($('messages'));
  enterToSubmit($('chat-input'), $('chat-form'));
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text || controller) return;
    $('chat-input').value = '';
    send(text);
  });
  $('chat-stop').addEventListener('click', () => { stop(); $('chat-input').focus(); });
  $('chat-regen').addEventListener('click', regenerate);
  $('conv-new').addEventListener('click', () => {
    stop();
    current = fresh();
    showError('');
    showCurrent();
    renderList();
    closePanelOnNarrow();
    $('chat-input').focus();
  });
  $('conv-toggle').addEventListener('click', () => {
    const open = !$('conv-panel').classList.contains('open');
    $('conv-panel').classList.toggle('open', open);
    $('conv-toggle').setAttribute('aria-expanded', String(open));
    if (open) $('conv-new').focus();
  });
  $('settings-toggle').addEventListener('click', () => toggleSettings($('settings').hidden));
  $('settings-close').addEventListener('click', () => { toggleSettings(false); $('settings-toggle').focus(); });
  $('settings').addEventListener('change', () => {
    readSettings();
    if (current.messages.length) save();
  });
  $('settings').addEventListener('submit', (e) => e.preventDefault());
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || $('view-chat').hidden) return;
    if (!$('settings').hidden) { toggleSettings(false); $('settings-toggle').focus(); }
    else if ($('conv-panel').classList.contains('open')) { closePanelOnNarrow(); $('conv-toggle').focus(); }
    else if (controller) stop();
  });
  current = fresh();
  showCurrent();
  (async () => {
    await loadModel();
    await refreshList();
    const last = localStorage.getItem('etna.conversation');
    const pick = conversations.find((c) => c.id === last) || conversations[0] || null;
    if (pick && current.unsaved && !current.messages.length) await open(pick.id);
  })();
}

export function show() {
  if (scrollPending) scrollToEnd();
  if (!controller) $('chat-input').focus({ preventScroll: true });
}

