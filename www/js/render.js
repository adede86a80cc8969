/* render.js — builds DOM nodes for one message, a day divider, a member or a
 * room entry. User text only ever reaches the page through textContent;
 * http and https URLs become <a> elements built here, opening in a new tab
 * without access to this page. */

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING_PUNCTUATION = /[.,;:!?)\]}]+$/;
const HUES = 8;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });

export function el(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

/* A stable colour class for a name, so each person keeps their colour. */
export function hueClass(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hue-${hash % HUES}`;
}

export function initials(name) {
  return [...name.trim()].slice(0, 1).join('').toUpperCase() || '?';
}

function avatar(name) {
  const node = el('span', `avatar ${hueClass(name)}`, initials(name));
  node.setAttribute('aria-hidden', 'true');
  return node;
}

export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/* A URL as typed, minus punctuation that most likely ends the sentence;
 * a closing parenthesis stays when the URL itself opened one. */
function trimUrl(candidate) {
  let url = candidate.replace(TRAILING_PUNCTUATION, '');
  const opens = (url.match(/\(/g) || []).length;
  const closes = (url.match(/\)/g) || []).length;
  if (opens > closes && candidate.charAt(url.length) === ')') url += ')';
  return url;
}

function safeHref(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}

function link(url, href) {
  const a = el('a', 'msg-link', url);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

/* The text as text nodes, with http(s) URLs as links. */
function linkify(text) {
  const fragment = document.createDocumentFragment();
  let rest = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (!href) continue;
    fragment.append(document.createTextNode(text.slice(rest, match.index)), link(url, href));
    rest = match.index + url.length;
  }
  fragment.append(document.createTextNode(text.slice(rest)));
  return fragment;
}

function timeElement(ts) {
  const date = new Date(ts);
  const node = el('time', 'msg-time', timeFormat.format(date));
  node.dateTime = date.toISOString();
  node.title = fullFormat.format(date);
  return node;
}

function header(user, ts, own) {
  const head = el('div', 'msg-head');
  const author = el('span', `msg-author ${hueClass(user)}`, user);
  author.dataset.testid = 'message-author';
  head.append(author);
  if (own) head.append(el('span', 'own-tag', 'you'));
  if (ts) head.append(timeElement(ts));
  return head;
}

function body(text) {
  const node = el('div', 'msg-text');
  node.dir = 'auto'; /* right-to-left text reads right to left */
  node.dataset.testid = 'message-text';
  node.append(linkify(text));
  return node;
}

/* A stored message. */
export function messageElement(message, own) {
  const item = el('li', `msg${own ? ' own' : ''}`);
  item.dataset.testid = 'message';
  item.dataset.id = String(message.id);
  item.dataset.user = message.user;
  item.append(avatar(message.user), header(message.user, message.ts, own), body(message.text));
  return item;
}

const PENDING_LABELS = {
  queued: 'Waiting for the connection — it will be sent when the chat is back online.',
  sending: 'Sending…',
  failed: 'Not sent',
};

/* A message of ours that the server has not acknowledged yet. */
export function pendingElement(item, me) {
  const node = el('li', `msg own pending state-${item.state}`);
  node.dataset.testid = 'message';
  node.dataset.ref = item.ref;
  node.dataset.state = item.state;
  node.dataset.user = me;
  node.append(avatar(me), header(me, 0, true), body(item.text));
  const status = el('div', 'msg-status');
  status.dataset.testid = 'message-status';
  const label = item.state === 'failed' && item.problem ? `Not sent: ${item.problem}` : PENDING_LABELS[item.state];
  status.append(el('span', '', label));
  if (item.state !== 'sending') {
    const retry = el('button', 'link-button retry', 'Retry');
    retry.type = 'button';
    retry.dataset.testid = 'retry';
    retry.dataset.ref = item.ref;
    status.append(retry);
  }
  node.append(status);
  return node;
}

export function dayDivider(ts) {
  const node = el('li', 'day-divider');
  node.setAttribute('role', 'separator');
  node.append(el('span', '', dayFormat.format(new Date(ts))));
  return node;
}

export function memberElement(name, me) {
  const item = el('li', 'member');
  item.dataset.testid = 'member';
  item.dataset.user = name;
  item.append(avatar(name), el('span', 'member-name', name));
  if (name === me) item.append(el('span', 'own-tag', 'you'));
  return item;
}

/* One entry of the room list: a link to #room with its counts. */
export function roomElement({ name, online, unread, current, offline }) {
  const item = el('li', 'room-item');
  const a = el('a', 'room-link');
  a.href = '#' + name;
  a.dataset.testid = 'room-link';
  a.dataset.room = name;
  if (current) a.setAttribute('aria-current', 'page');
  a.append(el('span', 'room-hash', '#'), el('span', 'room-name', name));
  const meta = [];
  if (online !== null && online !== undefined) {
    const count = el('span', 'room-online', String(online));
    count.title = `${online} online`;
    count.dataset.testid = 'room-online';
    a.append(count);
    meta.push(`${online} online`);
  }
  if (unread) {
    const badge = el('span', 'unread', unread > 99 ? '99+' : String(unread));
    badge.dataset.testid = 'room-unread';
    a.append(badge);
    meta.push(`${unread} unread`);
  }
  if (offline) a.classList.add('not-joined');
  if (meta.length) a.setAttribute('aria-label', `${name}, ${meta.join(', ')}`);
  item.append(a);
  return item;
}
