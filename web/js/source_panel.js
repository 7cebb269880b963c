// The source panel (#source-panel): one retrieved passage with its place in the file and the
// quoted span highlighted. Opened by Ask's citations and sources and by Documents' search hits.
import { $, el, fileName } from './ui.js';

let opener = null;  // element focused before the panel opened
let wired = false;

// Highlights `span` inside `text` (both plain text; built with text nodes, never HTML).
function highlighted(text, span) {
  const box = $('sp-text');
  box.replaceChildren();
  const at = span ? text.indexOf(span) : -1;
  if (span && at >= 0) {
    box.append(text.slice(0, at), el('mark', {}, span), text.slice(at + span.length));
  } else if (span) {
    box.append(el('mark', {}, span));
  } else {
    box.append(el('mark', {}, text));
  }
  box.querySelector('mark')?.scrollIntoView({ block: 'nearest' });
}

// Opens the panel. src: a passage {file, name, page, lines, heading, score, text} or null;
// label: the title's prefix ("[2]", or "" for a search hit); span: the text to highlight (the
// whole passage when empty); facts: extra [term, value] rows; problem: shown instead of a passage.
export function openSource({ src, label = '', span = '', facts = [], problem = '', from = null }) {
  wire();
  opener = from || document.activeElement;
  const meta = $('sp-meta');
  meta.replaceChildren();
  const row = (k, v) => { if (v !== undefined && v !== null && v !== '') meta.append(el('dt', {}, k), el('dd', {}, String(v))); };
  const prefix = label ? `${label} ` : '';
  if (!src) {
    $('sp-title').textContent = `${prefix}not a retrieved source`;
    row('Problem', problem);
    $('sp-text').replaceChildren();
  } else {
    $('sp-title').textContent = `${prefix}${fileName(src)}`;
    row('File', src.file);
    if (src.page > 0) row('Page', src.page);
    if (Array.isArray(src.lines)) row('Lines', `${src.lines[0]}–${src.lines[1]}`);
    row('Section', src.heading);
    if (src.score !== undefined) row('Score', Number(src.score).toFixed(3));
    for (const [k, v] of facts) row(k, v);
    highlighted(src.text || '', span && span !== src.text ? span : src.text || '');
  }
  $('source-panel').hidden = false;
  $('sp-title').focus();
}

export function closeSource() {
  if ($('source-panel').hidden) return;
  $('source-panel').hidden = true;
  if (opener && document.contains(opener)) opener.focus();
}

function wire() {
  if (wired) return;
  wired = true;
  $('sp-close').addEventListener('click', closeSource);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('source-panel').hidden) { e.preventDefault(); closeSource(); }
  });
}

export function initSourcePanel() { wire(); }
