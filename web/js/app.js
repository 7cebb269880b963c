// Entry point: hash routing between the views (#/chat, #/documents, #/ask, #/models, #/evaluate, #/status),
// the collapsible navigation, and keyboard conveniences.
import * as chat from './chat.js';
import * as documents from './documents.js';
import * as ask from './ask.js';
import * as status from './status.js';
import * as evaluate from './evaluate.js';
import * as models from './models.js';
import { $ } from './ui.js';
import { hasStoredKey, signOut } from './api.js';

const views = { chat, documents, ask, models, evaluate, status };
let currentName = null;

function closeNav() {
  $('nav').classList.remove('open');
  $('nav-toggle').setAttribute('aria-expanded', 'false');
}

function route(focus) {
  const m = location.hash.match(/^#\/([a-z]+)/);
  const name = m && views[m[1]] ? m[1] : 'chat';
  if (name !== currentName) {
    if (currentName) views[currentName].hide?.();
    for (const key of Object.keys(views)) $(`view-${key}`).hidden = key !== name;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    currentName = name;
    document.body.dataset.view = name;  // the chat view fills the window (style.css)
    document.title = `Etna · ${name[0].toUpperCase()}${name.slice(1)}`;
    views[name].show?.();
  }
  closeNav();
  if (focus) document.querySelector(`#view-${name} h1`)?.focus();
}

window.addEventListener('hashchange', () => route(true));

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && $('nav').classList.contains('open')) {
    closeNav();
    $('nav-toggle').focus();
  }
});

$('nav-toggle').addEventListener('click', () => {
  const open = !$('nav').classList.contains('open');
  $('nav').classList.toggle('open', open);
  $('nav-toggle').setAttribute('aria-expanded', String(open));
  if (open) $('nav').querySelector('a')?.focus();
});

$('skip').addEventListener('click', () => {
  const view = document.querySelector('.view:not([hidden]) h1');
  (view || $('main')).focus();
});

// Sign out: shown while an API key is stored (servers started with --api-key).
const showSignOut = () => { $('signout').hidden = !hasStoredKey(); };
$('signout').addEventListener('click', signOut);
window.addEventListener('etna-signed-in', showSignOut);
showSignOut();

for (const v of Object.values(views)) v.init?.();
route(false);
