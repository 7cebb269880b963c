// Talking to the Etna server: JSON requests, server-sent events, the optional API key.
// Every request goes to this page's own origin (the server's Content-Security-Policy enforces it).

const KEY = 'etna.apiKey';

function headers(extra = {}) {
  const h = { ...extra };
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
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

// fetch() with the API key; asks for a key once when the server answers 401.
export async function request(path, options = {}) {
  const doFetch = () => fetch(path, { ...options, headers: headers(options.headers) });
  let res = await doFetch();
  if (res.status === 401) {
    const key = window.prompt('This server needs an API key (etna serve --api-key):');
    if (key) {
      sessionStorage.setItem(KEY, key.trim());
      res = await doFetch();
    }
  }
  if (!res.ok) throw await errorOf(res);
  return res;
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
