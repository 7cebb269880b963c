// Small DOM helpers shared by the views.

// el('button', {class: 'x', onclick: fn}, 'text', child...) -> element. Text is never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export const $ = (id) => document.getElementById(id);

let toastTimer = 0;
export function toast(message) {
  const t = $('toast');
  t.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.textContent = ''; }, 4000);
}

export function setMessage(node, text, isError = false) {
  node.textContent = text || '';
  node.classList.toggle('error', !!isError);
}

// Enter submits the form, Shift+Enter inserts a new line.
export function enterToSubmit(textarea, form) {
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
}

// "p. 3 · lines 10–14" for a source.
export function where(src) {
  const parts = [];
  if (src.page) parts.push(`p. ${src.page}`);
  if (Array.isArray(src.lines) && src.lines.length === 2) parts.push(`lines ${src.lines[0]}–${src.lines[1]}`);
  return parts.join(' · ');
}

export function fileName(src) {
  return src.name || (src.file ? String(src.file).split('/').pop() : 'source');
}
