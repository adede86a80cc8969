/* search.js — the search box in the top bar and its results dialog
 * (docs/PROTOCOL.md, "Search"): it asks GET /api/search, lists each result
 * with its room, author, time and snippet (the matched words marked, all of
 * it as text, never HTML), pages on with `next`, and hands the chosen result
 * to app.js, which opens its room and loads the history back to it. */

import * as api from './api.js';
import { el } from './render.js';

const PAGE = 20;
const QUERY_MAX_BYTES = 256;

let els = null;
let openResult = () => {};
let query = '';
let next = '';
let searching = false;

function byId(id) {
  return document.getElementById(id);
}

function status(text) {
  els.status.textContent = text;
}

function snippetElement(parts) {
  const line = el('p', 'search-snippet');
  line.dir = 'auto';
  for (const part of Array.isArray(parts) ? parts : []) {
    const text = typeof part?.text === 'string' ? part.text : '';
    line.append(part?.match ? el('mark', '', text) : document.createTextNode(text));
  }
  return line;
}

function resultElement(message) {
  const item = el('li', 'search-result');
  const button = el('button', 'search-open');
  button.type = 'button';
  button.dataset.testid = 'search-result';
  button.dataset.room = message.room;
  button.dataset.id = String(message.id);
  const head = el('span', 'search-head');
  head.append(el('span', 'search-room', `#${message.room}`), el('span', 'search-user', message.user),
    el('time', 'search-time', new Date(message.ts).toLocaleString()));
  head.lastChild.dateTime = new Date(message.ts).toISOString();
  button.append(head, snippetElement(message.snippet));
  button.addEventListener('click', () => {
    els.dialog.close();
    openResult(message.room, message.id);
  });
  item.append(button);
  return item;
}

async function fetchPage() {
  if (searching) return;
  searching = true;
  els.more.hidden = true;
  status(next ? 'Searching older messages…' : 'Searching…');
  try {
    const page = await api.search(query, { before: next, limit: PAGE });
    for (const message of page.results) els.list.append(resultElement(message));
    next = page.next;
    const count = els.list.children.length;
    if (count === 0 && !next) status(`Nothing found for “${query}”.`);
    else if (count === 0) status('Nothing found in the newest messages yet.');
    else status(`${count} result${count === 1 ? '' : 's'}${next ? ' so far' : ''}.`);
    els.more.hidden = !next;
  } catch (error) {
    status(`Search failed: ${error.message}`);
    els.more.hidden = !next;
  } finally {
    searching = false;
  }
}

function start(event) {
  event.preventDefault();
  const text = els.input.value.trim();
  if (!text) return;
  if (new TextEncoder().encode(text).length > QUERY_MAX_BYTES) {
    els.input.setCustomValidity('Search for at most 256 bytes of text.');
    els.input.reportValidity();
    return;
  }
  query = text;
  next = '';
  els.list.replaceChildren();
  els.title.textContent = `Results for “${text}”`;
  if (!els.dialog.open) els.dialog.showModal();
  fetchPage();
}

/* Binds the search form; onOpen(room, id) shows a result in its room. */
export function initSearch(onOpen) {
  els = {
    form: byId('search-form'),
    input: byId('search-input'),
    dialog: byId('search-dialog'),
    title: byId('search-title'),
    list: byId('search-results'),
    status: byId('search-status'),
    more: byId('search-more'),
  };
  openResult = onOpen;
  els.form.addEventListener('submit', start);
  els.input.addEventListener('input', () => els.input.setCustomValidity(''));
  els.more.addEventListener('click', fetchPage);
  els.dialog.querySelector('[data-close]').addEventListener('click', () => els.dialog.close());
  els.dialog.addEventListener('close', () => els.input.focus());
}
