// A small, safe Markdown renderer: the text is HTML-escaped first, then only this module's own
// tags are added. Headings, paragraphs, lists, block quotes, rules, bold/italic, inline code,
// fenced code (with a copy button), GFM tables and http(s) links. Optionally turns [n] into
// citation buttons.

export function escapeHtml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

// Inline formatting of one escaped line or paragraph.
function inline(escaped, opts) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let s = escaped.replace(/`([^`]+)`/g, (_, code) => keep(`<code>${code}</code>`));
  s = s.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (m, text, url) => {
    // url is already escaped; &amp; is fine inside an attribute.
    if (!/^https?:\/\//i.test(url)) return m;
    return keep(`<a href="${url}" rel="noopener noreferrer" target="_blank">${text}</a>`);
  });
  s = s.replace(/(\*\*|__)(?=\S)([\s\S]*?\S)\1/g, '<strong>$2</strong>');
  s = s.replace(/(^|[^*\w])\*(?=\S)([^*]*?\S)\*(?!\*)/g, '$1<em>$2</em>');
  s = s.replace(/(^|[^_\w])_(?=\S)([^_]*?\S)_(?!\w)/g, '$1<em>$2</em>');
  if (opts.citations) {
    s = s.replace(/\[(\d{1,3})\]/g, (_, n) => {
      const flagged = opts.unmatched && opts.unmatched.has(Number(n));
      const label = flagged ? `citation ${n} (no such source)` : `open source ${n}`;
      return keep(`<button type="button" class="cite${flagged ? ' unmatched' : ''}" data-cite="${n}" aria-label="${label}">[${n}]</button>`);
    });
  }
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => slots[Number(i)]);
}

// GFM tables: the cells of a row, split at unescaped pipes (a leading and a trailing pipe are
// optional); "\|" is a literal pipe. Raw text in, raw text out (escaped later).
function tableCells(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cell = '';
  for (let i = 0; i < s.length; ++i) {
    if (s[i] === '\\' && s[i + 1] === '|') { cell += '|'; ++i; continue; }
    if (s[i] === '|') { cells.push(cell.trim()); cell = ''; continue; }
    cell += s[i];
  }
  cells.push(cell.trim());
  return cells;
}

// The alignments of a delimiter row ("| :--- | :-: | --: |"), or null when `line` is not one.
function tableAlignments(line) {
  if (!line.includes('-') || !line.includes('|') || !/^[\s|:-]+$/.test(line)) return null;
  const cells = tableCells(line);
  if (!cells.every((c) => /^:?-+:?$/.test(c))) return null;
  return cells.map((c) => (c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : c.startsWith(':') ? 'left' : ''));
}

// Whether `line` begins another block (which ends a table, as in GFM).
function startsBlock(line) {
  return /^\s*(#{1,6}\s|```|~~~|>|([-*+]|\d{1,9}[.)])\s)/.test(line) || /^\s*([-*_])(\s*\1){2,}\s*$/.test(line);
}

function renderTable(header, aligns, rows, opts) {
  // Alignment is a class, not a style attribute (the page's CSP allows no inline styles).
  const cell = (tag, text, i) => `<${tag}${aligns[i] ? ` class="align-${aligns[i]}"` : ''}>${inline(escapeHtml(text ?? ''), opts)}</${tag}>`;
  const head = `<thead><tr>${aligns.map((_, i) => cell('th', header[i], i)).join('')}</tr></thead>`;
  const body = rows.length ? `<tbody>${rows.map((r) => `<tr>${aligns.map((_, i) => cell('td', r[i], i)).join('')}</tr>`).join('')}</tbody>` : '';
  return `<div class="table-wrap"><table class="md-table">${head}${body}</table></div>`;
}

// Renders Markdown text to an HTML string. opts: {citations: bool, unmatched: Set<number>}.
export function renderMarkdown(text, opts = {}) {
  const lines = String(text ?? '').replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  let para = [];
  let list = null; // {type: 'ul'|'ol', items: []}
  let quote = [];

  const flushPara = () => {
    if (para.length) out.push(`<p>${inline(escapeHtml(para.join('\n')), opts).replace(/\n/g, '<br>')}</p>`);
    para = [];
  };
  const flushList = () => {
    if (list) out.push(`<${list.type}>${list.items.map((i) => `<li>${inline(escapeHtml(i), opts)}</li>`).join('')}</${list.type}>`);
    list = null;
  };
  const flushQuote = () => {
    if (quote.length) out.push(`<blockquote>${renderMarkdown(quote.join('\n'), opts)}</blockquote>`);
    quote = [];
  };
  const flushAll = () => { flushPara(); flushList(); flushQuote(); };

  for (let i = 0; i < lines.length; ++i) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)\s*$/);
    if (fence) {
      flushAll();
      const code = [];
      let j = i + 1;
      while (j < lines.length && !lines[j].trim().startsWith(fence[1])) code.push(lines[j++]);
      i = j; // skips the closing fence (or ends the text when it is still streaming)
      const lang = fence[2] ? `<span class="lang">${escapeHtml(fence[2])}</span>` : '';
      out.push(`<div class="codeblock">${lang}<button type="button" class="copy" data-copy>Copy</button>` +
               `<pre><code>${escapeHtml(code.join('\n'))}</code></pre></div>`);
      continue;
    }
    if (/^\s*$/.test(line)) { flushAll(); continue; }
    // A table: a header row, then a delimiter row with as many cells; rows until a blank line.
    if (line.includes('|') && i + 1 < lines.length && !/^\s*>/.test(line)) {
      const aligns = tableAlignments(lines[i + 1]);
      const header = aligns && tableCells(line);
      if (aligns && header.length === aligns.length) {
        flushAll();
        const rows = [];
        let j = i + 2;
        while (j < lines.length && !/^\s*$/.test(lines[j]) && !startsBlock(lines[j])) rows.push(tableCells(lines[j++]));
        out.push(renderTable(header, aligns, rows, opts));
        i = j - 1;
        continue;
      }
    }
    const quoteLine = line.match(/^\s*>\s?(.*)$/);
    if (quoteLine) { flushPara(); flushList(); quote.push(quoteLine[1]); continue; }
    flushQuote();
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      flushAll();
      // Inside a message, headings start at h3 so they do not compete with the page's own.
      const level = Math.min(6, heading[1].length + 2);
      out.push(`<h${level}>${inline(escapeHtml(heading[2]), opts)}</h${level}>`);
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { flushAll(); out.push('<hr>'); continue; }
    const item = line.match(/^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/);
    if (item) {
      flushPara();
      const type = /\d/.test(item[1]) ? 'ol' : 'ul';
      if (list && list.type !== type) flushList();
      if (!list) list = { type, items: [] };
      list.items.push(item[2]);
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) { list.items[list.items.length - 1] += ` ${line.trim()}`; continue; }
    flushList();
    para.push(line);
  }
  flushAll();
  return out.join('\n');
}

// Wires the copy buttons of rendered code blocks inside `root` (event delegation; call once).
export function enableCopyButtons(root) {
  root.addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-copy]');
    if (!button) return;
    const code = button.parentElement.querySelector('code');
    const text = code ? code.textContent : '';
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      document.execCommand('copy');
      sel.removeAllRanges();
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
}
