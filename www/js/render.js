/* render.js — builds DOM nodes for one message (its reply quote, text,
 * "(edited)", tombstone, reactions and actions), a day divider, the "new
 * since you left" divider, a member or a room entry, and with accounts the
 * entries of a room's roster and of the admin page. User text only ever reaches the page through textContent and
 * attributes; http and https URLs become <a> elements built here, opening in
 * a new tab without access to this page, and @mentions become <span>s. */

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING_PUNCTUATION = /[.,;:!?)\]}]+$/;
const HUES = 8;
const QUOTE_MAX = 100; /* code points of a reply's quote, as the server cuts it */
const WORD_CHAR = /[\p{L}\p{N}]/u;
const NAME_END = /[\s\p{P}\p{S}]/u;

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

const asciiLower = (text) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());

export function sameName(a, b) {
  return asciiLower(a) === asciiLower(b);
}

/* Where the names of mentions (the server's list) occur in text as @name,
 * by PROTOCOL.md's rule: the @ starts the text or follows a character that
 * is not a letter or digit, the name (longest first, ASCII case ignored)
 * ends the text or is followed by white space or punctuation. */
function mentionRanges(text, mentions) {
  const names = [...new Set(mentions)].filter(Boolean).sort((a, b) => b.length - a.length);
  const lower = asciiLower(text);
  const ranges = [];
  if (!names.length) return ranges;
  for (let at = text.indexOf('@'); at !== -1; at = text.indexOf('@', at + 1)) {
    if (at > 0 && WORD_CHAR.test(text.charAt(at - 1))) continue;
    const name = names.find((n) => {
      const end = at + 1 + n.length;
      return lower.startsWith(asciiLower(n), at + 1) && (end === text.length || NAME_END.test(text.charAt(end)));
    });
    if (!name) continue;
    ranges.push({ start: at, end: at + 1 + name.length, name });
    at += name.length;
  }
  return ranges;
}

/* Plain text with its @mentions as spans; the one naming me stands out. */
function mentionify(text, mentions, me) {
  const fragment = document.createDocumentFragment();
  let rest = 0;
  for (const { start, end, name } of mentionRanges(text, mentions)) {
    const span = el('span', `mention${me && sameName(name, me) ? ' mention-me' : ''}`, text.slice(start, end));
    span.dataset.testid = 'mention';
    fragment.append(document.createTextNode(text.slice(rest, start)), span);
    rest = end;
  }
  fragment.append(document.createTextNode(text.slice(rest)));
  return fragment;
}

/* The text as text nodes, with http(s) URLs as links and @mentions marked. */
function linkify(text, mentions = [], me = '') {
  const fragment = document.createDocumentFragment();
  let rest = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (!href) continue;
    fragment.append(mentionify(text.slice(rest, match.index), mentions, me), link(url, href));
    rest = match.index + url.length;
  }
  fragment.append(mentionify(text.slice(rest), mentions, me));
  return fragment;
}

/* The first words of a text, as a reply quotes them: at most QUOTE_MAX code
 * points, cut at a word where it can be, with "…" when cut. */
