// Talking to the Etna server: JSON requests, server-sent events, the optional API key.
// Every request goes to this page's own origin (the server's Content-Security-Policy enforces it).

// The API key (servers started with --api-key) lives in sessionStorage: this tab only, gone when
// it closes. "Remember on this browser" in the sign-in form keeps it in localStorage instead.
const KEY = 'etna.apiKey';

function storedKey() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || '';
}

function forgetKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

function authHeaders(key) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function headers(extra = {}, key = storedKey()) {
  return { ...extra, ...authHeaders(key) };
}

export function hasStoredKey() { return !!storedKey(); }

// Forgets the key; the reloaded page shows the sign-in form.
export function signOut() {
  forgetKey();
  location.reload();
}

// The sign-in form (#signin): resolves once the user gave a key the server accepts. Every
// request refused with 401 meanwhile waits for the same sign-in.
let signingIn = null;
function askForKey(message = '') {
  if (!signingIn) signingIn = showSignIn(message).finally(() => { signingIn = null; });
  return signingIn;
}

function showSignIn(message) {
  const box = document.getElementById('signin');
  const form = document.getElementById('signin-form');
  const input = document.getElementById('signin-key');
  const msg = document.getElementById('signin-msg');
  const app = [document.querySelector('header.topbar'), document.getElementById('main')];
  msg.textContent = message;
  msg.classList.remove('error');
  box.hidden = false;
  for (const e of app) if (e) e.inert = true;
  input.value = '';
  input.focus();
  return new Promise((resolve) => {
    const submit = async (e) => {
      e.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      msg.classList.remove('error');
      msg.textContent = 'Checking…';
      let res;
      try {
        res = await fetch('/api/status', { headers: authHeaders(key) });
      } catch (err) {
        // fetch() refuses header values outside Latin-1, so such a key cannot be sent at all.
        msg.textContent = err instanceof TypeError && /header|ISO-8859-1/i.test(err.message)
          ? 'This key has characters an HTTP header cannot carry.' : `Could not reach the server: ${err.message}`;
        msg.classList.add('error');
        return;
      }
      if (res.status === 401) {
        msg.textContent = 'The server refused this key. Check it (etna serve --api-key KEY) and try again.';
        msg.classList.add('error');
        input.select();
        return;
      }
      forgetKey();
      (document.getElementById('signin-remember').checked ? localStorage : sessionStorage).setItem(KEY, key);
      form.removeEventListener('submit', submit);
      box.hidden = true;
      for (const el of app) if (el) el.inert = false;
      window.dispatchEvent(new Event('etna-signed-in'));
      resolve(key);
    };
    form.addEventListener('submit', submit);
  });
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The message of an error body in any of the server's formats (OpenAI/Etna or Qdrant).
async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    message = body?.error?.message || body?.status?.error || message;
  } catch { /* not JSON */ }
  return new ApiError(res.status, message);
}

// fetch() with the API key; on a 401 it shows the sign-in form and retries with the new key.
export async function request(path, options = {}) {
  for (;;) {
    const key = storedKey();
    const res = await fetch(path, { ...options, headers: headers(options.headers, key) });
    if (res.status !== 401) {
      if (!res.ok) throw await errorOf(res);
      return res;
    }
    if (storedKey() !== key) continue;  // signed in meanwhile (another request asked)
    if (key) forgetKey();               // the stored key is no longer accepted
    await askForKey(key ? 'The server no longer accepts the stored key: sign in again.' : '');
  }
}

export async function getJson(path) {
  return (await request(path)).json();
}

export async function sendJson(method, path, body, options = {}) {
  const res = await request(path, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    ...options,
  });
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

export const enc = encodeURIComponent;

// Reads a text/event-stream response, calling onEvent(eventName, data) for each event
// ("message" when the event has no name). Resolves when the stream ends.
export async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = 'message';
  let data = [];
  const dispatch = () => {
    if (data.length) onEvent(event, data.join('\n'));
    event = 'message';
    data = [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      let line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') dispatch();
      else if (line.startsWith(':')) continue;
      else if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
  }
  buffer += decoder.decode();
  if (buffer.startsWith('data:')) data.push(buffer.slice(5).replace(/^ /, ''));
  dispatch();
}

// Streams a chat completion (OpenAI format): onDelta(text) per piece; resolves to
// {text, finish} at [DONE]. Pass an AbortSignal to stop.
export async function streamChat(body, onDelta, signal) {
  const res = await request('/v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  let text = '';
  let finish = null;
  let failure = null;
  await readEvents(res, (_event, data) => {
    if (data === '[DONE]') return;
    let chunk;
    try { chunk = JSON.parse(data); } catch { return; }
    if (chunk.error) { failure = chunk.error.message || 'generation failed'; return; }
    for (const choice of chunk.choices || []) {
      const piece = choice.delta?.content;
      if (piece) { text += piece; onDelta(piece, text); }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  });
  if (failure) throw new ApiError(500, failure);
  return { text, finish };
}

export function formatBytes(n) {
  if (!Number.isFinite(n) || n <= 0) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