export function quoteOf(text) {
  const points = [...text];
  if (points.length <= QUOTE_MAX) return text;
  const head = points.slice(0, QUOTE_MAX).join('');
  const space = head.search(/\s\S*$/);
  return (space > QUOTE_MAX / 2 ? head.slice(0, space) : head) + '…';
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

function body(text, { mentions = [], me = '', editedTs = null, deleted = false, deletedBy = null } = {}) {
  const wrap = el('div', 'msg-body');
  const node = el('span', `msg-text${deleted ? ' tombstone' : ''}`);
  node.dir = 'auto'; /* right-to-left text reads right to left */
  node.dataset.testid = 'message-text';
  if (deleted) {
    node.textContent = 'message deleted';
    if (deletedBy) node.title = `Deleted by ${deletedBy}`;
  } else {
    node.append(linkify(text, mentions, me));
  }
  wrap.append(node);
  if (editedTs && !deleted) {
    const edited = el('span', 'msg-edited', '(edited)');
    edited.dataset.testid = 'message-edited';
    edited.title = `Edited ${fullFormat.format(new Date(editedTs))}`;
    wrap.append(' ', edited);
  }
  return wrap;
}

/* The quote of the message a reply answers: a button that shows the original. */
function replyQuote(quote) {
  const button = el('button', 'reply-quote');
  button.type = 'button';
  button.dataset.testid = 'reply-quote';
  button.dataset.target = String(quote.id);
  const text = quote.text ? quote.text : 'message deleted';
  button.setAttribute('aria-label', `In reply to ${quote.user}: ${text}. Show the original.`);
  button.title = 'Show the original message';
  const words = el('span', `quote-text${quote.text ? '' : ' tombstone'}`, text);
  words.dir = 'auto';
  button.append(el('span', 'quote-mark', '↪'), el('span', `quote-author ${hueClass(quote.user)}`, quote.user), words);
  return button;
}

function reactionBar(reactions, me) {
  const bar = el('div', 'reactions');
  bar.dataset.testid = 'reactions';
  for (const [emoji, users] of Object.entries(reactions)) {
    const mine = users.includes(me);
    const chip = el('button', `reaction${mine ? ' mine' : ''}`);
    chip.type = 'button';
    chip.dataset.testid = 'reaction';
    chip.dataset.emoji = emoji;
    chip.setAttribute('aria-pressed', String(mine));
    chip.title = `${users.join(', ')} reacted with ${emoji}`;
    chip.setAttribute('aria-label', `${emoji} ${users.length}: ${users.join(', ')}${mine ? ' (you: click to remove)' : ''}`);
    const count = el('span', 'reaction-count', String(users.length));
    count.dataset.testid = 'reaction-count';
    chip.append(el('span', 'reaction-emoji', emoji), count);
    bar.append(chip);
  }
  const add = el('button', 'reaction reaction-add', '+');
  add.type = 'button';
  add.dataset.action = 'react';
  add.dataset.testid = 'reaction-add';
  add.title = 'Add a reaction';
  add.setAttribute('aria-label', 'Add a reaction');
  bar.append(add);
  return bar;
}

const ACTIONS = [
  { action: 'react', label: 'Add a reaction', icon: '☺' },
  { action: 'reply', label: 'Reply', icon: '↩' },
  { action: 'edit', label: 'Edit', icon: '✎', own: true },
  { action: 'delete', label: 'Delete', icon: '🗑', own: true },
];

/* Hover (or long-press, or keyboard focus) actions of a message. They stay
 * out of the Tab order until the message itself has the focus. */
function actionBar(own) {
  const bar = el('div', 'msg-actions');
  bar.setAttribute('role', 'toolbar');
  bar.setAttribute('aria-label', 'Message actions');
  bar.dataset.testid = 'message-actions';
  for (const { action, label, icon, own: ownOnly } of ACTIONS) {
    if (ownOnly && !own) continue;
    const button = el('button', 'msg-action', icon);
    button.type = 'button';
    button.tabIndex = -1;
    button.dataset.action = action;
    button.dataset.testid = `action-${action}`;
    button.title = label;
    button.setAttribute('aria-label', label);
    bar.append(button);
  }
  return bar;
}

function statusLine(text, { dismiss = false, testid = 'message-status' } = {}) {
  const status = el('div', `msg-status${dismiss ? ' notice' : ''}`);
  status.dataset.testid = testid;
  status.append(el('span', '', text));
  if (dismiss) {
    const close = el('button', 'link-button notice-dismiss', 'Dismiss');
    close.type = 'button';
    close.dataset.testid = 'notice-dismiss';
    status.append(close);
  }
  return status;
}

/* What a message row shows besides the message: every input of
 * messageElement() that can change, as one string (the view rebuilds a row
 * when it changes). */
export function messageSignature(message, view) {
  return JSON.stringify([message.user, message.ts, message.text, message.edited_ts, message.deleted,
    message.deleted_by, message.reactions, message.reply_to, message.mentions, view]);
}

/* A stored message. view: {own, me, editing (the row holds the editor),
 * savingText (our edit on its way), savingQueued (it waits for the
 * connection), notice (why our change failed)}. */
export function messageElement(message,
  { own = false, me = '', editing = false, savingText = null, savingQueued = false, notice = '' } = {}) {
  const mentionsMe = Boolean(me) && message.mentions.some((name) => sameName(name, me));
  const item = el('li', `msg${own ? ' own' : ''}${mentionsMe ? ' mentions-me' : ''}${message.deleted ? ' deleted' : ''}`);
  item.dataset.testid = 'message';
  item.dataset.id = String(message.id);
  item.dataset.user = message.user;
  item.tabIndex = -1;
  if (mentionsMe) item.dataset.mentionsMe = 'true';
  item.append(avatar(message.user), header(message.user, message.ts, own));
  if (message.reply_to) item.append(replyQuote(message.reply_to));
  if (editing) {
    item.classList.add('editing');
    item.append(el('div', 'editor-slot'));
  } else {
    item.append(body(savingText ?? message.text, { mentions: message.mentions, me, editedTs: message.edited_ts,
      deleted: message.deleted, deletedBy: message.deleted_by }));
  }
  if (!message.deleted && Object.keys(message.reactions).length) item.append(reactionBar(message.reactions, me));
  if (savingText !== null && !editing) {
    item.append(statusLine(savingQueued ? 'Edit waiting for the connection…' : 'Saving…'));
  }
  if (notice) item.append(statusLine(notice, { dismiss: true, testid: 'message-notice' }));
  if (!message.deleted && !editing) item.append(actionBar(own));
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
  node.append(avatar(me), header(me, 0, true));
  if (item.replyTo) node.append(replyQuote(item.replyTo));
  node.append(body(item.text));
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

/* Where a room's unread messages start: after the last one read. */
export function newDivider() {
  const node = el('li', 'new-divider');
  node.setAttribute('role', 'separator');
  node.dataset.testid = 'new-divider';
  node.append(el('span', '', 'New since you left'));
  return node;
}

/* One person of the members panel. role: 'owner'|'member' in a private
 * room's roster; canMessage: the name is a button that opens a direct
 * message with them (accounts). */
export function memberElement(name, me, { role = '', canMessage = false, online = null } = {}) {
  const item = el('li', 'member');
  item.dataset.testid = role ? 'roster-member' : 'member';
  item.dataset.user = name;
  if (online === false) item.classList.add('offline');
  item.append(avatar(name));
  if (canMessage && name !== me) {
    const button = el('button', 'member-name member-dm', name);
    button.type = 'button';
    button.dataset.testid = 'member-dm';
    button.dataset.user = name;
    button.title = `Send ${name} a direct message`;
    button.setAttribute('aria-label', `${name}: send a direct message`);
    item.append(button);
  } else {
    item.append(el('span', 'member-name', name));
  }
  if (name === me) item.append(el('span', 'own-tag', 'you'));
  if (role === 'owner') item.append(el('span', 'role-tag', 'owner'));
  return item;
}

/* One person of a private room's roster in the members dialog; manage:
 * the viewer is an owner and may change them. */
export function rosterElement({ user, role }, me, manage) {
  const item = el('li', 'member roster-entry');
  item.dataset.testid = 'roster-entry';
  item.dataset.user = user;
  item.append(avatar(user), el('span', 'member-name', user));
  if (user === me) item.append(el('span', 'own-tag', 'you'));
  item.append(el('span', 'role-tag', role === 'owner' ? 'owner' : 'member'));
  if (manage && user !== me) {
    const actions = el('span', 'row-actions');
    if (role !== 'owner') {
      const owner = el('button', 'button small', 'Make owner');
      owner.type = 'button';
      owner.dataset.act = 'owner';
      owner.dataset.user = user;
      owner.dataset.testid = 'roster-make-owner';
      owner.setAttribute('aria-label', `Make ${user} an owner`);
      actions.append(owner);
    }
    const remove = el('button', 'button small subtle', 'Remove');
    remove.type = 'button';
    remove.dataset.act = 'remove';
    remove.dataset.user = user;
    remove.dataset.testid = 'roster-remove';
    remove.setAttribute('aria-label', `Remove ${user} from the room`);
    actions.append(remove);
    item.append(actions);
  }
  return item;
}

/* An avatar in a person's own colour (accounts: the profile's colour). */
export function colorAvatar(node, name, color) {
  node.className = `avatar ${hueClass(name || '?')}`;
  node.textContent = initials(name || '?');
  if (color) node.style.setProperty('--hue', color);
  else node.style.removeProperty('--hue');
}

function actButton(label, act, data, testid, aria = '') {
  const button = el('button', `button small${act === 'close' || act === 'disable' ? ' subtle-danger' : ''}`, label);
  button.type = 'button';
  button.dataset.act = act;
  button.dataset.testid = testid;
  for (const [key, value] of Object.entries(data)) button.dataset[key] = value;
  if (aria) button.setAttribute('aria-label', aria);
  return button;
}

/* One account of the admin page: who, role, state and its actions. */
export function adminUserElement(user, me) {
  const item = el('li', `admin-row${user.disabled ? ' disabled' : ''}`);
  item.dataset.testid = 'admin-user';
  item.dataset.user = user.name;
  const who = el('span', 'admin-who');
  who.append(el('strong', '', user.name));
  if (user.display && user.display !== user.name) who.append(el('span', 'muted', ` (${user.display})`));
  item.append(who);
  if (user.role === 'admin') item.append(el('span', 'role-tag', 'admin'));
  if (user.disabled) item.append(el('span', 'state-tag', 'disabled'));
  const actions = el('span', 'row-actions');
  if (user.name !== me) {
    actions.append(user.disabled
      ? actButton('Enable', 'enable', { user: user.name }, 'admin-enable', `Enable ${user.name}`)
      : actButton('Disable', 'disable', { user: user.name }, 'admin-disable', `Disable ${user.name}`));
  }
  actions.append(actButton('Reset password', 'reset', { user: user.name }, 'admin-reset', `Reset the password of ${user.name}`));
  item.append(actions);
  return item;
}

/* The inline form that sets a new password for user on the admin page. */
export function resetForm(user) {
  const form = el('form', 'reset-form');
  form.noValidate = true;
  form.dataset.user = user;
  form.dataset.testid = 'admin-reset-form';
  const label = el('label', '', `New password for ${user}`);
  const input = el('input');
  input.type = 'password';
  input.autocomplete = 'new-password';
  input.maxLength = 256;
  input.id = `reset-${user.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  input.dataset.testid = 'admin-reset-input';
  label.htmlFor = input.id;
  const save = el('button', 'button primary small', 'Set password');
  save.type = 'submit';
  save.dataset.testid = 'admin-reset-save';
  const cancel = actButton('Cancel', 'cancel-reset', {}, 'admin-reset-cancel');
  form.append(label, input, save, cancel);
  return form;
}

/* One room of the admin page. */
export function adminRoomElement(room) {
  const item = el('li', `admin-row${room.closed ? ' disabled' : ''}`);
  item.dataset.testid = 'admin-room';
  item.dataset.room = room.name;
  const who = el('span', 'admin-who');
  who.append(el('strong', '', room.dm ? 'Direct message' : `#${room.name}`));
  const kind = room.dm ? (room.members || []).join(', ') : room.private ? 'private' : 'public';
  who.append(el('span', 'muted', ` ${kind} · ${room.last_id || 0} events`));
  item.append(who);
  if (room.closed) {
    item.append(el('span', 'state-tag', 'closed'));
  } else {
    const actions = el('span', 'row-actions');
    actions.append(actButton('Close', 'close', { room: room.name }, 'admin-close', `Close ${room.name}`));
    item.append(actions);
  }
  return item;
}

/* A new invite code with its sign-up link and a copy button. */
export function inviteElement({ code, expires }, link) {
  const item = el('li', 'admin-row invite-row');
  item.dataset.testid = 'admin-invite-code';
  item.dataset.code = code;
  const input = el('input', 'invite-link');
  input.readOnly = true;
  input.value = link;
  input.setAttribute('aria-label', `Sign-up link with invite code ${code}`);
  input.dataset.testid = 'admin-invite-link';
  const copy = actButton('Copy link', 'copy', { link }, 'admin-invite-copy');
  item.append(input, copy);
  if (expires) item.append(el('span', 'muted small', `valid until ${fullFormat.format(new Date(expires))}`));
  return item;
}

/* One entry of the room list: a link to #room with its counts. label: what
 * it is called (a DM: its people); kind: 'public'|'private'|'dm'. */
export function roomElement({ name, online, unread, mentions = 0, current, offline, label = '', kind = 'public' }) {
  const item = el('li', 'room-item');
  const a = el('a', `room-link kind-${kind}`);
  a.href = '#' + name;
  a.dataset.testid = 'room-link';
  a.dataset.room = name;
  if (current) a.setAttribute('aria-current', 'page');
  const mark = { dm: '@', private: '🔒' }[kind] || '#';
  const hash = el('span', 'room-hash', mark);
  hash.setAttribute('aria-hidden', 'true');
  a.append(hash, el('span', 'room-name', label || name));
  if (kind === 'private') a.title = `${name} (private)`;
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
  if (mentions) {
    const badge = el('span', 'mention-badge', `@${mentions > 99 ? '99+' : mentions}`);
    badge.dataset.testid = 'room-mentions';
    badge.title = `${mentions} mention${mentions === 1 ? '' : 's'} of you`;
    a.append(badge);
    meta.push(`${mentions} mention${mentions === 1 ? '' : 's'} of you`);
  }
  if (offline) a.classList.add('not-joined');
  if (kind === 'private') meta.unshift('private');
  if (kind === 'dm') meta.unshift('direct message');
  if (meta.length) a.setAttribute('aria-label', `${label || name}, ${meta.join(', ')}`);
  item.append(a);
  return item;
}

/* A small, fixed choice of common emoji for reactions. */
export const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀', '🔥', '✅', '👏', '🚀', '😄', '🤔', '💯', '👎'];

/* The reaction picker: one button per emoji, pressed where I reacted. */
export function emojiPicker(mine) {
  const grid = el('div', 'emoji-grid');
  grid.setAttribute('role', 'group');
  grid.setAttribute('aria-label', 'Pick a reaction');
  for (const emoji of EMOJI) {
    const button = el('button', 'emoji-option', emoji);
    button.type = 'button';
    button.dataset.testid = 'emoji-option';
    button.dataset.emoji = emoji;
    button.setAttribute('aria-label', `React with ${emoji}`);
    button.setAttribute('aria-pressed', String(mine.includes(emoji)));
    grid.append(button);
  }
  return grid;
}

/* One entry of the @ autocomplete list. */
export function mentionOption({ name, online }, index, selected) {
  const item = el('li', 'mention-option');
  item.id = `mention-option-${index}`;
  item.setAttribute('role', 'option');
  item.setAttribute('aria-selected', String(selected));
  item.dataset.testid = 'mention-option';
  item.dataset.user = name;
  item.dataset.index = String(index);
  item.append(avatar(name), el('span', 'member-name', name));
  if (online) item.append(el('span', 'online-dot', 'online'));
  return item;
}
